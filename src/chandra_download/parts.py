"""The ranged-parts mode of a file's one path: its parts run on any of the engine's workers.

:class:`RangedParts` is owned by a :class:`~chandra_download.transfer.FileJob` fetching a large
file: it fetches each part's range into the file's ``.part`` in place (``pwrite``, through the
job's :class:`~chandra_download.stream.Copy`), retries each part through the file's
:class:`~chandra_download.retry.RetryPolicy`, and saves the parts' progress in the state file
(:mod:`chandra_download.split`) about once a second and at each part's end, never claiming
bytes the disk may lack. When the last part ends, :attr:`RangedParts.outcome` says what the job
does next: finish the file (size, checks, rename, as for a whole file), fail it, stop, or go
on as one whole fetch (a site that ignores ranges, or seams that do not join). Meanwhile
followers (:mod:`chandra_download.follow`) check and hash the file's finished prefix, so
that little of it is left to read back then (:meth:`RangedParts.followed`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .disk import flush
from .errors import ContentRangeMismatch, Interrupted, LocalError, SourceError, TransientError
from .follow import Follower
from .log import vlog
from .retry import RetryPolicy
from .sources.base import Body, RemoteFile, Source
from .split import Part, PartsState, save_state
from .stream import OVERLAP, Copy, ResumeMismatch, resume_from
from .verify import Checker

#: Seconds between two saves of the state while parts run (and at each part's end): the
#: state lags the data by about this much, which only means a few bytes fetched twice.
SAVE_INTERVAL = 1.5
#: A part starts at most this far beyond what the followers have read: where the checks
#: cannot keep up (a CPU-bound loopback), the parts wait for them, rather than leave them a
#: tail of a gigabyte to check alone once the last part ends.
FOLLOW_LEAD = 256 * 1024 * 1024
#: Seconds between two looks of a part waiting for the followers.
_LEAD_POLL = 0.02

#: ``copy(body, verify_below, end, on_bytes, seam)``: the file's copy of a body into its .part.
CopyFactory = Callable[
    [Body, int, "int | None", Callable[[int, int], None], "bytearray | None"], Copy
]


class RangeIgnored(SourceError):
    """A ranged request was answered from another offset: parts cannot work here."""


class Outcome(Enum):
    """What a file's parts leave to do once the last one has ended."""

    FINISH = "finish"  # every part is written and the seams join: verify and move
    FAILED = "failed"  # a part failed for good (:attr:`RangedParts.reason`)
    STOPPED = "stopped"  # the session is stopping
    WHOLE = "whole"  # the site's ranges cannot be used: fetch it on one connection


@dataclass
class PartsFile:
    """What the parts of one file write to and tell: the job's side of the seam."""

    fd: int  # the locked .part
    part: Path  # its name, for messages
    state_file: Path
    dir_fd: int  # the open directory of the .part and its state (tree.py): names go by it
    durable: bool  # flush the data before the state claims it (``SessionConfig.fsync``)
    source: Source
    remote: RemoteFile
    copy: CopyFactory
    retry: RetryPolicy  # the file's: each part retries through a part of it
    started: Callable[[int], None]  # the first byte of the first part (bytes on disk)
    progress: Callable[[int], None]  # new bytes written
    local_problem: Callable[[LocalError], str]  # one line for a local error, told once
    checker: Callable[[], Checker]  # a fresh checker of the file's content checks and sha256


class RangedParts:
    """The ranged parts of one large file, run by any of the engine's workers."""

    def __init__(self, state: PartsState, file: PartsFile, name: str) -> None:
        self.state, self.file, self.name = state, file, name
        self.reason: str | None = None  # why the file failed (Outcome.FAILED)
        self.elapsed = 0.0  # from the first part's start to the last part's end
        self._lock, self._save_lock = threading.Lock(), threading.Lock()
        self._left = len(state.pending)
        self._errors: list[str] = []
        self._stopped = self._ignored = False
        self._seams: dict[int, bytes] = {}  # part start -> the bytes asked from before it
        self._t0: float | None = None
        self._saved_at = time.monotonic()
        self._followers: list[Follower] = []
        self._checker: Checker | None = None  # what the followers feed
        self._claimed = 0  # the end of the bytes a follower may have read
        self._rewritten = False  # bytes below that end were written again: no follow

    @property
    def size(self) -> int:
        return self.state.size

    @property
    def pending(self) -> list[int]:
        """Indexes of the parts still to fetch (each is one :meth:`run` call)."""
        return self.state.pending

    @property
    def done(self) -> int:
        """Bytes of the file on disk."""
        with self._lock:
            return sum(p.done for p in self.state.parts)

    def run(self, index: int) -> bool:
        """Fetch one part with retries; True for the call that ended the last part (its
        caller then settles the file, by :attr:`outcome`)."""
        try:
            if not (self._errors or self._ignored or self._stopped):
                policy = self.file.retry.for_part(f"{self.name} part {index}")
                policy.call(lambda: self._fetch(index))
        except (Interrupted, KeyboardInterrupt):
            self._stopped = True
        except RangeIgnored:
            self._ignored = True
        except (LocalError, OSError) as exc:  # told once per cause, as for a whole file
            self._note(self.file.local_problem(LocalError.of(exc, self.file.part)))
        except SourceError as exc:
            self._note(f"bytes {self.state.parts[index].start}-: {exc}")
        except Exception as exc:  # a bug in one part must still let the file settle once
            self._note(f"internal error: {exc!r}")
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last and self._t0 is not None:
            self.elapsed = time.monotonic() - self._t0
        return last

    @property
    def outcome(self) -> Outcome:
        """What to do once every part has ended (the progress of a failed or stopped file
        is saved for resume by the caller's :meth:`save`)."""
        if self._stopped:
            return Outcome.STOPPED
        if self._errors:
            self.reason = "; ".join(self._errors[:3])
            return Outcome.FAILED
        if self._ignored:
            vlog(2, "%s: the site ignores ranges; fetching it whole", self.name)
            return Outcome.WHOLE
        if not self._seams_agree():
            return Outcome.WHOLE  # the site's ranges cannot be trusted: one connection
        return Outcome.FINISH

    def _note(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def _fetch(self, index: int) -> None:
        p = self.state.parts[index]
        if self.file.retry.stop.is_set():
            raise Interrupted()
        if self._errors:
            return  # another part failed for good: no more attempts; the state keeps progress
        self._wait_for_followers(p.next)
        # A resumed part asks again for bytes it has, to compare; a fresh one (but the first)
        # asks for the previous part's last bytes, compared once every part is written.
        fresh = p.done == 0 and p.start > 0
        asked = max(0, p.start - OVERLAP) if fresh else resume_from(p.next, p.start)
        seam = bytearray() if fresh else None
        try:
            opened = self.file.source.open(self.file.remote, asked, p.end)
        except ContentRangeMismatch as exc:  # (multipart/byteranges, a range elsewhere...)
            raise RangeIgnored(f"the site's ranged answers cannot be used ({exc})") from None
        with opened as body:
            if body.start != asked:
                raise RangeIgnored(f"the site ignored the range (data from {body.start})")
            if body.anew:  # (part 0's whole answer starts where asked: it is of another copy)
                raise RangeIgnored("the file changed at the site since its parts began")
            if body.total is not None and body.total != self.size:
                raise SourceError(f"the file changed on the site ({body.total} bytes now)")
            self._first_started()
            try:
                pos = self.file.copy(body, p.next, p.end, self._on_bytes(p), seam).run()
            except ResumeMismatch:
                with self._lock:
                    p.done = 0  # (its bytes are written again from its start)
                    self._rewritten = self._rewritten or p.start < self._claimed
                raise
            if pos < p.end:
                raise TransientError(f"got {pos - p.start} of {p.end - p.start} bytes")
        if seam is not None:
            with self._lock:
                self._seams[p.start] = bytes(seam)
        self.save()

    def _first_started(self) -> None:
        """A split file is one display from its first part's first byte."""
        with self._lock:
            first = self._t0 is None
            if first:
                self._t0 = time.monotonic()
        if first:
            self.file.started(self.done)
            self._follow()

    def _on_bytes(self, p: Part) -> Callable[[int, int], None]:
        def on_bytes(n: int, pos: int) -> None:
            now = time.monotonic()
            with self._lock:
                p.done = pos - p.start
                due = now - self._saved_at >= SAVE_INTERVAL
                if due:
                    self._saved_at = now
            self.file.progress(n)
            if due:
                self.save()

        return on_bytes

    # -- the followers (follow.py) ----------------------------------------------------------
    def _follow(self) -> None:
        """Check the file's finished prefix while the parts run: the sha256 on one thread,
        the content checks on another beside it (each about a core's worth on 2 GB)."""
        checker = self._checker = self.file.checker()
        sha = checker.hash_apart() if checker.checks else None
        fd, size, stop = self.file.fd, self.size, self.file.retry.stop
        if sha is None:  # (one of the two alone: one thread)
            follower = Follower(fd, size, self.claim, stop, checker.feed)
        else:
            follower = Follower(fd, size, self.claim, stop, sha.update, beside=checker.feed)
        self._followers = [follower]

    def _wait_for_followers(self, start: int) -> None:
        """Before asking for bytes from ``start``: wait while they are more than FOLLOW_LEAD
        beyond what the followers have read (no connection is held meanwhile)."""
        stop = self.file.retry.stop
        while not stop.is_set():
            followers = self._followers  # (let go meanwhile: nothing to wait for)
            if not all(f.running for f in followers):
                return
            if start - min((f.pos for f in followers), default=start) <= FOLLOW_LEAD:
                return
            stop.wait(_LEAD_POLL)

    def claim(self, pos: int, want: int) -> int:
        """The end, at most ``pos + want``, of the bytes from ``pos`` on that are written and
        final (below the first part not complete); a follower reads up to it."""
        with self._lock:
            end = self.size
            for p in self.state.parts:  # (in file order)
                if not p.complete:
                    end = p.next
                    break
            end = min(end, pos + want)
            self._claimed = max(self._claimed, end)
        return end

    def followed(self) -> Checker | None:
        """Once every part is written: the checker the followers fed every byte of the
        file, or None (none ran, one failed, or bytes they read were written again), when
        the file is to be read back whole."""
        followers, self._followers = self._followers, []
        for f in followers:  # (how far behind the parts the checks were, for tuning)
            vlog(3, "%s: %d bytes left to check as the parts ended", self.name, self.size - f.pos)
        whole = all([f.finish() for f in followers])  # (a list: every one is waited for)
        with self._lock:
            rewritten = self._rewritten
        if not followers or not whole or rewritten:
            return None
        return self._checker

    def unfollow(self) -> None:
        """The file does not finish through the followers: they stop (before its .part is
        truncated or closed)."""
        followers, self._followers = self._followers, []
        for f in followers:
            f.abandon()

    def _seams_agree(self) -> bool:
        """Each fresh part's first bytes, asked from before its start, match the bytes the
        part before it wrote: a range answered with bytes from elsewhere fails here."""
        for start, seam in self._seams.items():
            if os.pread(self.file.fd, len(seam), start - len(seam)) != seam:
                vlog(2, "%s: a part's bytes do not join the part before it", self.name)
                return False
        return True

    def save(self) -> None:
        """Save the parts' progress: the data first flushed (when durable), so the state
        never claims bytes the disk may lack."""
        with self._save_lock:  # one writer of the temporary name at a time
            if self.file.durable:
                flush(self.file.fd, data_only=True)
            with self._lock:
                parts = [Part(p.start, p.end, p.done) for p in self.state.parts]
            snapshot = PartsState(self.size, parts)
            save_state(
                self.file.state_file,
                snapshot,
                relpath=self.name,
                durable=self.file.durable,
                dir_fd=self.file.dir_fd,
            )
