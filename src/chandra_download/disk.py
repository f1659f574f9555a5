"""Local file primitives of the transfer: the ``.part`` lock, flushing, safe removal."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from . import locks
from .errors import LocalError


def acquire(part: Path, dir_fd: int | None = None) -> int:
    """Open and lock the live ``.part`` file; the lock holder is its only writer.

    ``flock`` where the file system has it, else an ``fcntl`` lock, else a lock file beside
    the ``.part`` (see :mod:`chandra_download.locks`); with ``dir_fd``, ``part.name`` in that
    open directory. Give the descriptor back with :func:`release`.
    """
    return locks.lock_part(part, dir_fd)


def release(fd: int) -> None:
    """Close a descriptor :func:`acquire` gave, letting its lock go."""
    locks.release(fd)


def unlink_quietly(path: Path) -> None:
    """Remove a file of ours if it is there (a name too long to exist is not there)."""
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENAMETOOLONG):
            raise LocalError.from_os(exc, path) from None


def flush(fd: int, *, data_only: bool = False) -> None:
    """fsync (or fdatasync) a file; file systems without it are let be, but EIO is raised:
    it means written data was lost."""
    sync = getattr(os, "fdatasync", None) if data_only else None  # macOS has no fdatasync
    try:
        (sync or os.fsync)(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):
            raise


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the file itself is flushed
    finally:
        os.close(fd)


def make_dirs(path: Path, made: set[str] | None = None) -> None:
    """``mkdir -p`` with one clear error naming the path; with ``made`` (a session's
    directories known to exist), once per directory (a ``mkdir`` and a ``stat`` per file
    saved): a caller whose write there fails with ENOENT makes it again, without ``made``."""
    key = os.fspath(path)
    if made is not None and key in made:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalError.from_os(exc, exc.filename or path) from None
    if made is not None:
        made.add(key)
