"""Network link model for the simulator servers: per-request latency and bandwidth caps.

Bandwidth is enforced with "virtual finish time" token buckets: each bucket remembers when
the bytes already granted will have drained at its rate, and a caller sleeps until its own
bytes have drained. This stays accurate for any chunk size (no rounding per chunk), and a
small burst allowance lets an idle link start at once.
"""

from __future__ import annotations

import fnmatch
import select
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["LinkModel", "ServerStats", "TimedReader", "TokenBucket"]


class TokenBucket:
    """Thread-safe rate limiter.

    Parameters
    ----------
    rate : float
        Bytes per second.
    burst : float, optional
        Bytes that may pass at once after the bucket has been idle (default: 1/50 s worth,
        at least 16 KiB).
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(16384.0, rate / 50))
        self._finish = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> float:
        """Book ``nbytes`` and return the monotonic time at which they may have been sent."""
        with self._lock:
            now = time.monotonic()
            # An idle bucket holds at most `burst` bytes of credit.
            self._finish = max(self._finish, now - self.burst / self.rate) + nbytes / self.rate
            return self._finish


class LinkModel:
    """Latency and bandwidth of the simulated network, shared by all simulator servers.

    Parameters
    ----------
    latency : float
        Seconds added once per request before the response starts (a round trip).
    conn_bandwidth : float, optional
        Bytes per second per connection; None for unlimited.
    total_bandwidth : float, optional
        Bytes per second over all connections together; None for unlimited.

    Examples
    --------
    >>> link = LinkModel(latency=0.05, conn_bandwidth=1e6)
    >>> conn = link.new_connection()
    >>> link.delay()              # once per request
    >>> link.pace(conn, 65536)    # before sending each chunk
    """

    def __init__(
        self,
        latency: float = 0.0,
        conn_bandwidth: float | None = None,
        total_bandwidth: float | None = None,
    ) -> None:
        if latency < 0:
            raise ValueError("latency must not be negative")
        self.latency = float(latency)
        self.conn_bandwidth = conn_bandwidth or None
        self.total_bandwidth = total_bandwidth or None
        self._total = TokenBucket(total_bandwidth) if total_bandwidth else None

    @property
    def throttled(self) -> bool:
        """True when any bandwidth cap is set (servers then send in paced chunks)."""
        return bool(self.conn_bandwidth or self.total_bandwidth)

    def chunk_size(self, default: int = 65536) -> int:
        """A send size giving smooth pacing: at most ~1/20 s of the tightest cap."""
        rates = [r for r in (self.conn_bandwidth, self.total_bandwidth) if r]
        if not rates:
            return default
        return int(max(1024, min(default, min(rates) / 20)))

    def new_connection(self) -> TokenBucket | None:
        """Per-connection state to pass to :meth:`pace` (None when uncapped)."""
        return TokenBucket(self.conn_bandwidth) if self.conn_bandwidth else None

    def delay(self, stop: threading.Event | None = None) -> None:
        """Sleep for the request latency (returns early when ``stop`` is set)."""
        if self.latency > 0:
            if stop is not None:
                stop.wait(self.latency)
            else:
                time.sleep(self.latency)

    def pace(self, conn: TokenBucket | None, nbytes: int) -> None:
        """Block until ``nbytes`` more may be sent on connection ``conn``.

        Parameters
        ----------
        conn : TokenBucket or None
            The value of :meth:`new_connection` for this connection.
        nbytes : int
            Size of the chunk about to be sent.
        """
        until = 0.0
        if conn is not None:
            until = conn.reserve(nbytes)
        if self._total is not None:
            until = max(until, self._total.reserve(nbytes))
        wait = until - time.monotonic()
        if wait > 0:
            time.sleep(wait)


class TimedReader:
    """A connection's incoming byte stream that remembers when its bytes arrived.

    A server answers a request one round trip after the request's last byte came in
    (:attr:`arrival`), not one round trip after it got round to reading it: requests a client
    sends back to back (HTTP/1.1 pipelining) share their round trip, as on a network link.
    While waiting (:meth:`wait_until`) the reader keeps taking in what arrives, so later
    requests are stamped with their real arrival. Stands in for the handler's ``rfile``.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0  # next unread byte of _buf
        self._stamps: deque[tuple[int, float]] = deque()  # (end offset in _buf, time came)
        self.arrival = 0.0  # when the last byte read so far arrived
        self.closed = False

    def _fill(self, wait: float | None) -> bool:
        """Take in one chunk: waiting up to ``wait`` seconds (None: the socket's timeout);
        False when nothing came (or the peer closed)."""
        pending = isinstance(self._sock, ssl.SSLSocket) and self._sock.pending()
        if wait is not None and not pending:
            if not select.select([self._sock], [], [], max(0.0, wait))[0]:
                return False
        data = self._sock.recv(65536)
        if not data:
            return False
        self._compact()
        self._buf += data
        self._stamps.append((len(self._buf), time.monotonic()))
        return True

    def _compact(self) -> None:
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._stamps = deque((end - self._pos, t) for end, t in self._stamps)
            self._pos = 0

    def _consume(self, n: int) -> bytes:
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += len(out)
        while self._stamps and self._stamps[0][0] < self._pos:
            self._stamps.popleft()
        if out:
            self.arrival = self._stamps[0][1] if self._stamps else self.arrival
        return out

    def buffered(self) -> bytes:
        """What has arrived and is not read yet (a pipelined request behind this one)."""
        return bytes(self._buf[self._pos :])

    def pump(self) -> None:
        """Take in whatever has arrived, without waiting."""
        try:
            while self._fill(0.0):
                pass
        except OSError:
            pass

    def wait_until(self, due: float, stop: threading.Event | None = None) -> None:
        """Sleep until monotonic time ``due`` (or ``stop``), taking in what arrives."""
        while (left := due - time.monotonic()) > 0 and not (stop and stop.is_set()):
            try:
                self._fill(min(left, 0.1))
            except OSError:
                time.sleep(min(left, 0.1))

    def readline(self, limit: int = -1) -> bytes:  # noqa: D102 - io's
        while True:
            end = self._buf.find(b"\n", self._pos)
            have = len(self._buf) - self._pos
            if end >= 0 or (0 <= limit <= have):
                n = end - self._pos + 1 if end >= 0 else limit
                return self._consume(min(n, limit) if limit >= 0 else n)
            if not self._fill(None):
                return self._consume(have)

    def read(self, n: int = -1) -> bytes:  # noqa: D102 - io's
        while n < 0 or len(self._buf) - self._pos < n:
            if not self._fill(None):
                break
        return self._consume(len(self._buf) - self._pos if n < 0 else n)

    def close(self) -> None:  # noqa: D102 - io's
        self.closed = True


class ServerStats:
    """Thread-safe traffic counters of one simulator server (any protocol).

    Attributes
    ----------
    requests : collections.Counter
        Keyed by (method, path below the base), e.g. ``("GET", "byobsid/3/1843/oif.fits")``.
    current_connections, peak_connections, connections_opened : int
        Open connections now, the most at once, and the total opened.
    current_requests, peak_requests : int
        Requests being answered now (arrived, response not yet all sent), and the most at
        once: the connections in use, idle keep-alive ones aside.
    bytes_sent : int
        Body bytes sent.
    pipelined : int
        Requests that came in while the one before on their connection was being answered
        (HTTP/1.1 pipelining).
    pipelined_requests : collections.Counter
        Those requests, keyed as ``requests`` (a listing's path ends in ``/``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current_connections = 0
        self.current_requests = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters (the peak restarts from the connections open now)."""
        with self._lock:
            self.requests: Counter[tuple[str, str]] = Counter()
            self.bytes_sent = 0
            self.pipelined = 0
            self.pipelined_requests: Counter[tuple[str, str]] = Counter()
            self.connections_opened = 0
            self.peak_connections = self.current_connections
            self.peak_requests = self.current_requests

    def record(self, method: str, path: str) -> None:
        """Count one request."""
        with self._lock:
            self.requests[(method, path)] += 1

    def add_pipelined(self, method: str = "GET", path: str = "") -> None:
        """Count one pipelined request."""
        with self._lock:
            self.pipelined += 1
            self.pipelined_requests[(method, path)] += 1

    def add_bytes(self, n: int) -> None:
        """Count ``n`` bytes sent."""
        with self._lock:
            self.bytes_sent += n

    def connection_opened(self, ended: int = 0) -> None:
        """Count a connection accepted; ``ended``: of those still counted, how many the
        client has closed already (their server thread has not seen it yet): they are not
        open at the client, so they do not count in the peak."""
        with self._lock:
            self.connections_opened += 1
            self.current_connections += 1
            open_now = self.current_connections - ended
            self.peak_connections = max(self.peak_connections, open_now)

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Count one request as being answered for the ``with`` block."""
        with self._lock:
            self.current_requests += 1
            self.peak_requests = max(self.peak_requests, self.current_requests)
        try:
            yield
        finally:
            with self._lock:
                self.current_requests -= 1

    def connection_closed(self) -> None:
        with self._lock:
            self.current_connections -= 1

    def get_count(self, path_glob: str = "*", method: str | None = "GET") -> int:
        """Requests whose path matches ``path_glob`` (fnmatch; None method: any method)."""
        with self._lock:
            items = list(self.requests.items())
        return sum(
            n
            for (m, p), n in items
            if (method is None or m == method) and fnmatch.fnmatchcase(p, path_glob)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot."""
        with self._lock:
            return {
                "requests": [
                    {"method": m, "path": p, "count": n} for (m, p), n in self.requests.items()
                ],
                "bytes_sent": self.bytes_sent,
                "pipelined": self.pipelined,
                "connections_opened": self.connections_opened,
                "current_connections": self.current_connections,
                "peak_connections": self.peak_connections,
                "peak_requests": self.peak_requests,
            }
