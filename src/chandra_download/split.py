"""The state of a file fetched as ranged parts: typed, validated, saved without following links.

The parts are written in place into the file's ``.part`` with ``pwrite``, so it has holes until
all are done. The state file beside it (``<K>.parts`` in our hidden directory, see
:mod:`chandra_download.statedir`) records the file's path, its size and how far each part got;
it is saved before any data is written and removed before the finished file is renamed, so a
``.part`` with holes is never taken for a contiguous one, and a ``.part`` without a state file
is always contiguous. The state lags the data (it is saved every few MB), which only means a
few bytes are fetched twice.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .disk import flush
from .errors import LocalError
from .statedir import STATE_SUFFIX as STATE_SUFFIX
from .statedir import Spot

MIN_PART = 4 * 1024 * 1024  # smaller parts cost more in requests than they gain
#: A large file's parts are at most this big (but at most ``MAX_PARTS`` of them), fetched in
#: order: its checks follow the finished prefix (follow.py), a few parts behind the newest.
#: Their count is a multiple of the jobs, so that the last round keeps every job busy.
PIECE = 32 * 1024 * 1024
MAX_PARTS = 1024  # (a state file of some 40 kB)
SAVE_EVERY = 4 * 1024 * 1024
_MAX_STATE = 1024 * 1024  # a state file larger than this is not ours


def state_path(spot: Spot) -> Path:
    """The state file of a split download (in our hidden directory)."""
    return spot.state


def part_bounds(size: int, count: int) -> list[tuple[int, int]]:
    """``count`` (or fewer) contiguous ``(start, end)`` ranges covering ``size`` bytes."""
    step = -(-size // max(1, count))
    return [(s, min(s + step, size)) for s in range(0, size, step)]


@dataclass
class Part:
    """Bytes ``[start, end)`` of the file, of which the first ``done`` are on disk."""

    start: int
    end: int
    done: int = 0

    @property
    def next(self) -> int:
        """The first byte still to fetch."""
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.next >= self.end


@dataclass
class PartsState:
    """How far each part of one file got; ``size`` is the archive's exact size."""

    size: int
    parts: list[Part]

    @classmethod
    def plan(cls, size: int, jobs: int, threshold: int, have: int = 0) -> PartsState:
        """Split ``size`` bytes for ``jobs`` workers (at least one part each, parts of at
        most ``PIECE``); the first ``have`` bytes are on disk."""
        min_part = max(1, min(MIN_PART, threshold // 2))
        rest = size - have
        count = max(1, min(jobs, rest // min_part))
        rounds = -(-rest // (jobs * PIECE))  # each of the jobs takes one piece a round
        if rounds > 1:  # (whole rounds: a last round of fewer pieces than jobs idles some)
            count = min(MAX_PARTS, jobs * rounds)
        parts = [Part(0, have, have)] if have else []
        if rest > 0:
            parts += [Part(s + have, e + have) for s, e in part_bounds(rest, count)]
        return cls(size, parts)

    @property
    def pending(self) -> list[int]:
        """Indexes of the parts still to fetch."""
        return [i for i, p in enumerate(self.parts) if not p.complete]

    @property
    def furthest(self) -> int:
        """The furthest byte written: ``pwrite`` grows the file at least to there."""
        return max((p.next for p in self.parts if p.done), default=0)

    def to_json(self, relpath: str) -> str:
        """The state file's text; it names the file it belongs to."""
        parts = [[p.start, p.end, p.done] for p in self.parts]
        return json.dumps({"relpath": relpath, "size": self.size, "parts": parts})


def load_state(
    path: Path, relpath: str, *, dir_fd: int | None = None
) -> tuple[PartsState | None, str | None]:
    """Read the state file of ``relpath``: (state, None), or (None, why it cannot be used),
    or (None, None) when there is none. Any content is survivable: nothing here raises.
    With ``dir_fd``, ``path.name`` in that open directory (-1: the directory is absent)."""
    if dir_fd is not None and dir_fd < 0:
        return None, None
    try:
        # O_NONBLOCK: a FIFO planted at the name must not hang us; it is refused below.
        fd = _open(path, os.O_RDONLY | os.O_NONBLOCK, dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENAMETOOLONG):  # none (or none can exist)
            return None, None
        return None, f"cannot read it ({exc.strerror})"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, "it is not a regular file"
        raw = os.read(fd, _MAX_STATE + 1)
    except OSError as exc:
        return None, f"cannot read it ({exc.strerror})"
    finally:
        os.close(fd)
    if len(raw) > _MAX_STATE:
        return None, "it is not a valid state file"
    try:
        data = json.loads(raw)
        if data["relpath"] != relpath:
            return None, "it belongs to another file"
        state = PartsState(int(data["size"]), [Part(*map(int, p)) for p in data["parts"]])
    except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError):
        return None, "it is not a valid state file"
    problem = _inconsistent(state)
    return (None, problem) if problem else (state, None)


def _inconsistent(state: PartsState) -> str | None:
    """Why the parts do not tile ``[0, size)`` exactly with sane progress, or None."""
    pos = 0
    for p in state.parts:
        if p.start != pos or p.end <= p.start or not 0 <= p.done <= p.end - p.start:
            return "its parts do not cover the file"
        pos = p.end
    if pos != state.size or state.size <= 0:
        return "its parts do not cover the file"
    return None


def _open(path: Path, flags: int, dir_fd: int | None, mode: int = 0o644) -> int:
    """Open by path, or ``path.name`` in an open directory; never through a symlink."""
    at = path.name if dir_fd is not None else path
    return os.open(at, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode, dir_fd=dir_fd)


def save_state(
    path: Path, state: PartsState, *, relpath: str, durable: bool, dir_fd: int | None = None
) -> None:
    """Write the state through a temporary name and rename it into place. Never follows a
    symlink (O_NOFOLLOW): one planted at either name cannot redirect the write. With
    ``dir_fd``, both names are in that open directory (:mod:`chandra_download.tree`)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = _open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, dir_fd)
    except OSError as exc:
        raise LocalError.from_os(exc, tmp) from None
    try:
        os.write(fd, state.to_json(relpath).encode())
        if durable:
            flush(fd)
    except OSError as exc:
        # (a full disk): no half-written temporary left behind
        os.unlink(tmp.name if dir_fd is not None else tmp, dir_fd=dir_fd)
        raise LocalError.from_os(exc, tmp) from None
    finally:
        os.close(fd)
    try:
        # rename replaces a symlink at `path` itself, never its target
        if dir_fd is not None:
            os.replace(tmp.name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise LocalError.from_os(exc, path) from None
