"""Past one machine: ObsIds as Dask tasks, under one connection budget per site.

``pip install 'chandra-download[dask]'`` brings ``dask.distributed``; the rest of the package
never imports it. :func:`download` runs one task per ObsId (key ``chandra-download-<ObsId>-
<digest of the options>``, so the same ObsId submitted again, from any client, while it runs
is the same task, never a second run at once), each an ordinary
:func:`chandra_download.download` of that ObsId on a worker. Every socket open to a site
holds a lease of a ``distributed.Semaphore`` named after the site and the budget
(:class:`DaskBudget`, :mod:`chandra_download.budget`): at most ``connections`` connections
open to a site at once, cluster-wide.
A task whose worker dies is run again elsewhere by the scheduler and resumes from what is on
the shared disk; one that cannot finish (its workers keep dying) is a failed
:class:`ObsIdResult` saying so. Before any task, the workers are asked to read a probe file
the client wrote into the output directory: a worker that cannot see it is one clear error.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from .api import ObsIds, Types
from .api import download as local_download
from .config import configured
from .errors import ChandraDownloadError, SourceError
from .filetypes import Selection
from .log import vlog
from .obsids import validate_obsids
from .output import obsid_block
from .progress import Reporter
from .results import FileResult, ObsIdResult, Results
from .shard import select
from .sources import DEFAULT_SITE, expand_mirror

#: Seconds a lease lives without its holder's refresh: a dead worker's leases come back
#: after this (plus the scheduler's ``locks.lease-validation-interval``). 5 s proved too short
#: on a loaded machine: refreshes (every fifth of it) came late and live leases were dropped.
LEASE_TIMEOUT = 10.0
#: Most seconds a task waits, at its end, for its sockets' leases to come back.
SETTLE = 3.0
#: Keywords of chandra_download.download that are not SessionConfig fields.
_API_KEYWORDS = set(inspect.signature(local_download).parameters) - {"obsids", "options"}
#: Keywords about the whole run, which tasks of one ObsId each cannot honour.
_WHOLE_RUN = ("manifest", "frozen")


class ClusterError(ChandraDownloadError):
    """The cluster cannot run the download (no workers, output directory not shared)."""


# -- the budget -------------------------------------------------------------------------------
class DaskBudget:
    """``connections`` leases per site, shared by every worker and client of one scheduler.

    Picklable: the semaphores are made in each worker process on first use.
    """

    def __init__(self, connections: int) -> None:
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
            raise ValueError(
                f"connections must be a whole number of at least 1, not {connections!r}"
            )
        self.connections = connections

    def name(self, site: str) -> str:
        return f"chandra-download-connections-{self.connections}-{site}"

    def on_worker(self) -> _WorkerBudget:
        """The budget bound to this worker's scheduler connection; call it in the task's
        own thread (the engine's threads cannot find the worker themselves)."""
        from distributed import get_worker

        worker = get_worker()
        return _WorkerBudget(self, worker.scheduler, worker.loop, worker.address)


class _WorkerBudget:
    """A :class:`DaskBudget` in one worker process: one semaphore handle per site."""

    def __init__(self, budget: DaskBudget, scheduler: Any, loop: Any, address: str) -> None:
        self._budget, self._scheduler, self._loop = budget, scheduler, loop
        self._address = address
        self._held = 0
        self._cond = threading.Condition()

    @contextmanager
    def lease(self, site: str) -> Iterator[None]:
        sem = self._semaphore(self._budget.name(site))
        sem.acquire()
        with self._cond:
            self._held += 1
        try:
            yield
        finally:
            sem.release()
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    def settle(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every lease taken here is back: a task's
        sockets are closed when it ends, and their leases come back a moment later (once
        closed at the site too), which is the task's to see done, not the others'."""
        with self._cond:
            return self._cond.wait_for(lambda: self._held == 0, timeout)

    def _semaphore(self, name: str) -> Any:
        """This process's handle on one named semaphore, registered with a short lease
        timeout (its holder refreshes it every fifth of that), its lease ids naming this
        worker (so the scheduler gives them back once it is gone: cluster_leases)."""
        import dask

        from .cluster_leases import NamedSemaphore

        with _sem_lock:
            sem = _semaphores.get(name)
            if sem is None:
                timeout = {"distributed.scheduler.locks.lease-timeout": f"{LEASE_TIMEOUT}s"}
                with dask.config.set(timeout):
                    sem = NamedSemaphore(
                        self._budget.connections, name, self._scheduler, self._loop,
                        holder=self._address,
                    )  # fmt: skip
                    sem.register()
                _semaphores[name] = sem
            return sem


_semaphores: dict[str, Any] = {}
_sem_lock = threading.Lock()


# -- the tasks --------------------------------------------------------------------------------
class _Timing(Reporter):
    """Silent on the worker; remembers when the ObsId's first file started and last ended."""

    def __init__(self) -> None:
        super().__init__()
        self.silence()
        self.first: float | None = None
        self.last: float | None = None

    def file_started(self, fr: FileResult) -> None:
        now = time.monotonic()
        self.first = now if self.first is None else min(self.first, now)

    def file_done(self, fr: FileResult) -> None:
        self.last = time.monotonic()

    @property
    def elapsed(self) -> float:
        return (self.last or 0.0) - self.first if self.first is not None else 0.0


def _run_obsid(
    obsid: int, filetypes: Types, options: dict[str, Any], budget: DaskBudget
) -> tuple[ObsIdResult, float]:
    """One ObsId on a worker: a failed result for anything unexpected, never an exception."""
    timing = _Timing()
    try:
        leases = budget.on_worker()
        try:
            results = local_download(
                [obsid], filetypes, reporter=timing, progress=False, budget=leases, **options
            )
        finally:
            leases.settle(SETTLE)
        r = results[0]
    except Exception as exc:
        r = ObsIdResult(obsid, error=f"failed on worker: {exc}")
    return _portable(r), timing.elapsed


def _portable(r: ObsIdResult) -> ObsIdResult:
    """Causes that would not survive the trip to the client become plain SourceErrors."""
    kept: list[BaseException] = []
    for cause in r.causes:
        try:
            pickle.loads(pickle.dumps(cause))
            kept.append(cause)
        except Exception:
            kept.append(SourceError(str(cause)))
    r.causes = kept
    return r


def _key(obsid: int, filetypes: Types, options: dict[str, Any]) -> str:
    """The same ObsId, types and options give the same task key (secrets are not in it)."""
    shown = {k: v for k, v in sorted(options.items()) if k not in ("username", "userpass")}
    digest = hashlib.sha256(repr((filetypes, shown)).encode()).hexdigest()[:16]
    return f"chandra-download-{obsid}-{digest}"


# -- the shared output directory ----------------------------------------------------------------
def _read_probe(path: str, token: str) -> bool:
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def check_shared(client: Any, outdir: Path) -> None:
    """Every worker reads the probe file the client wrote into ``outdir``; else ClusterError."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        raise ClusterError("the Dask cluster has no workers")
    own = outdir / ".chandra-download"
    try:
        own.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        probe = own / f"probe-{token}"
        probe.write_text(token)
    except OSError as exc:
        raise ClusterError(
            f"cannot write to the output directory {outdir}: {exc.strerror}"
        ) from None
    try:
        seen = client.run(_read_probe, str(probe), token)
    finally:
        probe.unlink(missing_ok=True)
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ClusterError(
            f"{len(blind)} of {len(seen)} Dask worker(s) cannot see the output directory "
            f"{outdir} (it must be on a file system they share), e.g. {blind[0]}"
        )


# -- the client ---------------------------------------------------------------------------------
def download(
    obsids: ObsIds,
    filetypes: Types = None,
    *,
    client: Any,
    connections: int = 8,
    shard: tuple[int, int] | None = None,
    blocks: bool = False,
    **options: Any,
) -> Results:
    """Download ObsIds on a Dask cluster, at most ``connections`` connections to a site.

    Parameters
    ----------
    obsids, filetypes
        As :func:`chandra_download.download`.
    client : distributed.Client
        A client of the cluster's scheduler.
    connections : int, default 8
        The most connections open to one site at once, cluster-wide, whatever the number of
        workers and threads.
    shard : (int, int), optional
        Only the K-th of N parts of ``obsids`` (see :mod:`chandra_download.shard`).
    blocks : bool, default False
        Log CIAO's block for each ObsId (verbose level 1) as it completes, in the order given.
    **options
        Every other keyword of :func:`chandra_download.download` (``mirror``, ``outdir``,
        ``excludes``, ``jobs``, ``retries``...), except ``reporter`` and ``progress``.

    Returns
    -------
    Results
        One :class:`ObsIdResult` per ObsId, in the order given; an ObsId that could not be
        finished (its workers died) is one with ``error`` set, never an exception.

    Raises
    ------
    ClusterError
        The workers cannot see the output directory, or there are none (nothing is fetched).
    ValueError, TypeError
        A bad ObsId or option, before anything starts.
    """
    ids = select(validate_obsids(obsids), shard)
    budget = DaskBudget(connections)
    options = _checked(filetypes, options)
    outdir = Path(options["outdir"])
    check_shared(client, outdir)
    _give_back_dead_leases(client)
    keys = [_key(o, filetypes, options) for o in ids]
    futures = {
        k: client.submit(_run_obsid, o, filetypes, options, budget, key=k, pure=False)
        for k, o in zip(keys, ids, strict=True)
    }
    printer = _InOrder(ids, _is_mirror(options.get("mirror")), blocks)
    done = _gather(futures, ids, printer)
    items = [done[k] for k in keys]
    return Results(
        items,
        rerun=lambda: download(ids, filetypes, client=client, connections=connections, **options),
    )


def _give_back_dead_leases(client: Any) -> None:
    """A dead worker's leases given back as soon as the scheduler removes it (a plugin on
    the scheduler); else they come back by their timeout."""
    from .cluster_leases import register

    if not register(client):
        vlog(2, "the Dask scheduler took no plugin: a dead worker's leases come back after "
             "%g s unrefreshed", LEASE_TIMEOUT)  # fmt: skip


def _checked(filetypes: Types, options: dict[str, Any]) -> dict[str, Any]:
    """The options checked on the client (a bad one fails here, before any task), with an
    absolute output directory (the workers' working directories are not the client's)."""
    for bad in ("reporter", "progress", "budget"):
        if bad in options:
            raise TypeError(f"cluster.download() does not take {bad}=")
    options = dict(options)
    for name in _WHOLE_RUN:
        if options.pop(name, None) is not None:
            raise ValueError(f"{name}= is not available on a cluster (each ObsId runs apart)")
    settings = {k: v for k, v in options.items() if k not in _API_KEYWORDS}
    configured(options.get("config"), settings, "cluster.download")
    excludes = options.get("excludes", options.get("exclude"))
    Selection(filetypes, excludes)
    out = dict(options)
    out["outdir"] = str(Path(os.fspath(options.get("outdir", "."))).absolute())
    return out


def _is_mirror(mirror: object) -> bool:
    first = mirror if mirror is None or isinstance(mirror, str) else next(iter(mirror), None)  # type: ignore[call-overload]
    return expand_mirror(first).rstrip("/") != DEFAULT_SITE.rstrip("/")


def _gather(futures: dict[str, Any], ids: list[int], printer: _InOrder) -> dict[str, ObsIdResult]:
    """Each task's result as it completes; a task that failed is a failed ObsIdResult."""
    from distributed import as_completed

    obsid_of = dict(zip(futures, ids, strict=False))
    done: dict[str, ObsIdResult] = {}
    for fut in as_completed(list(futures.values())):
        key = fut.key
        try:
            r, elapsed = fut.result()
        except Exception as exc:  # KilledWorker, a cancelled task...
            r, elapsed = ObsIdResult(obsid_of[key], error=_task_failure(exc)), 0.0
        done[key] = r
        printer.completed(key, r, elapsed)
    return done


def _task_failure(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return "not finished: the workers running it died (Dask gave up on the task)"
    return f"not finished on the cluster: {name}: {exc}"


class _InOrder:
    """CIAO's blocks, each once every earlier ObsId's is out."""

    def __init__(self, ids: list[int], mirror: bool, show: bool) -> None:
        self._ids, self._mirror, self._show = ids, mirror, show
        self._done: dict[int, tuple[ObsIdResult, float]] = {}
        self._next = 0

    def completed(self, key: str, r: ObsIdResult, elapsed: float) -> None:
        self._done[r.obsid] = (r, elapsed)
        while self._next < len(self._ids) and self._ids[self._next] in self._done:
            r, elapsed = self._done[self._ids[self._next]]
            self._next += 1
            if self._show:
                vlog(1, "%s", "\n".join(obsid_block(r, elapsed, self._mirror)))


# -- the command line -------------------------------------------------------------------------
def connect(address: str) -> AbstractContextManager[Any]:
    """A client of the scheduler at ``address``, as ``dask scheduler`` prints it."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(
            "--scheduler needs dask.distributed: pip install 'chandra-download[dask]'"
        ) from None
    try:
        return Client(address, timeout="10s")
    except OSError as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def cli_download(
    address: str,
    connections: int,
    obsids: Iterable[int],
    filetypes: Types,
    mirror: Any,
    username: str | None,
    userpass: str | None,
    *,
    blocks: bool = True,
    **kwargs: Any,
) -> Results:
    """The command line's download through the scheduler at ``address``."""
    kwargs.pop("reporter", None)
    with connect(address) as client:
        return download(
            list(obsids), filetypes, client=client, connections=connections, blocks=blocks,
            mirror=mirror, username=username, userpass=userpass, **kwargs,
        )  # fmt: skip
