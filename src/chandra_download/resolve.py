"""Name resolution with a deadline.

Python's ``socket.getaddrinfo`` takes no timeout: a resolver that never answers holds a
connection attempt, and the run, for as long as the system's resolver waits (minutes). Every
connection the package opens (HTTP and the search services through urllib3, S3 through
botocore, FTP) resolves its host here instead: in a helper thread, waited for at most the
connection's timeout, so a hang becomes one failed attempt (``could not resolve HOST within
N s``) that counts against the retries like any connection failure. One lookup of a host runs
at a time (later attempts wait for the same one), and its answer is kept for :data:`TTL`
seconds: a run resolves each site once.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

#: Seconds a host's addresses are kept once resolved.
TTL = 300.0
#: The wait for an answer when a connection has no timeout of its own.
DEFAULT_WAIT = 30.0

AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr) of getaddrinfo


class ResolveTimeout(OSError):
    """The resolver did not answer for ``host`` within the connection's timeout."""

    def __init__(self, host: str, seconds: float) -> None:
        super().__init__(f"could not resolve {host} within {seconds:g} s")
        self.host = host


@dataclass
class _Lookup:
    """One getaddrinfo call running in its own thread, and its outcome once it ends."""

    done: threading.Event = field(default_factory=threading.Event)
    result: list[AddrInfo] | None = None
    error: OSError | None = None
    ended: float = 0.0

    def fresh(self) -> bool:
        """Still running, or ended well within the TTL (a failure is never kept)."""
        if not self.done.is_set():
            return True
        return self.error is None and time.monotonic() - self.ended < TTL


_lock = threading.Lock()
_lookups: dict[tuple[str, int, int, int], _Lookup] = {}


def addresses(host: str, port: int, family: int = 0, wait: float = DEFAULT_WAIT) -> list[AddrInfo]:
    """``socket.getaddrinfo(host, port, family, SOCK_STREAM)``, given up after ``wait``
    seconds (:class:`ResolveTimeout`); ``socket.gaierror`` when the name does not exist."""
    if _numeric(host):  # no resolver involved
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    key = (host, port, family, socket.SOCK_STREAM)
    with _lock:
        lookup = _lookups.get(key)
        if lookup is None or not lookup.fresh():
            lookup = _lookups[key] = _Lookup()
            threading.Thread(
                target=_run, args=(lookup, key), name=f"resolve {host}", daemon=True
            ).start()
    if not lookup.done.wait(wait):
        raise ResolveTimeout(host, wait)
    if lookup.error is not None:
        raise type(lookup.error)(*lookup.error.args)  # a copy: each caller's own traceback
    assert lookup.result is not None
    return lookup.result


def _run(lookup: _Lookup, key: tuple[str, int, int, int]) -> None:
    try:
        lookup.result = socket.getaddrinfo(*key)
    except OSError as exc:
        lookup.error = exc
    except Exception as exc:  # e.g. UnicodeError of a bad name: a failed lookup all the same
        lookup.error = socket.gaierror(socket.EAI_NONAME, f"cannot resolve {key[0]!r}: {exc}")
    lookup.ended = time.monotonic()
    lookup.done.set()


def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True


def connect(
    address: tuple[str, int],
    timeout: object = None,
    source_address: tuple[str, int] | None = None,
    socket_options: list[tuple[int, int, Any]] | None = None,
) -> socket.socket:
    """A connected socket, as ``socket.create_connection`` gives, its host resolved within
    ``timeout`` seconds (a number; else :data:`DEFAULT_WAIT`). Each address is tried in turn,
    each connect bounded by ``timeout``."""
    host, port = address
    host = host.strip("[]")
    bounded = isinstance(timeout, (int, float)) and timeout > 0
    wait = float(timeout) if bounded else DEFAULT_WAIT  # type: ignore[arg-type]
    err: OSError | None = None
    for family, kind, proto, _, sockaddr in addresses(host, port, wait=wait):
        sock = socket.socket(family, kind, proto)
        try:
            for level, name, value in socket_options or ():
                sock.setsockopt(level, name, value)
            if timeout is None or bounded:
                sock.settimeout(timeout)  # type: ignore[arg-type]
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            err = exc
            sock.close()
    raise err if err is not None else OSError(f"no address found for {host}")


class BoundedResolve:
    """Mixin for urllib3 connection classes: the host is resolved by :func:`connect` (within
    the connect timeout, cached), its failures raised as urllib3's own would be."""

    def _new_conn(self) -> socket.socket:
        conn: Any = self
        try:
            sock = connect(
                (conn._dns_host, conn.port), conn.timeout, conn.source_address, conn.socket_options
            )
        except socket.gaierror as exc:
            raise NameResolutionError(conn.host, conn, exc) from exc
        except ResolveTimeout as exc:
            raise NewConnectionError(conn, str(exc)) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock


def bounded_pools(
    plain: type[HTTPConnectionPool] = HTTPConnectionPool,
    tls: type[HTTPSConnectionPool] = HTTPSConnectionPool,
) -> dict[str, type[HTTPConnectionPool]]:
    """Pool classes (``PoolManager.pool_classes_by_scheme``) like ``plain`` and ``tls`` whose
    connections resolve through :class:`BoundedResolve`."""
    out: dict[str, type[HTTPConnectionPool]] = {}
    for scheme, pool in (("http", plain), ("https", tls)):
        base = pool.ConnectionCls
        cls = type(f"Resolving{base.__name__}", (BoundedResolve, base), {})
        out[scheme] = type(f"Resolving{pool.__name__}", (pool,), {"ConnectionCls": cls})
    return out


__all__ = ["TTL", "ResolveTimeout", "addresses", "connect", "BoundedResolve", "bounded_pools"]
