"""The transfer engine: lists ObsIds, queues their files largest first, runs them concurrently."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from .config import SessionConfig
from .errors import ChandraDownloadError, ObsIdNotFound, SourceError
from .filetypes import Selection, classify
from .log import vlog
from .plan import Action, part_path, plan_file
from .progress import Reporter
from .results import FileResult, ObsIdResult, Status
from .retry import Interrupted, with_retries
from .sources.base import RemoteFile, Source, check_relpath
from .split import SplitFile
from .transfer import Transfer


class Engine:
    """Runs one session over one or more sources (several: tried in order, per ObsId and file)."""

    def __init__(self, sources: list[Source], config: SessionConfig, reporter: Reporter) -> None:
        self.sources = sources
        self.config = config
        self.reporter = reporter
        self.stop = threading.Event()
        self.transfer = Transfer(config, self.stop, reporter.file_bytes, reporter.file_started)
        self._listings: dict[tuple[int, int], dict[str, RemoteFile] | None] = {}
        self._listing_lock = threading.Lock()
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()

    # -- listing ------------------------------------------------------------------------
    def _list(self, index: int, obsid: int) -> dict[str, RemoteFile] | None:
        """Listing of an ObsId on one source, cached; None when it is not there."""
        key = (index, obsid)
        with self._listing_lock:
            if key in self._listings:
                return self._listings[key]
        source = self.sources[index]
        try:
            files = with_retries(
                lambda: source.list_obsid(obsid), self.config, self.stop, f"ObsId {obsid}"
            )
            result = {f.relpath: f for f in files}
        except ObsIdNotFound:
            result = None
        with self._listing_lock:
            self._listings[key] = result
        return result

    def _locate(self, r: ObsIdResult) -> dict[str, RemoteFile] | None:
        """First source holding the ObsId; listing errors fall through to the next source."""
        error: str | None = None
        for index, source in enumerate(self.sources):
            try:
                listing = self._list(index, r.obsid)
            except (SourceError, OSError) as exc:
                error = f"{source.label}: {exc}" if len(self.sources) > 1 else str(exc)
                vlog(2, "ObsId %s: %s", r.obsid, error)
                continue
            if listing is not None:
                r.found, r.site, r.error = True, source.label, None
                return listing
        r.error = error
        return None

    # -- running ------------------------------------------------------------------------
    def run(
        self, obsids: list[int], selection: Selection, outdir: Path, list_only: bool = False
    ) -> list[ObsIdResult]:
        results = [ObsIdResult(o) for o in obsids]
        jobs, seq = self._queue, self._seq
        remaining: dict[int, int] = {}
        done = threading.Event()
        pending = [len(results)]  # ObsIds not yet listed + files not yet finished
        lock = threading.Lock()

        def finished_one(r: ObsIdResult | None, index: int | None = None) -> None:
            with lock:
                if r is not None and index is not None:
                    remaining[index] -= 1
                    if remaining[index] == 0:
                        self.reporter.obsid_done(r)
                pending[0] -= 1
                if pending[0] == 0:
                    done.set()

        def list_one(index: int, r: ObsIdResult) -> None:
            try:
                listing = self._locate(r)
                if listing is not None:
                    r.files = self._select(r, listing, selection, outdir)
            except Interrupted:
                r.error = "interrupted"
            except Exception as exc:  # a bug must not hang the session
                r.error, r.files = f"internal error: {exc!r}", []
            todo = [f for f in r.files if f.status is Status.PLANNED]
            with lock:
                remaining[index] = len(todo)
                pending[0] += len(todo)
            self.reporter.obsid_listed(r)
            if not todo:
                self.reporter.obsid_done(r)
            for fr in todo:
                jobs.put((-(fr.size or 0), next(seq), index, r, fr, None))
            finished_one(None)

        def worker() -> None:
            while True:
                _, _, index, r, fr, part = jobs.get()
                if fr is None:  # sentinel: the session is over
                    return
                finished = True
                try:
                    if part is not None:  # one ranged part of a split file
                        split, i, source_index = part
                        finished = self._split_part(r, fr, index, split, i, source_index)
                    elif self.stop.is_set():
                        fr.status, fr.reason = Status.FAILED, "interrupted"
                    elif list_only:
                        self._describe(r, fr)
                    else:
                        finished = self._fetch(r, fr, index)
                except Interrupted:
                    pass
                except Exception as exc:  # a bug must not hang the session
                    fr.status, fr.reason = Status.FAILED, f"internal error: {exc!r}"
                if finished:
                    self.reporter.file_done(fr)
                    finished_one(r, index)

        nworkers = self.config.jobs
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(nworkers)]
        for t in threads:
            t.start()
        lister = ThreadPoolExecutor(max_workers=min(max(1, len(results)), self.config.jobs, 8))
        try:
            for index, r in enumerate(results):
                lister.submit(list_one, index, r)
            if not results:
                done.set()
            while not done.wait(0.2):
                pass
        except BaseException:
            self.stop.set()
            raise
        finally:
            lister.shutdown(wait=not self.stop.is_set(), cancel_futures=True)
            for _ in threads:
                jobs.put((float("inf"), next(seq), None, None, None, None))
            for t in threads:
                t.join(timeout=5 if self.stop.is_set() else None)
        return results

    def _select(
        self, r: ObsIdResult, listing: dict[str, RemoteFile], selection: Selection, outdir: Path
    ) -> list[FileResult]:
        top = outdir / str(r.obsid)
        out: list[FileResult] = []
        for relpath, remote in sorted(listing.items()):
            ftype = classify(relpath)
            try:
                check_relpath(relpath)
            except ChandraDownloadError as exc:
                out.append(
                    FileResult(
                        r.obsid,
                        relpath,
                        remote.url,
                        top,
                        ftype,
                        status=Status.FAILED,
                        reason=str(exc),
                        site=r.site,
                    )
                )
                continue
            if not selection.accepts(ftype):
                continue
            fr = FileResult(
                r.obsid,
                relpath,
                remote.url,
                top / relpath,
                ftype,
                size=remote.size if remote.size is not None else remote.approx_size,
                site=r.site,
            )
            problem = _unsafe_target(top, fr.path)
            if problem:
                fr.status, fr.reason = Status.FAILED, problem
            out.append(fr)
        return out

    def _fetch(self, r: ObsIdResult, fr: FileResult, obs_index: int, first: int = -1) -> bool:
        """Fetch from the ObsId's site; on failure, from the next source that has the file.

        False when the file went on as ranged parts in other workers (they report it).
        """
        start = next(i for i, s in enumerate(self.sources) if s.label == r.site)
        for index in range(max(start, first), len(self.sources)):
            listing = (
                self._list(index, r.obsid) if index != start else self._listings[(start, r.obsid)]
            )
            remote = (listing or {}).get(fr.relpath)
            if remote is None:
                continue
            fr.url = remote.url
            fr.status, fr.reason = Status.PLANNED, None
            if remote.size is None and fr.size is not None:
                fr.size = None  # the listing's rounded size must not be taken as exact
            split = SplitFile.begin(self.transfer, self.sources[index], remote, fr)
            if split is not None:
                parts = split.pending()
                for i in parts[1:]:  # idle workers take these next: same (largest) priority
                    self._queue.put(
                        (-split.size, next(self._seq), obs_index, r, fr, (split, i, index))
                    )
                return self._split_part(r, fr, obs_index, split, parts[0], index)
            if not self._fetch_one(r, fr, index, remote):
                return True
        return True

    def _fetch_one(self, r: ObsIdResult, fr: FileResult, index: int, remote: RemoteFile) -> bool:
        """One file from one source on one connection; True when the next source should try."""
        t0 = time.monotonic()
        self.transfer.run(self.sources[index], remote, fr)
        vlog(3, "%s: %s in %.2f s", fr.relpath, fr.status, time.monotonic() - t0)
        if fr.status is not Status.FAILED or self.stop.is_set():
            return False
        if index + 1 < len(self.sources):
            vlog(
                1,
                "ObsId %s: %s failed at %s (%s); trying the next site",
                r.obsid,
                fr.relpath,
                self.sources[index].label,
                fr.reason,
            )
            return True
        return False

    def _split_part(
        self, r: ObsIdResult, fr: FileResult, obs_index: int, split: SplitFile, i: int, index: int
    ) -> bool:
        """Run one part; the worker that ends the last part settles the file (True)."""
        if not split.run_part(i):
            return False
        if split.fallback and not self.stop.is_set():
            vlog(2, "%s: %s; fetching it whole", fr.relpath, fr.reason)
            if not self._fetch_one(r, fr, index, split.remote):
                return True
        elif fr.status is not Status.FAILED or self.stop.is_set():
            return True
        return self._fetch(r, fr, obs_index, index + 1)

    def _describe(self, r: ObsIdResult, fr: FileResult) -> None:
        """--list: the exact size and the local state, writing nothing."""
        source = next(s for s in self.sources if s.label == r.site)
        remote = self._listings[(self.sources.index(source), r.obsid)][fr.relpath]
        if remote.size is None:
            try:
                size = with_retries(lambda: source.size(remote), self.config, self.stop, fr.relpath)
            except SourceError as exc:  # e.g. listed but gone (404): report, not a crash
                fr.status, fr.reason = Status.FAILED, str(exc)
                return
            remote = replace(remote, size=size)
        fr.size = remote.size
        plan = plan_file(remote, fr.path)
        fr.local_size = plan.offset
        fr.reason = {
            Action.FETCH: "missing",
            Action.RESUME: f"partial ({plan.offset} of {remote.size} bytes)",
            Action.PRESENT: "present",
            Action.LARGER: "local file larger than the archive's",
        }[plan.action]


def _unsafe_target(top: Path, path: Path) -> str | None:
    """Refuse to write through symlinks that lead out of the ObsId's output directory."""
    try:
        real_top = top.resolve()
        parent = path.parent
        while not parent.exists() and parent != top and top in parent.parents:
            parent = parent.parent
        if not parent.resolve().is_relative_to(real_top) and parent.resolve() != real_top:
            return f"refusing to write {path}: a symlink in the output tree leads outside it"
        for p in (path, part_path(path)):  # the .part is opened for writing, too
            if p.is_symlink():
                return f"refusing to write {p}: it is a symlink"
    except OSError as exc:
        return f"cannot check {path}: {exc.strerror}"
    return None
