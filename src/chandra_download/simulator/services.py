"""Loopback server of the archive's search services, answering from the simulated catalogue.

One HTTP(S) server serves, in the formats of the real services (ARCHIVE.md):

- ``/fps-dbdal-rest/jax-rs/main/footprints``: the footprint search, a VOTable 1.1 with
  ``RESOURCE type="results"``, ``INFO name="QUERY_STATUS"`` and ``TABLE name="SIAP_KEYWORDS"``
  (``nrows`` only when something matched; several rows per ObsId; public ObsIds only);
- ``/srservices/ocatDetails.do`` and ``/srservices/ocatList.do``: the observation catalogue as
  text (comment lines, a header line, a widths line, rows), encoded ISO-8859-1;
- ``/cadc-target-resolver/find``: CADC's ``key=value`` lines, HTTP 425 for an unknown name;
- ``/cgi-bin/nph-sesame/-ox/~SNV``: CDS Sesame's XML.

Test hooks: ``.fail(service, mode)`` makes one service misbehave (``unavailable``: HTTP 503,
``error-page``: an HTML page with status 200, ``status-error``: ``QUERY_STATUS`` ERROR,
``garbage``: bytes that are no format at all); ``.heal()`` undoes it; ``.requests`` lists
``(service, query)`` of every request; ``.env()`` gives the ``CHANDRA_*_URL`` variables.
"""

from __future__ import annotations

import math
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from .catalogue import Catalogue, Observation, load_catalogue

__all__ = ["FAILURE_MODES", "ArchiveServicesServer"]

PATHS = {
    "footprint": "/fps-dbdal-rest/jax-rs/main/footprints",
    "ocat": "/srservices/",
    "cadc": "/cadc-target-resolver/find",
    "sesame": "/cgi-bin/nph-sesame/-ox/~SNV",
}
FAILURE_MODES = ("unavailable", "error-page", "status-error", "garbage")
_VOT_FIELDS = [
    # (name, datatype, unit): the fields CIAO reads, plus other SIA fields.
    ("ObsId", "int", None), ("Instrument", "char", None), ("Grating", "char", None),
    ("Exposure", "double", "ks"), ("RA", "double", "deg"), ("Dec", "double", "deg"),
    ("target_name", "char", None), ("obs_date", "char", None), ("pi_last_name", "char", None),
    ("format", "char", None), ("fp_piece", "int", None),
]  # fmt: skip
_OCAT_COLUMNS = [
    # (column, width): N marks numbers, as the real service's widths line does.
    ("SEQ_NUM", "6N"), ("STATUS", "12"), ("OBSID", "5N"), ("PR_NUM", "8"),
    ("TARGET_NAME", "30"), ("GRID_NAME", "12"), ("INSTR", "6"), ("GRAT", "4"),
    ("TYPE", "4"), ("OBI_NUM", "3N"), ("START_DATE", "19"), ("PUBLIC_AVAIL", "10"),
    ("PI_NAME", "30"), ("OBSERVER", "30"), ("APP_EXP", "8N"), ("EXP_TIME", "8N"),
    ("RA", "12"), ("Dec", "12"), ("SOE_ROLL", "8N"), ("JOINT", "10"),
]  # fmt: skip


def separation_arcmin(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in arcmin (haversine) between two positions in degrees."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dp, dl = p2 - p1, math.radians(ra2 - ra1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(a)))) * 60


def _sexagesimal(value: float, hours: bool) -> str:
    sign = "-" if value < 0 else "+"
    v = abs(value) / 15 if hours else abs(value)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60) * 3600
    text = f"{d:02d} {m:02d} {s:05.2f}"
    return text if hours else sign + text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache-Coyote/1.1"
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        sim = self.server.sim
        url = urlsplit(self.path)
        service = next((k for k, p in PATHS.items() if url.path.startswith(p)), None)
        if service is None:
            return self._send(404, b"Not Found", "text/plain")
        sim.record(service, url.path, url.query)
        mode = sim.failures.get(service)
        if mode is not None and mode != "status-error":
            return self._fail(mode)
        cat = load_catalogue(sim.root)
        if service == "footprint":
            return self._send(200, footprint_votable(cat, url.query, mode), "text/xml")
        if service == "ocat":
            return self._ocat(cat, url.path[len(PATHS["ocat"]) :], url.query)
        if service == "cadc":
            return self._cadc(cat, parse_qs(url.query).get("target", [""])[0])
        return self._sesame(cat, unquote(url.query))

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fail(self, mode: str) -> None:
        if mode == "unavailable":
            return self._send(503, b"<html><body>Service Unavailable</body></html>", "text/html")
        if mode == "garbage":
            return self._send(200, b"\x00\x9f\x13garbage\xff\xfe" * 8, "application/octet-stream")
        page = b"<html><head><title>Error</title></head><body>Internal error</body></html>"
        self._send(200, page, "text/html;charset=UTF-8")

    def _ocat(self, cat: Catalogue, endpoint: str, query: str) -> None:
        params = {k.lower(): v[0] for k, v in parse_qs(query).items()}
        if endpoint == "ocatDetails.do":
            text = params.get("obsid", "").strip()
            obs = cat.observations.get(int(text)) if text.isdigit() else None
            rows = [obs] if obs is not None else []
        elif endpoint == "ocatList.do":
            rows = ocat_select(cat, params)
        else:
            return self._send(404, b"Not Found", "text/plain")
        self._send(200, ocat_text(rows), "text/plain;charset=ISO-8859-1")

    def _cadc(self, cat: Catalogue, name: str) -> None:
        pos = cat.find_target(name, "cadc")
        if pos is None:
            body = f"target={name}\nerror=Target not found\n".encode()
            return self._send(425, body, "text/plain")
        lines = [
            f"target={name}", "service=simulated(cached)", "coordsys=ICRS",
            f"ra={pos[0]}", f"dec={pos[1]}", "time(ms)=1",
        ]  # fmt: skip
        self._send(200, ("\n".join(lines) + "\n").encode(), "text/plain")

    def _sesame(self, cat: Catalogue, name: str) -> None:
        pos = cat.find_target(name, "sesame")
        found = (
            '  <Resolver name="S=Simbad (simulated)">\n'
            f"    <jradeg>{pos[0]}</jradeg>\n    <jdedeg>{pos[1]}</jdedeg>\n  </Resolver>\n"
            if pos is not None
            else "  <INFO>*** Nothing found ***</INFO>\n"
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Sesame>\n'
            f'<Target option="SNV">\n  <name>{escape(name)}</name>\n{found}</Target>\n</Sesame>\n'
        )
        self._send(200, body.encode(), "text/xml")


def footprint_votable(cat: Catalogue, query: str, mode: str | None = None) -> bytes:
    """The footprint service's VOTable for a query string (``POS``, ``SIZE``, ``INST``)."""
    params = {k.upper(): v[0] for k, v in parse_qs(query).items()}
    try:
        ra, dec = (float(x) for x in params["POS"].split(","))
        size = float(params.get("SIZE", "0"))
    except (KeyError, ValueError):
        return _votable("ERROR", "POS must be ra,dec in degrees", [])
    if mode == "status-error":
        return _votable("ERROR", "Database unavailable", [])
    insts = {i.strip().upper() for i in params.get("INST", "").split(",") if i.strip()}
    hits = [
        o
        for _, o in sorted(cat.observations.items())
        if o.public
        and (not insts or o.instrument in insts)
        and separation_arcmin(ra, dec, o.ra, o.dec) <= size * 60 + o.field_radius
    ]
    # One row per footprint piece, pieces interleaved: an ObsId's repeats come after others.
    rows = [
        (o, piece)
        for piece in range(max((o.footprint_pieces for o in hits), default=0))
        for o in hits
        if piece < o.footprint_pieces
    ]
    return _votable("OK", "", rows)


def _votable(status: str, text: str, rows: list[tuple[Observation, int]]) -> bytes:
    nrows = f' nrows="{len(rows)}"' if rows else ""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<VOTABLE version="1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns="http://www.ivoa.net/xml/VOTable/v1.1">',
        ' <RESOURCE type="results">',
        f' <INFO name="QUERY_STATUS" value="{status}">{escape(text)}</INFO>',
        f' <TABLE name="SIAP_KEYWORDS"{nrows}>',
    ]
    for name, dtype, unit in _VOT_FIELDS:
        size = ' arraysize="*"' if dtype == "char" else ""
        units = f' unit="{unit}"' if unit else ""
        out.append(f'  <FIELD name="{name}" datatype="{dtype}"{size}{units}/>')
    out.append("  <DATA><TABLEDATA>")
    for o, piece in rows:
        cells = [
            o.obsid, o.instrument, o.grating, o.exposure, o.ra, o.dec, o.target,
            o.obs_date or "", o.pi, "image/fits", piece + 1,
        ]  # fmt: skip
        out.append("   <TR>" + "".join(f"<TD>{escape(str(c))}</TD>" for c in cells) + "</TR>")
    out += ["  </TABLEDATA></DATA>", " </TABLE>", " </RESOURCE>", "</VOTABLE>", ""]
    return "\n".join(out).encode("utf-8")


def _obsid_set(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit():
            out.update(range(int(lo), int(hi if hi.isdigit() else lo) + 1))
    return out


def ocat_select(cat: Catalogue, params: dict[str, str]) -> list[Observation]:
    """``ocatList.do``: rows matching ``obsid``, ``instrument``, ``grating``, ``status`` and a
    cone (``ra``, ``dec`` in degrees, ``radius`` in arcmin), at most ``maxresults``."""
    rows = [o for _, o in sorted(cat.observations.items())]
    if "obsid" in params:
        wanted = _obsid_set(params["obsid"])
        rows = [o for o in rows if o.obsid in wanted]
    for key, attr in (("instrument", "instrument"), ("grating", "grating"), ("status", "status")):
        if params.get(key):
            allowed = {v.strip().upper() for v in params[key].split(",")}
            rows = [o for o in rows if str(getattr(o, attr)).upper() in allowed]
    if "ra" in params and "dec" in params:
        ra, dec, radius = float(params["ra"]), float(params["dec"]), float(params.get("radius", 1))
        rows = [o for o in rows if separation_arcmin(ra, dec, o.ra, o.dec) <= radius]
    return rows[: int(params["maxresults"])] if params.get("maxresults") else rows


def ocat_text(rows: list[Observation]) -> bytes:
    """The observation catalogue's text answer, ISO-8859-1."""
    lines = [
        "#---------------------------------------------------------------",
        "# Chandra Observation Catalog (chandra-download archive simulator)",
        "#---------------------------------------------------------------",
        "\t".join(c for c, _ in _OCAT_COLUMNS),
        "\t".join(w for _, w in _OCAT_COLUMNS),
    ]
    for o in rows:
        observed = o.status in ("archived", "observed")
        values = [
            str(500000 + o.obsid), o.status, str(o.obsid), "01700001", o.target, "",
            o.instrument, o.grating, "GO", "0", o.obs_date or "", o.public_avail or "",
            o.pi, o.pi, f"{o.exposure:.1f}", f"{o.exposure:.1f}" if observed else "",
            _sexagesimal(o.ra, True), _sexagesimal(o.dec, False), "120.5", "None",
        ]  # fmt: skip
        lines.append("\t".join(values))
    return ("\n".join(lines) + "\n").encode("iso-8859-1", "replace")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: ArchiveServicesServer


class ArchiveServicesServer:
    """The search services of a simulated archive, on loopback (see the module docstring).

    Parameters
    ----------
    root : path
        An archive generated by ``generate_archive`` (its ``.simulator/catalogue.json``).
    host, port : str, int
        Where to listen (port 0: a free port).
    tls : bool
        Serve HTTPS with a private CA (trust ``.ca_file``).
    """

    def __init__(
        self, root: Path | str, host: str = "127.0.0.1", port: int = 0, tls: bool = False
    ) -> None:
        self.root = Path(root)
        self.failures: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.ca_file: str | None = None
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.sim = self
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if tls:
            self._wrap_tls()
        h, p = self._httpd.server_address[:2]
        self.base_url = f"{'https' if tls else 'http'}://{h!s}:{p}"
        self._thread: threading.Thread | None = None

    def _wrap_tls(self) -> None:
        import trustme  # lazy: only TLS servers need it

        ca = trustme.CA(organization_name="chandra-download services simulator")
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self._tmp = tempfile.TemporaryDirectory(prefix="chandra-services-")
        self.ca_file = str(Path(self._tmp.name) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        sock: socket.socket = self._httpd.socket
        self._httpd.socket = ctx.wrap_socket(sock, server_side=True)

    @property
    def urls(self) -> dict[str, str]:
        """Base URL of each service, as the client takes them (ocat: up to ``srservices/``)."""
        return {k: self.base_url + p for k, p in PATHS.items()}

    def env(self) -> dict[str, str]:
        """The environment variables pointing the client at this server."""
        from ..services import ENV

        return {ENV[k]: v for k, v in self.urls.items()}

    def record(self, service: str, path: str, query: str) -> None:
        with self._lock:
            self.requests.append((service, f"{path}?{query}"))

    def fail(self, service: str, mode: str) -> None:
        """Make ``service`` (``footprint``, ``ocat``, ``cadc``, ``sesame``) misbehave."""
        if service not in PATHS or mode not in FAILURE_MODES:
            raise ValueError(
                f"fail({service!r}, {mode!r}): use {sorted(PATHS)} and {FAILURE_MODES}"
            )
        self.failures[service] = mode

    def heal(self) -> None:
        """Every service answers normally again."""
        self.failures.clear()

    def start(self) -> ArchiveServicesServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a loop never run
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmp is not None:  # the TLS server's CA file
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ArchiveServicesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
