"""The connection budget: how many connections to one site may be open at once.

On one machine ``jobs`` bounds them (each worker has one connection at a time, the pools are
``jobs`` large), so no budget is needed and none of this runs. Past one machine
(:mod:`chandra_download.cluster`) the workers share one budget per site, and what it bounds
is **open sockets**: a socket takes a lease of :meth:`ConnectionBudget.lease` before it
connects and gives it back once it is closed, at our end and at the site's (see
:class:`_SocketLease`). Keep-alive reuse stays as on one machine (a socket idle in a pool
keeps its lease, and a thread of the source needing a socket takes it rather than wait for a
lease), but only briefly: a socket idle for :data:`IDLE_SECONDS` is closed, so a process
waiting for a lease is never starved by idle sockets elsewhere. A thread holds at
most one socket at a time (a request, a body being read, one pipelined batch), and leases
held by idle or closing sockets come back by this process's :class:`_Reaper` thread, never
by a waiting thread: a thread never waits for a second lease while holding one, so leases
cannot deadlock.

What one lease is, per kind of site:

- HTTP(S) (urllib3, the pipeline's borrowed connections) and S3 (botocore's pools, on
  urllib3): one TCP connection (through a proxy: the one to the proxy).
- FTP: one control connection, with the one data connection it opens at a time for a
  listing or a transfer (a data connection lives only within its control connection's
  command, so at most the budget's control connections, as a server counts its sessions).
- Any other source (local): one lease per call (a listing page, a size, an open body).
"""

from __future__ import annotations

import os
import queue
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, TypeVar

from urllib3.util.connection import is_connection_dropped

from .sources.base import (
    Body,
    ListingPage,
    PageRef,
    RemoteFile,
    Source,
    WrappedBody,
    WrappedSource,
)

T = TypeVar("T")

#: A socket idle in a pool this long is closed, so its lease goes to whoever waits for one.
IDLE_SECONDS = 0.25
#: How often the reaper looks (a lease comes back at most this much after its socket closes).
TICK = 0.05
#: Most seconds a closed socket waits for the site's end of the close before its lease goes
#: (the site counts it open until then; one still sending a body it was cut from is reset).
CLOSE_WAIT = 1.0


class ConnectionBudget(Protocol):
    """Leases of connections to sites (the site's label names it)."""

    def lease(self, site: str) -> AbstractContextManager[object]:
        """Hold one connection to ``site`` for the ``with`` block; waits for a free one.
        The block may end in another thread than it began in."""
        ...


class LocalBudget:
    """No budget beyond ``jobs``: leases are free."""

    def lease(self, site: str) -> AbstractContextManager[object]:
        return nullcontext()


class _Once:
    """A lease, given back once (a response may be both closed and released)."""

    def __init__(self, lease: AbstractContextManager[object]) -> None:
        self._lease, self._held = lease, False
        self._lock = threading.Lock()

    def take(self) -> _Once:
        self._lease.__enter__()
        self._held = True
        return self

    def __call__(self, *args: object) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._lease.__exit__(None, None, None)


# -- one lease per socket ---------------------------------------------------------------------
class _SocketLease:
    """The lease of one open socket, with a descriptor of our own on it (a ``dup``).

    Whoever uses the socket (urllib3, http.client's response, TLS, ftplib) closes it as it
    always does; our descriptor keeps the connection open until the reaper sees theirs is
    gone (the descriptor number no longer names this socket), then closes it the polite way
    (our FIN, then the site's end, for at most :data:`CLOSE_WAIT`) and gives the lease back.
    So the lease outlives the connection at the site too, not only at our end.
    """

    def __init__(self, sock: socket.socket, release: _Once) -> None:
        self.fd = sock.fileno()
        self.release = release
        self.own = socket.socket(fileno=os.dup(self.fd))
        self.inode = _inode(self.own.fileno())
        self.deadline = 0.0  # set once closing

    def in_use(self) -> bool:
        """True while the user's descriptor still names this socket."""
        try:
            return _inode(self.fd) == self.inode
        except OSError:
            return False

    def begin_close(self) -> None:
        self.deadline = time.monotonic() + CLOSE_WAIT
        try:
            self.own.setblocking(False)
            self.own.shutdown(socket.SHUT_WR)
        except OSError:
            self.deadline = 0.0  # broken already: nothing to wait for

    def closed_at_site(self) -> bool:
        """True once the site's end is closed (or broken), or the wait is over."""
        if time.monotonic() >= self.deadline:
            return True
        try:
            for _ in range(16):  # (a site still sending fast must not hold the reaper here)
                if not select.select([self.own], [], [], 0)[0]:
                    return False
                if not self.own.recv(65536):
                    return True
        except OSError:
            return True
        return False

    def finish(self) -> None:
        try:
            self.own.close()
        finally:
            self.release()


def _inode(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


class _Reaper:
    """This process's keeper of socket leases (started by the first leased socket, so never
    on one machine): gives back the leases of closed sockets and closes sockets idle in a
    pool for :data:`IDLE_SECONDS`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[_SocketLease] = []
        self._closing: list[_SocketLease] = []
        self._pools: weakref.WeakSet[Any] = weakref.WeakSet()
        self._idlers: list[weakref.WeakMethod[Callable[[float], None]]] = []
        self._thread: threading.Thread | None = None

    def opened(self, sock: socket.socket, release: _Once) -> None:
        """``sock`` was connected under ``release``'s lease: it is ours to give back."""
        try:
            held = _SocketLease(sock, release)
        except OSError:
            release()
            raise
        with self._lock:
            self._open.append(held)
            self._start()

    def watch_pool(self, pool: Any) -> None:
        """A urllib3 connection pool whose idle connections are closed after a while."""
        with self._lock:
            self._pools.add(pool)
            self._start()

    def watch_idle(self, close_idle: Callable[[float], None]) -> None:
        """A pool of another kind: ``close_idle(seconds)`` closes its connections idle that
        long (a bound method, held weakly)."""
        with self._lock:
            self._idlers.append(weakref.WeakMethod(close_idle))  # type: ignore[arg-type]
            self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lease-reaper", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(TICK)
            try:
                self.tick()
            except Exception:  # a bug must not stop leases coming back
                pass

    def tick(self) -> None:
        """One look: idle sockets closed, closed ones on their way, finished ones given back."""
        for pool in list(self._pools):
            _close_idle_conns(pool)
        with self._lock:
            idlers = [m() for m in self._idlers]
            self._idlers = [m for m in self._idlers if m() is not None]
        for close_idle in idlers:
            if close_idle is not None:
                close_idle(IDLE_SECONDS)
        with self._lock:
            gone = [s for s in self._open if not s.in_use()]
            self._open = [s for s in self._open if s not in gone]
        for s in gone:
            s.begin_close()
        with self._lock:
            self._closing += gone
            done = [s for s in self._closing if s.closed_at_site()]
            self._closing = [s for s in self._closing if s not in done]
        for s in done:
            s.finish()

    def held(self) -> int:
        """Leases held by this process's sockets (open or closing)."""
        with self._lock:
            return len(self._open) + len(self._closing)


_reaper = _Reaper()


def _close_idle_conns(pool: Any) -> None:
    """Close the connections idle in a urllib3 pool for IDLE_SECONDS. They are taken out of
    its queue meanwhile (so no request is using one), and put back closed or open, as the
    pool hands them out: a closed one connects again (with a new lease) when next used."""
    q = pool.pool
    if q is None:
        return
    taken = []
    try:
        while True:
            taken.append(q.get_nowait())
    except queue.Empty:
        pass
    now = time.monotonic()
    for conn in taken:
        idle = now - getattr(conn, "idle_since", now)
        held = conn is not None and (conn.sock is not None or getattr(conn, "lease", None))
        if held and idle >= IDLE_SECONDS:  # (a lease got for a socket never opened too)
            conn.close()
    for conn in reversed(taken):  # the most recently used on top again (a LIFO queue)
        try:
            q.put_nowait(conn)
        except queue.Full:
            if conn is not None:
                conn.close()
    if pool.pool is not q:  # the pool closed meanwhile: what went back is nobody's
        for conn in taken:
            if conn is not None:
                conn.close()


class _LeasedConnection:
    """A urllib3 connection whose socket holds a lease from before it connects: the one its
    pool got for it (``lease``), else one waited for here."""

    leases: SiteLeases
    lease: _Once | None = None

    def _new_conn(self) -> socket.socket:
        release, self.lease = self.lease, None
        if release is None:
            release = self.leases.take()
        try:
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        except BaseException:
            release()
            raise
        try:
            _reaper.opened(sock, release)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Closed (its socket's lease comes back by the reaper), with a lease got for a
        socket it never opened given back now."""
        release, self.lease = self.lease, None
        try:
            super().close()  # type: ignore[misc]
        finally:
            if release is not None:
                release()


class _LeasedPool:
    """A urllib3 connection pool under a budget. A request needing a new socket waits for a
    lease or for one of the pool's sockets to come back idle, whichever comes first
    (:meth:`SiteLeases.wait`): a socket of this pool gone idle serves the requests that wait
    here rather than idling while they wait for leases elsewhere. Idle sockets are stamped,
    so the reaper closes those left idle for :data:`IDLE_SECONDS`."""

    leases: SiteLeases

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        _reaper.watch_pool(self)

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        if conn.sock is not None or conn.lease is not None:
            return conn
        got = self.leases.wait(self._connected_idle)
        if isinstance(got, _Once):
            conn.lease = got
            return conn
        self._put_back(conn)  # socketless: it waits in the queue again
        return got

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            conn.idle_since = time.monotonic()
        super()._put_conn(conn)  # type: ignore[misc]
        self.leases.poke()

    def _put_back(self, conn: Any) -> None:
        try:
            self.pool.put_nowait(conn)  # type: ignore[attr-defined]
        except (queue.Full, AttributeError):  # (the pool closed meanwhile)
            conn.close()

    def _connected_idle(self) -> Any:
        """An idle connection of this pool whose socket is open, taken out of the queue; or
        None. (The rest go back in their order; a dropped one is closed on the way.)"""
        q = self.pool  # type: ignore[attr-defined]
        if q is None:
            return None
        taken, found = [], None
        try:
            while found is None:
                conn = q.get_nowait()
                if conn is not None and conn.sock is not None and is_connection_dropped(conn):
                    conn.close()
                if conn is not None and conn.sock is not None:
                    found = conn
                else:
                    taken.append(conn)
        except queue.Empty:
            pass
        for conn in reversed(taken):
            try:
                q.put_nowait(conn)
            except queue.Full:
                if conn is not None:
                    conn.close()
        return found


def _leased_pool_class(cls: type, leases: SiteLeases) -> type:
    conn_cls = cls.ConnectionCls  # type: ignore[attr-defined]
    leased_conn = type(
        f"Leased{conn_cls.__name__}", (_LeasedConnection, conn_cls), {"leases": leases}
    )
    return type(
        f"Leased{cls.__name__}",
        (_LeasedPool, cls),
        {"ConnectionCls": leased_conn, "leases": leases},
    )


def _nothing() -> None:
    return None


class SiteLeases:
    """One site's leases in one source (what its ``under_budget`` hook is given).

    A thread needing a new socket waits (:meth:`wait`) for a lease, or for a socket of the source's
    own to come free (``reuse``), whichever first, holding no lease meanwhile. The leases are
    asked of the budget by helper threads (one per thread waiting at most), so a wait can end
    by reuse while a lease is still on its way: a lease that comes when nobody here waits any
    more is given back at once.
    """

    def __init__(self, budget: ConnectionBudget, site: str) -> None:
        self.budget, self.site = budget, site
        self._cond = threading.Condition()
        self._waiting = 0  # threads in wait()
        self._asking = 0  # leases asked of the budget, not come yet
        self._granted: list[_Once] = []  # come, not taken yet
        self._failed: BaseException | None = None

    def take(self) -> _Once:
        """A lease, held until the returned callable is called (once)."""
        got = self.wait(_nothing)
        assert isinstance(got, _Once)
        return got

    def wait(self, reuse: Callable[[], T | None]) -> _Once | T:
        """A lease, or what ``reuse()`` returns when not None (it is called now and each
        time :meth:`poke` says something came free; it must not block)."""
        with self._cond:
            self._waiting += 1
            try:
                got = self._wait(reuse)
            finally:
                self._waiting -= 1
                surplus = self._granted[self._waiting :]
                del self._granted[self._waiting :]
        for release in surplus:
            release()
        return got

    def _wait(self, reuse: Callable[[], T | None]) -> _Once | T:
        while True:
            if self._granted:
                return self._granted.pop()
            if self._failed is not None:
                exc, self._failed = self._failed, None
                raise exc
            other = reuse()
            if other is not None:
                return other
            if self._asking < self._waiting:
                self._asking += 1
                threading.Thread(target=self._ask, name="lease-ask", daemon=True).start()
            self._cond.wait(1.0)  # (a poke missed: look again anyway)

    def _ask(self) -> None:
        try:
            release: _Once | None = _Once(self.budget.lease(self.site)).take()
        except BaseException as exc:  # (the scheduler gone...): a waiter raises it
            release = None
            failed: BaseException | None = exc
        else:
            failed = None
        with self._cond:
            self._asking -= 1
            if release is not None and len(self._granted) < self._waiting:
                self._granted.append(release)
                release = None
            elif failed is not None and self._waiting:
                self._failed = failed
            self._cond.notify_all()
        if release is not None:
            release()  # nobody waits for it any more

    def poke(self) -> None:
        """Something came free that a waiting ``reuse()`` may find."""
        with self._cond:
            if self._waiting:
                self._cond.notify_all()

    def opened(self, sock: socket.socket, release: _Once) -> None:
        """``sock`` was connected under ``release``: its lease goes back once it is closed
        (at both ends). Raises OSError (the lease given back) if it cannot be watched."""
        _reaper.opened(sock, release)

    def wrap_pools(self, manager: Any) -> Any:
        """Every socket of a urllib3 PoolManager (or ProxyManager) leased; returns it. Call
        it before its first request (pools are made on first use)."""
        manager.pool_classes_by_scheme = self.pool_classes(manager.pool_classes_by_scheme)
        return manager

    def pool_classes(self, classes: dict[str, type]) -> dict[str, type]:
        """urllib3 pool classes (``pool_classes_by_scheme``) made to lease their sockets."""
        return {scheme: _leased_pool_class(cls, self) for scheme, cls in classes.items()}

    def watch_idle(self, close_idle: Callable[[float], None]) -> None:
        """``close_idle(seconds)`` closes the source's own pooled connections idle that
        long; the reaper calls it every :data:`TICK`."""
        _reaper.watch_idle(close_idle)


# -- the source -------------------------------------------------------------------------------
class _LeasedBody(WrappedBody):
    """A body whose lease is given back when it is closed."""

    def __init__(self, inner: Body, release: _Once) -> None:
        super().__init__(inner)
        self._release = release

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self._release()


class BudgetedSource(WrappedSource):
    """``inner`` with its connections under ``budget``.

    A source with an ``under_budget(leases: SiteLeases)`` hook (HTTP, FTP, S3) leases each
    socket it opens; any other source holds one lease per call (a listing, a size, an open
    body until it is closed). Under a :class:`LocalBudget` nothing is wrapped.
    """

    def __init__(self, inner: Source, budget: ConnectionBudget) -> None:
        super().__init__(inner)
        self._budget = budget
        self._per_call = False
        if isinstance(budget, LocalBudget):
            return
        hook = getattr(inner, "under_budget", None)
        if hook is not None:
            hook(SiteLeases(budget, inner.label))
        else:
            self._per_call = True

    def _lease(self) -> _Once:
        release = _Once(self._budget.lease(self.label))
        return release.take() if self._per_call else release

    def list_obsid(self, obsid: int) -> list[RemoteFile]:  # noqa: D102
        release = self._lease()
        try:
            return self.inner.list_obsid(obsid)
        finally:
            release()

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:  # noqa: D102
        release = self._lease()
        try:
            return self.inner.list_page(obsid, ref)
        finally:
            release()

    def list_pages(self, pages: list[tuple[int, PageRef]]) -> list[ListingPage | Exception | None]:
        """Pipelined on one leased socket of the inner's; per call: one page at a time,
        each under its lease."""
        if self._per_call:
            return Source.list_pages(self, pages)
        return self.inner.list_pages(pages)

    def learn_sizes(self, files: list[RemoteFile]) -> None:
        """The inner's pipelined HEADs, on its leased sockets (per call: none)."""
        if not self._per_call:
            self.inner.learn_sizes(files)

    def size(self, f: RemoteFile) -> int:  # noqa: D102
        release = self._lease()
        try:
            return self.inner.size(f)
        finally:
            release()

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:  # noqa: D102
        if not self._per_call:
            return self.inner.open(f, offset, end)
        release = self._lease()
        try:
            body = self.inner.open(f, offset, end)
        except BaseException:
            release()
            raise
        return _LeasedBody(body, release)
