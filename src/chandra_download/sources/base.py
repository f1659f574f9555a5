"""The source seam: what every site kind (HTTPS, FTP, S3, local) provides to the engine."""

from __future__ import annotations

import posixpath
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..errors import ChandraDownloadError, SizeUnknown, SourceError, UnsafeEntry

#: Bounds on one ObsId's listing (a hostile site could list an endless tree): deepest
#: sub-directory level, most listing pages (directories and continuation pages together),
#: most entries and most listing bytes in all. The archive's trees are 2 levels, a handful
#: of directories and a few hundred files.
MAX_DEPTH = 16
MAX_PAGES = 256
MAX_ENTRIES = 1_000_000
MAX_LISTING_BYTES = 256 * 1024 * 1024


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
    #: The site's ``Last-Modified`` and ``ETag`` when its listing gives them (S3).
    last_modified: str | None = None
    etag: str | None = None
    #: The date an HTML listing shows for the file, as text (its server's time zone): a
    #: different one than when the file was fetched means it changed at the archive.
    listed_date: str | None = None

    @property
    def best_size(self) -> int:
        """Exact size if known, else the rounded one, else 0 (for ordering and totals)."""
        if self.size is not None:
            return self.size
        return self.approx_size or 0


@dataclass(frozen=True)
class PageRef:
    """One listing page of an ObsId still to fetch.

    ``prefix`` is the directory below the ObsId directory (``""`` for the top, else ending in
    ``/``), ``token`` a site's continuation token (S3), ``depth`` how far below the top.
    """

    prefix: str = ""
    token: str | None = None
    depth: int = 0

    @property
    def is_top(self) -> bool:
        """The ObsId directory's first page (the one that says "not found")."""
        return not self.prefix and self.token is None


@dataclass
class ListingPage:
    """One fetched listing page: its files, the pages it leads to, and its size in bytes."""

    files: list[RemoteFile]
    more: list[PageRef] = field(default_factory=list)
    nbytes: int = 0


class ListingWalk:
    """One ObsId's listing as its pages come in, bounded in pages, depth, entries and bytes.

    :meth:`add` takes a page and returns the pages still to fetch that it names; it raises
    ``UnsafeEntry`` (a tree too deep or too large) before any of them is fetched.
    """

    def __init__(self, obsid: int) -> None:
        self.obsid = obsid
        self.files: list[RemoteFile] = []
        self.pages = 0
        self.nbytes = 0

    def add(self, page: ListingPage) -> list[PageRef]:
        self.pages += 1
        self.nbytes += page.nbytes
        self.files.extend(page.files)
        deepest = max((r.depth for r in page.more), default=0)
        if deepest > MAX_DEPTH:
            what = "directories nest too deep"
        elif self.pages + len(page.more) > MAX_PAGES:
            what = f"more than {MAX_PAGES} listing pages"
            if any(r.token is not None for r in page.more):  # S3's IsTruncated, every time
                what += " (the site keeps answering that more is to come)"
        elif len(self.files) + len(page.more) > MAX_ENTRIES:
            what = f"more than {MAX_ENTRIES} entries"
        elif self.nbytes > MAX_LISTING_BYTES:
            what = f"more than {MAX_LISTING_BYTES >> 20} MiB of listings"
        else:
            return page.more
        first = page.more[0].prefix if page.more else ""
        where = f"at {first!r}" if first else "of its directory"
        raise UnsafeEntry(f"ObsId {self.obsid}: refusing the listing {where}: {what}")


def walk_listing(source: Source, obsid: int) -> list[RemoteFile]:
    """Every file of an ObsId, its pages fetched one after another (``list_obsid`` of a
    source that lists by pages; the engine runs the pages as steps of its own)."""
    walk = ListingWalk(obsid)
    pending = [PageRef()]
    while pending:
        pending = walk.add(source.list_page(obsid, pending[0])) + pending[1:]
    return walk.files


class Body(ABC):
    """An open stream of one file's bytes, from ``start`` on.

    ``start`` is where the data really begins: the requested offset, or 0 when the server
    ignored the range and sent the whole file (an HTTP 200); never any other value. ``total``
    is the whole file's exact size when the site stated it (else None). ``end`` (exclusive) is
    where the data stops when the site honoured a bounded range, else None (it runs to the end
    of the file). A body never yields more bytes than the site announced (its
    ``Content-Length`` or ``SIZE``) or, with no announced length, than the listing's rounded
    size allows: past that, ``read`` raises SourceError. ``anew`` is True when a range was
    asked of the copy the site last described and the site sent the whole file because it
    changed since (HTTP ``If-Range``): no range of it may join bytes already on disk.
    """

    start: int = 0
    total: int | None = None
    end: int | None = None
    anew: bool = False

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
    #: Requests a site takes back to back on one connection (HTTP/1.1 pipelining); 1: none.
    pipeline_depth: int = 1

    @abstractmethod
    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        """Every file under the ObsId directory, at any depth."""

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:
        """One listing page: its files, and the pages (sub-directories, continuations) it
        leads to. The top page (``PageRef()``) raises ``ObsIdNotFound`` for a missing ObsId.

        Each page is one request (or a few on one connection), so the engine can run pages
        as steps within its connection budget and retry a failed page on its own. This
        default lists the whole ObsId as one page.
        """
        if not ref.is_top:
            raise SourceError(f"{self.label}: no listing page {ref.prefix!r}")
        return ListingPage(self.list_obsid(obsid))

    def list_pages(self, pages: list[tuple[int, PageRef]]) -> list[ListingPage | Exception | None]:
        """Several listing pages ``(obsid, ref)`` at once, when :attr:`pipeline_depth` is
        above 1 (HTTP: pipelined on one connection). For each page answered, in order: its
        page, the error its answer means (the caller retries it on its own), or None (to ask
        again on its own); pages past the list's end were not answered (to send again).
        This default asks each page once, in turn."""
        out: list[ListingPage | Exception | None] = []
        for obsid, ref in pages:
            try:
                out.append(self.list_page(obsid, ref))
            except (ChandraDownloadError, OSError) as exc:
                out.append(exc)
        return out

    def learn_sizes(self, files: list[RemoteFile]) -> None:  # noqa: B027 - optional
        """Learn the exact sizes of files at once (HTTP: pipelined HEADs), so that ``size``
        answers them without a request; what is not learnt ``size`` asks on its own. This
        default learns nothing."""

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
            raise SizeUnknown(f"{f.relpath}: the site did not give an exact size")
        return f.size

    def identity(self, f: RemoteFile) -> tuple[str | None, str | None]:
        """The file's ``(Last-Modified, ETag)`` as the site last stated them (listing or an
        earlier response), without a request; None for what it never said."""
        return f.last_modified, f.etag

    def close(self) -> None:  # noqa: B027 - optional for sources with nothing to release
        """Close pooled connections."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WrappedSource(Source):
    """A source that is ``inner`` with something added (a budget, a site's health, a
    manifest's filter, a pipelined answer): the whole Source contract is forwarded here, so
    a wrapper overrides only what it changes, and a member added to Source later is
    forwarded in this one place. Attributes of the inner source beyond the contract (an HTTP
    source's ``pipeliner``, ``config``...) are the inner source's too.

    A wrapper that overrides ``list_obsid`` to change the files listed must override
    ``list_page`` alike: the engine lists by pages.
    """

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.label, self.exact_sizes = inner.label, inner.exact_sizes

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # (not set yet: during unpickling, or a subclass's __init__)
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def pipeline_depth(self) -> int:  # type: ignore[override]
        """The inner source's (it may change during a session: pipelining turned off)."""
        return self.inner.pipeline_depth

    def list_obsid(self, obsid: int) -> list[RemoteFile]:  # noqa: D102
        return self.inner.list_obsid(obsid)

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:  # noqa: D102
        return self.inner.list_page(obsid, ref)

    def list_pages(self, pages: list[tuple[int, PageRef]]) -> list[ListingPage | Exception | None]:
        """The inner source's, unless this wrapper changes pages (overrides ``list_page``
        and not this): then one at a time through its ``list_page``."""
        if type(self).list_page is not WrappedSource.list_page:
            return super().list_pages(pages)
        return self.inner.list_pages(pages)

    def learn_sizes(self, files: list[RemoteFile]) -> None:
        """The inner source's, unless this wrapper changes ``size``: then nothing."""
        if type(self).size is WrappedSource.size:
            self.inner.learn_sizes(files)

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:  # noqa: D102
        return self.inner.open(f, offset, end)

    def size(self, f: RemoteFile) -> int:  # noqa: D102
        return self.inner.size(f)

    def identity(self, f: RemoteFile) -> tuple[str | None, str | None]:  # noqa: D102
        return self.inner.identity(f)

    def close(self) -> None:  # noqa: D102
        self.inner.close()


class WrappedBody(Body):
    """A body that is ``inner`` with something added on reads or on close: ``start``,
    ``total``, ``end``, ``read`` and ``close`` are forwarded, and any other attribute."""

    def __init__(self, inner: Body) -> None:
        self.inner = inner
        self.start, self.total, self.end = inner.start, inner.total, inner.end
        self.anew = inner.anew

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def read(self, n: int) -> bytes:  # noqa: D102
        return self.inner.read(n)

    def close(self) -> None:  # noqa: D102
        self.inner.close()


def obsid_dir(obsid: int) -> str:
    """The archive path of an ObsId below the site's base: ``byobsid/3/1843``."""
    return f"byobsid/{obsid % 10}/{obsid}"


def check_relpath(relpath: str) -> str:
    """Return a normalised safe relative path, or raise UnsafeEntry.

    Refused: empty names, absolute paths, ``..`` or ``.`` components, backslashes, NUL and other
    control characters, and drive letters; the result always stays inside the ObsId directory.
    """
    if not relpath or relpath.startswith("/"):
        raise _refused(relpath, "absolute or empty path")
    if "\\" in relpath:
        raise _refused(relpath, "backslash in name")
    # (printable ASCII, as nearly every name is, holds none of those: no look per character)
    ascii_clean = relpath.isascii() and relpath.isprintable()
    if not ascii_clean and any(
        unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in relpath
    ):
        raise _refused(relpath, "control character in name")
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _refused(relpath, "path leaves the ObsId directory")
    if ":" in parts[0] and len(parts[0]) == 2:
        raise _refused(relpath, "drive letter")
    norm = posixpath.normpath(relpath)
    if norm != relpath:
        raise _refused(relpath, "not a normal path")
    return relpath


def _refused(relpath: str, why: str) -> UnsafeEntry:
    shown = relpath.encode("unicode_escape").decode("ascii")  # (made only for the message)
    return UnsafeEntry(f"Refusing listing entry {shown!r}: {why}")
