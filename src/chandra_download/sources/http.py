"""HTTP(S) sites with Apache-style listings (the CDA, HEASARC, institutional mirrors)."""

from __future__ import annotations

import os
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

import certifi
import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, SSLError

from .._version import __version__
from ..config import SessionConfig
from ..credentials import Credentials, scrub
from ..errors import (
    AuthError,
    FileMissing,
    ObsIdNotFound,
    RangeNotSatisfiable,
    SourceError,
    TransientError,
)
from .base import Body, RemoteFile, Source, obsid_dir
from .listing import parse_listing

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED = re.compile(r"bytes\s+\*/(\d+)")
USER_AGENT = f"chandra-download/{__version__}"


class _HTTPBody(Body):
    def __init__(self, resp: urllib3.BaseHTTPResponse, start: int, total: int | None, secrets):
        self._resp = resp
        self.start = start
        self.total = total
        self._secrets = secrets
        self._eof = False

    def read(self, n: int) -> bytes:
        try:
            # read1: what has arrived, up to n. read(n) would block until n bytes came, so a
            # broken connection lost a whole chunk and Ctrl-C waited for it on slow links.
            data = self._resp.read1(n, decode_content=False)
        except (HTTPError, OSError) as exc:
            self._resp.close()
            raise TransientError(
                scrub(f"connection broke during transfer: {exc}", self._secrets)
            ) from None
        if not data:
            self._eof = True
        return data

    def close(self) -> None:
        # A half-read body cannot go back to the pool; closing drops that one connection.
        if not self._eof:
            self._resp.close()
        self._resp.release_conn()


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
        self._lister = ThreadPoolExecutor(max_workers=min(8, config.jobs + 1))

    def _make_pool(self) -> urllib3.PoolManager:
        cfg = self.config
        kw: dict = dict(
            num_pools=4,
            # At most `jobs` connections per host, listings included: block instead of opening more.
            maxsize=cfg.jobs,
            block=True,
            timeout=urllib3.Timeout(connect=cfg.timeout, read=cfg.timeout),
            retries=urllib3.Retry(
                total=None,
                connect=0,
                read=0,
                status=0,
                other=0,
                redirect=5,
                raise_on_redirect=False,
                raise_on_status=False,
            ),
            headers=self._headers,
        )
        if urlsplit(self.base).scheme == "https":
            if cfg.insecure:
                kw.update(cert_reqs="CERT_NONE")
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            else:
                bundle = cfg.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where()
                kw.update(cert_reqs="CERT_REQUIRED", ca_certs=bundle)
        proxy = _proxy_for(self.base)
        if proxy:
            return urllib3.ProxyManager(proxy, **kw)
        return urllib3.PoolManager(**kw)

    # -- requests -------------------------------------------------------------------------
    def _request(self, method: str, url: str, headers: dict | None = None, stream: bool = True):
        try:
            return self._pool.request(
                method,
                url,
                # urllib3 replaces (not merges) the pool's headers when a request has its own:
                # without this a ranged GET would lose basic auth and the User-Agent.
                headers={**self._headers, **headers} if headers else None,
                preload_content=not stream,
                decode_content=False,
                redirect=True,
            )
        except MaxRetryError as exc:
            raise self._connection_error(url, exc.reason) from None
        except (HTTPError, OSError) as exc:
            raise self._connection_error(url, exc) from None

    def _connection_error(self, url: str, exc: object) -> SourceError:
        host = urlsplit(url).netloc
        if isinstance(exc, SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return SourceError(
                scrub(
                    f"TLS certificate of {host} could not be verified ({exc}); "
                    "pass --ca-bundle if the site uses a private certificate authority",
                    self._secrets,
                )
            )
        if isinstance(exc, NewConnectionError):
            return TransientError(scrub(f"cannot connect to {host}: {exc}", self._secrets))
        return TransientError(scrub(f"request to {host} failed: {exc}", self._secrets))

    def _check_status(self, resp, url: str, what: str) -> None:
        status = resp.status
        if status < 400:
            return
        resp.drain_conn()
        resp.release_conn()
        shown = scrub(url, self._secrets)
        if status in (401, 403):
            raise AuthError(f"{what}: access refused by the server (HTTP {status}) at {shown}")
        if status == 404:
            raise FileMissing(f"{what}: not found (HTTP 404) at {shown}")
        if status == 429 or status >= 500 or status == 408:
            raise TransientError(
                f"{what}: server answered HTTP {status} at {shown}",
                retry_after=_retry_after(resp.headers.get("Retry-After")),
            )
        raise SourceError(f"{what}: server answered HTTP {status} at {shown}")

    # -- listing --------------------------------------------------------------------------
    def _list_dir(self, url: str) -> tuple[list, list[str]]:
        resp = self._request("GET", url, stream=False)
        self._check_status(resp, url, "listing")
        ctype = resp.headers.get("Content-Type", "")
        if "html" not in ctype:
            raise SourceError(
                f"listing at {scrub(url, self._secrets)} is not an HTML page ({ctype})"
            )
        text = resp.data.decode(_charset(ctype), errors="replace")
        final_url = resp.geturl() or url
        if not final_url.startswith(("http://", "https://")):
            final_url = url
        return parse_listing(text, final_url)

    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        top = self.base + obsid_dir(obsid) + "/"
        try:
            entries, unsafe = self._list_dir(top)
        except FileMissing:
            raise ObsIdNotFound(f"ObsId {obsid} not found at {self.label}") from None
        files: list[RemoteFile] = [RemoteFile(u, None, top) for u in unsafe]
        pending = [("", entries)]
        while pending:
            subdirs = []
            for prefix, ents in pending:
                for e in ents:
                    rel = prefix + e.name
                    if e.is_dir:
                        subdirs.append(rel + "/")
                    else:
                        url = top + quote(rel)
                        files.append(RemoteFile(rel, None, url, approx_size=e.approx_size))
            # Sub-directories of one level are listed concurrently.
            listed = list(self._lister.map(lambda d: self._list_dir(top + quote(d)), subdirs))
            pending = []
            for d, (ents, bad) in zip(subdirs, listed, strict=True):
                files.extend(RemoteFile(d + u, None, top + quote(d)) for u in bad)
                pending.append((d, ents))
        return files

    # -- transfer -------------------------------------------------------------------------
    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        span = f"{offset}-{end - 1}" if end is not None else f"{offset}-"
        headers = {"Range": f"bytes={span}"} if offset or end is not None else None
        resp = self._request("GET", f.url, headers)
        if resp.status == 416:
            m = _UNSATISFIED.search(resp.headers.get("Content-Range", ""))
            resp.drain_conn()
            resp.release_conn()
            raise RangeNotSatisfiable(
                f"{f.relpath}: offset {offset} is past the end", int(m[1]) if m else None
            )
        self._check_status(resp, f.url, f.relpath)
        if "text/html" in resp.headers.get("Content-Type", "") and not f.relpath.endswith(
            (".html", ".htm")
        ):
            resp.drain_conn()
            resp.release_conn()
            raise TransientError(f"{f.relpath}: the server sent an HTML page instead of the file")
        length = resp.headers.get("Content-Length")
        if resp.status == 206:
            m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", ""))
            total = int(m[3]) if m and m[3] != "*" else None
            last = total - 1 if total is not None else None
            if end is not None and total is not None:
                last = min(end, total) - 1
            if not m or int(m[1]) != offset or (last is not None and int(m[2]) != last):
                # Appending bytes from the wrong place would corrupt the file: start over.
                resp.close()
                resp.release_conn()
                if end is not None:
                    raise TransientError(f"{f.relpath}: wrong Content-Range for bytes {span}")
                body = self.open(f, 0)
                return body
            body = _HTTPBody(resp, offset, total, self._secrets)
            body.end = int(m[2]) + 1
            return body
        total = int(length) if length and length.isdigit() else None
        return _HTTPBody(resp, 0, total, self._secrets)

    def size(self, f: RemoteFile) -> int:
        if f.size is not None:
            return f.size
        resp = self._request("HEAD", f.url, stream=False)
        self._check_status(resp, f.url, f.relpath)
        length = resp.headers.get("Content-Length")
        if not length or not length.isdigit():
            raise SourceError(f"{f.relpath}: the server did not give a size")
        return int(length)

    def close(self) -> None:
        self._lister.shutdown(wait=False)
        self._pool.clear()


def _proxy_for(url: str) -> str | None:
    """The proxy from HTTPS_PROXY/HTTP_PROXY for this URL, unless NO_PROXY covers its host."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        import time
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _charset(ctype: str) -> str:
    m = re.search(r"charset=([\w-]+)", ctype)
    return m[1] if m else "utf-8"
