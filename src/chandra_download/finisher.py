"""A file's last steps off its transfer slot: fsync, rename, directory fsync (issue 19.2).

A worker that has received and verified every byte of a file hands its
:class:`~chandra_download.transfer.FileJob` to the session's :class:`Finisher` and takes its
next request at once, while a few finisher threads flush the file, move it to its final name
and make the rename durable. Each thread takes what has queued up as one batch: every
``.part`` of the batch is fsynced and renamed, then each directory the batch renamed into is
fsynced once, and only then is each file done (its result set, its lock let go, the engine
told). So the durability rule holds as on the worker: no file under its final name whose
bytes could be lost, and no file reported done whose rename could be lost. The lock is held
from the first byte to the end, so a rival process never sees the file unowned.

The queue is bounded: a worker waits when ``depth`` files already wait (each holds an open
``.part``), so the finisher never falls far behind the network. A file handed over always
ends under its final name, or as a resumable ``.part`` (a failed fsync or rename fails the
file with its bytes kept; a process killed meanwhile leaves a whole ``.part`` that the next
run verifies and moves into place).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import _crashpoint
from .tree import fsync_at

if TYPE_CHECKING:
    from .transfer import FileJob

#: Threads of a session's finisher: fsyncs of different files overlap (the file system
#: commits them together), and one slow disk request does not hold up every file.
THREADS = 2
#: Most files one thread finishes in one batch (with one fsync per directory).
MAX_BATCH = 32


class Finisher:
    """The session's finishing threads; :meth:`take` a verified file, :meth:`close` at the end.

    Parameters
    ----------
    depth : int
        Most files waiting to be finished before :meth:`take` blocks (back-pressure).
    threads : int
        Finishing threads.
    """

    def __init__(self, depth: int, threads: int = THREADS) -> None:
        self.depth = max(1, depth)
        # One lock, two wake-ups: a file queued wakes one idle finishing thread, a batch
        # taken wakes only workers waiting for room (one Condition for both woke every
        # thread at each step: GIL hand-offs for nothing, issue 19.4).
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # finishing threads wait for files
        self._room = threading.Condition(self._lock)  # workers wait while `depth` files wait
        self._waiting: deque[FileJob] = deque()
        self._busy: set[FileJob] = set()  # taken by a thread, not yet done
        self._gathering = threading.local()  # .jobs: this thread's, inside gathered()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"finisher-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        try:
            for t in self._threads:
                t.start()
        except BaseException:  # (a Ctrl-C here: those started end, none is left waiting)
            self.close(0)
            raise

    def take(self, job: FileJob) -> None:
        """Finish ``job`` on a finisher thread (waiting while ``depth`` files wait); on the
        caller's thread once the finisher is closed (a worker that outlived its session).
        Inside :meth:`gathered` on this thread: at the block's end, with the others."""
        held = getattr(self._gathering, "jobs", None)
        if held is not None:
            held.append(job)
            return
        self._queue([job])

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """Files taken by this thread inside the block are queued together at its end (a
        pipeline's answers, written one after another): one wake-up of a finishing thread
        and one batch, one fsync per directory, instead of one or two files each."""
        if getattr(self._gathering, "jobs", None) is not None:
            yield  # (already gathering: the outer block queues them)
            return
        held: list[FileJob] = []
        self._gathering.jobs = held
        try:
            yield
        finally:
            self._gathering.jobs = None
            if held:
                self._queue(held)

    def flush_gathered(self) -> None:
        """Queue now what this thread gathered so far (before it waits on the network)."""
        held = getattr(self._gathering, "jobs", None)
        if held:
            jobs, held[:] = list(held), []
            self._queue(jobs)

    def _queue(self, jobs: list[FileJob]) -> None:
        with self._lock:
            while len(self._waiting) >= self.depth and not self._closed:
                self._room.wait()
            if not self._closed:
                self._waiting.extend(jobs)  # (at most a pipeline's more than ``depth``)
                self._work.notify()
                return
        finish_batch(jobs)

    def close(self, timeout: float | None = None) -> list[FileJob]:
        """Finish what is queued and stop the threads, within ``timeout`` seconds (None: all
        of it); the jobs not done by then (their ``.part`` stays, whole, for the next run)."""
        with self._lock:
            self._closed = True
            self._work.notify_all()
            self._room.notify_all()
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t.ident is not None:  # (started)
                t.join(None if end is None else max(0.0, end - time.monotonic()))
        with self._lock:
            return [*self._busy, *self._waiting]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                finish_batch(batch)
            finally:
                with self._lock:
                    self._busy.difference_update(batch)

    def _next_batch(self) -> list[FileJob] | None:
        """What waits, up to MAX_BATCH files (None once closed and nothing waits)."""
        with self._lock:
            while not self._waiting and not self._closed:
                self._work.wait()
            if not self._waiting:
                return None
            batch = [self._waiting.popleft() for _ in range(min(MAX_BATCH, len(self._waiting)))]
            self._busy.update(batch)
            self._room.notify(len(batch))  # room in the queue for as many waiting workers
            return batch


def finish_batch(jobs: list[FileJob]) -> None:
    """Flush and rename each file, fsync each directory once, then settle each file."""
    _crashpoint.delay("finishing")
    moved = [job for job in jobs if job.move_into_place()]
    if any(job.config.fsync for job in moved):
        for dir_fd in dict.fromkeys(job.dir_fd for job in moved):  # (each held by its job)
            fsync_at(dir_fd)
    for job in jobs:
        job.finished_off()
