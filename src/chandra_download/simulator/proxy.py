"""A fault-injecting HTTP reverse proxy in front of the moto S3 server.

Each request asks the :class:`~chandra_download.simulator.faults.FaultPlan` (protocol ``"s3"``)
with the path below the mirror base: ``byobsid/3/1843/primary/x.fits.gz`` for an object,
``byobsid/3/1843/`` for a listing of that ObsId. Requests outside the bucket and prefix get no
faults. Kinds, as in ``faults.py``:

``status``        answer ``status`` with an S3 XML error (``SlowDown`` for 503), ``Retry-After``
``drop``          real headers, ``after_bytes`` of the body, then a TCP reset (0: no response)
``truncate``      announce the full length, send part of the body, close cleanly
``stall``         wait ``seconds`` after ``after_bytes`` body bytes, then go on
``corrupt``       flip a few body bytes, same length (``vary``: other bytes on each request)
``ignore_range``  forward without ``Range``: 200 and the whole object
``wrong_content_range``  a ranged GET answered from half the requested offset (truthful
                  ``Content-Range``, so the data does not start where the client asked)
``html``          200 ``text/html`` error page instead of the object
``traversal``     listings gain the fault's malicious ``entries``
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

from .faults import Fault, FaultPlan, corrupt_bytes, cut_length
from .link import ServerStats

KINDS = (
    "status",
    "drop",
    "truncate",
    "stall",
    "corrupt",
    "ignore_range",
    "wrong_content_range",
    "html",
    "traversal",
)
_S3_CODES = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied", 404: "NoSuchKey"}
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}
_CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_HTML = b"<html><head><title>503 Service Unavailable</title></head><body>Busy</body></html>\n"


class FaultProxy:
    """Forward HTTP to ``upstream`` (moto), injecting the faults of a plan.

    Parameters
    ----------
    upstream : str
        ``http://host:port`` of the real server.
    plan : FaultPlan
        The faults; shared and consumable (``plan.add`` works while the proxy runs).
    bucket, prefix : str
        Where the archive base is, to turn request paths into paths below the base.
    host, port : str, int
        Where to listen (port 0: a free one).
    """

    def __init__(
        self,
        upstream: str,
        plan: FaultPlan,
        bucket: str,
        prefix: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.plan = plan
        self.bucket = bucket
        self.prefix = prefix
        #: Connections (``peak_connections``...) as in the HTTP simulator's stats.
        self.stats = ServerStats()
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        """Serve in a daemon thread; return self."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def base_path(self, target: str) -> tuple[str | None, bool]:
        """(path below the base or None, is a listing) of a path-style request target."""
        parts = urlsplit(target)
        path = unquote(parts.path).lstrip("/")
        bucket, _, key = path.partition("/")
        if bucket != self.bucket:
            return None, False
        query = parse_qs(parts.query)
        if not key and ("list-type" in query or "prefix" in query):
            key = query.get("prefix", [""])[0]
            listing = True
        else:
            listing = False
        if not key.startswith(self.prefix):
            return None, listing
        return key[len(self.prefix) :], listing

    # ------------------------------------------------------------------ one request
    def serve(self, req: BaseHTTPRequestHandler) -> None:
        """Answer one request, maybe with a fault."""
        length = int(req.headers.get("Content-Length") or 0)
        body_in = req.rfile.read(length) if length else b""
        path, listing = self.base_path(req.path)
        fault: Fault | None = None
        if path is not None and req.command in ("GET", "HEAD"):
            kinds = ["status", "drop", "stall", "traversal"] if listing else list(KINDS[:-1])
            fault = self.plan.match("s3", path, kinds)
        kind = fault.kind if fault is not None else None
        if fault is not None and kind == "status":
            return _send_error(req, fault)
        if kind == "html":
            return _send(req, 200, _HTML, "text/html")
        if fault is not None and kind == "drop" and fault.after_bytes <= 0:
            return _reset(req)
        if fault is not None and kind == "stall" and fault.after_bytes <= 0:
            time.sleep(fault.seconds)
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP}
        m = _RANGE.match(headers.get("Range", ""))
        if kind == "ignore_range":
            headers.pop("Range", None)
        elif kind == "wrong_content_range" and m and int(m.group(1)) > 0:
            headers["Range"] = f"bytes={int(m.group(1)) // 2}-{m.group(2)}"
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.request(req.command, req.path, body=body_in, headers=headers)
            resp = conn.getresponse()
            if fault is not None and kind == "traversal":
                return _send_listing(req, resp, fault, self.prefix + (path or ""))
            self._relay(req, resp, fault)
        finally:
            conn.close()

    def _relay(
        self, req: BaseHTTPRequestHandler, resp: http.client.HTTPResponse, fault: Fault | None
    ) -> None:
        """Stream the upstream response to the client, applying a body fault."""
        size = resp.getheader("Content-Length")
        total = int(size) if size is not None else None
        kind = fault.kind if fault is not None else None
        req.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP and key.lower() != "content-length":
                req.send_header(key, value)
        if total is not None:
            req.send_header("Content-Length", str(total))
        if kind in ("drop", "truncate") or total is None:
            req.send_header("Connection", "close")
            req.close_connection = True
        req.end_headers()
        if req.command == "HEAD":
            return
        limit = cut_length(fault, total) if kind in ("drop", "truncate") and total else None
        after = fault.after_bytes if fault is not None else 0
        pos = 0  # body bytes relayed so far
        while chunk := resp.read(_CHUNK):
            end = pos + len(chunk)
            if limit is not None and end >= limit:
                req.wfile.write(chunk[: limit - pos])
                req.wfile.flush()
                return _reset(req) if kind == "drop" else None
            if fault is not None and kind == "corrupt" and total:
                chunk = corrupt_bytes(chunk, pos, total, after, fault.seed)
            if fault is not None and kind == "stall" and after > 0 and pos < after <= end:
                req.wfile.write(chunk[: after - pos])
                req.wfile.flush()
                time.sleep(fault.seconds)
                chunk = chunk[after - pos :]
            req.wfile.write(chunk)
            pos = end


def _handler_class(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def setup(self) -> None:
            super().setup()
            proxy.stats.connection_opened()

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                proxy.stats.connection_closed()

        def _any(self) -> None:
            try:
                proxy.serve(self)
            except (ConnectionError, TimeoutError):
                self.close_connection = True

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

    return Handler


def _reset(req: BaseHTTPRequestHandler) -> None:
    """Close the client connection with a TCP reset."""
    req.close_connection = True
    try:
        req.wfile.flush()
        req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        req.connection.close()
    except OSError:
        pass


def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, **extra: Any) -> None:
    req.send_response(status)
    req.send_header("Content-Type", ctype)
    req.send_header("Content-Length", str(len(body)))
    for key, value in extra.items():
        req.send_header(key.replace("_", "-"), str(value))
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(body)


def _send_error(req: BaseHTTPRequestHandler, fault: Fault) -> None:
    status = fault.status
    code = _S3_CODES.get(status, "InternalError" if status >= 500 else "InvalidRequest")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>Injected fault</Message>"
        "<RequestId>fault</RequestId></Error>"
    ).encode()
    extra = {} if fault.retry_after is None else {"Retry_After": fault.retry_after}
    _send(req, status, body, "application/xml", **extra)


def _send_listing(
    req: BaseHTTPRequestHandler, resp: http.client.HTTPResponse, fault: Fault, key_base: str
) -> None:
    """Relay a ListObjectsV2 answer with the fault's entries added."""
    xml = resp.read().decode()
    encoded = "encoding-type=url" in req.path
    added = "".join(
        f"<Contents><Key>{escape(quote(key_base + e, safe='/') if encoded else key_base + e)}"
        "</Key><Size>10</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for e in fault.entries
    )
    xml = xml.replace("</ListBucketResult>", added + "</ListBucketResult>", 1)
    _send(req, resp.status, xml.encode(), resp.getheader("Content-Type") or "application/xml")
