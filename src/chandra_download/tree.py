"""Directories below the output directory, opened race-free: never through a symlink.

Every directory from the output directory down is opened with ``O_DIRECTORY | O_NOFOLLOW``
relative to its parent's descriptor, and every file is opened, renamed and removed relative
to its directory's descriptor. A symlink swapped in for a directory after any check is then
refused by the kernel at the ``open``, never followed (a path re-resolved per call would
follow it). The output directory itself is the user's choice and may be a symlink.

A :class:`Tree` (one per session, :attr:`Context.tree <chandra_download.context.Context>`)
keeps the descriptors open while an ObsId's files run, so a file costs no directory opens;
the engine closes an ObsId's descriptors once its last file settles (:meth:`Tree.forget`)
and the rest at the end of the session (:meth:`Tree.close`). A file holds its directories
(:meth:`Tree.hold`) from its lock to its end, on the finisher too, so neither closes a
descriptor under a rename in flight.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LocalError
from .statedir import PARTIAL, STATE_DIR, Spot

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: A file we read or write below the output directory: never through a symlink, never a
#: FIFO's endless wait (O_NONBLOCK is harmless on a regular file).
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC

#: What an ``open`` of a symlink with O_NOFOLLOW|O_DIRECTORY raises, by platform.
_LINKED = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


@dataclass
class _Open:
    """One cached directory descriptor and the files holding it (see :meth:`Tree.hold`)."""

    fd: int
    ident: tuple[int, int]  # (st_dev, st_ino): the directory it was opened as
    held: int = 0
    dropped: bool = False  # forgotten: closed once the last holder lets go


@dataclass(frozen=True)
class Dirs:
    """Open descriptors of a file's directory and of its temporaries' directory; -1 for one
    that does not exist (only when opened without ``create``)."""

    target_fd: int
    partial_fd: int
    _opens: tuple[_Open, ...] = field(default=(), repr=False, compare=False)

    @property
    def complete(self) -> bool:
        return self.target_fd >= 0 and self.partial_fd >= 0


def symlink_refusal(path: Path) -> LocalError:
    """The one line for a directory (or file) in our way that is a symlink."""
    return LocalError(f"refusing to write below {path}: it is a symlink", path, errno.ELOOP)


class Tree:
    """Directory descriptors of one session, opened one component at a time, cached.

    Keys are ``(outdir, names)``, the output directory as text (a Path's hash and ``==``
    cost more than the lookups' other work); ``(outdir, ())`` is the output directory. A file
    :meth:`hold` s its two directories while it uses them (on a worker, then the finisher):
    a descriptor forgotten or closed meanwhile stays open until its last holder lets go, so
    its number is never reused under a rename in flight. Safe to use from many threads.
    """

    def __init__(self) -> None:
        self._fds: dict[tuple[str, tuple[str, ...]], _Open] = {}
        self._lock = threading.Lock()
        self._closed = False

    def hold(self, spot: Spot, *, create: bool = True) -> Dirs:
        """The descriptors of ``spot``'s directory and of its temporaries' directory (made
        when ``create``), held until :meth:`let_go`. A symlink or a file in the way raises
        LocalError naming it. With ``create`` (a file is to be written), a cached directory
        moved or removed since it was opened is opened anew at its name (a rename into one
        would put the file elsewhere, or fail)."""
        with self._lock:
            try:
                opens = self._opens(spot, create)
            finally:
                if self._closed:  # (held after the session's end: nothing stays cached)
                    self._drop_cached()
        fds = [-1 if o is None else o.fd for o in opens]
        return Dirs(fds[0], fds[1], tuple(o for o in opens if o is not None))

    def _opens(self, spot: Spot, create: bool) -> tuple[_Open | None, _Open | None]:
        top, target, partial = str(spot.outdir), tuple(spot.target_dirs), tuple(spot.partial_dirs)
        if create:
            self._recheck(top, target)
            self._recheck(top, partial)
        opens = (self._dir(top, target, create), self._dir(top, partial, create))
        for o in opens:
            if o is not None:
                o.held += 1
        return opens

    def let_go(self, dirs: Dirs) -> None:
        """A file is done with the descriptors :meth:`hold` gave."""
        with self._lock:
            for o in dirs._opens:
                o.held -= 1
                if o.dropped and o.held == 0:
                    os.close(o.fd)

    @contextmanager
    def held(self, spot: Spot, *, create: bool = False) -> Iterator[Dirs]:
        """:meth:`hold` for the length of a ``with`` block (a look, a read)."""
        dirs = self.hold(spot, create=create)
        try:
            yield dirs
        finally:
            self.let_go(dirs)

    def _dir(self, outdir: str, names: tuple[str, ...], create: bool) -> _Open | None:
        """The descriptor of ``outdir/names...`` (None: a directory on the way is missing
        and not ``create``)."""
        cached = self._fds.get((outdir, names))
        if cached is not None:
            return cached
        if not names:
            fd = _open_top(Path(outdir), create)
        else:
            parent = self._dir(outdir, names[:-1], create)
            if parent is None:
                return None
            fd = _open_child(parent.fd, names[-1], Path(outdir, *names), create)
        if fd < 0:
            return None
        st = os.fstat(fd)
        self._fds[(outdir, names)] = opened = _Open(fd, (st.st_dev, st.st_ino))
        return opened

    def _recheck(self, outdir: str, names: tuple[str, ...]) -> None:
        """Drop the cached descriptors from the first directory on the way to ``names``
        that is no longer the one at its name (one ``lstat`` per directory)."""
        for i in range(1, len(names) + 1):
            parent, here = (
                self._fds.get((outdir, names[: i - 1])),
                self._fds.get((outdir, names[:i])),
            )
            if parent is None or here is None:
                return
            if not _still_at(parent.fd, names[i - 1], here.ident):
                for key in [k for k in self._fds if k[0] == outdir and _below(k[1], (names[:i],))]:
                    self._drop(self._fds.pop(key))
                return

    def forget(self, outdir: Path, obsid: str) -> None:
        """Close the descriptors of one ObsId's directories (its files are all settled);
        one still held closes when let go."""
        mine, top = ((obsid,), (STATE_DIR, PARTIAL, obsid)), str(outdir)
        with self._lock:
            for key in [k for k in self._fds if k[0] == top and _below(k[1], mine)]:
                self._drop(self._fds.pop(key))

    def close(self) -> None:
        """Close every descriptor (the session is over); one still held closes when let go."""
        with self._lock:
            self._closed = True
            self._drop_cached()

    def _drop_cached(self) -> None:
        opens, self._fds = list(self._fds.values()), {}
        for o in opens:
            self._drop(o)

    @staticmethod
    def _drop(o: _Open) -> None:
        o.dropped = True
        if o.held == 0:
            os.close(o.fd)

    def __len__(self) -> int:
        return len(self._fds)


def _below(names: tuple[str, ...], tops: tuple[tuple[str, ...], ...]) -> bool:
    return any(names[: len(top)] == top for top in tops)


def _still_at(parent: int, name: str, ident: tuple[int, int]) -> bool:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


def _open_top(outdir: Path, create: bool) -> int:
    if create:
        try:
            outdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalError.from_os(exc, exc.filename or outdir) from None
    try:
        return os.open(outdir, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT and not create:
            return -1
        raise LocalError.from_os(exc, outdir) from None


def _open_child(parent: int, name: str, path: Path, create: bool) -> int:
    """Open one directory below its parent's descriptor, making it when ``create``."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            return -1
    except OSError as exc:
        raise _in_the_way(parent, name, path, exc) from None
    try:
        os.mkdir(name, 0o777, dir_fd=parent)
    except FileExistsError:
        pass  # a rival made it meanwhile (or planted something: the open below says)
    except OSError as exc:
        raise LocalError.from_os(exc, path) from None
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        raise _in_the_way(parent, name, path, exc) from None


def _in_the_way(parent: int, name: str, path: Path, exc: OSError) -> LocalError:
    """Say what is in the way of a directory: a symlink, a file, or the OS's error."""
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except OSError:
        return LocalError.from_os(exc, path)
    if stat.S_ISLNK(mode):
        return symlink_refusal(path)
    if not stat.S_ISDIR(mode):
        # ENOTDIR: the same for every file below it, so told once (context.py)
        return LocalError(f"cannot write below {path}: it is not a directory", path, errno.ENOTDIR)
    return LocalError.from_os(exc, path)


def lstat_at(dir_fd: int, name: str, path: Path) -> os.stat_result | None:
    """``lstat`` of ``name`` in an open directory; None when absent (or too long to exist,
    or its directory is absent: ``dir_fd`` -1)."""
    if dir_fd < 0:
        return None
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return None
        raise LocalError.from_os(exc, path) from None


def open_at(dir_fd: int, name: str, flags: int, mode: int = 0o644) -> int:
    """Open a file in an open directory, never through a symlink (OSError as the OS says)."""
    return os.open(name, flags | FILE_FLAGS, mode, dir_fd=dir_fd)


def unlink_at(dir_fd: int, name: str, path: Path | Callable[[], Path]) -> None:
    """Remove a file of ours from an open directory if it is there (``path``, or what makes
    it, names it in an error: made only then)."""
    if dir_fd < 0:
        return
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENAMETOOLONG):
            raise LocalError.from_os(exc, path() if callable(path) else path) from None


def rename_at(src_fd: int, src: str, dst_fd: int, dst: str, path: Path) -> None:
    """Rename between two open directories (``path`` names the destination in errors)."""
    try:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
    except OSError as exc:
        raise LocalError.from_os(exc, path) from None


def fsync_at(dir_fd: int) -> None:
    """Make a rename in an open directory durable (some file systems refuse: let be)."""
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # the file itself is flushed
