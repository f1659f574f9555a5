"""The engine: every network step of a session on one queue, run by ``jobs`` workers.

Work is a priority queue of named steps, each at most one connection at a time, so ``jobs``
bounds the connections to a site, listings included:

- a **page step** (:meth:`Engine._page_step`) fetches one listing page of an ObsId (a
  directory, or an S3 continuation page) and queues the pages it leads to; a failed page is
  retried on its own. When an ObsId's last page is in, its files are selected and queued;
- a **file step** (:meth:`Engine._file_step`) decides and fetches one file; a large file's
  ranged parts go back on the queue as **part steps** (:meth:`Engine._part_step`) at the
  file's priority, so idle workers take them next.

Priorities put ObsIds in the order given: the first ObsId's files largest first; a later
ObsId's files run only when nothing of an earlier one waits (they fill free workers), so
ObsIds complete, and are reported, roughly in order. An ObsId's listing pages go before its
files; at a site that takes pipelined pages, ``_PAGES_AHEAD`` ObsIds ahead of files: pages
wait a round trip for little work, so the next ObsIds' listings are in flight (in full
pipelines) while files are fetched.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import queue
import shutil
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config import SessionConfig
from .context import Context
from .dirscan import scan_targets
from .errors import ChandraDownloadError, LocalError, ObsIdNotFound, SourceError
from .filetypes import Selection, classify
from .finisher import Finisher
from .health import WAIT_NOTICE, WAIT_REPEAT, SiteHealth, State, WatchedSource, silence_limit
from .log import vlog
from .plan import Action, OnDisk, decide, look, needs_size, unsafe_target
from .progress import Reporter
from .results import FileResult, ObsIdResult, Status
from .retry import Interrupted, RetryPolicy, with_retries
from .sources.base import ListingPage, ListingWalk, PageRef, RemoteFile, Source, check_relpath
from .sources.pipeline import Batch, split_batches
from .statedir import Spot
from .transfer import FileJob, Next, vouched_size

Listing = dict[str, RemoteFile]
#: What a batch saw on disk for a file, and the size that vouches for (None: none does).
Seen = tuple[OnDisk, int | None]
#: What a batch of an ObsId with nothing on disk when listed sees of each file.
_NOTHING = OnDisk(None, None)
#: Files of one ``--list`` step, per pipelined request a site takes at once.
_DESCRIBED = 4

#: A step's place in the queue: (the ObsId's rank in the order given, then a weight within
#: it: listing pages first, then files largest first). The session's end sorts after all.
Priority = tuple[int, float]
_PAGE = float("-inf")
#: Pipelined listing pages go this many ObsIds ahead of files: a page waits a round trip
#: for little work, so the listings of the ObsIds next in line are in flight while files
#: are fetched (and a re-run, whose files cost no request, is not a round trip per ObsId
#: behind).
_PAGES_AHEAD = 64
_LAST: Priority = (sys.maxsize, 0.0)


@dataclass(order=True)
class _Task:
    """One step on the work queue: ``step(*args)``."""

    priority: Priority
    seq: int
    step: Callable[..., None] | None = field(compare=False)  # None: the session is over
    args: tuple = field(compare=False, default=())


@dataclass
class _Walk:
    """One ObsId's listing at one source while its pages come in."""

    index: int
    pages: ListingWalk
    pending: int = 1  # pages queued or running
    failure: BaseException | None = None  # the first page's failure (the walk then ends)
    missing: bool = False  # the top page said "not found"


@dataclass(order=True)
class _Pending:
    """A listing page waiting for a pipeline at its source (see :meth:`Engine._pages_step`);
    ``tries``: pipelines that went without its answer."""

    priority: Priority
    seq: int
    run: _ObsIdRun = field(compare=False)
    walk: _Walk = field(compare=False)
    ref: PageRef = field(compare=False)
    tries: int = field(compare=False, default=0)


#: Pipelines a listing page may go unanswered in before it is asked for on its own.
_PAGE_TRIES = 2


class _Attempts:
    """A listing page's attempts for its retry policy: the first one's outcome known
    already (its pipelined answer's error), the others asked of the source."""

    def __init__(self, first: Exception | None, ask: Callable[[], ListingPage]) -> None:
        self._first, self._ask = first, ask

    def __call__(self) -> ListingPage:
        first, self._first = self._first, None
        if first is not None:
            raise first
        return self._ask()


@dataclass
class _Left:
    """What a batch step has not passed on yet (to a file step, the finisher or the queue):
    settled by :meth:`Engine._batch_broke` if the step breaks."""

    files: deque[FileResult]
    held: list[FileJob] = field(default_factory=list)  # to share pipelined GETs
    ran: list[FileJob] = field(default_factory=list)  # fetched by them, to be settled
    whole: list[FileJob] = field(default_factory=list)  # left by them, to be queued


@dataclass
class _ObsIdRun:
    """One ObsId's result, its rank in the order given, and how many of its files are still
    running; ``failures``/``answered`` collect the sources' listing outcomes."""

    result: ObsIdResult
    rank: int
    left: int = 0
    failures: list[str] = field(default_factory=list)
    answered: bool = False
    walk: _Walk | None = None
    fresh: bool = False  # nothing of it on disk when it was listed (no size to learn)
    bare: set[str] = field(default_factory=set)  # files with nothing of ours on disk then


class Engine:
    """Runs one session over one or more sources (several: tried in order, per ObsId and file).

    ``explain(obsid)``, when given, says why an ObsId is missing (the observation catalogue).
    """

    def __init__(
        self,
        sources: list[Source],
        config: SessionConfig,
        reporter: Reporter,
        explain: Callable[[int], str | None] | None = None,
    ) -> None:
        self.config = config
        self.reporter = reporter
        self.explain = explain
        self.stop = threading.Event()
        limit = silence_limit(config)
        self.health = [SiteHealth(s.label, limit, self.stop) for s in sources]
        self.sources: list[Source] = [
            WatchedSource(s, h) for s, h in zip(sources, self.health, strict=True)
        ]
        self._told: dict[int, float] = {}  # site index -> the wait it was last said at
        self.ctx = Context(config, self.stop, reporter)
        self._listings: dict[tuple[int, int], Listing | None] = {}
        self._pending: list[list[_Pending]] = [[] for _ in sources]  # heaps, by source
        self._lock = threading.Lock()
        self._queue: queue.PriorityQueue[_Task] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._open = 0  # ObsIds not yet listed + files not yet settled
        self._done = threading.Event()
        self._list_only = False
        self._selection = Selection()
        self._outdir = Path(".")
        self._space_needed = 0  # bytes to fetch yet, of the ObsIds looked at on disk
        self._space_unlooked: list[list[FileResult]] = []  # the others' files (_check_space)
        self._space_upper = 0  # _space_needed + every byte of the unlooked files
        self._space_warned = False
        self._over = False  # the session has returned: late finishers report nothing

    # -- the session ----------------------------------------------------------------------
    def run(
        self, obsids: list[int], selection: Selection, outdir: Path, list_only: bool = False
    ) -> list[ObsIdResult]:
        runs = [_ObsIdRun(ObsIdResult(o), rank) for rank, o in enumerate(obsids)]
        self._list_only, self._open = list_only, len(runs)
        self._selection, self._outdir = selection, outdir
        if not runs:
            return []
        workers: list[threading.Thread] = []  # those started: a Ctrl-C may come at any point
        try:
            if self.config.fsync and not list_only:
                self.ctx.finisher = Finisher(depth=2 * self.config.jobs)
            for run in runs:
                self._start_walk(run, 0)
            for _ in range(self.config.jobs):
                worker = threading.Thread(target=self._worker, daemon=True)
                worker.start()
                workers.append(worker)
            while not self._done.wait(0.2):
                self._tell_waits()
        except BaseException:
            self.stop.set()
            raise
        finally:
            self._end_workers(workers)
        return [run.result for run in runs]

    def _end_workers(self, workers: list[threading.Thread]) -> None:
        """Tell every worker to end, join them (within the stop grace when stopping), and
        close the finisher and the session's directories."""
        for _ in workers:
            self._queue.put(_Task(_LAST, next(self._seq), None))
        end = time.monotonic() + _STOP_GRACE if self.stop.is_set() else None
        _join(workers, end)
        self._close_finisher(end)
        self.ctx.tree.close()  # (one still held closes when let go)

    def _close_finisher(self, end: float | None) -> None:
        """Let the finisher finish what it holds (by ``end`` when stopping: a file it has not
        finished by then is interrupted, its whole ``.part`` kept for the next run)."""
        finisher = self.ctx.finisher
        if finisher is None:
            return
        timeout = None if end is None else max(_FINISH_GRACE, end - time.monotonic())
        left = finisher.close(timeout)
        self.ctx.finisher, self._over = None, True
        for job in left:
            job.fr.status = Status.INTERRUPTED
            job.fr.reason = "interrupted while being flushed to disk; its bytes are kept for resume"

    def _put(self, priority: Priority, step: Callable[..., None], *args: object) -> None:
        self._queue.put(_Task(priority, next(self._seq), step, args))

    def _closed_one(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open == 0:
                self._done.set()

    def _worker(self) -> None:
        while True:
            task = self._queue.get()
            if task.step is None:
                return
            task.step(*task.args)

    def _tell_waits(self) -> None:
        """Say what each site is being waited for, once a request is WAIT_NOTICE s old
        (``site_wait(host, seconds, what, probing)`` to the reporter; verbose 2 now and
        then); ``what`` None once nothing is waited for any more."""
        for index, health in enumerate(self.health):
            wait = health.oldest_wait()
            told = self._told.get(index)
            probing = health.state is State.PROBING
            if wait is None or wait[0] < WAIT_NOTICE:
                if told is not None:
                    del self._told[index]
                    self.ctx.notify("site_wait", health.host, 0.0, None, probing)
                continue
            seconds, what = wait
            if told is None or seconds - told >= WAIT_REPEAT or seconds < told:
                self._told[index] = seconds
                vlog(2, "waiting for %s to answer (%s) for %.0f s", health.host, what, seconds)
            self.ctx.notify("site_wait", health.host, seconds, what, probing)

    @contextmanager
    def _on_site(self, index: int) -> Iterator[None]:
        """Around every network step at one source (a listing page, a file, a part): the
        hook for a site's health and a shared connection budget."""
        yield

    # -- listing: one step per page -------------------------------------------------------
    def _start_walk(self, run: _ObsIdRun, index: int) -> None:
        """List the ObsId at source ``index``: its top page goes on the queue."""
        run.walk = _Walk(index, ListingWalk(run.result.obsid))
        self._queue_page(run, run.walk, PageRef())

    def _queue_page(self, run: _ObsIdRun, walk: _Walk, ref: PageRef, tries: int = 0) -> None:
        """A page step, or at a pipelining site the page among those waiting for a
        pipeline and a step to take them (each page has its step: none is left behind)."""
        if self.sources[walk.index].pipeline_depth < 2 or tries >= _PAGE_TRIES:
            self._put((run.rank, _PAGE), self._page_step, run, walk, ref)
            return
        priority = (run.rank - _PAGES_AHEAD, _PAGE)
        with self._lock:
            page = _Pending(priority, next(self._seq), run, walk, ref, tries)
            heapq.heappush(self._pending[walk.index], page)
        self._put(priority, self._pages_step, walk.index)

    def _pages_step(self, index: int) -> None:
        """The listing pages waiting at a pipelining site, first first, as many as one
        pipeline takes (issue 19.1): the root listings of many ObsIds at the start, the
        sub-directories named by the listings read meanwhile. None left: others took them."""
        depth = self.sources[index].pipeline_depth
        with self._lock:
            heap = self._pending[index]
            pages = [heapq.heappop(heap) for _ in range(min(len(heap), max(1, depth)))]
        sent = [p for p in pages if p.walk.failure is None]
        if len(sent) < 2 or self.stop.is_set():
            sent = []
        for page in pages:
            if page not in sent:
                self._page_step(page.run, page.walk, page.ref)  # (no request, or just one)
        if sent:
            self._pipelined_pages(index, sent)

    def _pipelined_pages(self, index: int, pages: list[_Pending]) -> None:
        """Pages sent pipelined on one connection: each answered page taken in turn; a page
        whose answer failed is retried on its own (its first attempt that answer); those
        left unanswered wait for another pipeline."""
        source = self.sources[index]
        outcomes: list[ListingPage | Exception | None]
        try:
            with self._on_site(index):
                outcomes = source.list_pages([(p.run.result.obsid, p.ref) for p in pages])
        except ChandraDownloadError as exc:  # not even one answer (NoAnswer, given up...)
            outcomes = [exc] * len(pages)
        except Exception as exc:  # a bug must not lose the pages: each asked on its own
            vlog(2, "pipelined listings failed: %r", exc)
            outcomes = [None] * len(pages)
        for page, outcome in zip(pages, outcomes, strict=False):
            if isinstance(outcome, ListingPage):
                self._page_step(page.run, page.walk, page.ref, outcome)
            else:
                self._put(page.priority, self._page_step, page.run, page.walk, page.ref, outcome)
        for page in pages[len(outcomes) :]:
            self._queue_page(page.run, page.walk, page.ref, page.tries + 1)

    def _page_step(
        self,
        run: _ObsIdRun,
        walk: _Walk,
        ref: PageRef,
        first: ListingPage | Exception | None = None,
    ) -> None:
        """Fetch one listing page (retried on its own) and queue the pages it names;
        ``first``: the page as a pipeline brought it, or its first attempt's failure."""
        more: list[PageRef] = []
        failure: BaseException | None = None
        try:
            if self.stop.is_set():
                raise Interrupted()
            if walk.failure is None:
                page = self._fetch_page(run.result.obsid, walk.index, ref, first)
                more = walk.pages.add(page)
        except ObsIdNotFound:
            walk.missing = True
        except Exception as exc:  # (Interrupted, SourceError, OSError; a bug must not hang)
            failure = exc
        with self._lock:
            if failure is not None and walk.failure is None:
                walk.failure = failure
            if walk.failure is None:
                walk.pending += len(more)
            walk.pending -= 1
            finished = walk.pending == 0
        if walk.failure is None:
            for ref in more:
                self._queue_page(run, walk, ref)
        if finished:
            self._walk_ended(run, walk)

    def _fetch_page(
        self, obsid: int, index: int, ref: PageRef, first: ListingPage | Exception | None = None
    ) -> ListingPage:
        if isinstance(first, ListingPage):
            return first
        source = self.sources[index]
        cfg = self.config
        policy = RetryPolicy.for_session(
            cfg,
            self.stop,
            f"ObsId {obsid}",
            budget=cfg.timeout * (cfg.retries + 1),  # the page's deadline, retries included
            on_retry=lambda n, d, e: self.ctx.notify("obsid_retry", obsid, n, d, e),
        )
        with self._on_site(index):
            return policy.call(_Attempts(first, lambda: source.list_page(obsid, ref)))

    def _walk_ended(self, run: _ObsIdRun, walk: _Walk) -> None:
        """One source's listing is over: found, missing, or failed (then the next source)."""
        r, source = run.result, self.sources[walk.index]
        listing: Listing | None = None
        if walk.failure is None and not walk.missing:
            listing = {f.relpath: f for f in walk.pages.files}
        with self._lock:
            if walk.failure is None:
                self._listings[(walk.index, r.obsid)] = listing
        if walk.failure is not None:
            why = _failure_text(walk.failure)
            error = f"{source.label}: {why}" if len(self.sources) > 1 else why
            vlog(2, "ObsId %s: %s", r.obsid, error)
            run.failures.append(error)
            r.causes.append(walk.failure)
        elif listing is None:
            run.answered = True
        else:
            r.found, r.site, r.error = True, source.label, None
        if listing is None and walk.index + 1 < len(self.sources) and not self.stop.is_set():
            self._start_walk(run, walk.index + 1)
            return
        self._listed(run, listing)

    def _listed(self, run: _ObsIdRun, listing: Listing | None) -> None:
        """The ObsId's listing is settled: select its files and queue them, largest first.
        When a site said "not found" and others could not be asked, it is not found (the
        others' failures are kept as detail); when none could be asked, it is an error."""
        r = run.result
        try:
            if listing is not None:
                r.files = self._select(r, listing, self._selection, self._outdir, run)
            else:
                r.error = None if run.answered or not run.failures else run.failures[-1]
                r.site_failures = run.failures if run.answered else []
                if self.stop.is_set():
                    r.error = "interrupted"
                elif not r.error and self.explain is not None:
                    r.why_missing = self.explain(r.obsid)
        except Exception as exc:  # a bug must not hang the session
            r.error, r.files = f"internal error: {exc!r}", []
            r.causes.append(exc)
        todo = [f for f in r.files if f.status is Status.PLANNED]
        run.fresh = not os.path.lexists(self._outdir / str(r.obsid))
        with self._lock:
            run.left = len(todo)
            self._open += len(todo)
        self.reporter.obsid_listed(r)
        if not todo:
            self.reporter.obsid_done(r)
        self._check_space(todo, self._outdir)
        self._queue_files(run, todo, self._site_index(r))
        self._closed_one()

    def _queue_files(self, run: _ObsIdRun, todo: list[FileResult], index: int) -> None:
        """Largest first even for a worker that wakes at the first put, before the rest are
        in; small files of a pipelining site in batches, one step each (issue 19.1)."""
        depth = self.sources[index].pipeline_depth
        if self._list_only and depth > 1:  # HEADs pipelined, any size (no bodies)
            todo = sorted(todo, key=lambda f: -(f.size or 0))
            for i in range(0, len(todo), _DESCRIBED * depth):
                chunk = todo[i : i + _DESCRIBED * depth]
                self._put((run.rank, -(chunk[0].size or 0)), self._batch_step, run, chunk, index)
            return
        window = self._window_of(index, run.result.obsid)
        singles, batches = split_batches(sorted(todo, key=lambda f: -(f.size or 0)), depth, window)
        for fr in singles:
            self._put((run.rank, -(fr.size or 0)), self._file_step, run, fr, index)
        for batch in batches:
            self._put((run.rank, -(batch[0].size or 0)), self._batch_step, run, batch, index)

    def _window_of(
        self, index: int, obsid: int
    ) -> Callable[[FileResult], tuple[int, int] | None] | None:
        """How a pipelining source tells each listed file's answer from the others of its
        batch (its size window, see pipeline.split_batches)."""
        batch_window = getattr(self.sources[index], "batch_window", None)
        listing = self._listings.get((index, obsid))
        if batch_window is None or not listing:
            return None
        return lambda fr: batch_window(listing[fr.relpath])

    def _site_index(self, r: ObsIdResult) -> int:
        return next(i for i, s in enumerate(self.sources) if s.label == r.site) if r.site else 0

    def _list(self, index: int, obsid: int) -> Listing | None:
        """Listing of an ObsId on one source, cached, its pages fetched in turn on this
        worker (a file failed at an earlier source); None when it is not there."""
        key = (index, obsid)
        with self._lock:
            if key in self._listings:
                return self._listings[key]
        walk, pending = ListingWalk(obsid), [PageRef()]
        result: Listing | None = None
        try:
            while pending:
                pending = walk.add(self._fetch_page(obsid, index, pending[0])) + pending[1:]
            result = {f.relpath: f for f in walk.files}
        except ObsIdNotFound:
            pass
        with self._lock:
            self._listings[key] = result
        return result

    def _listing_of(self, index: int, obsid: int) -> Listing:
        """The cached listing of an ObsId a file of it was selected from (so it was found)."""
        listing = self._listings[(index, obsid)]
        assert listing is not None, f"ObsId {obsid} was not found at source {index}"
        return listing

    def _select(
        self,
        r: ObsIdResult,
        listing: Listing,
        selection: Selection,
        outdir: Path,
        run: _ObsIdRun | None = None,
    ) -> list[FileResult]:
        top = outdir / str(r.obsid)
        clash = _file_and_directory(listing)
        if clash:
            r.error = f"the listing has both a file and a directory named {clash}"
            return []
        r.unselected_bytes = selection.bytes_saved((k, f.best_size) for k, f in listing.items())
        out: list[FileResult] = []
        for relpath, remote in sorted(listing.items()):
            ftype = classify(relpath)
            fr = FileResult(r.obsid, relpath, remote.url, top / relpath, ftype, site=r.site)
            fr.listed_date = remote.listed_date
            fr.size = remote.size if remote.size is not None else remote.approx_size
            try:
                check_relpath(relpath)
            except ChandraDownloadError as exc:
                fr.path, fr.status, fr.reason = top, Status.FAILED, str(exc)
                out.append(fr)
                continue
            if not selection.accepts(ftype):
                continue
            out.append(fr)
        bare = self._refuse_unsafe(top, [fr for fr in out if fr.status is Status.PLANNED])
        if run is not None:
            run.bare = bare
        return out

    def _refuse_unsafe(self, top: Path, files: list[FileResult]) -> set[str]:
        """Fail the files whose download would write through a symlink or onto something
        not a file: all of an ObsId's looked at in one pass (each directory once), or each
        on its own when that pass meets an error (said for the file it concerns). Returns
        the files the pass saw nothing of ours for (no .part, state file, temporary)."""
        bare: set[str] = set()
        try:
            scan = scan_targets(top, [fr.relpath for fr in files])
            problems, bare = scan.problems, scan.bare
        except OSError:
            problems = {}
            for fr in files:
                try:
                    problems[fr.relpath] = unsafe_target(top, fr.path)
                except OSError as exc:
                    problems[fr.relpath] = self.ctx.local_problem(LocalError.of(exc, fr.path))
        for fr in files:
            problem = problems[fr.relpath]
            if problem:
                fr.status, fr.reason = Status.FAILED, problem
        return bare

    def _check_space(self, todo: list[FileResult], outdir: Path) -> None:
        """Warn once when the selected bytes still to fetch exceed the output disk's free
        space (what is on disk already, whole or in part, needs no more)."""
        if self._list_only or not todo:
            return
        with self._lock:
            self._space_unlooked.append(todo)
            self._space_upper += sum(f.size or 0 for f in todo)
            upper = self._space_upper
        free = _free_space(outdir)
        if free is None or upper <= free or self._space_warned:
            return  # it fits even if nothing is on disk yet: no lstat per file
        with self._lock:
            looking, self._space_unlooked = self._space_unlooked, []
        have = sum(min(f.size or 0, _on_disk(f)) for files in looking for f in files)
        with self._lock:
            self._space_needed += sum(f.size or 0 for files in looking for f in files) - have
            self._space_upper -= have
            needed = self._space_needed
        if needed > free and not self._space_warned:
            self._space_warned = True
            vlog(
                0,
                "the selected files need %d more bytes; %s has %d bytes free",
                needed,
                outdir,
                free,
            )

    # -- files ----------------------------------------------------------------------------
    def _file_step(
        self,
        run: _ObsIdRun,
        fr: FileResult,
        index: int,
        held: list[FileJob] | None = None,
        seen: Seen | None = None,
    ) -> None:
        """Decide and fetch one file; a large one continues as part steps (one to fetch
        whole goes into ``held`` when given: see :meth:`_batch_step`); ``seen``: the disk
        and vouched size a batch saw just before."""
        try:
            if self.stop.is_set():
                fr.status, fr.reason = Status.INTERRUPTED, "interrupted before it started"
            elif self._list_only:
                self._describe(run.result, fr, index, seen)
            elif self.ctx.disk_full.is_set():
                fr.status, fr.reason = Status.FAILED, "not started: the output disk is full"
            elif not self._fetch(run, fr, index, held, seen):
                return  # it goes on as parts (or held); what ends it settles it
        except Interrupted:
            pass
        except Exception as exc:  # a bug must not hang the session
            fr.status, fr.reason = Status.FAILED, f"internal error: {exc!r}"
        self._settled(run, fr, index)

    def _batch_step(self, run: _ObsIdRun, batch: list[FileResult], index: int) -> None:
        """Small files of one ObsId: each starts as in a file step, and those to fetch whole
        share pipelined GETs on one connection; what the pipeline leaves runs whole on any
        worker, one request at a time. Under ``--list``: the files described, the sizes
        only the site can tell asked first, at once. A bug raised here fails the files not
        yet passed on (one line each) instead of ending the worker with the session waiting
        for them forever."""
        left = _Left(deque(batch))
        try:
            self._run_batch(run, left, index)
        except Exception as exc:  # a bug must not hang the session
            vlog(2, "ObsId %s: a batch of %d files broke: %r", run.result.obsid, len(batch), exc)
            self._batch_broke(run, left, index, f"internal error: {exc!r}")

    def _run_batch(self, run: _ObsIdRun, left: _Left, index: int) -> None:
        seen = self._learn_sizes(run, list(left.files), index)
        while left.files:
            fr = left.files.popleft()  # (its file step settles it, or holds its job)
            self._file_step(run, fr, index, left.held, seen.get(fr.relpath))
        if self._list_only:
            return
        source = self.sources[index]
        try:
            with self._on_site(index):
                out = source.pipeliner.run(left.held, self.stop)  # type: ignore[attr-defined]
        except Exception as exc:  # a bug must not hang the session (nor lose the files)
            vlog(2, "pipelined GETs failed: %r", exc)
            out = Batch(
                [j for j in left.held if j.fd < 0 or j.handed],
                [j for j in left.held if j.fd >= 0 and not j.handed],
            )
        left.held = []
        left.ran, left.whole = list(out.ran), list(out.whole)  # (each popped as passed on)
        while left.ran:
            job = left.ran.pop()
            if not job.handed:  # (the finisher settles those it took)
                self._settled(run, job.fr, index)
        while left.whole:
            job = left.whole.pop()
            self._put((run.rank, -(job.size or 0)), self._whole_step, run, job, index)

    def _batch_broke(self, run: _ObsIdRun, left: _Left, index: int, reason: str) -> None:
        """Settle what a broken batch step had not passed on yet: the files and jobs not
        fetched fail (their locks let go), the jobs fetched end as they ended."""
        for job in [*left.held, *left.whole]:
            if not job.handed:  # (the finisher settles those it took)
                job.fr.status, job.fr.reason = Status.FAILED, reason
                job.release()
                self._settled(run, job.fr, index)
        for job in left.ran:
            if not job.handed:
                self._settled(run, job.fr, index)
        for fr in left.files:
            fr.status, fr.reason = Status.FAILED, reason
            self._settled(run, fr, index)

    def _learn_sizes(self, run: _ObsIdRun, batch: list[FileResult], index: int) -> dict[str, Seen]:
        """What is on disk for each file of a batch and the size it vouches for; the sizes
        deciding still needs (something on disk, nothing vouching: a HEAD each) asked of
        the site at once (pipelined HEADs, issue 19.1). An ObsId new on disk: nothing, unlooked."""
        seen: dict[str, Seen] = {}
        listing = self._listing_of(index, run.result.obsid)
        if run.fresh and not self._list_only:
            # Nothing of it was there when it was listed: no look (the job looks under its
            # lock, where anything a rival made since shows).
            return {fr.relpath: (_NOTHING, listing[fr.relpath].size) for fr in batch}
        need: list[RemoteFile] = []
        for fr in batch:
            remote = listing[fr.relpath]
            try:
                disk = self._disk_of(run, fr)
                size = (
                    remote.size
                    if remote.size is not None
                    else vouched_size(self.ctx, remote, fr, disk)
                )
            except (LocalError, OSError):
                continue  # (its own step says what is wrong)
            seen[fr.relpath] = (disk, size)
            if size is None and (self._list_only or needs_size(disk)):
                need.append(remote)
        if len(need) > 1 and not self.stop.is_set():
            try:
                with self._on_site(index):
                    self.sources[index].learn_sizes(need)
            except Exception as exc:  # each file asks on its own (and says what is wrong)
                vlog(3, "pipelined HEADs failed: %r", exc)
        return seen

    def _disk_of(self, run: _ObsIdRun, fr: FileResult) -> OnDisk:
        """What is on disk for a file: its final file alone (one lstat) when the listing's
        pass saw nothing of ours for it, else all of it (``look``). A temporary made since
        by a rival is seen by the job, which looks again under the file's lock."""
        if fr.relpath in run.bare:
            try:
                st = os.lstat(fr.path)
            except FileNotFoundError:
                return OnDisk(None, None)
            if stat.S_ISREG(st.st_mode):
                return OnDisk(st.st_size, None)
        return self._look(Spot.of(fr))

    def _look(self, spot: Spot) -> OnDisk:
        """``look`` through the file's open directories (tree.py)."""
        with self.ctx.tree.held(spot) as dirs:
            return look(spot, dirs)

    def _whole_step(self, run: _ObsIdRun, job: FileJob, index: int) -> None:
        try:
            if self.ctx.disk_full.is_set():
                job.fr.status, job.fr.reason = Status.FAILED, "not started: the output disk is full"
                job.release()
            else:
                with self._on_site(index):
                    job.run_whole()
        except Interrupted:
            pass
        except Exception as exc:  # a bug must not hang the session
            job.fr.status, job.fr.reason = Status.FAILED, f"internal error: {exc!r}"
        if not job.handed:  # (the finisher settles those it took)
            self._settled(run, job.fr, index)

    def _fetch(
        self,
        run: _ObsIdRun,
        fr: FileResult,
        index: int,
        held: list[FileJob] | None = None,
        seen: Seen | None = None,
    ) -> bool:
        """Start one file at one source; False when it went on as ranged parts (or into
        ``held``, when given, to be fetched whole by the caller)."""
        remote = self._listing_of(index, run.result.obsid)[fr.relpath]
        fr.url, fr.status, fr.reason = remote.url, Status.PLANNED, None
        if seen is not None and self._present(fr, remote, index, seen):
            return True
        job = FileJob(self.ctx, self.sources[index], remote, fr)
        job.seen = seen
        job.then = functools.partial(self._finished_off, run, fr, index)
        with self._on_site(index):
            step = job.start()
            if step is Next.WHOLE and held is not None:
                held.append(job)
                return False
            if step is Next.WHOLE:
                job.run_whole()
        if step is Next.PARTS:
            assert job.parts is not None  # PARTS: start() made the state
            first, *rest = job.parts.pending
            for i in rest:  # idle workers take these next: same (largest) priority
                self._put((run.rank, -(job.size or 0)), self._part_step, run, job, i, index)
            self._part_step(run, job, first, index)
            return False
        return not job.handed  # (the finisher settles those it took)

    def _present(self, fr: FileResult, remote: RemoteFile, index: int, seen: Seen) -> bool:
        """Settle a file PRESENT at once, as its job would, when what its batch saw shows it
        complete, a size vouched for without the site (its record, or its content check),
        and the site's identity of it agrees with the record (issue 19.3: a re-run's files
        cost no job). False: anything else, which the job decides (and says)."""
        disk, size = seen
        if size is None or disk.leftovers or self.config.repair:
            return False
        decision = decide(disk, size)
        if decision.action is not Action.PRESENT:
            return False
        source = self.sources[index]
        try:
            fr.last_modified, fr.etag = source.identity(remote)
            fr.changed = self.ctx.records.changed(fr, size)
        except (ChandraDownloadError, OSError):
            return False
        if fr.changed is not None:
            return False
        fr.site, fr.size, fr.status = source.label, size, Status.PRESENT
        fr.local, fr.local_size = decision.local, decision.offset
        return True

    def _part_step(self, run: _ObsIdRun, job: FileJob, i: int, index: int) -> None:
        with self._on_site(index):
            ended = job.run_part(i)
        if ended and not job.handed:  # (the finisher settles those it took)
            self._settled(run, job.fr, index)

    def _finished_off(self, run: _ObsIdRun, fr: FileResult, index: int) -> None:
        """A file the finisher settled, on its thread: reported; one that failed there and
        may be had from another site goes back on the queue (network steps are the workers')."""
        if self._over:  # (a finisher thread outlived a stopped session: nothing to tell)
            return
        if fr.status is Status.FAILED and len(self.sources) > index + 1 and not self.stop.is_set():
            self._put((run.rank, _PAGE), self._settled, run, fr, index)
            return
        self._settled(run, fr, index)

    def _settled(self, run: _ObsIdRun, fr: FileResult, index: int) -> None:
        """A file is done at one source: try the next source that has it, or report it."""
        following = self._next_source(run.result, fr, index)
        if following is not None:
            vlog(
                2,
                "ObsId %s: %s failed at %s (%s); trying the next site",
                fr.obsid,
                fr.relpath,
                self.sources[index].label,
                fr.reason,
            )
            self._file_step(run, fr, following)
            return
        self.reporter.file_done(fr)
        with self._lock:
            run.left -= 1
            last = run.left == 0
        if last:
            # Its files are all settled: its directories' descriptors go (tree.py).
            self.ctx.tree.forget(self._outdir, str(run.result.obsid))
            self.reporter.obsid_done(run.result)
        self._closed_one()

    def _next_source(self, r: ObsIdResult, fr: FileResult, index: int) -> int | None:
        if fr.status is not Status.FAILED or self.stop.is_set() or self._list_only:
            return None
        for following in range(index + 1, len(self.sources)):
            try:
                listing = self._list(following, r.obsid)
            except (SourceError, OSError):
                continue
            if listing and fr.relpath in listing:
                return following
        return None

    def _describe(
        self, r: ObsIdResult, fr: FileResult, index: int, seen: Seen | None = None
    ) -> None:
        """--list: the exact size and the local state, writing nothing."""
        source = self.sources[index]
        remote = self._listing_of(index, r.obsid)[fr.relpath]
        try:
            if seen is not None:
                disk, size = seen
            else:
                disk = self._look(Spot.of(fr))
                size = remote.size
                if size is None:  # a complete local copy may tell it without a HEAD (core)
                    size = vouched_size(self.ctx, remote, fr, disk)
            if size is None:
                with self._on_site(index):
                    size = with_retries(
                        lambda: source.size(remote), self.config, self.stop, fr.relpath
                    )
            d = decide(disk, size)
        except (SourceError, LocalError) as exc:  # e.g. listed but gone (404)
            fr.status, fr.reason = Status.FAILED, str(exc)
            return
        fr.size, fr.local, fr.local_size = size, d.local, d.offset
        fr.last_modified, fr.etag = source.identity(remote)


#: Seconds a stopping session waits for its workers, all together: one stalled in a read
#: (up to ``timeout``) is left behind (a daemon thread), its data kept for resume.
_STOP_GRACE = 2.0
#: Seconds a stopping session gives its finisher at least, after the workers' grace.
_FINISH_GRACE = 0.5


def _join(workers: list[threading.Thread], end: float | None) -> None:
    """Join every worker by the monotonic time ``end`` (None: however long it takes)."""
    for t in workers:
        t.join(None if end is None else max(0.0, end - time.monotonic()))


def _failure_text(exc: BaseException) -> str:
    """What a failed listing says: the error's own line; "interrupted"; else a bug's repr."""
    if isinstance(exc, Interrupted):
        return "interrupted"
    if isinstance(exc, (SourceError, OSError)):
        return str(exc)
    return f"internal error: {exc!r}"


def _file_and_directory(listing: Listing) -> str | None:
    """A name that is both a file and a directory in one listing (the tree cannot hold both)."""
    names = set(listing)
    for relpath in names:
        parts = relpath.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in names:
                return prefix
    return None


def _on_disk(fr: FileResult) -> int:
    """Bytes of a file already on disk, at its final name or in its ``.part``."""
    for name in (fr.path, Spot.of(fr).part):
        try:
            return os.lstat(name).st_size
        except OSError:
            continue
    return 0


def _free_space(outdir: Path) -> int | None:
    path = outdir.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
