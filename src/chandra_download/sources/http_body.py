"""Reading HTTP responses: a file's body, cut where the site's stated size ends; a listing
page read whole up to a cap; headers that must arrive within a deadline."""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError

from ..credentials import scrub
from ..errors import NoAnswer, SourceError, TransientError
from ..resolve import BoundedResolve
from ..stream import RateGuard
from .base import Body


class HTTPBody(Body):
    """One response's body. ``limit`` is the most bytes it may hold: a server that sends more
    (no Content-Length and a body that never ends) is cut off with a SourceError."""

    def __init__(self, resp: urllib3.BaseHTTPResponse, start: int, total: int | None, secrets):
        self._resp = resp
        self.start = start
        self.total = total
        self._secrets = secrets
        self._eof = False
        self.limit: int | None = None
        self.what = "the file"
        self._received = 0

    def read(self, n: int) -> bytes:
        if self.limit is not None:
            n = max(1, min(n, self.limit - self._received + 1))
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
        self._received += len(data)
        if self.limit is not None and self._received > self.limit:
            self._resp.close()
            raise SourceError(
                f"{self.what}: the server sent more than {self.limit} bytes, more than the "
                "listing's size allows; the transfer was cut"
            )
        return data

    def close(self) -> None:
        # A half-read body cannot go back to the pool; closing drops that one connection.
        if not self._eof:
            self._resp.close()
        self._resp.release_conn()


def read_capped(resp, cap: int, guard: RateGuard | None = None) -> bytes | None:
    """The whole body, or None (connection dropped) once it passes ``cap`` bytes.

    ``guard`` fails a page that arrives slower than the session's minimum rate (a listing sent
    at a few bytes a second never trips the socket's timeout) with a TransientError.
    """
    chunks, size = [], 0
    try:
        # read1: what has arrived, so that the guard sees a trickle as it comes.
        while chunk := resp.read1(1024 * 1024, decode_content=False):
            size += len(chunk)
            if size > cap:
                resp.close()
                resp.release_conn()
                return None
            chunks.append(chunk)
            if guard is not None:
                guard.tick(len(chunk))
    except (HTTPError, OSError) as exc:
        resp.close()
        resp.release_conn()
        raise TransientError(f"connection broke while reading a listing: {exc}") from None
    except TransientError as exc:
        resp.close()
        resp.release_conn()
        raise TransientError(f"listing read too slowly: {exc}") from None
    resp.release_conn()
    return b"".join(chunks)


class _Watchdog:
    """One thread for every header deadline of the process (not a ``threading.Timer`` thread
    per request): each armed deadline that passes shuts its socket down, so the read blocked
    on it returns at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Armed]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        # When the waiting thread wakes by itself (-inf before it starts: it then looks).
        self._wake_at = float("-inf")

    def arm(self, sock: socket.socket, seconds: float) -> _Armed:
        armed = _Armed(sock)
        with self._cond:
            _prune(self._heap)
            deadline = time.monotonic() + seconds
            heapq.heappush(self._heap, (deadline, next(self._seq), armed))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="chandra-download header deadlines", daemon=True
                )
                self._thread.start()
            # The thread sleeps until a deadline it knows: only an earlier one needs it woken
            # (waking it for every request cost GIL hand-offs, issue 19.4).
            if deadline < self._wake_at:
                self._cond.notify()
        return armed

    def _run(self) -> None:
        with self._cond:
            while True:
                _prune(self._heap)
                if not self._heap:
                    self._wake_at = float("inf")
                    self._cond.wait()
                    continue
                self._wake_at = self._heap[0][0]
                wait = self._wake_at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)[2].expire()


def _prune(heap: list[tuple[float, int, _Armed]]) -> None:
    """Drop the disarmed deadlines at the top (their headers came in time)."""
    while heap and heap[0][2].done:
        heapq.heappop(heap)


class _Armed:
    """One armed deadline: ``disarm()`` when the headers came; ``fired`` when they did not."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.done = False
        self.fired = False
        self._lock = threading.Lock()

    def disarm(self) -> None:
        with self._lock:
            self.done = True

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.done = self.fired = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
        except OSError:
            pass


_WATCHDOG = _Watchdog()


def arm_header_deadline(sock: socket.socket, seconds: float) -> _Armed:
    """Shut ``sock`` down unless ``disarm()`` is called on the result within ``seconds``."""
    return _WATCHDOG.arm(sock, seconds)


class _HeaderDeadline:
    """Mixin for urllib3 connections: the response's headers must arrive within
    ``header_window`` seconds, else the socket is shut down and a TransientError raised (a
    server trickling its headers a byte at a time never trips the socket's timeout)."""

    header_window: float = 60.0

    def getresponse(self):  # noqa: D102 - urllib3's
        armed = arm_header_deadline(self.sock, self.header_window)  # type: ignore[attr-defined]
        try:
            resp = super().getresponse()  # type: ignore[misc]
        except Exception:
            armed.disarm()
            if armed.fired:
                raise self._too_slow() from None
            raise
        armed.disarm()
        if armed.fired:
            # Cut between two header lines, http.client takes the end of the stream for the
            # end of the headers: a response without its Content-Length, and an empty body.
            resp.close()
            raise self._too_slow()
        return resp

    def _too_slow(self) -> TransientError:
        return too_slow(self.header_window)


def too_slow(window: float) -> TransientError:
    """The error of a response whose headers missed their deadline (the site did not answer)."""
    return NoAnswer(
        f"response headers too slow: not complete after {window:.0f} s, below the minimum rate"
    )


def header_deadline_pools(window: float) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes (for ``PoolManager.pool_classes_by_scheme``) whose connections
    fail a response whose headers take more than ``window`` seconds (and resolve their host
    within their connect timeout: :mod:`~chandra_download.resolve`)."""
    attrs = {"header_window": window}
    plain = type("DeadlineHTTPConnection", (_HeaderDeadline, BoundedResolve, HTTPConnection), attrs)
    tls = type("DeadlineHTTPSConnection", (_HeaderDeadline, BoundedResolve, HTTPSConnection), attrs)
    return {
        "http": type("DeadlineHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
        "https": type("DeadlineHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": tls}),
    }
