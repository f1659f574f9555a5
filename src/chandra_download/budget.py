"""The connection budget: how many connections to one site may be open at once.

On one machine ``jobs`` bounds them (each worker has one connection at a time, the pools are
``jobs`` large), so no budget is needed. Past one machine (:mod:`chandra_download.cluster`)
the workers share one budget per site: every request to a site is made under a lease of
:meth:`ConnectionBudget.lease`, held until its response is read (a file's body is closed).
A request holding a lease never asks for a second one, so leases cannot deadlock.

:class:`BudgetedSource` puts a source's requests under a budget. An HTTP source leases each
request (listings, HEAD, GET) until its response is released, so the requests in flight at
a site never outnumber the leases, whatever the number of processes; idle keep-alive
connections (at most ``jobs`` per process) stay open between requests. Other sources hold
one lease per call (a listing, a size, an open body until it is closed).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from .sources.base import (
    Body,
    ListingPage,
    PageRef,
    RemoteFile,
    Source,
    WrappedBody,
    WrappedSource,
)


class ConnectionBudget(Protocol):
    """Leases of connections to sites (the site's label names it)."""

    def lease(self, site: str) -> AbstractContextManager[object]:
        """Hold one connection to ``site`` for the ``with`` block; waits for a free one."""
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

    def take(self) -> None:
        self._lease.__enter__()
        self._held = True

    def __call__(self, *args: object) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._lease.__exit__(None, None, None)


class _LeasedPool:
    """A urllib3 pool manager each of whose requests holds a lease until its response is
    released (read to the end, drained or closed)."""

    def __init__(self, inner: Any, budget: ConnectionBudget, site: str) -> None:
        self._inner, self._budget, self._site = inner, budget, site

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def request(self, method: str, url: str, **kw: Any) -> Any:
        release = _Once(self._budget.lease(self._site))
        release.take()
        try:
            resp = self._inner.request(method, url, **kw)
        except BaseException:
            release()
            raise
        if kw.get("preload_content", True):
            release()  # read whole: its connection is back in the pool
            return resp
        for name in ("release_conn", "close"):
            setattr(resp, name, _then(getattr(resp, name), release))
        weakref.finalize(resp, release)  # a response dropped unreleased still gives it back
        return resp


def _then(first: Callable[[], object], then: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        try:
            first()
        finally:
            then()

    return both


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
    """``inner`` with each of its requests under a lease of ``budget``.

    An HTTP source leases each request itself (``under_budget``: a listing's parallel
    requests each hold one); any other source holds one lease per call (a listing, a size,
    an open body until it is closed).
    """

    pipeline_depth = 1  # type: ignore[assignment]  # one request per lease: no pipelined batches

    def __init__(self, inner: Source, budget: ConnectionBudget) -> None:
        super().__init__(inner)
        self._budget = budget
        hook = getattr(inner, "under_budget", None)
        self._per_request = hook is not None
        if hook is not None:
            hook(lambda pool: _LeasedPool(pool, budget, inner.label))

    def _lease(self) -> _Once:
        release = _Once(self._budget.lease(self.label))
        if not self._per_request:
            release.take()
        return release

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

    def size(self, f: RemoteFile) -> int:  # noqa: D102
        release = self._lease()
        try:
            return self.inner.size(f)
        finally:
            release()

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:  # noqa: D102
        release = self._lease()
        try:
            body = self.inner.open(f, offset, end)
        except BaseException:
            release()
            raise
        return _LeasedBody(body, release)
