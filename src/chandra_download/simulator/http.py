"""HTTP(S) server for a simulated archive tree, behaving like the CDA's Apache 2.4.

Plain unthrottled responses go out with ``sendfile`` (loopback speed); TLS, throttled or
faulty responses are sent in paced chunks. Listings copy Apache ``mod_autoindex``
(FancyIndexing + HTMLTable). Test hooks: ``.faults`` (a :class:`FaultPlan`), ``.stats``, and
the same over HTTP under ``/_simulator/`` (``GET stats``, ``DELETE stats``, ``GET/POST/DELETE
faults``) for pipelines in another process. Control URLs need no auth and are not counted.
"""

from __future__ import annotations

import base64
import hmac
import html
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import struct
import tempfile
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from .faults import Fault, FaultPlan, corrupt_bytes, cut_length
from .link import LinkModel, ServerStats

__all__ = ["ArchiveHTTPServer", "apache_listing", "apache_size", "content_type"]

_FILE_FAULTS = frozenset({"status", "html", "drop", "stall", "truncate", "corrupt"})
_RANGE_FAULTS = frozenset({"ignore_range", "wrong_content_range"})
_NOT_FOUND = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>{code} {reason}'
    "</title>\n</head><body>\n<h1>{reason}</h1>\n<p>{text}</p>\n</body></html>\n"
)
_TYPES = (
    (".fits.gz", "application/x-gzip"),
    (".gz", "application/x-gzip"),
    (".fits", "application/fits"),
    (".jpg", "image/jpeg"),
    (".png", "image/png"),
    (".pdf", "application/pdf"),
    (".par", "text/plain"),
    (".log", "text/plain"),
)
_MTIME_FALLBACK = 1560411720.0
_TLS_CACHE: dict[str, object] = {}
_TLS_LOCK = threading.Lock()


def _tls_material() -> tuple[bytes, object]:
    """(CA PEM, trustme leaf cert) made once per process: key generation is slowish."""
    with _TLS_LOCK:
        if not _TLS_CACHE:
            import trustme  # lazy: only TLS servers need it

            ca = trustme.CA(organization_name="chandra-download archive simulator")
            _TLS_CACHE["ca"] = ca.cert_pem.bytes()
            _TLS_CACHE["cert"] = ca.issue_cert("127.0.0.1", "localhost", "::1")
        return _TLS_CACHE["ca"], _TLS_CACHE["cert"]  # type: ignore[return-value]


def content_type(name: str) -> str:
    """Apache-like Content-Type; ``.gz`` is never announced as a Content-Encoding."""
    low = name.lower()
    for suffix, ctype in _TYPES:
        if low.endswith(suffix):
            return ctype
    return "text/plain" if "." not in low else "application/octet-stream"


def apache_size(size: int) -> str:
    """Size column of mod_autoindex (a port of ``apr_strfsize``): `` 20 ``, ``112K``, ``2.1M``."""
    if size < 973:
        return f"{size:3d} "
    for unit in "KMGTPE":
        remain, size = size & 1023, size >> 10
        if size >= 973:
            continue
        if size < 9 or (size == 9 and remain < 973):
            remain = (remain * 5 + 256) // 512
            if remain >= 10:
                size, remain = size + 1, 0
            return f"{size}.{remain}{unit}"
        return f"{size + (remain >= 512):3d}{unit}"
    return "  - "


def apache_listing(url_path: str, directory: Path, query: str = "", extra=()) -> str:
    """Apache 2.4 ``mod_autoindex`` page (FancyIndexing, HTMLTable) for ``directory``.

    ``extra`` names are listed verbatim, unescaped (the ``traversal`` fault).
    """
    title = html.escape(url_path.rstrip("/") or "/")
    entries = []
    for e in os.scandir(directory):
        if e.name.startswith(".") or e.name.endswith(".part"):
            continue  # like Apache's IndexIgnore .??*
        st = e.stat()
        entries.append((e.name, e.is_dir(), st.st_mtime, -1 if e.is_dir() else st.st_size))
    opts = dict(kv.split("=", 1) for kv in query.replace("&", ";").split(";") if "=" in kv)
    key = {"M": 2, "S": 3}.get(opts.get("C", "N"), 0)
    entries.sort(key=lambda x: (x[key], x[0]), reverse=opts.get("O") == "D")
    parent = url_path.rstrip("/").rsplit("/", 1)[0] + "/"
    rows = [
        '<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td><td><a href="'
        + html.escape(quote(parent))
        + '">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td>'
        "<td>&nbsp;</td></tr>"
    ]
    items = [(n, d, t, s, False) for n, d, t, s in entries]
    items += [(n, False, _MTIME_FALLBACK, 0, True) for n in extra]
    for name, is_dir, mtime, size, raw in items:
        label = name + ("/" if is_dir else "")
        href = label if raw else html.escape(quote(label, safe="$-_.+!*'(),:@&=~/"))
        icon, alt = ("folder.gif", "[DIR]") if is_dir else ("unknown.gif", "[   ]")
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
        rows.append(
            f'<tr><td valign="top"><img src="/icons/{icon}" alt="{alt}"></td>'
            f'<td><a href="{href}">{label if raw else html.escape(label)}</a></td>'
            f'<td align="right">{when}  </td><td align="right">'
            f"{'  - ' if is_dir else apache_size(size)}</td><td>&nbsp;</td></tr>"
        )
    return (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<html>\n <head>\n'
        f"  <title>Index of {title}</title>\n </head>\n <body>\n<h1>Index of {title}</h1>\n"
        '  <table>\n   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th>'
        '<th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th>'
        '<th><a href="?C=S;O=A">Size</a></th><th><a href="?C=D;O=A">Description</a></th></tr>\n'
        '   <tr><th colspan="5"><hr></th></tr>\n'
        + "\n".join(rows)
        + '\n   <tr><th colspan="5"><hr></th></tr>\n</table>\n</body></html>\n'
    )


def _parse_range(value: str, total: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive, "unsatisfiable", or None to ignore (malformed / multi-range)."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or not (m[1] or m[2]):
        return None
    if not m[1]:  # suffix range: the last N bytes
        n = int(m[2])
        return "unsatisfiable" if n == 0 or total == 0 else (max(0, total - n), total - 1)
    start = int(m[1])
    end = int(m[2]) if m[2] else total - 1
    if m[2] and end < start:
        return None  # invalid: RFC 9110 says ignore the header
    if start >= total:
        return "unsatisfiable"
    return start, min(end, total - 1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache/2.4.62 (Unix)"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.sim: ArchiveHTTPServer = self.server.sim
        self.conn_link = self.sim.link.new_connection()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # client went away, TLS alert...: just end this connection
            self.close_connection = True

    def do_GET(self) -> None:
        self._archive(head=False)

    def do_HEAD(self) -> None:
        self._archive(head=True)

    def do_POST(self) -> None:
        self._control("POST")

    def do_DELETE(self) -> None:
        self._control("DELETE")

    # --- helpers ------------------------------------------------------------------------

    def _reply(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            if not self.path.startswith("/_simulator/"):  # control traffic is not counted
                self.sim.stats.add_bytes(len(body))

    def _error(self, code: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        reason = self.responses.get(code, ("Error",))[0]
        text = text or {404: "The requested URL was not found on this server."}.get(code, reason)
        body = _NOT_FOUND.format(code=code, reason=reason, text=text).encode()
        self._reply(code, body, "text/html; charset=iso-8859-1", headers)

    def _control(self, method: str) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim, out = self.sim, None
        if path == "/_simulator/stats" and method in ("GET", "HEAD"):
            out = sim.stats.to_dict()
        elif path == "/_simulator/stats" and method == "DELETE":
            sim.stats.reset()
            out = {"ok": True}
        elif path == "/_simulator/faults" and method in ("GET", "HEAD"):
            out = [f.to_dict() for f in sim.faults.faults]
        elif path == "/_simulator/faults" and method == "DELETE":
            sim.faults.clear()
            out = {"ok": True}
        elif path == "/_simulator/faults" and method == "POST":
            try:
                data = json.loads(raw or b"[]")
                new = [Fault.from_dict(d) for d in (data if isinstance(data, list) else [data])]
            except (ValueError, TypeError) as exc:
                return self._reply(
                    400, json.dumps({"error": str(exc)}).encode(), "application/json"
                )
            for f in new:
                sim.faults.add(f)
            out = {"ok": True, "added": len(new)}
        if out is None:
            return self._error(404 if path.startswith("/_simulator/") else 405)
        self._reply(200, json.dumps(out).encode(), "application/json")

    def _authorized(self) -> bool:
        if self.sim.auth is None:
            return True
        value = self.headers.get("Authorization", "")
        if not value.lower().startswith("basic "):
            return False
        try:
            user, _, pwd = base64.b64decode(value[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        want_user, want_pwd = self.sim.auth
        return hmac.compare_digest(user, want_user) & hmac.compare_digest(pwd, want_pwd)

    # --- archive requests -----------------------------------------------------------------

    def _archive(self, head: bool) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/_simulator/"):
            return self._control(self.command)
        sim, prefix = self.sim, self.sim.prefix
        decoded = unquote(url.path)
        below = decoded[len(prefix) :] if decoded.startswith(prefix) else decoded
        sim.stats.record(self.command, below)
        if not self._authorized():
            realm = {"WWW-Authenticate": 'Basic realm="Chandra archive simulator"'}
            return self._error(401, "Authorization required.", realm)
        sim.link.delay(sim._stopping)
        if decoded + "/" == prefix:
            return self._redirect(url.path + "/")
        target = sim.resolve(below) if decoded.startswith(prefix) else None
        if target is None or not target.exists():
            return self._error(404)
        if target.is_dir():
            if not url.path.endswith("/"):
                return self._redirect(url.path + "/")
            return self._listing(decoded, below, target, url.query)
        if url.path.endswith("/"):
            return self._error(404)
        self._file(below, target)

    def _redirect(self, location: str) -> None:
        text = f'The document has moved <a href="{location}">here</a>.'
        self._error(301, text, {"Location": location})

    def _fault_status(self, fault: Fault) -> None:
        if fault.kind == "html":
            body = _NOT_FOUND.format(code=200, reason="Service Unavailable", text="Try later.")
            return self._reply(200, body.encode(), "text/html; charset=UTF-8")
        extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        self._error(fault.status, "", extra)

    def _listing(self, decoded: str, below: str, target: Path, query: str) -> None:
        fault = self.sim.faults.match("http", below, _FILE_FAULTS | {"traversal"})
        if fault is not None and fault.kind in ("status", "html"):
            return self._fault_status(fault)
        extra = fault.entries if fault is not None and fault.kind == "traversal" else ()
        body = apache_listing(decoded, target, query, extra).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self._send(body, 0, len(body), fault)

    def _file(self, below: str, target: Path) -> None:
        st = target.stat()
        total = st.st_size
        etag = f'"{total:x}-{int(st.st_mtime * 1_000_000):x}"'
        modified = formatdate(st.st_mtime, usegmt=True)
        range_hdr = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_hdr and if_range and if_range not in (etag, modified):
            range_hdr = None  # the file changed since: send it whole (RFC 9110)
        kinds = _FILE_FAULTS | (_RANGE_FAULTS if range_hdr else frozenset())
        fault = self.sim.faults.match("http", below, kinds)
        if fault is not None and fault.kind in ("status", "html"):
            return self._fault_status(fault)
        rng = _parse_range(range_hdr, total) if range_hdr else None
        if fault is not None and fault.kind == "ignore_range":
            rng = None
        if rng == "unsatisfiable":
            unsat = {"Content-Range": f"bytes */{total}"}
            return self._error(416, "Requested range not satisfiable", unsat)
        start, length, code = 0, total, 200
        if isinstance(rng, tuple):
            start, length, code = rng[0], rng[1] - rng[0] + 1, 206
            if fault is not None and fault.kind == "wrong_content_range":
                # Honest about what is sent, but not what was asked for.
                start = start // 2 if start > 0 else max(1, total // 2)
                length = max(1, min(length, total - start))
        self.send_response(code)
        self.send_header("Content-Type", content_type(target.name))
        self.send_header("Content-Length", str(length))
        self.send_header("Last-Modified", modified)
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{total}")
        self.end_headers()
        if self.command != "HEAD":
            with open(target, "rb") as f:
                self._send(f, start, length, fault)

    def _send(self, src, start: int, length: int, fault: Fault | None) -> None:
        """Send a body (bytes or an open file), applying link pacing and body faults."""
        sim, sock = self.sim, self.connection
        if fault is None and not sim.tls and not sim.link.throttled and not isinstance(src, bytes):
            sent = sock.sendfile(src, start, length) if length else 0
            sim.stats.add_bytes(sent)
            return
        limit = cut_length(fault, length)
        stall_at = fault.after_bytes if fault is not None and fault.kind == "stall" else None
        chunk = sim.link.chunk_size()
        if not isinstance(src, bytes):
            src.seek(start)
        pos = 0
        while pos < limit:
            if stall_at is not None and pos >= stall_at:
                sim._stopping.wait(fault.seconds)  # type: ignore[union-attr]
                stall_at = None
            n = min(chunk, limit - pos)
            if stall_at is not None:
                n = min(n, stall_at - pos) or n
            data = src[start + pos : start + pos + n] if isinstance(src, bytes) else src.read(n)
            if not data:
                break
            if fault is not None and fault.kind == "corrupt":
                data = corrupt_bytes(data, pos, length, fault.after_bytes)
            sim.link.pace(self.conn_link, len(data))
            self.wfile.write(data)
            sim.stats.add_bytes(len(data))
            pos += len(data)
        if limit < length:
            self.close_connection = True
            if fault is not None and fault.kind == "drop":
                # Linger 0: closing sends a TCP reset, like a connection cut mid-transfer.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256
    sim: ArchiveHTTPServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can hang without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address) -> None:
        sim = self.sim
        sim.stats.connection_opened()
        sim._track(request, True)
        try:
            if sim._ssl_context is not None:
                try:
                    request = sim._ssl_context.wrap_socket(request, server_side=True)
                except (OSError, ValueError):
                    return  # failed handshake (e.g. client rejected our certificate)
                sim._track(request, True)
            self.RequestHandlerClass(request, client_address, self)
        finally:
            sim.stats.connection_closed()
            sim._track(request, False)
            if sim._ssl_context is not None:
                request.close()

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ArchiveHTTPServer:
    """Serve a generated archive tree over HTTP or HTTPS in a background thread.

    Parameters
    ----------
    root : path
        Directory holding ``byobsid/`` (see :func:`generate_archive`).
    host, port : str, int
        Address to listen on; port 0 picks a free port.
    tls : bool
        Serve HTTPS with a certificate for 127.0.0.1/localhost from a private CA
        (``ca_file``).
    link : LinkModel, optional
        Latency and bandwidth caps.
    faults : FaultPlan, optional
        Fault plan (a new empty one by default; also reachable as ``.faults``).
    prefix : str
        URL path of the mirror base (the directory holding ``byobsid/``).
    auth : (str, str), optional
        Require HTTP basic auth with this user name and password.
    """

    def __init__(
        self,
        root: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        link: LinkModel | None = None,
        faults: FaultPlan | None = None,
        prefix: str = "/cdaftp/",
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.host, self.port, self.tls = host, port, tls
        self.link = link or LinkModel()
        self.faults = faults if faults is not None else FaultPlan()
        self.prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        self.auth = auth
        self.stats = ServerStats()
        self.ca_file: str | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None
        self._stopping = threading.Event()
        self._live: set = set()
        self._live_lock = threading.Lock()

    def resolve(self, below: str) -> Path | None:
        """Filesystem path for a decoded URL path below the base, or None if not servable."""
        parts = below.split("/")
        if any(p in (".", "..") or "\\" in p or "\0" in p or p.startswith(".") for p in parts):
            return None  # also hides dot files such as the generator's stamp directory
        path = self.root.joinpath(*[p for p in parts if p])
        try:
            real = path.resolve()
        except (OSError, RuntimeError):
            return None
        return path if real == self.root or self.root in real.parents else None

    def _track(self, sock, add: bool) -> None:
        with self._live_lock:
            (self._live.add if add else self._live.discard)(sock)

    @property
    def base_url(self) -> str:
        """The mirror value for clients, e.g. ``http://127.0.0.1:8080/cdaftp/``."""
        if self._server is None:
            raise RuntimeError("server not started")
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{self.prefix}"

    def start(self) -> ArchiveHTTPServer:
        """Bind, and serve from a daemon thread; returns self."""
        if self.tls:
            ca_pem, cert = _tls_material()
            self._tmpdir = tempfile.mkdtemp(prefix="chandra-sim-tls-")
            self.ca_file = os.path.join(self._tmpdir, "ca.pem")
            Path(self.ca_file).write_bytes(ca_pem)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert.configure_cert(ctx)  # type: ignore[attr-defined]
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_context = ctx
        cls = type("_BoundServer", (_Server,), {"sim": self})
        if ":" in self.host:
            cls.address_family = socket.AF_INET6
        self._server = cls((self.host, self.port), _Handler)
        self.port = self._server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut any open keep-alive connections."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)  # type: ignore[union-attr]
        self._server = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> ArchiveHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
