"""What every file of a session shares: settings, the stop signal, the reporter, and the local
problems told so far."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import SessionConfig
from .errors import LocalError
from .log import vlog
from .progress import Reporter
from .record import RecordBook
from .tree import Tree

if TYPE_CHECKING:
    from .finisher import Finisher

#: Local errors that stop every file alike (a full, read-only or forbidden disk, a bad output
#: path): told once. Others (a symlink in one file's way) are told for each file they touch.
_SHARED_CAUSES = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.ENAMETOOLONG,
    errno.EIO,
}


@dataclass
class Context:
    """What every file of a session shares: settings, the stop signal, the reporter and
    the local problems seen so far (each cause is logged once, not once per file)."""

    config: SessionConfig
    stop: threading.Event
    reporter: Reporter = field(default_factory=Reporter)
    disk_full: threading.Event = field(default_factory=threading.Event)
    #: What earlier sessions fetched (record.py): tells a file the archive changed.
    records: RecordBook = field(default_factory=RecordBook)
    #: The session's finisher (the engine's, while it runs): verified files are flushed and
    #: renamed there, off their transfer slot. None: each file finishes on its worker.
    finisher: Finisher | None = None
    #: The output tree's directories, opened race-free and kept open per ObsId (tree.py).
    tree: Tree = field(default_factory=Tree)
    _seen: dict[int | None, str] = field(default_factory=dict)  # errno -> first path
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def notify(self, event: str, *args: object) -> None:
        """Send an optional event (``file_retry``...): duck-typed reporters may lack it."""
        handler = getattr(self.reporter, event, None)
        if handler is not None:
            handler(*args)

    def local_problem(self, exc: LocalError) -> str:
        """Log a local error once per cause; the reason a file that met it gives: the
        whole message for the first file, a pointer to it for the others."""
        with self._lock:
            first = self._seen.get(exc.errno) if exc.errno in _SHARED_CAUSES else None
            if first is None and exc.errno in _SHARED_CAUSES:
                self._seen[exc.errno] = exc.path
        if exc.no_space:
            self.disk_full.set()
        if first is not None:
            return f"not written: the same local problem as {first}"
        vlog(0, "%s", exc)
        return str(exc)


def sha256_of(fd: int) -> str:
    digest, pos = hashlib.sha256(), 0
    while chunk := os.pread(fd, 1 << 20, pos):
        digest.update(chunk)
        pos += len(chunk)
    return digest.hexdigest()
