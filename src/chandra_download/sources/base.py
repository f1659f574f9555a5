"""The source seam: what every site kind (HTTPS, FTP, S3, local) provides to the engine."""

from __future__ import annotations

import posixpath
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..errors import SourceError, UnsafeEntry


@dataclass(frozen=True)
class RemoteFile:
    """One file of an ObsId directory on a site.

    Attributes
    ----------
    relpath : str
        POSIX path relative to the ObsId directory, e.g. ``primary/acisf01843N003_evt2.fits.gz``.
        Always checked by :func:`check_relpath`.
    size : int or None
        Exact size in bytes when the listing gives it (FTP, S3, local), else None (HTTP
        listings): never a rounded value. ``Source.size`` gives the exact size in every case.
    approx_size : int or None
        A rounded size from an HTML listing (``2.1M``), for ordering and estimates only.
    url : str
        Where the file is, for display (never holds a password).
    """

    relpath: str
    size: int | None
    url: str
    approx_size: int | None = None

    @property
    def best_size(self) -> int:
        """Exact size if known, else the rounded one, else 0 (for ordering and totals)."""
        if self.size is not None:
            return self.size
        return self.approx_size or 0


class Body(ABC):
    """An open stream of one file's bytes, from ``start`` on.

    ``start`` is where the data really begins: the requested offset, or 0 when the server
    ignored the range and sent the whole file (an HTTP 200); never any other value. ``total``
    is the whole file's exact size when the site stated it (else None). ``end`` (exclusive) is
    where the data stops when the site honoured a bounded range, else None (it runs to the end
    of the file). A body never yields more bytes than the site announced (its
    ``Content-Length`` or ``SIZE``) or, with no announced length, than the listing's rounded
    size allows: past that, ``read`` raises SourceError.
    """

    start: int = 0
    total: int | None = None
    end: int | None = None

    @abstractmethod
    def read(self, n: int) -> bytes:
        """Up to n bytes; b"" at the end. Raise TransientError when the stream breaks."""

    def close(self) -> None:  # noqa: B027 - optional for sources with nothing to release
        """Release the connection (return it to a pool when it is still usable)."""

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Source(ABC):
    """A site holding ``byobsid/<digit>/<obsid>/`` trees. Must be safe to use from many threads.

    Implementations raise ``ObsIdNotFound`` for a missing ObsId, ``AuthError`` for refused
    credentials, ``SiteUnreachable`` when the site cannot be reached on first contact in this
    session (DNS failure, connection refused), ``TransientError`` for retryable failures
    (``ContentRangeMismatch`` for a ranged answer that does not match the request) and
    ``SourceError`` otherwise; no message, label, URL or ``repr`` may contain a password.
    """

    #: Display form of the site (password masked).
    label: str = ""
    #: True when list_obsid gives exact sizes, so ``size()`` never makes a request.
    exact_sizes: bool = True

    @abstractmethod
    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        """Every file under the ObsId directory, at any depth."""

    @abstractmethod
    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        """Open a file for reading from a byte offset.

        ``end`` (exclusive) is a hint for ranged parts: a site may stop there (and say so in
        ``Body.end``) or send on to the end of the file; the reader stops at ``end`` anyway.
        A site may also ignore the offset and send the whole file (``Body.start`` 0). Raises
        ``RangeNotSatisfiable`` (with the file's size in ``total`` when known) when offset is
        at or past the end of the file, and ``ContentRangeMismatch`` when the site answered
        with other bytes than those asked for.
        """

    def size(self, f: RemoteFile) -> int:
        """The exact size of a file, for every source: the listing's when exact (FTP, S3,
        local), else one the site stated in an earlier response, else asked for (HTTP HEAD).

        Raises ``SourceError`` (or a subclass) when the site cannot tell it.
        """
        if f.size is None:
            raise SourceError(f"{f.relpath}: the site did not give an exact size")
        return f.size

    def close(self) -> None:  # noqa: B027 - optional for sources with nothing to release
        """Close pooled connections."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def obsid_dir(obsid: int) -> str:
    """The archive path of an ObsId below the site's base: ``byobsid/3/1843``."""
    return f"byobsid/{obsid % 10}/{obsid}"


def check_relpath(relpath: str) -> str:
    """Return a normalised safe relative path, or raise UnsafeEntry.

    Refused: empty names, absolute paths, ``..`` or ``.`` components, backslashes, NUL and other
    control characters, and drive letters; the result always stays inside the ObsId directory.
    """
    shown = relpath.encode("unicode_escape").decode("ascii")
    if not relpath or relpath.startswith("/"):
        raise UnsafeEntry(f"Refusing listing entry {shown!r}: absolute or empty path")
    if "\\" in relpath:
        raise UnsafeEntry(f"Refusing listing entry {shown!r}: backslash in name")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in relpath):
        raise UnsafeEntry(f"Refusing listing entry {shown!r}: control character in name")
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafeEntry(f"Refusing listing entry {shown!r}: path leaves the ObsId directory")
    if ":" in parts[0] and len(parts[0]) == 2:
        raise UnsafeEntry(f"Refusing listing entry {shown!r}: drive letter")
    norm = posixpath.normpath(relpath)
    if norm != relpath:
        raise UnsafeEntry(f"Refusing listing entry {shown!r}: not a normal path")
    return relpath
