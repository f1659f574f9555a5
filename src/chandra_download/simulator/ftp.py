"""A loopback FTP/FTPS server for an archive tree (pyftpdlib), with link shaping and faults."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.exceptions import _FileReadWriteError
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from .faults import corrupt_bytes, cut_length

__all__ = ["ArchiveFTPServer", "FTPStats"]

_RETR_FAULTS = ("drop", "stall", "status", "truncate", "corrupt")


class FTPStats:
    """What the server saw: RETR per path, logins, connections (thread-safe counters)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.retr: Counter[str] = Counter()
        self.logins = 0
        self.failed_logins = 0
        self.connections = 0
        self.peak_connections = 0
        self.total_connections = 0

    def connected(self, delta: int) -> None:
        with self.lock:
            self.connections += delta
            if delta > 0:
                self.total_connections += 1
            self.peak_connections = max(self.peak_connections, self.connections)


class _Server(ThreadedFTPServer):
    poll_timeout = 0.05
    join_timeout = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._exit = threading.Event()  # per instance: pyftpdlib shares one across servers
        super().__init__(*args, **kwargs)


class _ShapedFile:
    """A file object for RETR that applies link pacing and one data fault."""

    def __init__(self, fd: Any, handler: Any) -> None:
        self._fd, self._h = fd, handler
        self.name = fd.name
        self._sent = 0
        self._total: int | None = None
        self._fault = handler._pending_fault
        handler._pending_fault = None

    closed = property(lambda self: self._fd.closed)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._fd.seek(pos, whence)

    def tell(self) -> int:
        return self._fd.tell()

    def close(self) -> None:
        self._fd.close()

    def read(self, n: int) -> bytes:
        if self._total is None:  # body length: from the REST position to the end
            self._total = os.fstat(self._fd.fileno()).st_size - self._fd.tell()
        link, fault = self._h.owner.link, self._fault
        if link is not None:
            n = min(n, link.chunk_size(n))
        kind = getattr(fault, "kind", None)
        if kind in ("drop", "truncate"):
            cut = cut_length(fault, self._total)
            if self._sent >= cut:
                if kind == "truncate":
                    return b""
                raise _FileReadWriteError(errno.ECONNRESET, "Simulated dropped connection")
            n = min(n, cut - self._sent)
        elif kind == "stall" and fault is not None:
            if self._sent >= fault.after_bytes:
                self._fault = None
                self._h.owner._stop.wait(fault.seconds)
            else:
                n = min(n, fault.after_bytes - self._sent)
        data = self._fd.read(n)
        if kind == "corrupt" and fault is not None and data:
            data = corrupt_bytes(data, self._sent, self._total, fault.after_bytes, fault.seed)
        if link is not None and data:
            link.pace(self._h.link_state, len(data))
        self._sent += len(data)
        return data


class _FS(AbstractedFS):
    def format_list(self, basedir: str, listing: Any, *args: Any, **kwargs: Any) -> Any:
        yield from super().format_list(basedir, listing, *args, **kwargs)
        for name in self._hostile(basedir):
            yield f"-rw-r--r--   1 ftp      ftp            10 Jan 01 00:00 {name}\r\n".encode()

    def format_mlsx(self, basedir: str, listing: Any, *args: Any, **kwargs: Any) -> Any:
        yield from super().format_mlsx(basedir, listing, *args, **kwargs)
        for name in self._hostile(basedir):
            yield f"type=file;size=10; {name}\r\n".encode()

    def _hostile(self, basedir: str) -> tuple[str, ...]:
        """Entries of a ``traversal`` fault for this directory listing."""
        owner = self.cmd_channel.owner
        if owner.faults is None:
            return ()
        rel = Path(os.path.relpath(basedir, owner.root)).as_posix().strip("./")
        fault = owner.faults.match("ftp", rel + "/", ("traversal",))
        return fault.entries if fault is not None else ()

    def open(self, filename: str, mode: str) -> Any:
        fd = super().open(filename, mode)
        handler = self.cmd_channel
        if "r" in mode and (handler.owner.link is not None or handler._pending_fault is not None):
            return _ShapedFile(fd, handler)
        return fd


class _HandlerMixin:
    """Hooks shared by the plain and TLS handler classes (``owner`` is the ArchiveFTPServer)."""

    owner: ArchiveFTPServer
    use_sendfile = False

    def on_connect(self) -> None:
        self.link_state = self.owner.link.new_connection() if self.owner.link else None
        self._pending_fault = None
        self._counted = True
        self.owner.stats.connected(+1)

    def on_disconnect(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            self.owner.stats.connected(-1)

    def on_login(self, username: str) -> None:
        with self.owner.stats.lock:
            self.owner.stats.logins += 1

    def handle_auth_failed(self, msg: str, password: str) -> None:
        # Counted here, before the 530 goes out: pyftpdlib's on_login_failed runs after it,
        # so a client could see the refusal before the count (a test's race under load).
        with self.owner.stats.lock:
            self.owner.stats.failed_logins += 1
        super().handle_auth_failed(msg, password)  # type: ignore[misc]  # (a mixin)

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        link = self.owner.link
        if link is not None and cmd in ("RETR", "LIST", "MLSD", "NLST", "SIZE", "CWD"):
            link.delay(self.owner._stop)
        super().process_command(cmd, *args, **kwargs)  # type: ignore[misc]

    def ftp_RETR(self, file: str) -> Any:
        rel = Path(os.path.relpath(file, self.owner.root)).as_posix()
        with self.owner.stats.lock:
            self.owner.stats.retr[rel] += 1
        faults = self.owner.faults
        fault = faults.match("ftp", rel, _RETR_FAULTS) if faults is not None else None
        if fault is not None and fault.kind == "status":
            code = _ftp_status(fault.status)
            self._restart_position = 0
            self.respond(f"{code} Simulated failure.")  # type: ignore[attr-defined]
            if code == 421:
                self.close_when_done()  # type: ignore[attr-defined]
            return None
        self._pending_fault = fault
        return super().ftp_RETR(file)  # type: ignore[misc]


def _ftp_status(status: int) -> int:
    """An FTP reply code for a fault's status (HTTP-style codes are translated)."""
    if status in (421, 425, 426, 450, 451, 452, 530, 550, 551, 552, 553):
        return status
    if status in (403, 404, 410):
        return 550
    return 450 if status < 600 else 451


class ArchiveFTPServer:
    """Serve an archive tree (its root holds ``byobsid/``) over FTP or explicit FTPS on loopback.

    Parameters
    ----------
    root : path
        Directory served as ``/`` (read-only).
    host, port : str, int
        Where to listen; port 0 picks a free one.
    users : dict, optional
        ``{user: password}`` accounts besides anonymous.
    anonymous : bool
        Allow ``anonymous`` logins.
    mlsd : bool
        False simulates an old server: ``MLSD``/``MLST`` are refused with 500 and left out of
        ``FEAT``.
    rest : bool
        False refuses ``REST`` (a server that cannot resume).
    tls : bool
        Serve explicit FTPS (``AUTH TLS``) with a ``trustme`` certificate; ``ca_file`` is its CA.
    idle_timeout : float
        Seconds before an idle control connection is closed with a 421 reply.
    link : LinkModel, optional
        Latency per command and bandwidth caps for data transfers.
    faults : FaultPlan, optional
        Faults (protocol ``"ftp"``) for RETR: ``status`` (that reply code; HTTP codes are
        translated: 404/403 -> 550, others -> 450; 421 also closes the connection), ``drop``
        (426 after ``after_bytes``), ``truncate`` (226 after half or ``after_bytes``),
        ``stall`` (pause ``seconds``), ``corrupt`` (flipped bytes); and for listings:
        ``traversal`` (hostile names added to ``MLSD``/``LIST`` output).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: dict[str, str] | None = None,
        anonymous: bool = True,
        mlsd: bool = True,
        rest: bool = True,
        tls: bool = False,
        idle_timeout: float = 120.0,
        link: Any = None,
        faults: Any = None,
    ) -> None:
        self.root = os.path.realpath(root)
        self.host, self.port = host, port
        self.users = dict(users or {})
        self.anonymous, self.mlsd, self.rest, self.tls = anonymous, mlsd, rest, tls
        self.idle_timeout = idle_timeout
        self.link, self.faults = link, faults
        self.stats = FTPStats()
        self.ca_file: str | None = None
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def base_url(self) -> str:
        """``ftp://127.0.0.1:PORT/`` (``ftps://`` with TLS): the mirror value for this server."""
        return f"{'ftps' if self.tls else 'ftp'}://{self.host}:{self.port}/"

    def _handler_class(self) -> type:
        authorizer = DummyAuthorizer()
        for user, password in self.users.items():
            authorizer.add_user(user, password, self.root, perm="elr")
        if self.anonymous:
            authorizer.add_anonymous(self.root, perm="elr")
        base: Any = FTPHandler
        attrs: dict[str, Any] = {"authorizer": authorizer, "abstracted_fs": _FS, "owner": self}
        attrs.update(banner="Chandra archive simulator ready.", timeout=self.idle_timeout)
        attrs.update(auth_failed_timeout=0.2)  # pyftpdlib waits 3 s before a 530
        if self.tls:
            try:
                from pyftpdlib.handlers import TLS_FTPHandler
            except ImportError as exc:
                raise RuntimeError(
                    "FTPS simulation needs pyOpenSSL (pip install pyopenssl)"
                ) from exc

            base = TLS_FTPHandler
            attrs.update(certfile=self._make_certificate(), ssl_context=None)
        cmds = dict(base.proto_cmds)
        if not self.mlsd:
            cmds.pop("MLSD", None)
            cmds.pop("MLST", None)
        if not self.rest:
            cmds.pop("REST", None)
        attrs["proto_cmds"] = cmds
        return type("ArchiveFTPHandler", (_HandlerMixin, base), attrs)

    def _make_certificate(self) -> str:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmp = tempfile.TemporaryDirectory(prefix="chandra-ftps-")
        self.ca_file = os.path.join(self._tmp.name, "ca.pem")
        certfile = os.path.join(self._tmp.name, "server.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        cert.private_key_and_cert_chain_pem.write_to_path(certfile)
        return certfile

    def start(self) -> ArchiveFTPServer:
        """Listen and serve in a background thread; returns self."""
        self._stop.clear()
        pylog = logging.getLogger("pyftpdlib")
        if not pylog.handlers:  # else pyftpdlib logs every command to stderr
            pylog.addHandler(logging.NullHandler())
        self._server = _Server((self.host, self.port), self._handler_class())
        self._server.max_cons = 512
        self.port = self._server.address[1]
        self._thread = threading.Thread(target=self._serve, name="ftp-simulator", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        try:
            while not self._stop.is_set():
                server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
                time.sleep(0.005)
        finally:
            server.close_all()

    def stop(self) -> None:
        """Stop serving and close every connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ArchiveFTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
