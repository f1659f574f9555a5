"""How the HTTP simulator answers: replies, byte ranges, faults, paced bodies, test hooks.

:class:`ResponseHandler` is the base of the request handler in
:mod:`chandra_download.simulator.http`, which only routes requests and builds headers. Here
are the parts that faults and the link model change (error and fault replies, Range handling,
paced or damaged bodies) and the ``/_simulator/`` control endpoint that edits the fault plan
and stats from another process.
"""

from __future__ import annotations

import json
import re
import socket
import struct
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .faults import ENDLESS_CAP, Fault, corrupt_bytes, cut_length, endless_body
from .listing_html import error_page

if TYPE_CHECKING:
    from email.message import Message

    from .http import ArchiveHTTPServer

__all__ = [
    "FILE_FAULTS",
    "RANGE_FAULTS",
    "ResponseHandler",
    "byte_span",
    "parse_range",
    "range_header",
    "wanted_range",
]

#: Fault kinds that apply to any GET of a file (listings also take ``traversal``).
FILE_FAULTS = frozenset(
    {
        "status",
        "html",
        "drop",
        "stall",
        "truncate",
        "corrupt",
        "endless",
        "trickle",
        "redirect_loop",
    }
)
#: Fault kinds that only apply to a Range request: they wait for one.
RANGE_FAULTS = frozenset({"ignore_range", "wrong_content_range", "lying_range"})

Range = tuple[int, int] | str | None


def parse_range(value: str, total: int) -> Range:
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


def range_header(headers: Message, etag: str, modified: str) -> str | None:
    """The Range header to honour, or None (also when If-Range names another version)."""
    range_hdr = headers.get("Range")
    if_range = headers.get("If-Range")
    if range_hdr and if_range and if_range not in (etag, modified):
        return None  # the file changed since: send it whole (RFC 9110)
    return range_hdr


def wanted_range(range_hdr: str | None, total: int, fault: Fault | None) -> Range:
    """The parsed range to serve; an ``ignore_range`` fault answers as if none was asked."""
    if not range_hdr or (fault is not None and fault.kind == "ignore_range"):
        return None
    return parse_range(range_hdr, total)


def byte_span(rng: Range, total: int, fault: Fault | None) -> tuple[int, int, int]:
    """(start, length, status code) of a file body for a satisfiable range or None (whole)."""
    if not isinstance(rng, tuple):
        return 0, total, 200
    start, length = rng[0], rng[1] - rng[0] + 1
    if fault is not None and fault.kind == "wrong_content_range":
        # Honest about what is sent, but not what was asked for.
        start = start // 2 if start > 0 else max(1, total // 2)
        length = max(1, min(length, total - start))
    return start, length, 206


class ResponseHandler(BaseHTTPRequestHandler):
    """Reply helpers of the archive request handler.

    A subclass sets ``sim`` (the :class:`ArchiveHTTPServer`) and ``conn_link`` (this
    connection's link state) in ``setup``.
    """

    sim: ArchiveHTTPServer
    conn_link: Any

    def _reply(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None):
        """A complete response with an in-memory body (bytes are counted unless control)."""
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
        """Apache's HTML error page for ``code``."""
        reason = self.responses.get(code, ("Error",))[0]
        text = text or {404: "The requested URL was not found on this server."}.get(code, reason)
        body = error_page(code, reason, text).encode()
        self._reply(code, body, "text/html; charset=iso-8859-1", headers)

    def _control(self, method: str) -> None:
        """``/_simulator/stats`` (GET, DELETE) and ``/_simulator/faults`` (GET, POST, DELETE)."""
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim = self.sim
        out: dict[str, Any] | list[dict[str, Any]] | None = None
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

    def _fault_status(self, fault: Fault) -> None:
        """Answer for a ``status`` fault (that code) or an ``html`` fault (200, HTML page)."""
        if fault.kind == "html":
            body = error_page(200, "Service Unavailable", "Try later.")
            return self._reply(200, body.encode(), "text/html; charset=UTF-8")
        extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        self._error(fault.status, "", extra)

    def _redirect_loop(self) -> None:
        """A ``redirect_loop`` fault: 302 to this very URL, with a body a client must not keep."""
        body = b"moved elsewhere\n"
        self._reply(302, body, "text/plain", {"Location": self.path})

    def _endless(self, head: bytes, fault: Fault) -> None:
        """An ``endless`` fault: 200, no Content-Length, ``head`` then filler until the cap."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        for piece in endless_body(head, fault.after_bytes or ENDLESS_CAP):
            if self.sim._stopping.is_set():
                return
            self.wfile.write(piece)
            self.sim.stats.add_bytes(len(piece))

    def _trickle(self, src: Any, start: int, length: int, fault: Fault) -> None:
        """A ``trickle`` fault: one body byte every ``fault.seconds`` (1 s when 0)."""
        src.seek(start)
        for _ in range(length):
            if self.sim._stopping.wait(fault.seconds or 1.0):
                self.close_connection = True
                return
            self.wfile.write(src.read(1))
            self.wfile.flush()
            self.sim.stats.add_bytes(1)

    def _send(self, src: Any, start: int, length: int, fault: Fault | None) -> None:
        """Send a body (bytes or an open file), applying link pacing and body faults."""
        sim, sock = self.sim, self.connection
        if fault is not None and fault.kind == "trickle" and not isinstance(src, bytes):
            return self._trickle(src, start, length, fault)
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
                data = corrupt_bytes(data, pos, length, fault.after_bytes, fault.seed)
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
