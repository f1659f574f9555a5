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
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError

from ._version import __version__
from .config import SessionConfig
from .errors import ChandraDownloadError, TransientError
from .http_pool import pool_manager, proxy_for, tls_options
from .retry import with_retries

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


class ServiceClient:
    """A small pooled HTTP client for the search services (thread-safe).

    Parameters
    ----------
    config : SessionConfig, optional
        Timeout, retries, backoff and TLS settings (``ca_bundle``, ``insecure``).
    """

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self._pools: dict[str | None, urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._answered: set[str] = set()  # hosts that answered once (else: not retried)

    def _pool(self, url: str) -> urllib3.PoolManager:
        proxy = proxy_for(url)
        with self._lock:
            if proxy not in self._pools:
                cfg = self.config
                kw: dict = dict(
                    num_pools=8,
                    timeout=urllib3.Timeout(connect=cfg.timeout, read=cfg.timeout),
                    retries=urllib3.Retry(
                        total=None, connect=0, read=0, status=0, other=0, redirect=5
                    ),
                    headers={"User-Agent": USER_AGENT},
                )
                kw.update(tls_options(cfg))
                self._pools[proxy] = pool_manager(proxy, **kw)
            return self._pools[proxy]

    def get(self, service: str, url: str, ok: tuple[int, ...] = (200,)) -> Reply:
        """GET ``url``, retrying transient failures; a status outside ``ok`` is an error."""

        host = urlsplit(url).netloc

        def once() -> Reply:
            try:
                resp = self._pool(url).request("GET", url, preload_content=True)
            except (HTTPError, OSError) as exc:
                cause = exc.reason if isinstance(exc, MaxRetryError) else exc
                if isinstance(cause, ConnectTimeoutError) and host not in self._answered:
                    # Refused, DNS failure, no route on first contact: retrying will not help,
                    # and a fallback (CADC -> Sesame) should move on at once.
                    raise ServiceError(service, url, _reason(exc)) from None
                raise TransientError(_reason(exc)) from None
            self._answered.add(host)
            if resp.status in ok:
                return Reply(resp.status, resp.data, url)
            if resp.status >= 500 or resp.status == 429:
                after = resp.headers.get("Retry-After")
                delay = float(after) if after and after.isdigit() else None
                raise TransientError(f"HTTP {resp.status}", delay)
            raise ServiceError(service, url, f"HTTP {resp.status}")

        try:
            return with_retries(once, self.config, self.stop, NAMES[service])
        except TransientError as exc:
            raise ServiceError(service, url, str(exc)) from None

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
