"""What the user sees: CIAO's per-ObsId blocks through logging, and live progress displays.

The engine calls a :class:`Reporter`'s events from many threads. The base reporter writes
CIAO's block for each ObsId (at verbose level 1) once that ObsId is done and every earlier
ObsId's block is out, so the output is in the order given whatever order files finish in.
:class:`Tally` is the arithmetic of a live display (bytes on disk count from the start, never
past 100 %); :class:`RichReporter` draws it on a terminal, :class:`NotebookReporter` in Jupyter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import cast

from .log import LEVELS, LOGGER, vlog
from .output import KB, MB, busy_time, obsid_block
from .results import FileResult, ObsIdResult, Status


def fmt_size(n: int | None) -> str:
    """A size for live displays, in the table's units (Kb, Mb, Gb: powers of 1024)."""
    if n is None:
        return "?"
    if n >= 1024 * MB:
        return f"{n / (1024 * MB):.2f} Gb"
    if n >= MB:
        return f"{n / MB:.1f} Mb"
    return f"{n / KB:.0f} Kb"


def interrupted(fr: FileResult) -> bool:
    """A file the engine gave up on because the session is stopping (Ctrl-C)."""
    return fr.status is Status.INTERRUPTED


class Reporter:
    """Receives the engine's events (from many threads) and logs CIAO's output.

    Blocks are logged at verbose level 1, so a library user sees nothing unless they ask
    (:func:`chandra_download.set_verbosity`); levels 2-4 add per-file decisions, requests and
    retries, and listings.

    Parameters
    ----------
    mirror : bool
        A site other than the CDA is used (CIAO then says ``mirror site``).
    """

    def __init__(self, mirror: bool = False) -> None:
        self.mirror = mirror
        self._lock = threading.RLock()
        self._order: list[int] | None = None
        self._slots: list[ObsIdResult | None] = []
        self._done: set[int] = set()  # id() of finished ObsIdResults
        self._next = 0  # first block not yet printed
        # id(ObsIdResult) -> (start, end) of each file it fetched: the totals' download time
        self._spans: dict[int, list[tuple[float, float]]] = {}
        self._owners: dict[int, int] = {}  # id(FileResult) -> id(its ObsIdResult)
        self._silent = False
        self.counts = {"downloaded": 0, "present": 0, "failed": 0, "skipped": 0, "queued": 0}

    # -- optional events (no-ops for the engine; called by the API) --------------------------
    def begin(self, obsids: Sequence[int], mirror: bool | None = None) -> None:
        """The session's ObsIds in the order given, before anything is listed."""
        with self._lock:
            self._order = list(obsids)
            self._slots = [None] * len(self._order)
            if mirror is not None:
                self.mirror = mirror

    def silence(self) -> None:
        """Print nothing more (the session is being interrupted)."""
        self._silent = True

    # -- the engine's events ---------------------------------------------------------------------
    def obsid_listed(self, r: ObsIdResult) -> None:
        with self._lock:
            self._claim(r)
            self._owners.update((id(f), id(r)) for f in r.files)
            self.counts["queued"] += sum(1 for f in r.files if f.status is Status.PLANNED)
        if r.found:
            vlog(4, "ObsId %s: %d file(s) selected at %s", r.obsid, len(r.files), r.site)
            for f in r.files:
                vlog(4, "  %s  %s bytes", f.relpath, "?" if f.size is None else f.size)
        elif r.error:
            vlog(3, "ObsId %s: could not be listed: %s", r.obsid, r.error)

    def file_started(self, fr: FileResult) -> None:
        if fr.local_size:
            vlog(3, "%s/%s: fetching %s from byte %d", fr.obsid, fr.relpath, fr.url, fr.local_size)
        else:
            vlog(3, "%s/%s: fetching %s", fr.obsid, fr.relpath, fr.url)

    def file_bytes(self, fr: FileResult, n: int) -> None:
        pass

    def file_retry(self, fr: FileResult, attempt: int, delay: float, reason: str) -> None:
        """A transfer failed and is retried: attempt ``attempt`` starts in ``delay`` s."""
        vlog(3, "%s/%s: retry %d in %.0f s: %s", fr.obsid, fr.relpath, attempt, delay, reason)

    def obsid_retry(self, obsid: int, attempt: int, delay: float, reason: str) -> None:
        """Listing an ObsId failed and is retried: attempt ``attempt`` starts in ``delay`` s
        (optional event: the engine's listing retries)."""
        vlog(3, "ObsId %s: listing retry %d in %.0f s: %s", obsid, attempt, delay, reason)

    def file_done(self, fr: FileResult) -> None:
        if interrupted(fr):
            self._silent = True  # Ctrl-C: the command line says it in one line
            return
        with self._lock:
            if fr.status in (Status.DOWNLOADED, Status.RESUMED):
                now = time.monotonic()  # its elapsed runs from its request to its last byte
                self._spans.setdefault(self._owner(fr), []).append((now - fr.elapsed, now))
            key = {
                Status.DOWNLOADED: "downloaded",
                Status.RESUMED: "downloaded",
                Status.PRESENT: "present",
                Status.FAILED: "failed",
                Status.SKIPPED: "skipped",
            }.get(fr.status)
            if key:
                self.counts[key] += 1
        _log_decision(fr)

    def obsid_done(self, r: ObsIdResult) -> None:
        with self._lock:
            self._claim(r)
            self._done.add(id(r))
            self._flush()

    # -- blocks in order ---------------------------------------------------------------------
    def _claim(self, r: ObsIdResult) -> None:
        """Give ``r`` the first free slot for its ObsId (ObsIds may repeat)."""
        if any(s is r for s in self._slots):
            return
        if self._order is None:  # no begin(): blocks come out as ObsIds finish
            self._slots.append(r)
            return
        for i, obsid in enumerate(self._order):
            if self._slots[i] is None and obsid == r.obsid:
                self._slots[i] = r
                return
        self._slots.append(r)

    def _owner(self, fr: FileResult) -> int:
        return self._owners.get(id(fr), id(fr))

    def _flush(self) -> None:
        while self._next < len(self._slots):
            r = self._slots[self._next]
            if r is None or id(r) not in self._done:
                return
            self._next += 1
            spans = self._spans.pop(id(r), ())
            if self._silent or not LOGGER.isEnabledFor(LEVELS[1]):
                continue  # (--quiet: the block is not even made, a row per file)
            vlog(1, "%s", "\n".join(obsid_block(r, busy_time(spans), self.mirror)))


def _log_decision(fr: FileResult) -> None:
    """Verbose 2: what was decided for each file, and why."""
    name = f"{fr.obsid}/{fr.relpath}"
    if fr.status is Status.PRESENT:
        vlog(2, "%s: already complete (%s bytes); skipped", name, fr.size)
    elif fr.status is Status.RESUMED:
        vlog(2, "%s: resumed a partial copy; %d bytes fetched", name, fr.bytes_transferred)
    elif fr.status is Status.DOWNLOADED:
        vlog(2, "%s: fetched %d bytes in %.2f s", name, fr.bytes_transferred, fr.elapsed)
    elif fr.status is Status.SKIPPED:
        # A local file we will not touch. The command line's block and summary say it, so
        # it drops this record (``in_summary``); a library caller hears it here.
        LOGGER.warning("%s: %s", name, fr.reason, extra={"in_summary": True})
    elif fr.status is Status.FAILED:
        vlog(2, "%s: failed: %s", name, fr.reason)


class Tally:
    """Bytes done and to do, for live displays; safe from many threads.

    Bytes already on disk count from a file's start; a file never counts more than its size
    and the whole never more than the total; a finished file counts whole, a failed one
    leaves the total. ``files`` maps ``id(FileResult)`` to ``[done, size]``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: dict[int, list[int]] = {}
        self.total = 0
        self.done = 0

    def listed(self, r: ObsIdResult) -> None:
        with self.lock:
            for f in r.files:
                if f.status is Status.PLANNED and id(f) not in self.files:
                    self.files[id(f)] = [0, f.size or 0]
                    self.total += f.size or 0

    def _set(self, fr: FileResult, done: int, size: int | None = None) -> None:
        entry = self.files.setdefault(id(fr), [0, 0])
        if size is not None and size != entry[1]:
            self.total += size - entry[1]
            entry[1] = size
        done = max(0, min(done, entry[1])) if entry[1] else max(0, done)
        self.done += done - entry[0]
        entry[0] = done

    def started(self, fr: FileResult) -> None:
        with self.lock:
            self._set(fr, fr.local_size, fr.size)

    def advanced(self, fr: FileResult, n: int) -> int:
        """Count ``n`` more bytes of ``fr``; returns the file's bytes done."""
        with self.lock:
            entry = self.files.get(id(fr))
            self._set(fr, (entry[0] if entry else 0) + n)
            return self.files[id(fr)][0]

    def finished(self, fr: FileResult) -> None:
        with self.lock:
            entry = self.files.pop(id(fr), None)
            if entry is None:
                return
            if fr.ok:
                size = fr.size if fr.size is not None else entry[1]
                self.total += size - entry[1]
                self.done += size - entry[0]
            else:
                self.total -= entry[1]
                self.done -= entry[0]

    def overall(self) -> tuple[int, int]:
        """(bytes done, total bytes), done never above total."""
        with self.lock:
            return min(self.done, self.total), self.total


def shown(rep: object) -> AbstractContextManager[object]:
    """``with shown(rep):`` draws a live display (a reporter with ``__enter__`` and
    ``__exit__``) for the block's duration; any other reporter needs no context."""
    return rep if isinstance(rep, AbstractContextManager) else nullcontext()


class _Guarded:
    """A caller's reporter whose failures never stop a session: an exception raised by any
    of its events is said once, in one line, and the event dropped; the files go on (a raise
    from ``file_done`` left the session waiting for a file it had counted out)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self._said = False
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._inner, name)  # (AttributeError: an optional event it lacks)
        if not callable(attr):
            return attr

        def event(*args: object, **kwargs: object) -> object:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the caller's code, any bug
                self._failed(name, exc)
                return None

        setattr(self, name, event)  # (made once per event: file_bytes comes per chunk)
        return event

    def _failed(self, name: str, exc: Exception) -> None:
        with self._lock:
            if self._said:
                return
            self._said = True
        vlog(
            0, "the progress reporter failed in %s (%r); its later failures are not said", name, exc
        )


def guarded(reporter: Reporter) -> Reporter:
    """``reporter`` behind :class:`_Guarded` when it is a caller's own (its class is not
    this package's); ours are returned as they are."""
    if type(reporter).__module__.split(".")[0] == __name__.split(".")[0]:
        return reporter
    return cast(Reporter, _Guarded(reporter))
