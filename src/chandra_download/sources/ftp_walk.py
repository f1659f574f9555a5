"""The recursive walk of an ObsId directory over one FTP control connection."""

from __future__ import annotations

import ftplib
from typing import Any
from urllib.parse import quote

from ..config import SessionConfig
from ..deadline import Deadline
from ..errors import SourceError, UnsafeEntry
from .base import PageRef, RemoteFile, check_relpath
from .ftp_conn import Conn, reply_code
from .ftp_parse import Entry, parse_ls, parse_mlsd

#: A directory listing larger than this is refused (parsing stays in bounded memory).
MAX_LISTING_BYTES = 64 * 1024 * 1024


class ListingTooLarge(Exception):
    """A listing passed ``MAX_LISTING_BYTES``. Not a ChandraDownloadError on purpose: the
    control connection is mid-transfer, so the pool must drop it (see ``keeps_sync``)."""


class ListingTooSlow(Exception):
    """A listing not complete within the timeout (a trickle). Not a ChandraDownloadError on
    purpose: its connections were shut down, so the pool must drop the control connection."""


class _Lines(list):
    """The lines of one listing, refusing more than ``MAX_LISTING_BYTES`` in all."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path, self.size = path, 0

    def add(self, line: str) -> None:
        self.size += len(line) + 2
        if self.size > MAX_LISTING_BYTES:
            raise ListingTooLarge(
                f"listing of {self.path} is larger than {MAX_LISTING_BYTES >> 20} MiB; "
                "refusing to parse it"
            )
        self.append(line)


class ListingMixin:
    """Recursive listing of a directory on one control connection (for ``FTPSource``).

    Uses ``MLSD`` (exact sizes) until the server refuses it, then parses Unix ``LIST`` output;
    ``_mlsd`` remembers the outcome for the whole source (None: not tried yet).
    """

    _host: str
    _mlsd: bool | None
    _config: SessionConfig

    def _page(
        self, conn: Conn, path: str, ref: PageRef, display: str
    ) -> tuple[list[RemoteFile], list[PageRef]]:
        """The files of one directory and its sub-directories (the pages that follow)."""
        files: list[RemoteFile] = []
        more: list[PageRef] = []
        for name, kind, size, modified in self._entries(conn, path):
            if kind in ("cdir", "pdir") or (kind == "dir" and name in (".", "..")):
                continue
            if "/" in name:
                shown = name.encode("unicode_escape").decode("ascii")
                raise UnsafeEntry(f"Refusing listing entry {shown!r}: slash in a name")
            rel = check_relpath(ref.prefix + name)
            if kind == "link":
                try:
                    size = self._size_cmd(conn, f"{path}/{name}")
                    kind = "file"
                except ftplib.error_perm:
                    kind = "dir"
            if kind == "dir":
                more.append(PageRef(rel + "/", depth=ref.depth + 1))
            elif kind == "file":
                if size is None:
                    size = self._size_cmd(conn, f"{path}/{name}")
                # MLSD's modify fact is the file's identity for the records (a same-size
                # change in place at the site is told by it, as HTTP's Last-Modified).
                files.append(RemoteFile(rel, size, display + quote(rel), last_modified=modified))
        return files, more

    def _entries(self, conn: Conn, path: str) -> list[Entry]:
        lines = _Lines(path)
        if self._mlsd is not False:
            try:
                self._listed(conn, f"MLSD {path}", lines)
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
        self._listed(conn, f"LIST {path}", lines)
        conn.binary = False
        entries = [e for e in map(parse_ls, lines) if e is not None]
        unread = [ln for ln in lines if ln.strip() and not ln.lower().startswith("total")]
        if not entries and unread:  # not "no files": a format we cannot read
            shown = unread[0][:80].encode("unicode_escape").decode("ascii")
            raise SourceError(
                f"FTP server at {self._host}: the LIST format of {path} is not understood "
                f"(first line {shown!r}) and the server has no MLSD"
            )
        return entries

    def _listed(self, conn: Conn, cmd: str, lines: _Lines) -> None:
        """``cmd``'s listing into ``lines``, whole within the timeout, its data and control
        connections alike: a listing trickled a byte at a time never trips a socket's own
        timeout (issue 20.4). Lines read before the deadline cut it are never taken."""
        ftp: Any = conn.ftp
        with Deadline(self._config.timeout) as deadline:
            if ftp.sock is not None:  # (ftplib's None: not connected; retrlines then fails)
                deadline.arm(ftp.sock)
            ftp.deadline = deadline
            try:
                ftp.retrlines(cmd, lines.add)
            except Exception:
                if not deadline.fired:
                    raise
            finally:
                ftp.deadline = None
        if deadline.fired:
            raise ListingTooSlow(
                f"listing of {lines.path} not complete within {self._config.timeout:g} s"
            )

    def _size_cmd(self, conn: Conn, path: str) -> int:
        if not conn.binary:
            conn.ftp.voidcmd("TYPE I")
            conn.binary = True
        size = conn.ftp.size(path)
        if size is None:
            raise SourceError(f"FTP server at {self._host} gave no size for {path}")
        return size
