"""Checks that follow a split file's parts: its finished prefix is checked while the rest comes.

A split file's parts are written in place, so until the last one ends its ``.part`` has holes.
Read back only then, its checks and sha256 are a tail after the download (about 1.2 s of
sha256 alone for 2 GB, issue 16). A :class:`Follower` instead reads the bytes from the start
of the file up to the first one not yet written (the *frontier*, which
:meth:`~chandra_download.parts.RangedParts.claim` gives) as the parts write them, and feeds
them, in order, to the sha256 and, on a thread of its own beside it, the content checks.
Parts are fetched in order (:meth:`~chandra_download.split.PartsState.plan`), and wait when
they run too far ahead (:data:`~chandra_download.parts.FOLLOW_LEAD`), so the frontier moves
at about the download's pace and little is left once the last part ends.

A follower is only ever a shortcut: the bytes it read must be the file's final ones, so
anything that rewrites bytes below what it claimed (a resumed part whose bytes differ) makes
its owner drop its result, and the file is read back whole as before.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

#: Bytes read at a time (as the read-back pass does).
_READ = 1024 * 1024
#: Seconds a follower that caught up with the parts waits before it looks again.
_POLL = 0.02
#: Chunks read but not yet fed ``beside``: the reader may run this far ahead.
_QUEUED = 8
_NAME = "chandra-download follow"


class Follower:
    """Feeds the bytes ``[0, size)`` of ``fd``, in order and each once it is written, to
    ``feed`` on a reader thread and, when given, to ``beside`` on a thread of its own (each
    chunk is read once for both: the sha256 on one core, the content checks on the other).

    ``claim(pos, want)`` is the end (at most ``pos + want``) of the written bytes from ``pos``
    on; the caller records the claim, so that bytes rewritten below it are known.
    ``stop`` ends the follow early (the session is stopping).
    """

    def __init__(
        self,
        fd: int,
        size: int,
        claim: Callable[[int, int], int],
        stop: threading.Event,
        feed: Callable[[bytes], object],
        beside: Callable[[bytes], object] | None = None,
    ) -> None:
        self._fd, self._size, self._claim, self._stop = fd, size, claim, stop
        self._feed, self._beside = feed, beside
        self.pos = 0  # bytes read and fed so far
        self.failed: BaseException | None = None  # why it gave up (a read error, a bug)
        self._quit = False
        self._wake = threading.Event()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(_QUEUED)
        self._threads = [threading.Thread(target=self._read, name=_NAME, daemon=True)]
        if beside is not None:
            self._threads.append(threading.Thread(target=self._drain, name=_NAME, daemon=True))
        for t in self._threads:  # (daemons: a session stopped abruptly must not wait)
            t.start()

    def _read(self) -> None:
        try:
            while self.pos < self._size and not self._quit and self.failed is None:
                end = self._claim(self.pos, _READ)
                if end <= self.pos:
                    if self._stop.is_set():
                        return
                    self._wake.wait(_POLL)
                    self._wake.clear()
                    continue
                chunk = os.pread(self._fd, end - self.pos, self.pos)
                if len(chunk) != end - self.pos:  # (truncated under us: not the final bytes)
                    raise OSError(f"read {len(chunk)} of {end - self.pos} bytes")
                if self._beside is not None:
                    self._chunks.put(chunk)
                self._feed(chunk)
                self.pos = end
        except BaseException as exc:  # (the owner reads the file back instead)
            self.failed = exc
        finally:
            self._chunks.put(None)  # (the drain ends; unread when there is none)

    def _drain(self) -> None:
        assert self._beside is not None
        while (chunk := self._chunks.get()) is not None:
            if self.failed is None:  # (a failed follow only drains, so the reader never waits)
                try:
                    self._beside(chunk)
                except BaseException as exc:
                    self.failed = exc

    @property
    def running(self) -> bool:
        """Still reading (neither failed, let go, nor done)."""
        return self.failed is None and not self._quit and self._threads[0].is_alive()

    def finish(self) -> bool:
        """Once every part is written: wait for the rest to be fed; True when all was."""
        self._wake.set()
        for t in self._threads:
            t.join()
        return self.failed is None and self.pos == self._size

    def abandon(self) -> None:
        """Stop and wait: the file is not finished through this follower."""
        self._quit = True
        self._wake.set()
        for t in self._threads:
            t.join()
