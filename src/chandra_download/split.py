"""One large file fetched as ranged parts by several workers at once.

The parts are written in place into the file's ``.part`` with ``pwrite``, so it has holes until
all are done. A small state file beside it (``.part.parts``) records how far each part got; it
is written before any data and removed only after the finished file is moved into place, so a
``.part`` with holes is never mistaken for a contiguous one and an interrupted split download
resumes part by part. The state lags the data (it is saved every few MB), which only means a
few bytes are fetched twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .config import SessionConfig
from .errors import SourceError, TransientError, VerificationError
from .log import vlog
from .plan import part_path
from .results import FileResult, Status
from .retry import Interrupted, with_retries
from .sources.base import Body, RemoteFile, Source
from .transfer import Transfer, acquire, flush, unlink_quietly

STATE_SUFFIX = ".parts"
MIN_PART = 4 * 1024 * 1024  # smaller parts cost more in requests than they gain
SAVE_EVERY = 4 * 1024 * 1024


def state_path(target: Path) -> Path:
    """The state file of a split download: ``<name>.part.parts``."""
    part = part_path(target)
    return part.with_name(part.name + STATE_SUFFIX)


def part_bounds(size: int, count: int, first: int | None = None) -> list[list[int]]:
    """``count`` ranges ``[start, end, done]`` covering ``size`` bytes; the first may be fixed."""
    if first is not None:
        if count < 2 or size <= first:
            return [[0, min(first, size), 0]]
        rest = part_bounds(size - first, count - 1)
        return [[0, first, 0]] + [[s + first, e + first, 0] for s, e, _ in rest]
    step = -(-size // count)
    return [[s, min(s + step, size), 0] for s in range(0, size, step)]


@dataclass
class _Part:
    start: int
    end: int
    done: int = 0

    @property
    def complete(self) -> bool:
        return self.start + self.done >= self.end


class SplitFile:
    """Shared state of one file being fetched in parts; each part runs in a worker thread.

    Built by :meth:`begin`, which returns None when splitting does not apply (then the
    normal one-connection transfer runs). :meth:`run_part` returns True for the call that
    finished the whole file (successfully or not), which then reports it.
    """

    def __init__(self, transfer: Transfer, source: Source, remote: RemoteFile, fr: FileResult):
        self.transfer = transfer
        self.config: SessionConfig = transfer.config
        self.source = source
        self.remote = remote
        self.fr = fr
        self.parts: list[_Part] = []
        self.size = 0
        self.fd = -1
        self.errors: list[str] = []
        self.interrupted = False
        self.resumed = False
        self.fallback = False  # the site ignores ranges: fetch it whole instead
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._left = 0
        self._t0 = time.monotonic()
        self._first: Body | None = None
        self._started = False

    # -- setup ----------------------------------------------------------------------------
    @classmethod
    def begin(
        cls, transfer: Transfer, source: Source, remote: RemoteFile, fr: FileResult
    ) -> SplitFile | None:
        cfg = transfer.config
        target, part, state = fr.path, part_path(fr.path), state_path(fr.path)
        if cfg.split_threshold <= 0 or cfg.jobs < 2 or remote.best_size < cfg.split_threshold:
            return None
        if target.exists() or (part.exists() and not state.exists()):
            return None  # something to resume or check: the normal path knows how
        target.parent.mkdir(parents=True, exist_ok=True)
        self = cls(transfer, source, remote, fr)
        self.fd = acquire(part)
        try:
            if self._load(state) or self._plan(state):
                self._left = sum(1 for p in self.parts if not p.complete)
                fr.site, fr.size, fr.status = source.label, self.size, Status.PLANNED
                return self
        except BaseException:
            os.close(self.fd)
            raise
        # Not split after all: leave what the one-connection path expects (no state, no
        # empty .part).
        unlink_quietly(state)
        if os.fstat(self.fd).st_size == 0:
            unlink_quietly(part)
        os.close(self.fd)
        return None

    def _load(self, state: Path) -> bool:
        """Resume from a state file that matches the archive's file; else start afresh."""
        try:
            saved = json.loads(state.read_text())
            size, parts = int(saved["size"]), [_Part(*map(int, p)) for p in saved["parts"]]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if self.remote.size is not None and size != self.remote.size:
            return False
        # pwrite grows the file to the furthest byte written: a shorter file lost data.
        furthest = max((p.start + p.done for p in parts if p.done), default=0)
        if parts and furthest <= os.fstat(self.fd).st_size <= size:
            self.size, self.parts, self.resumed = size, parts, True
            vlog(2, "%s: resuming %d part(s)", self.fr.relpath, sum(not p.complete for p in parts))
            return True
        return False

    def _plan(self, state: Path) -> bool:
        """Decide the parts; for sites without exact sizes the first part's reply tells it."""
        cfg = self.config
        os.ftruncate(self.fd, 0)  # a .part with a state we cannot use may have holes
        # At least two parts (the threshold said it is worth it), none much smaller than needed.
        min_part = max(1, min(MIN_PART, cfg.split_threshold // 2))
        count = min(cfg.jobs, max(2, self.remote.best_size // min_part))
        first = None
        size = self.remote.size
        if size is None:
            # The listing's size is rounded: ask for a first part well inside the file; the
            # reply's Content-Range gives the exact size, and the rest is split by it.
            first = max(1, int(self.remote.best_size * 0.9) // count)
            try:
                body = self.source.open(self.remote, 0, first)
            except SourceError as exc:
                vlog(2, "%s: no ranged parts (%s)", self.fr.relpath, exc)
                return False
            if body.end is None or body.total is None or body.start != 0:
                body.close()  # whole file sent, or size unknown: one connection it is
                return False
            self._first, size, first = body, body.total, body.end
        self.size = size
        self.parts = [_Part(*p) for p in part_bounds(size, count, first)] if size else []
        if len(self.parts) < 2 and self._first is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        state = state_path(self.fr.path)
        with self._save_lock:  # one writer of the temporary name at a time
            with self._lock:
                parts = [[p.start, p.end, p.done] for p in self.parts]
            tmp = state.with_name(state.name + ".tmp")
            if self.config.fsync:
                flush(self.fd, data_only=True)  # the state must never claim bytes the disk lacks
            with open(tmp, "w") as fh:
                fh.write(json.dumps({"size": self.size, "parts": parts}))
                if self.config.fsync:
                    fh.flush()
                    flush(fh.fileno())
            os.replace(tmp, state)

    def pending(self) -> list[int]:
        """Indexes of the parts still to fetch."""
        return [i for i, p in enumerate(self.parts) if not p.complete]

    # -- one part -------------------------------------------------------------------------
    def run_part(self, index: int) -> bool:
        """Fetch one part with retries; True when this call finished the file."""
        try:
            if not (self.errors or self.interrupted or self.fallback):
                self._fetch_part(index)
        except (Interrupted, KeyboardInterrupt):
            self.interrupted = True
        except SourceError as exc:
            with self._lock:
                self.errors.append(f"bytes {self.parts[index].start}-: {exc}")
        except OSError as exc:
            with self._lock:
                self.errors.append(f"cannot write {part_path(self.fr.path)}: {exc.strerror}")
        except Exception as exc:  # a bug in one part must still let the file settle once
            with self._lock:
                self.errors.append(f"internal error: {exc!r}")
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish()
        return last

    def _fetch_part(self, index: int) -> None:
        what = f"{self.fr.relpath} part {index}"
        with_retries(lambda: self._stream(index), self.config, self.transfer.stop, what)

    def _stream(self, index: int) -> None:
        fr, p = self.fr, self.parts[index]
        if self.transfer.stop.is_set():
            raise Interrupted()
        if self.errors:
            return  # another part failed for good: no more attempts; the state keeps progress
        body, self._first = (self._first, None) if index == 0 and self._first else (None, None)
        if body is None:
            body = self.source.open(self.remote, p.start + p.done, p.end)
        with self._lock:
            first, self._started = not self._started, True
        if first:
            self.transfer.on_start(fr)
        with body:
            if body.start != p.start + p.done:
                self.fallback = body.start == 0
                raise SourceError(f"the site ignored the range (data from {body.start})")
            if body.total is not None and body.total != self.size:
                raise SourceError(f"the file changed on the site ({body.total} bytes now)")
            pos, unsaved = p.start + p.done, 0
            while pos < p.end:
                if self.transfer.stop.is_set():
                    raise Interrupted()
                data = body.read(min(self.config.chunk_size, p.end - pos))
                if not data:
                    raise TransientError(f"got {pos - p.start} of {p.end - p.start} bytes")
                view = memoryview(data)
                while view:
                    n = os.pwrite(self.fd, view, pos)
                    view, pos = view[n:], pos + n
                with self._lock:
                    p.done = pos - p.start
                    fr.bytes_transferred += len(data)
                self.transfer.on_bytes(fr, len(data))
                unsaved += len(data)
                if unsaved >= SAVE_EVERY:
                    self._save()
                    unsaved = 0
        self._save()

    # -- the end --------------------------------------------------------------------------
    def _finish(self) -> None:
        """Runs once, in the thread that ended the last part: verify and move into place."""
        fr, part, state = self.fr, part_path(self.fr.path), state_path(self.fr.path)
        fr.elapsed = time.monotonic() - self._t0
        try:
            if self.fallback:
                os.ftruncate(self.fd, 0)
                unlink_quietly(state)
                fr.status, fr.reason = Status.PLANNED, "the site ignores ranges"
            elif self.interrupted:
                self._save()
                fr.status, fr.reason = Status.FAILED, "interrupted; partial data kept for resume"
            elif self.errors:
                self._save()
                fr.status, fr.reason = Status.FAILED, "; ".join(self.errors[:3])
            else:
                self._verify_and_move(part, state)
        finally:
            os.close(self.fd)

    def _verify_and_move(self, part: Path, state: Path) -> None:
        fr = self.fr
        try:
            self.transfer.finish(fr, self.fd, part, replace(self.remote, size=self.size))
        except VerificationError as exc:
            # Bad bytes are never resumed from: start over (the engine fetches it whole).
            os.ftruncate(self.fd, 0)
            unlink_quietly(state)
            fr.status, fr.reason = Status.PLANNED, str(exc)
            self.fallback = True
            return
        unlink_quietly(state)
        fr.status = Status.RESUMED if self.resumed else Status.DOWNLOADED
        fr.reason = None
