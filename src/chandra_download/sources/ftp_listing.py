"""FTP helpers for :mod:`.ftp`: MLSD/LIST parsing, the directory walk, control connections."""

from __future__ import annotations

import ftplib
import os
import re
import socket
import ssl
from urllib.parse import quote

import certifi

from ..config import SessionConfig
from ..errors import ChandraDownloadError, SourceError, UnsafeEntry
from .base import RemoteFile, check_relpath

#: (name, kind, size): kind is file, dir, cdir, pdir or link; size None when not given.
Entry = tuple[str, str, int | None]

MAX_DEPTH = 16
ABORT_TIMEOUT = 5.0
# drwxr-xr-x  2 owner group  4096 Jan  1 12:00 name  (group column optional)
_LS = re.compile(
    r"^(?P<kind>[-dlbcps])\S*\s+\d+\s+.*?\s(?P<size>\d+)\s+"
    r"[A-Za-z]{3}\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4})\s(?P<name>.+)$"
)


# -- listing parsers -----------------------------------------------------------------------------
def parse_mlsd(line: str) -> Entry | None:
    """One ``MLSD`` line (RFC 3659 facts, a space, the name); None for other entry types."""
    facts_text, sep, name = line.rstrip("\r\n").partition(" ")
    if not sep:
        return None
    facts = {}
    for fact in facts_text.split(";"):
        key, eq, value = fact.partition("=")
        if eq:
            facts[key.strip().lower()] = value
    kind = facts.get("type", "").lower()
    if kind.startswith("os.unix=slink") or kind.startswith("os.unix=symlink"):
        kind = "link"
    if kind not in ("file", "dir", "cdir", "pdir", "link"):
        return None
    size = facts.get("size")
    return name, kind, int(size) if size and size.isdigit() else None


def parse_ls(line: str) -> Entry | None:
    """One Unix ``ls -l`` style ``LIST`` line; None for ``total`` lines and other kinds."""
    m = _LS.match(line.rstrip("\r\n"))
    if m is None:
        return None
    kind = {"-": "file", "d": "dir", "l": "link"}.get(m["kind"])
    if kind is None:
        return None
    name = m["name"]
    if kind == "link":
        name = name.partition(" -> ")[0]
    return name, kind, int(m["size"]) if kind == "file" else None


# -- control connections -------------------------------------------------------------------------
class FTPTLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""

    def wrap_data(self, sock: socket.socket) -> socket.socket:
        assert self.context is not None
        return self.context.wrap_socket(
            sock, server_hostname=self.host, session=getattr(self.sock, "session", None)
        )

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
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
    cafile = config.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where()
    return ssl.create_default_context(cafile=cafile)


def abort_transfer(ftp: ftplib.FTP) -> bool:
    """ABOR a transfer closed early; True when the control connection is back in sync.

    ABOR and NOOP go out together; the replies before NOOP's 200 (the RETR's final one and
    ABOR's, one or two of them) are skipped.
    """
    try:
        ftp.sock.settimeout(min(ftp.timeout or ABORT_TIMEOUT, ABORT_TIMEOUT))
        ftp.sock.sendall(b"ABOR\r\nNOOP\r\n")
        for _ in range(4):
            if ftp.getmultiline()[:3] == "200":
                ftp.sock.settimeout(ftp.timeout)
                return True
    except Exception:
        pass
    return False


def discard(conn: Conn, polite: bool) -> None:
    """Close a control connection (saying QUIT first when it is still in sync)."""
    if polite:
        try:
            conn.ftp.sock.settimeout(ABORT_TIMEOUT)
            conn.ftp.quit()
        except Exception:
            pass
    conn.ftp.close()


# -- the directory walk --------------------------------------------------------------------------
class ListingMixin:
    """Recursive listing of a directory on one control connection (for ``FTPSource``).

    Uses ``MLSD`` (exact sizes) until the server refuses it, then parses Unix ``LIST`` output;
    ``_mlsd`` remembers the outcome for the whole source (None: not tried yet).
    """

    _host: str
    _mlsd: bool | None

    def _walk(
        self, conn: Conn, path: str, prefix: str, display: str, out: list[RemoteFile], depth: int
    ) -> None:
        for name, kind, size in self._entries(conn, path):
            if kind in ("cdir", "pdir") or (kind == "dir" and name in (".", "..")):
                continue
            if "/" in name:
                shown = name.encode("unicode_escape").decode("ascii")
                raise UnsafeEntry(f"Refusing listing entry {shown!r}: slash in a name")
            rel = check_relpath(prefix + name)
            if kind == "link":
                try:
                    size = self._size_cmd(conn, f"{path}/{name}")
                    kind = "file"
                except ftplib.error_perm:
                    kind = "dir"
            if kind == "dir":
                if depth >= MAX_DEPTH:
                    raise UnsafeEntry(f"Refusing listing entry {rel!r}: directories nest too deep")
                self._walk(conn, f"{path}/{name}", rel + "/", display, out, depth + 1)
            elif kind == "file":
                if size is None:
                    size = self._size_cmd(conn, f"{path}/{name}")
                out.append(RemoteFile(rel, size, display + quote(rel)))

    def _entries(self, conn: Conn, path: str) -> list[Entry]:
        lines: list[str] = []
        if self._mlsd is not False:
            try:
                conn.ftp.retrlines(f"MLSD {path}", lines.append)
                conn.binary = False
                self._mlsd = True
                return [e for e in map(parse_mlsd, lines) if e is not None]
            except ftplib.error_perm as exc:
                conn.binary = False
                if reply_code(exc) not in ("500", "501", "502", "504"):
                    raise
                if reply_code(exc) != "501" or not self._mlsd:
                    self._mlsd = False
                lines.clear()
        conn.ftp.retrlines(f"LIST {path}", lines.append)
        conn.binary = False
        return [e for e in map(parse_ls, lines) if e is not None]

    def _size_cmd(self, conn: Conn, path: str) -> int:
        if not conn.binary:
            conn.ftp.voidcmd("TYPE I")
            conn.binary = True
        size = conn.ftp.size(path)
        if size is None:
            raise SourceError(f"FTP server at {self._host} gave no size for {path}")
        return size
