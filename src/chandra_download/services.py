"""HTTP clients of the archive's search services: the footprint search, the observation
catalogue (``ocatDetails.do``, ``ocatList.do``) and the name resolvers (CADC, CDS Sesame).

Every base URL comes from a keyword, else an environment variable, else the real service
(see ``ENV``/``DEFAULTS``), so sites behind proxies and tests can point elsewhere. Requests use
the download session's settings: TLS verified (``ca_bundle``, ``SSL_CERT_FILE``, certifi),
timeouts, and retries with backoff for transient failures (connection errors, 5xx, 429). A host
that cannot be reached on first contact (connection refused, DNS failure) is reported at once,
not retried, as archive sites are (:class:`~chandra_download.errors.SiteUnreachable`); once it
has answered, its failures keep the retry policy.
Anything a service answers that cannot be read is a :class:`ServiceError` naming the service.
"""

from __future__ import annotations

import io
import os
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError, ReadTimeoutError

from ._version import __version__
from .config import SessionConfig
from .errors import ChandraDownloadError, TransientError
from .http_pool import pool_manager, proxy_for, tls_options
from .retry import RetryPolicy
from .sources.http_body import header_deadline_pools
from .sources.wire import parse_retry_after

#: Service key -> environment variable overriding its base URL.
ENV = {
    "footprint": "CHANDRA_FOOTPRINT_URL",
    "ocat": "CHANDRA_OCAT_URL",
    "cadc": "CHANDRA_CADC_RESOLVER_URL",
    "sesame": "CHANDRA_SESAME_URL",
}
#: The real services (ARCHIVE.md, "Archive services").
DEFAULTS = {
    "footprint": "https://cda.cfa.harvard.edu/fps-dbdal-rest/jax-rs/main/footprints",
    "ocat": "https://cda.harvard.edu/srservices/",
    "cadc": "https://www.cadc-ccda.hia-iha.nrc-cnrc.gc.ca/cadc-target-resolver/find",
    "sesame": "https://cdsweb.u-strasbg.fr/cgi-bin/nph-sesame/-ox/~SNV",
}
#: How errors name each service.
NAMES = {
    "footprint": "the Chandra footprint service",
    "ocat": "the Chandra observation catalogue",
    "cadc": "the CADC name resolver",
    "sesame": "the CDS Sesame name resolver",
}
_VOT_NS = "{http://www.ivoa.net/xml/VOTable/v1.1}"
USER_AGENT = f"chandra-download/{__version__}"


class ServiceError(ChandraDownloadError):
    """A search service failed or answered something unreadable; ``service`` is its key."""

    def __init__(self, service: str, url: str, problem: str) -> None:
        name = NAMES.get(service, service)
        super().__init__(f"{name[:1].upper()}{name[1:]} ({url}) failed: {problem}")
        self.service = service
        self.url = url
        self.problem = problem

    @property
    def brief(self) -> str:
        """The message without its leading article, to join several: ``CADC name resolver
        (URL) failed: ...``."""
        name = NAMES.get(self.service, self.service).removeprefix("the ")
        return f"{name} ({self.url}) failed: {self.problem}"


@dataclass
class Reply:
    """One HTTP answer: status, body bytes and the URL asked."""

    status: int
    body: bytes
    url: str


def service_url(service: str, given: str | None = None) -> str:
    """Base URL of a service: ``given``, else its environment variable, else the default."""
    url = given or os.environ.get(ENV[service]) or DEFAULTS[service]
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{NAMES[service]} URL must be http(s): {url!r}")
    return url


#: A service's own bounds, whatever the session's: the longest wait for an answer (a request
#: at a time; a silent service costs at most this once, a resolver fallback twice), and the
#: largest answer read (streamed; a bigger one is refused before it fills memory).
SERVICE_TIMEOUT = 20.0
MAX_ANSWER = {
    "footprint": 64 * 1024 * 1024,
    "ocat": 64 * 1024 * 1024,
    "cadc": 1024 * 1024,
    "sesame": 1024 * 1024,
}


class _NotRetried(ChandraDownloadError):
    """A failure of one attempt that another attempt would not mend (its text says why)."""


class ServiceClient:
    """A small pooled HTTP client for the search services (thread-safe).

    Each request has a total deadline: ``timeout`` (the session's, at most
    :data:`SERVICE_TIMEOUT`) for each attempt, headers and body together, and at most one
    retry's worth more in all (``timeout x (1 + min(retries, 1))``), a site's
    ``Retry-After`` included. A host that does not answer its first request (refused, DNS,
    a timeout) is not asked again in the session; answers are streamed and capped
    (:data:`MAX_ANSWER`).

    Parameters
    ----------
    config : SessionConfig, optional
        Timeout, retries, backoff and TLS settings (``ca_bundle``, ``insecure``).
    """

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self.timeout = min(self.config.timeout, SERVICE_TIMEOUT)
        self._pools: dict[str | None, urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._answered: set[str] = set()  # hosts that answered once (else: not retried)

    def _pool(self, url: str) -> urllib3.PoolManager:
        proxy = proxy_for(url)
        with self._lock:
            if proxy not in self._pools:
                kw: dict = dict(
                    num_pools=8,
                    timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                    retries=urllib3.Retry(
                        total=None, connect=0, read=0, status=0, other=0, redirect=5
                    ),
                    headers={"User-Agent": USER_AGENT},
                )
                kw.update(tls_options(self.config))
                pool = pool_manager(proxy, **kw)
                # Headers trickled a byte at a time never trip the socket's timeout.
                pool.pool_classes_by_scheme = header_deadline_pools(self.timeout)
                self._pools[proxy] = pool
            return self._pools[proxy]

    def budget(self) -> float:
        """Seconds one request may take in all, its retries and waits included."""
        return self.timeout * (1 + min(self.config.retries, 1))

    def get(self, service: str, url: str, ok: tuple[int, ...] = (200,)) -> Reply:
        """GET ``url``, retrying transient failures within the request's deadline; a status
        outside ``ok``, an answer too large or too slow, is an error (:class:`ServiceError`)."""
        policy = RetryPolicy.for_session(
            self.config, self.stop, NAMES[service], budget=self.budget()
        )
        try:
            return policy.call(lambda: self._once(service, url, ok))
        except (TransientError, _NotRetried) as exc:
            raise ServiceError(service, url, str(exc)) from None

    def _once(self, service: str, url: str, ok: tuple[int, ...]) -> Reply:
        host = urlsplit(url).netloc
        start = time.monotonic()
        try:
            resp = self._pool(url).request("GET", url, preload_content=False)
        except (HTTPError, OSError, TransientError) as exc:
            cause = exc.reason if isinstance(exc, MaxRetryError) else exc
            why = str(exc) if isinstance(exc, TransientError) else _reason(exc)
            if host not in self._answered and isinstance(
                cause, (ConnectTimeoutError, ReadTimeoutError, TransientError, TimeoutError)
            ):
                # Refused, DNS failure, no route, or silence on first contact: asking again
                # will not help, and a fallback (CADC -> Sesame) should move on at once.
                raise _NotRetried(why) from None
            raise TransientError(why) from None
        self._answered.add(host)
        if resp.status not in ok:
            resp.drain_conn()
            resp.release_conn()
            if resp.status >= 500 or resp.status == 429:
                after = parse_retry_after(resp.headers.get("Retry-After"))
                raise TransientError(f"HTTP {resp.status}", after)
            raise _NotRetried(f"HTTP {resp.status}")
        body = self._read(resp, MAX_ANSWER.get(service, MAX_ANSWER["footprint"]), start)
        return Reply(resp.status, body, url)

    def _read(self, resp: urllib3.BaseHTTPResponse, cap: int, start: float) -> bytes:
        """The body, streamed: refused past ``cap`` bytes or past the attempt's timeout."""
        chunks, size = [], 0
        try:
            while chunk := resp.read1(256 * 1024):
                size += len(chunk)
                if size > cap:
                    raise _NotRetried(f"the answer is larger than {cap >> 20} MiB; refusing it")
                if time.monotonic() - start > self.timeout:
                    raise _NotRetried(f"the answer is too slow: {size} bytes in {self.timeout:g} s")
                chunks.append(chunk)
        except (HTTPError, OSError) as exc:
            resp.close()
            raise TransientError(f"the answer broke off: {_reason(exc)}") from None
        except _NotRetried:
            resp.close()
            raise
        finally:
            resp.release_conn()
        return b"".join(chunks)

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            for pool in self._pools.values():
                pool.clear()
            self._pools.clear()


def _reason(exc: BaseException) -> str:
    """A short reason for a connection failure (urllib3 wraps and repeats the URL)."""
    exc = getattr(exc, "reason", None) or exc
    text = str(exc)
    return text.split("): ", 1)[1] if "): " in text else text or type(exc).__name__


# ---- the footprint search (VOTable 1.1) -----------------------------------------------------


def footprint_query(base: str, ra: float, dec: float, size: float, inst: list[str] | None) -> str:
    """URL of a footprint search: position in degrees, ``SIZE`` in degrees, instruments."""
    url = f"{base}?strict=1&POS={ra!r},{dec!r}&SIZE={size!r}"
    if inst:
        url += "&INST=" + ",".join(inst)
    return url


def parse_footprints(body: bytes, url: str) -> list[dict[str, object]]:
    """Rows of a footprint VOTable as dicts (every row, duplicates kept, service order).

    ``QUERY_STATUS`` other than ``OK``, a document that is not a VOTable 1.1 ``results``
    resource with a ``SIAP_KEYWORDS`` table, or an unreadable table is a
    :class:`ServiceError`. A table without ``nrows`` (nothing matched) gives no rows.
    """
    try:
        tag = ET.fromstring(body).tag
    except ET.ParseError as exc:
        raise ServiceError("footprint", url, f"the answer is not XML ({exc})") from None
    if tag != f"{_VOT_NS}VOTABLE":
        raise ServiceError("footprint", url, f"expected a VOTable 1.1, got <{tag}>")
    vot = _parse_votable(body, url)
    res = [r for r in vot.resources if r.type == "results"]
    if len(res) != 1:
        raise ServiceError("footprint", url, "no RESOURCE of type 'results'")
    status = [i for i in res[0].infos if i.name == "QUERY_STATUS"]
    if not status:
        raise ServiceError("footprint", url, "no QUERY_STATUS in the answer")
    if status[0].value != "OK":
        text = " ".join(str(status[0].content or "").split()) or "no reason given"
        raise ServiceError("footprint", url, f"QUERY_STATUS {status[0].value}: {text}")
    tables = [t for t in res[0].tables if t.name == "SIAP_KEYWORDS"]
    if not tables:
        raise ServiceError("footprint", url, "no SIAP_KEYWORDS table")
    array = tables[0].array
    names = list(array.dtype.names or ())
    if len(array) and (missing := {"ObsId", "Instrument", "Grating", "RA", "Dec"} - set(names)):
        raise ServiceError("footprint", url, f"fields missing: {', '.join(sorted(missing))}")
    return [{n: _plain(array[n][i]) for n in names} for i in range(len(array))]


def _parse_votable(body: bytes, url: str):  # -> astropy VOTableFile
    from astropy.io import votable  # lazy: astropy is slow to import
    from astropy.io.votable.exceptions import VOWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VOWarning)
            return votable.parse(io.BytesIO(body), verify="ignore")
    except Exception as exc:  # astropy raises many kinds on bad tables
        raise ServiceError("footprint", url, f"unreadable VOTable ({exc})") from None


def _plain(value: object) -> object:
    """A numpy scalar or masked value as a plain Python value (None when masked)."""
    import numpy as np

    if value is np.ma.masked:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- the observation catalogue (RDB-like text) ----------------------------------------------


def ocat_details_url(base: str, obsid: int) -> str:
    """URL of ``ocatDetails.do`` for one ObsId, text format."""
    return f"{_slash(base)}ocatDetails.do?obsid={int(obsid)}&format=text"


def ocat_list_url(base: str, **params: object) -> str:
    """URL of ``ocatList.do`` with the given parameters (``obsid=``, ``instrument=``...)."""
    query = {k: v for k, v in params.items() if v is not None}
    return f"{_slash(base)}ocatList.do?{urlencode({**query, 'format': 'text'})}"


def _slash(base: str) -> str:
    return base if base.endswith("/") else base + "/"


def parse_ocat(body: bytes, url: str) -> list[dict[str, str]]:
    """Rows of an observation-catalogue text answer (comments, header, widths, rows)."""
    text = body.decode("iso-8859-1")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise ServiceError("ocat", url, "empty answer (no header line)")
    header = [h.strip() for h in lines[0].split("\t")]
    if "OBSID" not in header or len(lines) < 2:
        raise ServiceError("ocat", url, "not an observation-catalogue table (no OBSID column)")
    widths = lines[1].split("\t")
    if len(widths) != len(header) or not all(w.strip().rstrip("NS").isdigit() for w in widths):
        raise ServiceError("ocat", url, "not an observation-catalogue table (no widths line)")
    rows = []
    for line in lines[2:]:
        cells = line.split("\t")
        if len(cells) != len(header):
            raise ServiceError("ocat", url, f"a row has {len(cells)} cells, not {len(header)}")
        rows.append({h: c.strip() for h, c in zip(header, cells, strict=True)})
    return rows


# ---- name resolvers ----------------------------------------------------------------------


def cadc_url(base: str, name: str) -> str:
    """URL of a CADC resolver query for ``name``."""
    query = urlencode({"format": "ascii", "service": "all", "cached": "true", "target": name})
    return f"{base}?{query}"


def parse_cadc(reply: Reply) -> tuple[float, float] | None:
    """(ra, dec) in degrees from CADC's ``key=value`` lines; None when the name is unknown."""
    text = reply.body.decode("utf-8", "replace")
    pairs = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
    pairs = {k.strip(): v.strip() for k, v in pairs.items()}
    if reply.status == 425 or "error" in pairs:
        return None
    if pairs.get("coordsys", "ICRS").upper() != "ICRS":
        raise ServiceError("cadc", reply.url, f"unsupported coordsys {pairs['coordsys']!r}")
    try:
        return float(pairs["ra"]), float(pairs["dec"])
    except (KeyError, ValueError):
        raise ServiceError("cadc", reply.url, "the answer has no ra= and dec= lines") from None


def sesame_url(base: str, name: str) -> str:
    """URL of a CDS Sesame query for ``name``."""
    return f"{base}?{quote(name)}"


def parse_sesame(reply: Reply) -> tuple[float, float] | None:
    """(ra, dec) in degrees from Sesame's XML (first resolver with a position), or None."""
    try:
        root = ET.fromstring(reply.body)
    except ET.ParseError as exc:
        raise ServiceError("sesame", reply.url, f"the answer is not XML ({exc})") from None
    for resolver in root.iter("Resolver"):
        ra, dec = resolver.findtext("jradeg"), resolver.findtext("jdedeg")
        if ra and dec:
            try:
                return float(ra), float(dec)
            except ValueError:
                raise ServiceError("sesame", reply.url, f"bad position {ra!r} {dec!r}") from None
    if root.tag != "Sesame":
        raise ServiceError("sesame", reply.url, f"expected <Sesame>, got <{root.tag}>")
    return None
