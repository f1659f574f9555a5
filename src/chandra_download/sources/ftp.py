"""FTP and explicit FTPS sites (``ftp://``, ``ftps://``) with a pool of logged-in connections."""

from __future__ import annotations

import ftplib
import posixpath
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, unquote, urlsplit

from ..config import SessionConfig
from ..credentials import Credentials, mask_url, scrub
from ..errors import (
    AuthError,
    ChandraDownloadError,
    FileMissing,
    NoAnswer,
    ObsIdNotFound,
    RangeNotSatisfiable,
    SiteUnreachable,
    SourceError,
    TransientError,
)
from . import wire
from .base import Body, ListingPage, PageRef, RemoteFile, Source, obsid_dir, walk_listing
from .ftp_conn import (
    FTPTLS,
    Conn,
    PlainFTP,
    abort_transfer,
    discard,
    keeps_sync,
    reply_code,
    tls_context,
)
from .ftp_walk import ListingMixin, ListingTooLarge, ListingTooSlow

if TYPE_CHECKING:
    from ..budget import SiteLeases, _Once

__all__ = ["FTPSource", "tls_context"]

T = TypeVar("T")


def _discard_all(conns: list[Conn]) -> None:
    for conn in conns:
        discard(conn, polite=True)


class FTPSource(ListingMixin, Source):
    """An FTP or explicit-FTPS mirror holding ``byobsid/<digit>/<obsid>/`` trees.

    Listings use ``MLSD`` (exact sizes) and fall back to parsing Unix ``LIST`` output on servers
    without it. Transfers are passive and binary, resumed with ``REST``. Logged-in control
    connections are pooled (at most ``config.jobs`` idle ones) and reused; one transfer runs on a
    control connection at a time. Safe to use from many threads.

    Parameters
    ----------
    base_url : str
        ``ftp://host[:port]/path/`` or ``ftps://...``, without userinfo. As in RFC 1738 the path
        is relative to the login directory (``//path`` for an absolute one).
    config : SessionConfig
        Timeouts (``timeout``), pool size (``jobs``) and TLS settings (``ca_bundle``,
        ``insecure``).
    credentials : Credentials or None
        User name and password; None logs in as ``anonymous`` with password ``anonymous@``.
    """

    exact_sizes = True

    def __init__(
        self, base_url: str, config: SessionConfig, credentials: Credentials | None
    ) -> None:
        parts = urlsplit(base_url)
        self._config = config
        self._host = parts.hostname or ""
        self._port = parts.port or 21
        self._urlpath = unquote(parts.path).rstrip("/") + "/"
        creds = credentials or Credentials("anonymous", "anonymous@")
        self._user = creds.username or "anonymous"
        self._password = creds.password
        if self._user == "anonymous" and not self._password:
            self._password = "anonymous@"
        self._display = mask_url(f"{parts.scheme}://{parts.netloc}{quote(self._urlpath)}")
        self.label = self._display
        self._ctx = tls_context(config) if parts.scheme.lower() == "ftps" else None
        self._lock = threading.Lock()
        self._idle: list[Conn] = []
        self._closed = False
        self._home: str | None = None
        self._mlsd: bool | None = None  # None: not tried yet
        self._answered = False  # has the server greeted us once? (else: SiteUnreachable)
        self.logins = 0
        self._leases: SiteLeases | None = None  # a cluster's budget: one per control connection

    # -- connections ---------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return scrub(text, [self._password] if self._user != "anonymous" else [])

    def _connect(self, release: _Once | None = None) -> Conn:
        """A new control connection (under a budget: with the lease ``release``)."""
        t = self._config.timeout
        ftp = FTPTLS(context=self._ctx, timeout=t) if self._ctx else PlainFTP(timeout=t)
        try:
            self._greet(ftp)
            if release is not None and self._leases is not None and ftp.sock is not None:
                self._leases.opened(ftp.sock, release)  # back once the socket is closed
                release = None
            try:
                ftp.login(self._user, self._password)
            except ftplib.error_perm as exc:
                if reply_code(exc) in ("530", "331", "332"):
                    raise AuthError(
                        f"FTP login refused for user {self._user} at {self._host}: "
                        f"{self._scrub(str(exc))}"
                    ) from None
                raise
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            if self._home is None:
                try:
                    self._home = ftp.pwd() or "/"
                except ftplib.Error:
                    self._home = "/"
        except BaseException:
            ftp.close()
            if release is not None:
                release()
            raise
        with self._lock:
            self.logins += 1
        return Conn(ftp)

    def _greet(self, ftp: ftplib.FTP) -> None:
        """Connect and read the greeting. A site that never answered in this session and
        cannot be reached (DNS failure, refused, connect timeout) is SiteUnreachable."""
        try:
            ftp.connect(self._host, self._port)
        except (OSError, EOFError) as exc:
            if self._answered:
                raise
            why = self._scrub(str(exc) or type(exc).__name__)
            raise SiteUnreachable(f"cannot reach {self._host}:{self._port}: {why}") from None
        self._answered = True

    def _acquire(self) -> Conn:
        conn = self._pop_idle()
        if conn is not None:
            return conn
        if self._leases is None:
            return self._connect()
        # Under a budget: a lease, or a connection another thread gives back meanwhile.
        got = self._leases.wait(self._pop_idle)
        return got if isinstance(got, Conn) else self._connect(got)

    def _pop_idle(self) -> Conn | None:
        with self._lock:
            if self._closed:
                raise SourceError(f"FTP source {self.label} is closed")
            if not self._idle:
                return None
            conn = self._idle.pop()
        conn.reused = True
        return conn

    def _release(self, conn: Conn, healthy: bool) -> None:
        kept = False
        if healthy:
            with self._lock:
                if not self._closed and len(self._idle) < self._config.jobs:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                    kept = True
        if not kept:
            discard(conn, polite=healthy)
        elif self._leases is not None:
            self._leases.poke()  # (outside our lock: a waiter looks here holding its own)

    def idle_count(self) -> int:
        """Idle pooled connections (at most ``config.jobs``)."""
        with self._lock:
            return len(self._idle)

    def under_budget(self, leases: SiteLeases) -> None:
        """Put the control connections under a cluster's connection budget: each takes a
        lease to connect (its data connections are within it), given back once it is closed;
        idle ones are closed after a short while (chandra_download.budget)."""
        self._leases = leases
        leases.watch_idle(self.close_idle)

    def close_idle(self, seconds: float) -> None:
        """Close (politely) the pooled connections idle for ``seconds`` or more."""
        now = time.monotonic()
        with self._lock:
            old = [c for c in self._idle if now - c.idle_since >= seconds]
            self._idle = [c for c in self._idle if c not in old]
        if old:  # (QUIT waits for the reply: not on the caller's thread, the budget's reaper)
            threading.Thread(target=_discard_all, args=(old,), name="ftp-idle", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            discard(conn, polite=True)

    def _run(
        self, work: Callable[[Conn], T], what: str, missing: bool = False, keep: bool = False
    ) -> T:
        """Run ``work`` on a pooled connection; retry once on a new one if a pooled one was stale.

        With ``keep`` the result (a Body) owns the connection and releases it itself.
        """
        for attempt in range(2):
            try:
                conn = self._acquire()
            except Exception as exc:
                raise self._translate(exc, what) from None
            try:
                result = work(conn)
            except Exception as exc:
                self._release(conn, keeps_sync(exc))
                stale = isinstance(exc, (EOFError, ConnectionError)) or reply_code(exc) == "421"
                if stale and conn.reused and attempt == 0:
                    continue
                raise self._translate(exc, what, missing) from None
            if not keep:
                self._release(conn, True)
            return result
        raise AssertionError("unreachable")

    def _translate(self, exc: BaseException, what: str, missing: bool = False) -> Exception:
        if isinstance(exc, ChandraDownloadError):
            return exc
        text = self._scrub(str(exc) or type(exc).__name__)
        if isinstance(exc, ListingTooLarge):
            return SourceError(f"FTP server at {self._host}: {text}")
        if isinstance(exc, ListingTooSlow):
            return NoAnswer(f"FTP server at {self._host}: {text}")
        where = f"{what} at {self._host}"
        if isinstance(exc, ftplib.error_perm):
            code = reply_code(exc)
            if code == "530":
                return AuthError(f"FTP login refused for user {self._user} at {self._host}: {text}")
            if code == "550" and missing:
                return FileMissing(f"Not found: {where}: {text}")
            return SourceError(f"FTP error while {where}: {text}")
        if isinstance(exc, ftplib.error_temp):
            return TransientError(f"FTP server busy or failing while {where}: {text}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SourceError(
                f"TLS certificate of {self._host} could not be verified ({text}); "
                "pass a CA bundle if the site uses a private certificate authority"
            )
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return NoAnswer(f"Timed out after {self._config.timeout:g} s while {where}")
        if isinstance(exc, (OSError, EOFError, ftplib.error_proto)):
            return TransientError(f"Connection problem while {where}: {text}")
        return SourceError(f"Unexpected FTP failure while {where}: {text}")

    # -- paths ---------------------------------------------------------------------------------
    def _server_path(self, urlpath: str) -> str:
        """Server path of a URL path (relative to the login directory unless ``//``-rooted)."""
        if urlpath.startswith("//"):
            return posixpath.normpath("/" + urlpath.lstrip("/"))
        return posixpath.normpath(posixpath.join(self._home or "/", urlpath.lstrip("/")))

    def _file_path(self, f: RemoteFile) -> str:
        return self._server_path(unquote(urlsplit(f.url).path))

    # -- listing -------------------------------------------------------------------------------
    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        return walk_listing(self, obsid)

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:
        """One directory of an ObsId on one pooled control connection."""
        rel = obsid_dir(obsid)
        display = f"{self._display}{rel}/"

        def work(conn: Conn) -> ListingPage:
            top = self._server_path(self._urlpath + rel)
            if ref.is_top:
                try:
                    conn.ftp.cwd(top)
                except ftplib.error_perm as exc:
                    if reply_code(exc) == "550":
                        raise ObsIdNotFound(f"ObsId {obsid} not found at {self.label}") from None
                    raise
            path = f"{top}/{ref.prefix.rstrip('/')}" if ref.prefix else top
            files, more = self._page(conn, path, ref, display)
            return ListingPage(files, more)

        return self._run(work, f"listing ObsId {obsid}")

    def size(self, f: RemoteFile) -> int:
        if f.size is not None:
            return f.size
        return self._run(lambda c: self._size_cmd(c, self._file_path(f)), f"sizing {f.url}", True)

    # -- transfers -----------------------------------------------------------------------------
    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        total = f.size if f.size is not None else self.size(f)
        if offset > 0 and offset >= total:
            raise RangeNotSatisfiable(f"Offset {offset} is at or past the end of {f.url}", total)

        def work(conn: Conn) -> Body:
            ftp, path = conn.ftp, self._file_path(f)  # (the login directory is known now)
            if not conn.binary:
                ftp.voidcmd("TYPE I")
                conn.binary = True
            host, port = ftp.makepasv()
            sock: socket.socket = socket.create_connection((host, port), self._config.timeout)
            try:
                start = self._rest(ftp, offset)
                resp = ftp.sendcmd(f"RETR {path}")
                if resp[:1] == "2":
                    resp = ftp.getresp()
                if resp[:1] != "1":
                    raise ftplib.error_reply(resp)
                if isinstance(ftp, FTPTLS):
                    sock = ftp.wrap_data(sock)
            except BaseException:
                sock.close()
                raise
            return _FTPBody(self, conn, sock, start, total, f.url)

        return self._run(work, f"fetching {f.url}", missing=True, keep=True)

    @staticmethod
    def _rest(ftp: ftplib.FTP, offset: int) -> int:
        """Ask to resume at ``offset`` (``REST``); the byte the data will start at."""
        command = wire.rest_command(offset)
        if command is None:
            return 0
        try:
            reply: str | None = ftp.sendcmd(command)
        except ftplib.error_perm:  # 5xx: this server does not restart transfers
            reply = None
        return wire.rest_start(offset, reply)


class _FTPBody(Body):
    """The data connection of one RETR; owns its control connection until closed."""

    total: int  # SIZE told it: always known here

    def __init__(
        self, src: FTPSource, conn: Conn, sock: socket.socket, start: int, total: int, url: str
    ) -> None:
        self._src, self._conn, self._sock, self._url = src, conn, sock, url
        self.start, self.total = start, total
        self._received = 0
        self._state = "open"  # open -> done | broken; closed

    def read(self, n: int) -> bytes:
        if self._state != "open":
            return b""
        try:
            data = self._sock.recv(n)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""  # an unclean TLS end: the final reply and the byte count decide
        except Exception as exc:
            self._state = "broken"
            at = self.start + self._received
            raise TransientError(
                f"FTP transfer of {self._url} broke at byte {at}: "
                f"{self._src._translate(exc, 'reading data')}"
            ) from None
        if data:
            self._received += len(data)
            if self.start + self._received > self.total:
                self._state = "broken"
                raise SourceError(
                    f"FTP transfer of {self._url}: the server sent more than the "
                    f"{self.total} bytes its SIZE stated; the transfer was cut"
                )
            return data
        self._finish()
        return b""

    def _finish(self) -> None:
        """End of data: read the final reply; complain about short transfers."""
        self._sock.close()
        try:
            self._conn.ftp.voidresp()
        except Exception as exc:
            self._state = "done" if keeps_sync(exc) else "broken"
            raise self._src._translate(exc, f"finishing {self._url}") from None
        self._state = "done"
        got = self.start + self._received
        if got < self.total:
            raise TransientError(f"FTP transfer of {self._url} ended early at {got}/{self.total}")

    def close(self) -> None:
        state, self._state = self._state, "closed"
        if state == "closed":
            return
        if state == "open":
            self._sock.close()
            self._src._release(self._conn, abort_transfer(self._conn.ftp))
        else:
            self._src._release(self._conn, state == "done")
