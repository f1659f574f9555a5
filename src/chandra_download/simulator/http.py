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
import os
import select
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from email.utils import formatdate
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from .faults import PIPELINE_FAULTS, TRAVERSAL_ENTRIES, Fault, FaultPlan
from .http_response import (
    FILE_FAULTS,
    RANGE_FAULTS,
    ResponseHandler,
    byte_span,
    range_header,
    wanted_range,
)
from .link import LinkModel, ServerStats, TimedReader

# Re-exported: the listing helpers lived here before ``listing_html`` (tests import them).
from .listing_html import apache_listing, apache_size, content_type

__all__ = ["ArchiveHTTPServer", "apache_listing", "apache_size", "content_type"]

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


class _Handler(ResponseHandler):
    """Routes archive requests; replies, ranges and faults come from ``ResponseHandler``."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as Apache sets: else Nagle holds the body behind the headers until the
    # client's delayed ACK, adding ~40 ms to every request beyond the modelled latency.
    disable_nagle_algorithm = True
    server_version = "Apache/2.4.62 (Unix)"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.sim: ArchiveHTTPServer = self.server.sim
        self.conn_link = self.sim.link.new_connection()
        self.rfile.close()
        self.rfile = self.timed = TimedReader(self.connection)  # type: ignore[assignment]
        self.served = 0  # requests answered on this connection (Apache's keep-alive count)
        self.answered_at = 0.0  # when the last answer was complete
        self.owed: str | None = None  # a pipeline_exchange's file, for the request behind

    def end_headers(self) -> None:
        # Apache's keep-alive: the count of requests left, and a close on the last one.
        most = self.sim.keepalive_max
        if not self.close_connection and self.request_version == "HTTP/1.1":
            if most is not None and self.served + 1 >= most:
                self.send_header("Connection", "close")
            elif most is not None:
                self.send_header("Keep-Alive", f"timeout=5, max={most - self.served - 1}")
        super().end_headers()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # client went away, TLS alert...: just end this connection
            self.close_connection = True
        self.served += 1
        self.answered_at = time.monotonic()
        most = self.sim.keepalive_max
        if most is not None and self.served >= most:
            self.close_connection = True

    def do_GET(self) -> None:
        with self.sim.stats.answering():
            self._archive(head=False)

    def do_HEAD(self) -> None:
        with self.sim.stats.answering():
            self._archive(head=True)

    def do_POST(self) -> None:
        self._control("POST")

    def do_DELETE(self) -> None:
        self._control("DELETE")

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
        if self.timed.arrival < self.answered_at:
            sim.stats.add_pipelined(self.command, below)
        # One round trip after the request came in: pipelined requests share theirs.
        self.timed.wait_until(self.timed.arrival + sim.link.latency, sim._stopping)
        owed, self.owed = self.owed, None
        fault = self._pipeline_fault(below) if owed is None else None
        if owed is not None:  # the other half of a pipeline_exchange
            below = owed
            decoded = prefix + below
            url = url._replace(path=quote(decoded))
        elif fault is not None and fault.kind == "pipeline_slow":
            sim._stopping.wait(fault.seconds or 2.0)
        elif fault is not None and fault.kind in ("pipeline_swap", "pipeline_exchange"):
            # The whole answer of the request behind: a listing's title names its directory.
            behind = _next_request_path(self.timed.buffered(), prefix)
            if fault.kind == "pipeline_exchange" and behind is not None:
                self.owed = below  # the request behind is answered with this one's file
            below = behind or below
            decoded = prefix + below
            url = url._replace(path=quote(decoded))
        if sim.redirect_base is not None:  # a mirror that moved: every request goes there
            return self._redirect(sim.redirect_base + url.path[len(prefix) :])
        if decoded + "/" == prefix:
            return self._redirect(url.path + "/")
        target = sim.resolve(below) if decoded.startswith(prefix) else None
        if target is None or not target.exists():
            return self._error(404)
        if target.is_dir():
            if not url.path.endswith("/"):
                return self._redirect(url.path + "/")
            self._listing(decoded, below, target, url.query)
            return self._pipeline_close(fault)
        if url.path.endswith("/"):
            return self._error(404)
        self._file(below, target)
        self._pipeline_close(fault)

    def _pipeline_close(self, fault: Fault | None) -> None:
        if fault is not None and fault.kind == "pipeline_close":
            self.close_connection = True  # unannounced: what was sent behind is never answered
            self.sim._track(self.connection, False)
            self.connection.shutdown(socket.SHUT_RDWR)

    def _pipeline_fault(self, below: str) -> Fault | None:
        """A fault breaking pipelining, when this request is pipelined and one matches:
        ``pipeline_slow`` delays a request that came in while the one before was answered,
        the others act on a request with another waiting behind it."""
        if not self.sim.faults.faults:
            return None
        self.timed.pump()
        kinds = {"pipeline_slow"} if self.timed.arrival < self.answered_at else set()
        if self.timed.buffered():
            kinds |= PIPELINE_FAULTS - {"pipeline_slow"}
        return self.sim.faults.match("http", below, kinds) if kinds else None

    def _redirect(self, location: str) -> None:
        text = f'The document has moved <a href="{location}">here</a>.'
        self._error(301, text, {"Location": location})

    def _listing(self, decoded: str, below: str, target: Path, query: str) -> None:
        fault = self.sim.faults.match("http", below, FILE_FAULTS | {"traversal", "dup_dir"})
        if fault is not None and fault.kind in ("status", "html"):
            return self._fault_status(fault)
        extra = fault.entries if fault is not None and fault.kind == "traversal" else ()
        if fault is not None and fault.kind == "dup_dir":
            extra = _dup_dirs(target, fault)
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
        range_hdr = range_header(self.headers, etag, modified)
        kinds = FILE_FAULTS | (RANGE_FAULTS if range_hdr else frozenset())
        fault = self.sim.faults.match("http", below, kinds)
        if fault is not None and fault.kind in ("status", "html"):
            return self._fault_status(fault)
        if fault is not None and fault.kind == "redirect_loop":
            return self._redirect_loop()
        if fault is not None and fault.kind == "endless":
            return self._endless(target.read_bytes(), fault)
        rng = wanted_range(range_hdr, total, fault)
        if rng == "unsatisfiable":
            unsat = {"Content-Range": f"bytes */{total}"}
            return self._error(416, "Requested range not satisfiable", unsat)
        start, length, code = byte_span(rng, total, fault)
        self.send_response(code)
        self.send_header("Content-Type", content_type(target.name))
        self.send_header("Content-Length", str(length))
        if self.sim.identity:  # (a CGI-backed mirror may state neither)
            self.send_header("Last-Modified", modified)
            self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if self.sim.gz_encoding and target.name.endswith(".gz"):
            # Apache's ``AddEncoding x-gzip .gz``: the stored bytes, labelled as encoded.
            self.send_header("Content-Encoding", self.sim.gz_encoding)
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{total}")
        self.end_headers()
        if self.command != "HEAD":
            lying = fault is not None and fault.kind == "lying_range"
            with open(target, "rb") as f:
                # lying_range: the header above names the requested bytes; these are others.
                self._send(f, 0 if lying else start, length, fault)


def _next_request_path(waiting: bytes, prefix: str) -> str | None:
    """The path below the base of the request waiting behind this one, if it has come."""
    line = waiting.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(line) < 2:
        return None
    decoded = unquote(urlsplit(line[1]).path)
    return decoded[len(prefix) :] if decoded.startswith(prefix) else None


def _dup_dirs(directory: Path, fault: Fault) -> tuple[str, ...]:
    """Listing entries of a ``dup_dir`` fault: files of ``directory`` shown again as
    directories (``oif.fits/``); only those named in ``fault.entries`` unless it is the default."""
    files = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name[0] != ".")
    if fault.entries != TRAVERSAL_ENTRIES:
        files = [name for name in files if name in fault.entries]
    return tuple(f"{name}/" for name in files)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256
    sim: ArchiveHTTPServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can hang without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request, client_address) -> None:
        sim = self.sim
        sim.stats.connection_opened(sim._ended_by_clients())
        sim._track(request, True)
        try:
            if sim._ssl_context is not None:
                try:
                    request = sim._ssl_context.wrap_socket(request, server_side=True)
                except (OSError, ValueError):
                    return  # failed handshake (e.g. client rejected our certificate)
                sim._track(request, True)
            self.RequestHandlerClass(request, client_address, self)  # type: ignore[arg-type]
            _linger(request)
        finally:
            sim.stats.connection_closed()
            sim._track(request, False)
            if sim._ssl_context is not None:
                request.close()

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _linger(sock: socket.socket) -> None:
    """Apache's lingering close: with requests still coming in (pipelined behind the last
    answer), stop sending and read on for up to 2 s before closing, else the kernel answers
    them with a reset that can destroy the answers the client has not read yet."""
    try:
        if not select.select([sock], [], [], 0)[0]:
            return
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.2)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    except (OSError, ValueError):
        pass


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
    gz_encoding : str or None
        Label ``.gz`` files ``Content-Encoding: <this>`` (``"x-gzip"`` or ``"gzip"``), as Apache
        mirrors set up with ``AddEncoding x-gzip .gz`` do; the body stays the stored file.
    identity : bool
        State each file's ``Last-Modified`` and ``ETag``; False: neither, as some CGI-backed
        mirrors (then only sizes and content checks can tell a changed copy).
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
        gz_encoding: str | None = None,
        redirect_base: str | None = None,
        keepalive_max: int | None = 100,
        identity: bool = True,
    ) -> None:
        self.root = Path(root).resolve()
        self.host, self.port, self.tls = host, port, tls
        self.link = link or LinkModel()
        self.faults = faults if faults is not None else FaultPlan()
        self.prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        self.auth = auth
        self.gz_encoding = gz_encoding
        self.redirect_base = redirect_base
        self.keepalive_max = keepalive_max
        self.identity = identity
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

    def _ended_by_clients(self) -> int:
        """Plain connections whose client has closed its end while their thread here has
        not yet noticed (under load it may lag behind the client's next connection)."""
        rdhup = getattr(select, "POLLRDHUP", None)
        if rdhup is None:
            return 0  # (not Linux: no correction)
        with self._live_lock:
            live = [s for s in self._live if type(s) is socket.socket and s.fileno() >= 0]
        # poll's flags, never a recv: a peek at a socket whose thread takes its data
        # meanwhile would wait out the socket's timeout, and this connection with it.
        poller = select.poll()
        for sock in live:
            try:
                poller.register(sock, rdhup)
            except (OSError, ValueError):
                continue  # (closed meanwhile)
        gone = rdhup | select.POLLHUP | select.POLLERR | select.POLLNVAL
        return sum(1 for _, flags in poller.poll(0) if flags & gone)

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
        attrs: dict[str, object] = {"sim": self}
        if ":" in self.host:
            attrs["address_family"] = socket.AF_INET6
        cls = type("_BoundServer", (_Server,), attrs)
        self._server = cls((self.host, self.port), _Handler)
        self.port = self._server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every connection accepted has ended here, so that the counts hold all
        a client sent, a request it sent and then gave up on included (a pipeline it left
        is read by its thread here after the client has moved on); False on ``timeout``."""
        end = time.monotonic() + timeout
        while self.stats.current_connections > 0:
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)
        return True

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
