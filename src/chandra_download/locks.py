"""The lock on a live ``.part`` file: ``flock``, else an OFD ``fcntl`` lock, else a lock file.

Cluster file systems often have no locks at all: Lustre mounted ``noflock``, NFSv3 without a
lock daemon, some FUSE file systems answer ``flock`` and ``fcntl`` with ENOLCK, ENOSYS or
EOPNOTSUPP. There the lock is a file ``<part>.lock`` created with ``O_EXCL`` (atomic on every
such file system, NFS included) holding its holder's host, pid, process start time and a
random token, whose modification time a heartbeat thread renews every :data:`HEARTBEAT`
seconds while it is held.

A lock file is taken over when its holder is gone: on the same host (and pid name space) a
pid that no longer runs, or runs a later process; anywhere, a file unchanged for
:data:`stale_after` seconds as watched by the waiter (its own clock: no skew between hosts),
or one older than ten times that. Taking over happens under a second lock file
(``<part>.lock.break``) so two waiters never break one lock twice, by renaming the stale file
aside and checking it was the one judged stale (a live one renamed by mistake is linked
back). A holder that finds its lock file gone or replaced (it was stopped longer than the
stale time) loses the right to write: its ``.part`` descriptor is replaced by a read-only one,
so no later write of it lands.

``CHANDRA_DOWNLOAD_LOCKS=files`` uses lock files even where ``flock`` works (Lustre mounted
``localflock``, whose locks do not reach other nodes); ``CHANDRA_DOWNLOAD_LOCK_STALE`` sets
the stale time in seconds. ``CHANDRA_DOWNLOAD_TEST_LOCKS_FAIL=ENOLCK`` (a test switch) makes
``flock`` and ``fcntl`` locks fail with that error, as such a file system does.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import LocalError
from .log import vlog

#: Errors of a file system that has no locks (rather than a lock held by someone else).
NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
#: Seconds between two renewals of a held lock file.
HEARTBEAT = 2.0
#: Seconds a lock file may stay unrenewed before it is stale (default; see stale_after()).
STALE = 20.0
#: Seconds between two looks at a lock file held by someone else.
POLL = 0.2
#: Seconds a lock file naming no holder (empty: its creator was killed before writing it;
#: or not ours) is watched unchanged before it is taken over. Its holder writes it, and
#: flushes it, right after creating it, so this is a margin, not the stale time.
NAMELESS = 5.0


class Kind(Enum):
    """Which lock guards the ``.part`` files of one file system."""

    FLOCK = "flock"
    FCNTL = "fcntl (open file description) locks"
    FILES = "lock files"


def stale_after() -> float:
    """Seconds without renewal after which a lock file is stale."""
    try:
        return max(1.0, float(os.environ.get("CHANDRA_DOWNLOAD_LOCK_STALE", STALE)))
    except ValueError:
        return STALE


# -- the kernel's locks ---------------------------------------------------------------------
def _failing() -> int | None:
    """The errno the test switch makes every kernel lock fail with, if set."""
    name = os.environ.get("CHANDRA_DOWNLOAD_TEST_LOCKS_FAIL")
    return getattr(errno, name, errno.ENOLCK) if name else None


def _flock(fd: int, wait: bool) -> None:
    code = _failing()
    if code is not None:
        raise OSError(code, os.strerror(code))
    fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)


def _ofd(fd: int, wait: bool) -> None:
    """An exclusive open-file-description lock on the whole file (Linux): unlike classic
    POSIX locks it is not dropped when another descriptor of the file is closed."""
    code = _failing()
    if code is not None:
        raise OSError(code, os.strerror(code))
    cmd = getattr(fcntl, "F_OFD_SETLKW" if wait else "F_OFD_SETLK", None)
    if cmd is None:
        raise OSError(errno.ENOSYS, "no open file description locks here")
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks)
    arg = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, cmd, arg)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise BlockingIOError(exc.errno, exc.strerror) from None
        raise


_LOCKERS = {Kind.FLOCK: _flock, Kind.FCNTL: _ofd}
_kinds: dict[tuple[int, str], Kind] = {}  # (st_dev, switches) -> the kind that works there
_told: set[tuple[int, Kind]] = set()
_state_lock = threading.Lock()


@dataclass(frozen=True)
class Name:
    """A file name in a directory: by path, or relative to an open directory (``dir_fd``),
    which a rename of a directory above cannot redirect."""

    path: Path
    dir_fd: int | None = None

    def _at(self) -> str | Path:
        return self.path.name if self.dir_fd is not None else self.path

    def sibling(self, suffix: str) -> Name:
        return Name(self.path.with_name(self.path.name + suffix), self.dir_fd)

    def open(self, flags: int, mode: int = 0o644) -> int:
        return os.open(self._at(), flags | os.O_NOFOLLOW, mode, dir_fd=self.dir_fd)

    def stat(self) -> os.stat_result:
        return os.stat(self._at(), dir_fd=self.dir_fd, follow_symlinks=False)

    def unlink(self) -> None:
        try:
            os.unlink(self._at(), dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass

    def rename_to(self, other: Name) -> None:
        os.rename(self._at(), other._at(), src_dir_fd=self.dir_fd, dst_dir_fd=other.dir_fd)

    def link_to(self, other: Name) -> None:
        os.link(self._at(), other._at(), src_dir_fd=self.dir_fd, dst_dir_fd=other.dir_fd)


def _open_part(part: Name) -> int:
    try:
        # O_NOFOLLOW: a symlink planted at the .part name must not be written through.
        return part.open(os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise LocalError.from_os(exc, part.path) from None


def _is_live(part: Name, ino: int) -> bool:
    """Whether the open file (inode ``ino``) is still the one at the ``.part`` name (not
    renamed into place)."""
    try:
        return part.stat().st_ino == ino
    except FileNotFoundError:
        return False


def _kernel_lock(kind: Kind, part: Name, fd: int) -> None:
    lock = _LOCKERS[kind]
    try:
        lock(fd, False)
    except BlockingIOError:
        vlog(2, "Waiting for another process writing %s", part.path.name)
        lock(fd, True)


def _kind_for(part: Name, fd: int, dev: int) -> Kind:
    """The lock that works on this file system (``dev``), found once per file system (the
    first that does not answer "no locks here")."""
    forced = os.environ.get("CHANDRA_DOWNLOAD_LOCKS", "")
    key = (dev, forced + os.environ.get("CHANDRA_DOWNLOAD_TEST_LOCKS_FAIL", ""))
    with _state_lock:
        if key in _kinds:
            return _kinds[key]
    kind, why = (Kind.FILES, "CHANDRA_DOWNLOAD_LOCKS=files") if forced == "files" else _probe(fd)
    with _state_lock:
        _kinds.setdefault(key, kind)
        told = (key[0], kind) in _told
        _told.add((key[0], kind))
    if kind is not Kind.FLOCK and not told:
        where = part.path.parent
        vlog(0, "the file system of %s has no flock locks (%s): using %s", where, why, kind.value)
    return kind


def _probe(fd: int) -> tuple[Kind, str]:
    """Try each kernel lock without waiting; the first that the file system has."""
    why = ""
    for kind in (Kind.FLOCK, Kind.FCNTL):
        try:
            _LOCKERS[kind](fd, False)
        except BlockingIOError:
            return kind, ""  # held by someone else: the lock exists here
        except OSError as exc:
            if exc.errno not in NO_LOCKS:
                raise
            why = why or os.strerror(exc.errno or 0)
            continue
        _unlock(kind, fd)
        return kind, ""
    return Kind.FILES, why


def _unlock(kind: Kind, fd: int) -> None:
    if kind is Kind.FLOCK:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        unlock = struct.pack("hhqqi4x", fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, unlock)  # type: ignore[attr-defined]


# -- the public pair --------------------------------------------------------------------------
def lock_part(part: Path, dir_fd: int | None = None) -> int:
    """Open and lock the live ``.part`` file; the lock holder is its only writer.

    A waiter wakes when the holder lets go; if the holder renamed the ``.part`` into place
    meanwhile, the file it locked is no longer at the ``.part`` name and the waiter locks a
    fresh one (and then finds the file done when it looks again).

    Parameters
    ----------
    part : Path
        The ``.part`` file (with ``dir_fd``, only its name is used, in that directory).
    dir_fd : int, optional
        An open directory holding the ``.part`` (and its lock file).

    Returns
    -------
    int
        The open descriptor; give it back with :func:`release`.
    """
    name = Name(part, dir_fd)
    while True:
        fd = _open_part(name)
        try:
            st = os.fstat(fd)  # (its inode and device: an open file's never change)
            kind = _kind_for(name, fd, st.st_dev)
            if kind is Kind.FILES:
                os.close(fd)
                return _register(name, _lock_file(name))
            _kernel_lock(kind, name, fd)
        except OSError as exc:
            os.close(fd)
            raise LocalError.from_os(exc, part) from None
        if _is_live(name, st.st_ino):
            return fd
        os.close(fd)


def release(fd: int) -> None:
    """Close a descriptor :func:`lock_part` gave, letting the lock go (a lock file is
    removed, if it is still ours)."""
    with _state_lock:
        held = _held.pop(fd, None)
    os.close(fd)
    if held is not None:
        held.drop()


# -- lock files -------------------------------------------------------------------------------
@dataclass
class Holder:
    """Who holds a lock file, as written in it."""

    host: str
    pid: int
    start: str  # the process's start time (/proc), to tell a reused pid apart
    pidns: str  # the pid name space: pids of another container mean nothing here
    token: str

    @classmethod
    def me(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), _start_of(os.getpid()), _pidns(), "")

    def gone(self) -> bool:
        """Whether the holder surely no longer runs (only knowable on its own host)."""
        me = Holder.me()
        if (self.host, self.pidns) != (me.host, me.pidns) or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # someone else's live process
        start = _start_of(self.pid)
        return bool(self.start and start and start != self.start)


def _start_of(pid: int) -> str:
    """A process's start time in clock ticks since boot (Linux), else ""."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _pidns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass
class _Seen:
    """One look at someone else's lock file, and since when it has not changed."""

    signature: tuple[int, int, int]  # inode, mtime, size
    token: str | None
    holder: Holder | None
    age: float  # seconds since its last renewal, by the wall clock
    since: float = field(default_factory=time.monotonic)


def _look(path: Name) -> _Seen | None:
    """The lock file's state, read through a fresh open (NFS: fresh attributes); None when
    there is no lock file."""
    try:
        fd = path.open(os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st, raw = os.fstat(fd), os.read(fd, 4096)
    finally:
        os.close(fd)
    holder = _parse(raw)
    return _Seen(
        (st.st_ino, st.st_mtime_ns, st.st_size),
        holder.token if holder else None,
        holder,
        time.time() - st.st_mtime,
    )


def _parse(raw: bytes) -> Holder | None:
    """The holder a lock file names; None for one half-written or not ours (untrusted)."""
    try:
        d = json.loads(raw)
        return Holder(
            str(d["host"]), int(d["pid"]), str(d["start"]), str(d["pidns"]), str(d["token"])
        )
    except (ValueError, KeyError, TypeError):
        return None


def _abandoned(seen: _Seen, first: _Seen | None) -> bool:
    """Whether the lock file's holder is gone: dead on this host, or no renewal for the stale
    time (watched here, or older than ten stale times by the clock)."""
    stale = stale_after()
    if seen.holder is not None and seen.holder.gone():
        return True
    if seen.age > 10 * stale:
        return True
    if seen.holder is None:
        stale = min(stale, NAMELESS)
    return first is not None and time.monotonic() - first.since > stale


@dataclass
class HeldFile:
    """A lock file of ours, renewed by the heartbeat while held."""

    path: Name
    fd: int  # the lock file's own descriptor: renewals touch our inode, never a successor's
    ino: int
    part_fd: int = -1

    def ours(self) -> bool | None:
        """True while the lock file at the name is ours; False when gone or replaced; None
        when the file system cannot say now."""
        try:
            return self.path.stat().st_ino == self.ino
        except FileNotFoundError:
            return False
        except OSError:
            return None

    def renew(self) -> None:
        os.utime(self.fd)

    def drop(self) -> None:
        if self.ours():
            self.path.unlink()
        os.close(self.fd)


def _create(path: Name, holder: Holder) -> HeldFile | None:
    """Create the lock file atomically; None when it exists already."""
    try:
        fd = path.open(os.O_RDWR | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return None
    body = json.dumps(holder.__dict__ | {"since": time.time()}).encode()
    try:
        os.write(fd, body)
    except OSError:
        os.close(fd)
        path.unlink()
        raise
    try:
        os.fsync(fd)  # (NFS: other hosts see the holder now, not at our close)
    except OSError:
        pass
    return HeldFile(path, fd, os.fstat(fd).st_ino)


def _lock_file(part: Name) -> HeldFile:
    """Take the lock file of ``part``, waiting for its holder or taking over from a gone one."""
    path = part.sibling(".lock")
    holder = Holder.me()
    holder.token = secrets.token_hex(8)
    first: _Seen | None = None
    said = False
    while True:
        held = _create(path, holder)
        if held is not None:
            return held
        seen = _look(path)
        if seen is None:
            continue  # let go meanwhile: try again at once
        if first is None or first.signature != seen.signature:
            first = seen  # renewed (or a new holder): watch it afresh
        if _abandoned(seen, first):
            _take_over(path, seen, holder)
            first = None
            continue
        if not said:
            vlog(2, "Waiting for another process writing %s", part.path.name)
            said = True
        time.sleep(POLL * (0.5 + random.random()))


def _take_over(path: Name, seen: _Seen, me: Holder) -> None:
    """Remove an abandoned lock file, under the break lock; a live lock file renamed aside
    by mistake (its holder changed in between) is linked back."""
    brk = path.sibling(".break")
    guard = _create(brk, me)
    if guard is None:
        _clear_stale_break(brk)
        return
    try:
        now = _look(path)
        if now is None or now.signature != seen.signature:
            return  # it changed since we judged it: judge again
        aside = path.sibling(f".{me.token}.stale")
        path.rename_to(aside)
        moved = _look(aside)
        if moved is not None and moved.signature[0] != seen.signature[0]:
            _put_back(aside, path)
            aside.unlink()
            return
        vlog(2, "Took over the lock of %s from %s", path.path.name, _who(seen))
        aside.unlink()
    finally:
        guard.drop()


def _put_back(aside: Name, path: Name) -> None:
    try:
        aside.link_to(path)
    except FileExistsError:
        vlog(0, "lock %s: a live lock was moved aside and could not be put back", path.path)


def _clear_stale_break(brk: Name) -> None:
    """A break lock is held for an instant; one left by a crash is removed."""
    seen = _look(brk)
    if seen is not None and (
        (seen.holder is not None and seen.holder.gone()) or seen.age > stale_after()
    ):
        brk.unlink()
    time.sleep(POLL * random.random())


def _who(seen: _Seen) -> str:
    h = seen.holder
    return f"pid {h.pid} on {h.host}" if h else "an unknown holder"


# -- held lock files and their heartbeat -------------------------------------------------------
_held: dict[int, HeldFile] = {}  # .part descriptor -> its lock file
_beat: threading.Thread | None = None


def _register(part: Name, held: HeldFile) -> int:
    global _beat
    try:
        fd = _open_part(part)
    except LocalError:
        held.drop()
        raise
    held.part_fd = fd
    with _state_lock:
        _held[fd] = held
        if _beat is None or not _beat.is_alive():
            _beat = threading.Thread(target=_heartbeat, name="chandra-lock-heartbeat", daemon=True)
            _beat.start()
    return fd


def _heartbeat() -> None:
    """Renew every held lock file; revoke the writes of one found taken over."""
    while True:
        time.sleep(HEARTBEAT)
        with _state_lock:
            held = list(_held.values())
        for h in held:
            _renew(h)


def _renew(h: HeldFile) -> None:
    ours = h.ours()
    try:
        if ours is False:
            _revoke(h)
        elif ours:
            h.renew()
    except OSError:
        pass  # (released meanwhile, or the file system hiccuped: the next beat tries again)


def _revoke(h: HeldFile) -> None:
    """Our lock file was taken over (we were stopped past the stale time): no later write
    of ours may land, so the ``.part`` descriptor now points at a read-only null file."""
    with _state_lock:
        if _held.get(h.part_fd) is not h:
            return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, h.part_fd)
    finally:
        os.close(null)
    vlog(0, "lost the lock %s to another process (this one was stalled); not writing", h.path.path)
