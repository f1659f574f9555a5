"""Copy one response body into a ``.part`` at its offset, trusting nothing the server says.

Shared by whole-file transfers and ranged parts: the bytes a resume asks for again (the
overlap) are compared with the disk instead of written, so a server that sends bytes from the
wrong place under a correct-looking ``Content-Range`` is caught for every file type; nothing is
written past the end the caller allows; and a transfer slower than the minimum rate for a
whole timeout fails (a server trickling a byte a second never trips a socket timeout).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LocalError, TransientError
from .retry import Interrupted
from .sources.base import Body

#: Bytes a resume asks for again before its offset, to compare with what is on disk.
OVERLAP = 16 * 1024
#: Most bytes one ``pwrite`` takes. Measured here (ext4, a 2-core VM): 2 GB written to the
#: page cache cost 4.5 s of kernel CPU in 1 MiB writes, 2.0 s in 128 KiB ones (whose source
#: stays in the CPU's cache while the kernel copies it).
WRITE_SLICE = 128 * 1024
#: A whole file's bytes go to writeback this many at a time as they are written (see
#: :func:`_drop_behind`), when they are to be fsynced.
DROP_BEHIND = 4 * 2**20


def resume_from(have: int, floor: int = 0) -> int:
    """Where to ask for data when ``have`` bytes (from ``floor``) are on disk."""
    return max(floor, have - OVERLAP) if have > floor else floor


class ResumeMismatch(TransientError):
    """The bytes sent for a resume differ from those on disk: the disk copy is dropped."""


class RateGuard:
    """Fails a transfer that moves less than ``min_rate * window`` bytes in ``window`` s."""

    def __init__(self, min_rate: float, window: float) -> None:
        self.min_rate = min_rate
        self.window = window
        self._start = time.monotonic()
        self._bytes = 0

    def tick(self, n: int) -> None:
        self._bytes += n
        now = time.monotonic()
        if now - self._start < self.window:
            return
        if self.min_rate > 0 and self._bytes < self.min_rate * (now - self._start):
            rate = self._bytes / (now - self._start)
            raise TransientError(
                f"transfer too slow: {rate:.0f} B/s for {now - self._start:.0f} s, "
                f"below the minimum rate of {self.min_rate:.0f} B/s"
            )
        self._start, self._bytes = now, 0


@dataclass
class Copy:
    """One body's bytes into ``fd``: from ``body.start`` (compared with the disk below
    ``verify_below``) up to ``end`` (exclusive; None: to the end of the body)."""

    fd: int
    path: Path  # the .part, for error messages
    body: Body
    verify_below: int
    end: int | None
    stop: threading.Event
    guard: RateGuard
    chunk: int
    on_bytes: Callable[[int, int], None]  # (new bytes, position after them)
    #: When given, the bytes below ``verify_below`` are kept here to be compared later (a
    #: fresh part's seam with the part before it, which may not be written yet).
    seam: bytearray | None = None
    #: When given, hears every byte written, in order (the content checks and the sha256).
    sink: Callable[[memoryview], None] | None = None
    #: When positive, every this many bytes written are handed to the kernel's writeback
    #: and dropped from the page cache once written (:func:`_drop_behind`).
    drop_behind: int = 0
    _behind: int = field(default=0, init=False)  # where the pages not yet dropped start
    _kicked: int = field(default=0, init=False)  # the end of the bytes last handed over

    def run(self) -> int:
        """Copy until ``end`` or the body ends; return the position reached."""
        pos = self._behind = self._kicked = self.body.start
        while self.end is None or pos < self.end:
            if self.stop.is_set():
                raise Interrupted()
            want = self.chunk if self.end is None else min(self.chunk, self.end - pos)
            data = self.body.read(want)
            if not data:
                break
            self.guard.tick(len(data))
            pos = self._take(memoryview(data)[:want], pos)
        return pos

    def _take(self, view: memoryview, pos: int) -> int:
        if pos < self.verify_below:
            same = min(len(view), self.verify_below - pos)
            if self.seam is not None:
                self.seam += view[:same]
            else:
                self._compare(view[:same], pos)
            view, pos = view[same:], pos + same
        if not len(view):
            return pos
        n = len(view)
        if self.sink is not None:
            self.sink(view)
        try:
            while len(view):
                written = os.pwrite(self.fd, view[:WRITE_SLICE], pos)
                view, pos = view[written:], pos + written
        except OSError as exc:
            raise LocalError.from_os(exc, self.path) from None
        if self.drop_behind:
            self._written_up_to(pos)
        self.on_bytes(n, pos)
        return pos

    def _written_up_to(self, pos: int) -> None:
        """Every ``drop_behind`` bytes: the new bytes go to writeback, and the pages handed
        over the time before (written by now) leave the page cache."""
        if pos - self._kicked >= self.drop_behind:
            _drop_behind(self.fd, max(0, self._behind), pos)
            self._behind, self._kicked = self._kicked, pos

    def _compare(self, view: memoryview, pos: int) -> None:
        on_disk = os.pread(self.fd, len(view), pos)
        if on_disk != view:
            raise ResumeMismatch(
                f"the bytes sent for the resume at {pos} differ from those on disk; "
                "fetching the file again from the start"
            )


def _drop_behind(fd: int, start: int, end: int) -> None:
    """Start the writeback of ``fd``'s dirty pages in [start, end) and drop those already
    written (Linux's ``POSIX_FADV_DONTNEED``, as ``dd oflag=nocache``): the fsync before the
    rename then finds little left to write (it waited for all of a 10 MB file at once, the
    finisher's fsyncs were the last files' wait), and a 2 GB batch does not fill the page
    cache. Advice only: where it is missing or refused, nothing changes."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    try:
        advise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def body_has_more(body: Body) -> bool:
    """True when a body still has bytes after the size the file should have."""
    return bool(body.read(1))
