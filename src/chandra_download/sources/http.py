"""HTTP(S) sites with Apache-style listings (the CDA, HEASARC, institutional mirrors)."""

from __future__ import annotations

import hashlib
import html
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    ReadTimeoutError,
    SSLError,
)

from .._version import __version__
from ..config import SessionConfig
from ..credentials import Credentials, mask_url, scrub
from ..errors import (
    AuthError,
    ChandraDownloadError,
    ContentRangeMismatch,
    FileMissing,
    NoAnswer,
    ObsIdNotFound,
    RangeNotSatisfiable,
    SiteUnreachable,
    SizeUnknown,
    SourceError,
    TransientError,
)
from ..http_pool import pool_manager, proxy_for, tls_options
from ..log import vlog
from ..resolve import bounded_pools
from ..stream import RateGuard
from .base import Body, ListingPage, PageRef, RemoteFile, Source, obsid_dir, walk_listing
from .http_body import HTTPBody, header_deadline_pools, read_capped
from .listing import DirectoryPage, ListingEntry, ends_html, parse_page
from .pipeline import MAX_STRIKES, Pipeliner, disjoint_groups
from .wire import (
    check_content_range,
    content_length,
    if_range_header,
    parse_content_range,
    parse_retry_after,
    range_header,
)

if TYPE_CHECKING:
    from ..budget import SiteLeases

USER_AGENT = f"chandra-download/{__version__}"
MAX_REDIRECTS = 5
#: A listing page larger than this is refused (parsing stays in bounded memory).
MAX_LISTING_BYTES = 64 * 1024 * 1024
ARCHIVE_BASE_EXAMPLE = "https://cxc.cfa.harvard.edu/cdaftp/"


class HTTPSource(Source):
    """An HTTP(S) site; one pooled, thread-safe urllib3 manager per session.

    Parameters
    ----------
    base_url : str
        Location up to, not including, ``byobsid/`` (no userinfo: pass ``credentials``).
    config : SessionConfig
        Timeouts, TLS settings, number of jobs (the pool size).
    credentials : Credentials or None
        Sent as HTTP basic authentication.
    """

    exact_sizes = False

    def __init__(
        self, base_url: str, config: SessionConfig, credentials: Credentials | None = None
    ):
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self.label = self.base
        self.config = config
        self._secrets = [credentials.password] if credentials else []
        self._headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if credentials is not None:
            self._headers.update(
                urllib3.make_headers(basic_auth=f"{credentials.username}:{credentials.password}")
            )
        self._pool = self._make_pool()
        self._answered = False  # has the site answered once? (else: SiteUnreachable)
        self._sizes: dict[str, int] = {}  # URL -> exact size a response stated
        self._identities: dict[str, tuple[str | None, str | None]] = {}  # URL -> LM, ETag
        self._ceilings: dict[str, int] = {}  # URL -> most bytes its listed size allows
        self._base_hint: str | None = None  # see _hint()
        # Pipelined GETs (issue 19.1), never through a proxy: one that mixes up the answers
        # of pipelined requests would give one file's bytes for another.
        depth = config.pipeline_depth if proxy_for(self.base) is None else 1
        self.pipeliner = Pipeliner(self, depth)

    @property
    def pipeline_depth(self) -> int:  # type: ignore[override]
        """GETs sent back to back on one connection: 1 when the site is not pipelined."""
        return self.pipeliner.depth

    def _make_pool(self) -> urllib3.PoolManager:
        cfg = self.config
        kw: dict = dict(
            num_pools=4,
            # At most `jobs` connections per host, listings included: block instead of opening more.
            maxsize=cfg.jobs,
            block=True,
            timeout=urllib3.Timeout(connect=cfg.timeout, read=cfg.timeout),
            retries=(_AnyRedirects if cfg.insecure else _Redirects)(
                total=None,
                connect=0,
                read=0,
                status=0,
                other=0,
                redirect=MAX_REDIRECTS,
                raise_on_redirect=False,
                raise_on_status=False,
            ),
            headers=self._headers,
        )
        if urlsplit(self.base).scheme == "https":
            kw.update(tls_options(cfg))
        pool = pool_manager(proxy_for(self.base), **kw)
        # Hosts resolved within the connect timeout; headers are far below min_rate * timeout
        # bytes, so they must come within the timeout too when a minimum rate holds.
        if cfg.min_rate > 0:
            pool.pool_classes_by_scheme = header_deadline_pools(cfg.timeout)
        else:
            pool.pool_classes_by_scheme = bounded_pools()
        return pool

    # -- requests -------------------------------------------------------------------------
    def _request(self, method: str, url: str, headers: dict | None = None, stream: bool = True):
        vlog(5, "HTTP > %s %s Range: %s", method, mask_url(url), (headers or {}).get("Range", "-"))
        try:
            resp = self._pool.request(
                method,
                url,
                # urllib3 replaces (not merges) the pool's headers when a request has its own:
                # without this a ranged GET would lose basic auth and the User-Agent.
                headers={**self._headers, **headers} if headers else None,
                preload_content=not stream,
                decode_content=False,
                redirect=True,
            )
        except _RedirectRefused as exc:
            raise SourceError(scrub(str(exc), self._secrets)) from None
        except MaxRetryError as exc:
            vlog(5, "HTTP < %s: %s", mask_url(url), scrub(str(exc.reason), self._secrets))
            raise self._connection_error(url, exc.reason) from None
        except (HTTPError, OSError) as exc:
            vlog(5, "HTTP < %s: %s", mask_url(url), scrub(str(exc), self._secrets))
            raise self._connection_error(url, exc) from None
        self._answered = True
        vlog(
            5, "HTTP < %s %s Content-Length: %s Content-Range: %s", resp.status,
            mask_url(url), resp.headers.get("Content-Length", "-"),
            resp.headers.get("Content-Range", "-"),
        )  # fmt: skip
        return resp

    def _connection_error(self, url: str, exc: object) -> SourceError:
        host = urlsplit(url).netloc
        if isinstance(exc, SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return SourceError(scrub(_tls_problem(host, str(exc), self.config), self._secrets))
        if isinstance(exc, ConnectTimeoutError):  # (NewConnectionError is one too)
            why = _connect_reason(exc)
            if not self._answered:
                # Never answered in this session: DNS failure, refused, no route. Retrying
                # will not help; a fallback list moves on at once.
                return SiteUnreachable(scrub(f"cannot reach {host}: {why}", self._secrets))
            return NoAnswer(scrub(f"cannot connect to {host}: {why}", self._secrets))
        if isinstance(exc, (ReadTimeoutError, TimeoutError)):
            return NoAnswer(f"no answer from {host} within {self.config.timeout:g} s")
        return TransientError(scrub(f"request to {host} failed: {exc}", self._secrets))

    def _check_status(self, resp, url: str, what: str) -> None:
        status = resp.status
        if status < 300:
            return
        resp.drain_conn()
        resp.release_conn()
        shown = scrub(url, self._secrets)
        if status < 400:
            # urllib3 followed MAX_REDIRECTS and gave back the last 3xx: its body is not data.
            if resp.headers.get("Location"):
                raise SourceError(
                    f"{what}: too many redirects (more than {MAX_REDIRECTS}) from {shown}"
                )
            raise SourceError(f"{what}: HTTP {status} without a Location at {shown}")
        if status in (401, 403):
            raise AuthError(f"{what}: access refused by the server (HTTP {status}) at {shown}")
        if status == 404:
            raise FileMissing(f"{what}: not found (HTTP 404) at {shown}")
        if status == 429 or status >= 500 or status == 408:
            raise TransientError(
                f"{what}: server answered HTTP {status} at {shown}",
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            )
        raise SourceError(f"{what}: server answered HTTP {status} at {shown}")

    @staticmethod
    def _refuse_encoded(resp, what: str, noun: str = "the file", gz: bool = False) -> None:
        """We ask for ``Accept-Encoding: identity``: encoded bytes are not the file's bytes,
        except a ``.gz`` file labelled gzip: Apache's ``AddEncoding x-gzip .gz`` labels the
        stored file so, and those bytes are the archive's (the gzip check still runs). Any
        other coding, or gzip on another name, is refused (a body compressed on the fly
        would not match the listing's size nor be the stored file)."""
        coding = resp.headers.get("Content-Encoding", "").strip().lower()
        if coding in ("", "identity") or (gz and coding in ("gzip", "x-gzip")):
            return
        resp.close()  # unread: the connection cannot go back to the pool
        resp.release_conn()
        raise TransientError(
            f"{what}: the server sent {noun} {coding[:40]}-encoded although asked not to"
        )

    # -- listing --------------------------------------------------------------------------
    def _list_dir(self, url: str, resp: Any = None) -> DirectoryPage:
        """The directory page at ``url``: asked for now, or read from ``resp`` when given
        (a pipelined answer), with the same checks and bounds either way."""
        if resp is None:
            resp = self._request("GET", url)
        self._check_status(resp, url, "listing")
        self._refuse_encoded(resp, f"listing of {scrub(url, self._secrets)}", "the page")
        ctype = resp.headers.get("Content-Type", "")
        if "html" not in ctype:
            resp.close()  # unread: the connection cannot go back to the pool
            resp.release_conn()
            raise SourceError(f"{self._not_a_listing(url)}: not an HTML page ({ctype})")
        guard = RateGuard(self.config.min_rate, self.config.timeout)
        raw = read_capped(resp, MAX_LISTING_BYTES, guard)
        if raw is None:
            raise SourceError(
                f"listing at {scrub(url, self._secrets)} is larger than "
                f"{MAX_LISTING_BYTES >> 20} MiB; refusing to parse it"
            )
        if content_length(resp.headers) is None and not ends_html(raw):
            # Without a Content-Length a closed connection looks like the end of the page:
            # a table cut there would silently drop files.
            raise TransientError(f"the listing of {scrub(url, self._secrets)} was cut short")
        final_url = resp.geturl() or url
        if not final_url.startswith(("http://", "https://")):
            final_url = url
        page = parse_page(raw.decode(_charset(ctype), errors="replace"), final_url)
        if not page.is_index:
            raise SourceError(f"{self._not_a_listing(url)}: the page is not a directory index")
        return page

    def _not_a_listing(self, url: str) -> str:
        return (
            f"{scrub(url, self._secrets)} is not an archive listing (is {self.label} the "
            f"archive's base, up to byobsid/? e.g. {ARCHIVE_BASE_EXAMPLE})"
        )

    def _hint(self) -> str:
        """A hint for "not found" when the site has no ``byobsid/`` at all (a wrong base);
        asked once per source, and "" when it has one or cannot say."""
        if self._base_hint is None:
            url = self.base + "byobsid/"
            try:
                resp = self._request("HEAD", url, stream=False)
                missing = resp.status == 404
            except SourceError:
                missing = False
            self._base_hint = (
                f" ({scrub(url, self._secrets)} does not exist: is {self.label} the archive's "
                f"base, up to byobsid/? e.g. {ARCHIVE_BASE_EXAMPLE})"
                if missing
                else ""
            )
        return self._base_hint

    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        return walk_listing(self, obsid)

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:
        """One directory page of an ObsId (its sub-directories are the pages that follow)."""
        return self._page(obsid, ref)

    def _page_url(self, obsid: int, ref: PageRef) -> str:
        return self.base + obsid_dir(obsid) + "/" + quote(ref.prefix)

    def list_pages(self, pages: list[tuple[int, PageRef]]) -> list[ListingPage | Exception | None]:
        """Listing pages of ObsIds sent pipelined on one connection (issue 19.1), in order:
        for each page answered, its page, or the error its answer means (the caller retries
        it on its own), or None (a redirect, or answers the site mixed up: to ask again one
        request at a time). Pages past the list's end were not answered: to send again.
        Raises the site's error (``NoAnswer``...) when not even the first page was answered."""
        urls = [self._page_url(obsid, ref) for obsid, ref in pages]
        got = self.pipeliner.exchange("GET", urls, [MAX_LISTING_BYTES] * len(urls))
        if got.timed_out:
            raise NoAnswer(
                f"no answer from {urlsplit(urls[0]).netloc} within {self.config.timeout:g} s"
            )
        answers = got.answers
        if answers:
            self._answered = True
        problem = _listing_disorder(self.base, urls, answers)
        if problem is not None:
            self.pipeliner.off(problem)
            return [None] * len(answers)
        if sum(1 for a in answers if a.status == 200 and _TITLE.search(a.body[:8192])) > 1:
            self.pipeliner.proven = True  # answers told apart by their titles, in order
        out: list[ListingPage | Exception | None] = []
        for (obsid, ref), answer in zip(pages, answers, strict=False):
            vlog(5, "HTTP < %s %s (pipelined)", answer.status, mask_url(answer.url))
            if 300 <= answer.status < 400:
                out.append(None)  # the normal path follows it (and bounds the redirects)
                continue
            try:
                out.append(self._page(obsid, ref, answer))
            except (ChandraDownloadError, OSError) as exc:
                out.append(exc)
        return out

    def _page(self, obsid: int, ref: PageRef, resp: Any = None) -> ListingPage:
        top = self.base + obsid_dir(obsid) + "/"
        try:
            page = self._list_dir(top + quote(ref.prefix), resp)
        except FileMissing:
            if not ref.is_top:
                raise
            raise ObsIdNotFound(f"ObsId {obsid} not found at {self.label}{self._hint()}") from None
        if ref.is_top and not page.entries and not page.unsafe:
            raise SourceError(f"{self._not_a_listing(top)}: the page lists no entries")
        files: list[RemoteFile] = []
        subdirs = self._take(obsid, top, ref.prefix, page, files)
        more = [PageRef(d, depth=ref.depth + 1) for d in subdirs]
        return ListingPage(files, more, page.nbytes)

    def _take(
        self, obsid: int, top: str, prefix: str, page: DirectoryPage, files: list[RemoteFile]
    ) -> list[str]:
        """Add a page's files (and unsafe entries, for the caller to refuse) to ``files``;
        return its sub-directories."""
        files.extend(RemoteFile(prefix + u, None, top + quote(prefix)) for u in page.unsafe)
        _refuse_file_and_dir(obsid, prefix, page.entries)
        subdirs = []
        for e in page.entries:
            rel = prefix + e.name
            if e.is_dir:
                subdirs.append(rel + "/")
                continue
            url = top + quote(rel)
            files.append(
                RemoteFile(rel, None, url, approx_size=e.approx_size, listed_date=e.listed_date)
            )
            if e.max_size is not None:
                self._ceilings[url] = e.max_size
        return subdirs

    # -- transfer -------------------------------------------------------------------------
    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        """A GET of the file; a ranged one only of the copy last described (``If-Range``):
        a file changed since comes whole (a 200, ``body.anew``), never as a range of it."""
        wanted = range_header(offset, end)
        validator = if_range_header(*self.identity(f)) if wanted else None
        headers = {"Range": wanted} if wanted else None
        if headers is not None and validator is not None:
            headers["If-Range"] = validator
        resp = self._request("GET", f.url, headers)
        body = self.answer_body(resp, f, offset, end)
        if validator is not None and resp.status == 200:
            vlog(2, "%s: changed at the site since it was last described; sent whole", f.relpath)
            body.anew = True
        return body

    def answer_body(self, resp: Any, f: RemoteFile, offset: int, end: int | None) -> Body:
        """The body of the answer to a file's GET (urllib3's response, or a pipelined
        :class:`~chandra_download.sources.pipeline.Answer`), or the error it means."""
        if resp.status == 416:
            cr = parse_content_range(resp.headers.get("Content-Range"))
            resp.drain_conn()
            resp.release_conn()
            total = cr.total if cr is not None else None
            self._learn(f.url, total)
            raise RangeNotSatisfiable(f"{f.relpath}: offset {offset} is past the end", total)
        self._check_status(resp, f.url, f.relpath)
        self._refuse_encoded(resp, f.relpath, gz=f.relpath.lower().endswith(".gz"))
        if "text/html" in resp.headers.get("Content-Type", "") and not f.relpath.endswith(
            (".html", ".htm")
        ):
            resp.drain_conn()
            resp.release_conn()
            raise TransientError(f"{f.relpath}: the server sent an HTML page instead of the file")
        body = self._body(resp, f, offset, end)
        body.what = f.relpath
        ceiling = self._sizes.get(f.url, self._ceilings.get(f.url))
        if body.total is None and ceiling is not None:
            body.limit = max(0, ceiling - body.start)
        return body

    def _body(self, resp, f: RemoteFile, offset: int, end: int | None) -> HTTPBody:
        """The body of a 200 (the whole file) or a 206 that answers the request exactly."""
        length = content_length(resp.headers)
        if resp.status != 206:
            self._learn(f.url, length, resp.headers)
            return HTTPBody(resp, 0, length, self._secrets)
        cr = parse_content_range(resp.headers.get("Content-Range"))
        why = check_content_range(cr, offset, end)
        if why is not None or cr is None or cr.end is None:
            # Never appended from the wrong place, nor silently fetched again from 0.
            resp.close()
            resp.release_conn()
            raise ContentRangeMismatch(f"{f.relpath}: {why}")
        self._learn(f.url, cr.total, resp.headers)
        body = HTTPBody(resp, offset, cr.total, self._secrets)
        body.end = cr.end
        return body

    def pipelined_request(self, url: str) -> tuple[str, dict[str, str]]:
        """(request target, headers) of a pipelined GET of a whole file."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return target, {"Host": parts.netloc, **self._headers}

    def ceiling(self, url: str) -> int | None:
        """The most bytes a file may have: a size a response stated, else the listing's."""
        return self._sizes.get(url, self._ceilings.get(url))

    def _learn(self, url: str, total: int | None, headers: Any = None) -> None:
        """Remember an exact size a response stated, so that size() costs nothing later, and
        its ``Last-Modified``/``ETag`` (for the records of what was fetched)."""
        if total is not None:
            self._sizes[url] = total
        if headers is not None:
            self._identities[url] = (headers.get("Last-Modified"), headers.get("ETag"))

    def identity(self, f: RemoteFile) -> tuple[str | None, str | None]:
        """``(Last-Modified, ETag)`` of the last response about the file, if any."""
        return self._identities.get(f.url, (f.last_modified, f.etag))

    def size(self, f: RemoteFile) -> int:
        """The exact size: from the listing, from an earlier response, or from a HEAD."""
        if f.size is not None:
            return f.size
        known = self._sizes.get(f.url)
        if known is not None:
            return known
        resp = self._request("HEAD", f.url, stream=False)
        self._check_status(resp, f.url, f.relpath)
        length = content_length(resp.headers)
        if length is None:
            raise SizeUnknown(f"{f.relpath}: the server did not give a size")
        self._learn(f.url, length, resp.headers)
        return length

    def learn_sizes(self, files: list[RemoteFile]) -> None:
        """Exact sizes (and identities) of files by HEADs pipelined on one connection or
        more (issue 19.1), so that ``size()`` answers them without a request. A HEAD's
        answer does not say which file it is, so files go together only when their listed
        sizes (with their rounding) cannot pass for each other's: any two of a pipeline, or,
        once the site has answered pipelined listing pages in order (their titles tell them
        apart), any two sent one after the other (an answer lost or given twice shifts the
        rest: that shows). Answers out of order stop pipelining; a file whose HEAD is not
        answered well here is left to ``size()``, which asks on its own."""
        todo = [f for f in files if f.size is None and f.url not in self._sizes]
        pipeliner = self.pipeliner
        for group in disjoint_groups(todo, self.size_window, pipeliner.depth, pipeliner.proven):
            self._heads(group)

    def _heads(self, todo: list[RemoteFile]) -> None:
        rounds = 0
        while len(todo) > 1 and self.pipeliner.depth > 1 and rounds <= len(todo) + MAX_STRIKES:
            rounds += 1
            try:
                got = self.pipeliner.exchange("HEAD", [f.url for f in todo], [0] * len(todo))
            except SourceError:
                return  # (cannot connect: each size() says why)
            answered, todo = todo[: len(got.answers)], todo[len(got.answers) :]
            sizes = [
                (f, content_length(a.headers), a.headers)
                for f, a in zip(answered, got.answers, strict=True)
                if a.status == 200
            ]
            for f, length, _ in sizes:
                low, high = self.size_window(f)
                if length is not None and not low <= length <= high:
                    name = f.relpath.rsplit("/", 1)[-1]
                    self.pipeliner.off(
                        f"it answered a pipelined HEAD of {name} with a size of {length} bytes, "
                        "which the listing rules out (answers out of order?)"
                    )
                    return
            for f, length, headers in sizes:
                if length is not None:
                    self._learn(f.url, length, headers)
            if got.answers:
                self._answered = True

    def batch_window(self, f: RemoteFile) -> tuple[int, int] | None:
        """The size window by which a pipelined answer must be told from the others of its
        pipeline (pipeline.split_batches); None for a gzip file while the site's gzip
        answers name their files (those tell themselves apart)."""
        if f.relpath.endswith(".gz") and self.pipeliner.named:
            return None
        return self.size_window(f)

    def size_window(self, f: RemoteFile) -> tuple[int, int]:
        """The sizes a file may have by its listing (exact when stated, else the rounding of
        its listed size; anything when the listing gave none)."""
        if f.size is not None:
            return f.size, f.size
        ceiling = self._ceilings.get(f.url)
        if f.approx_size is None or ceiling is None:
            return 0, 1 << 62
        return max(0, f.approx_size - (ceiling - f.approx_size)), ceiling

    def close(self) -> None:
        self._pool.clear()

    def under_budget(self, leases: SiteLeases) -> None:
        """Put every socket of the session under a cluster's connection budget: each takes a
        lease to connect and gives it back once closed (chandra_download.budget)."""
        leases.wrap_pools(self._pool)


class _RedirectRefused(Exception):
    """A redirect that is not followed: its text is the one clear line for the user."""


class _Redirects(urllib3.Retry):
    """urllib3's bounded redirects, refusing a downgrade from HTTPS to plain HTTP (issue 20.3:
    every file would then travel unauthenticated) and any scheme but http(s)."""

    downgrade_ok = False

    def increment(  # type: ignore[override]  # noqa: D102 - urllib3's
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        *a: Any,
        **kw: Any,
    ) -> urllib3.Retry:
        location = response.get_redirect_location() if response is not None else None
        if location and url:
            problem = _redirect_problem(url, urljoin(url, location), self.downgrade_ok)
            if problem is not None:
                response.drain_conn()
                response.release_conn()
                raise _RedirectRefused(problem)
        return super().increment(method, url, response, *a, **kw)


class _AnyRedirects(_Redirects):
    """--insecure: a downgrade to plain HTTP is followed too."""

    downgrade_ok = True


def _redirect_problem(url: str, target: str, downgrade_ok: bool) -> str | None:
    """Why a redirect from ``url`` to ``target`` is refused, or None."""
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        return f"refusing the redirect from {mask_url(url)} to a {scheme or 'schemeless'} URL"
    if scheme == "http" and urlsplit(url).scheme.lower() == "https" and not downgrade_ok:
        return (
            f"refusing the redirect from {mask_url(url)} to {mask_url(target)}: it downgrades "
            "HTTPS to plain HTTP (pass --insecure to allow it)"
        )
    return None


def _refuse_file_and_dir(obsid: int, prefix: str, entries: list[ListingEntry]) -> None:
    """A file and a directory of the same name: which one the archive means is unknowable."""
    files = {e.name for e in entries if not e.is_dir}
    both = sorted(e.name for e in entries if e.is_dir and e.name in files)
    if both:
        raise SourceError(
            f"ObsId {obsid}: the listing has both a file and a directory named {prefix}{both[0]}"
        )


def _tls_problem(host: str, text: str, config: SessionConfig) -> str:
    """What a failed certificate check means, and the hint that fits (issue 20.9): a name
    the certificate does not hold is no CA bundle's business."""
    if "mismatch" in text or "not valid for" in text:
        return (
            f"TLS certificate of {host} is not valid for that name ({text}); use a host name "
            "the certificate holds in the mirror URL"
        )
    if config.ca_bundle:
        hint = f"it is not signed by a certificate authority of {config.ca_bundle}"
    else:
        hint = "pass --ca-bundle if the site uses a private certificate authority"
    return f"TLS certificate of {host} could not be verified ({text}); {hint}"


def _connect_reason(exc: object) -> str:
    """The useful end of urllib3's connection error text ("[Errno 111] Connection refused",
    "Connection to HOST timed out. (connect timeout=5)"): its message argument, never the
    text of the whole args tuple, which starts with the connection object's repr."""
    texts = [a for a in getattr(exc, "args", ()) if isinstance(a, str)]
    text = texts[-1] if texts else str(exc)
    return text.rpartition("): ")[2] or text


def _charset(ctype: str) -> str:
    m = re.search(r"charset=([\w-]+)", ctype)
    return m[1] if m else "utf-8"


#: Apache's (and nginx's) title of a directory page: ``Index of /cdaftp/byobsid/3/1843``.
_TITLE = re.compile(rb"<title>\s*Index of\s+([^<]*?)\s*</title>", re.IGNORECASE)


def _listing_disorder(base: str, urls: list[str], answers: list[Any]) -> str | None:
    """Why pipelined answers cannot be the listing pages asked for, in order: a page titled
    with another directory than its own (the title may name a longer path, behind a proxy
    that maps the base elsewhere), or one page given for two (pages without such a title);
    None when they can be."""
    base_path = unquote(urlsplit(base).path)
    seen: dict[bytes, str] = {}
    for url, answer in zip(urls, answers, strict=False):
        if answer.status != 200:
            continue
        below = unquote(urlsplit(url).path)[len(base_path) :].rstrip("/")
        title = _TITLE.search(answer.body[:8192])
        if title is None:
            digest = hashlib.sha256(answer.body).digest()
            if seen.setdefault(digest, url) != url:
                return "it answered two pipelined requests for listings with one page"
            continue
        shown = html.unescape(title[1].decode("utf-8", "replace")).rstrip("/")
        if shown != below and not shown.endswith("/" + below):
            return (
                f"it answered a pipelined request for the listing of {below} with another "
                "directory's listing (answers out of order?)"
            )
    return None
