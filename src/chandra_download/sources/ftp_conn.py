"""FTP control connections: TLS (FTPS) setup, reply codes, aborting and closing politely."""

from __future__ import annotations

import ftplib
import socket
import ssl
from typing import Any

from ..config import SessionConfig
from ..deadline import Deadline
from ..errors import ChandraDownloadError
from ..http_pool import ca_file
from ..log import vlog
from ..resolve import connect

ABORT_TIMEOUT = 5.0


class ProtocolLog:
    """Verbose 5: each FTP command sent (never the password) and each reply."""

    host: str

    def putcmd(self, line: str) -> None:
        shown = "PASS ****" if line[:5].upper() == "PASS " else line
        vlog(5, "FTP %s > %s", self.host, shown)
        super().putcmd(line)  # type: ignore[misc]

    def getresp(self) -> str:
        resp = super().getresp()  # type: ignore[misc]
        vlog(5, "FTP %s < %s", self.host, resp)
        return resp


class BoundedConnect:
    """ftplib's ``connect`` with the host resolved within the timeout (ftplib's own asks
    ``socket.create_connection``, whose name lookup has none): see :mod:`..resolve`."""

    host: str
    port: int
    timeout: float | None
    source_address: tuple[str, int] | None
    encoding: str

    def connect(  # noqa: D102 - ftplib's
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        ftp: Any = self
        self.host, self.port = host or self.host, port or self.port
        self.timeout = self.timeout if timeout == -999 else timeout
        self.source_address = source_address or self.source_address
        ftp.sock = connect((self.host, self.port), self.timeout, self.source_address)
        ftp.af = ftp.sock.family
        ftp.file = ftp.sock.makefile("r", encoding=self.encoding)
        ftp.welcome = ftp.getresp()
        return str(ftp.welcome)


class DataDeadline:
    """While ``deadline`` is set (a listing under way), each data connection a command opens
    is under it too: see :mod:`..deadline`."""

    deadline: Deadline | None = None

    def transfercmd(self, cmd: str, rest: int | str | None = None) -> socket.socket:  # noqa: D102
        conn: socket.socket = super().transfercmd(cmd, rest)  # type: ignore[misc]
        if self.deadline is not None:
            self.deadline.arm(conn)
        return conn


class PlainFTP(ProtocolLog, BoundedConnect, DataDeadline, ftplib.FTP):
    """ftplib.FTP with verbose-5 protocol lines."""


class FTPTLS(ProtocolLog, BoundedConnect, DataDeadline, ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""

    def wrap_data(self, sock: socket.socket) -> socket.socket:
        assert self.context is not None
        return self.context.wrap_socket(
            sock, server_hostname=self.host, session=getattr(self.sock, "session", None)
        )

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            conn = self.wrap_data(conn)
        return conn, size


class Conn:
    """One logged-in control connection and what we know of its state."""

    def __init__(self, ftp: ftplib.FTP) -> None:
        self.ftp = ftp
        self.binary = False
        self.reused = False
        self.idle_since = 0.0  # (monotonic) when it last went back to the pool


def reply_code(exc: BaseException) -> str:
    """The three-digit FTP reply code an ftplib error starts with."""
    return str(exc)[:3]


def keeps_sync(exc: BaseException) -> bool:
    """True when the control connection is still usable after ``exc`` (its reply was read)."""
    if isinstance(exc, ftplib.error_temp):
        return reply_code(exc) != "421"
    return isinstance(exc, (ftplib.error_perm, ChandraDownloadError))


def tls_context(config: SessionConfig) -> ssl.SSLContext:
    """A client TLS context: verified against ca_bundle/SSL_CERT_FILE/certifi unless insecure."""
    if config.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_file(config))


def abort_transfer(ftp: ftplib.FTP) -> bool:
    """ABOR a transfer closed early; True when the control connection is back in sync.

    ABOR and NOOP go out together; the replies before NOOP's 200 (the RETR's final one and
    ABOR's, one or two of them) are skipped.
    """
    sock = ftp.sock
    if sock is None:  # closed already
        return False
    try:
        sock.settimeout(min(ftp.timeout or ABORT_TIMEOUT, ABORT_TIMEOUT))
        sock.sendall(b"ABOR\r\nNOOP\r\n")
        for _ in range(4):
            if ftp.getmultiline()[:3] == "200":
                sock.settimeout(ftp.timeout)
                return True
    except Exception:
        pass
    return False


def discard(conn: Conn, polite: bool) -> None:
    """Close a control connection (saying QUIT first when it is still in sync)."""
    if polite:
        try:
            if conn.ftp.sock is not None:
                conn.ftp.sock.settimeout(ABORT_TIMEOUT)
            conn.ftp.quit()
        except Exception:
            pass
    conn.ftp.close()
