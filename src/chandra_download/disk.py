"""Local file primitives of the transfer: the ``.part`` lock, flushing, safe removal."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from .errors import LocalError
from .log import vlog


def acquire(part: Path) -> int:
    """Open and lock the live ``.part`` file; the lock holder is its only writer.

    A waiter wakes when the holder closes; if the holder renamed the ``.part`` into place
    meanwhile, the inode it locked is no longer at the ``.part`` name and the waiter locks a
    fresh one (and then finds the file done when it looks again).
    """
    while True:
        try:
            # O_NOFOLLOW: a symlink planted at the .part name must not be written through.
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise LocalError.from_os(exc, part) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            vlog(2, "Waiting for another process writing %s", part.name[: -len(".part")])
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            live = os.lstat(part).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            live = False
        if live:
            return fd
        os.close(fd)


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


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with one clear error naming the path."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalError.from_os(exc, exc.filename or path) from None
