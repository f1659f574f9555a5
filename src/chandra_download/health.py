"""A site's health: whether it answers, kept for the site rather than for each request.

Every request of a session to one site goes through its :class:`SiteHealth` (the engine wraps
each source in a :class:`WatchedSource`). While the site answers, requests go as they come.
After a request the site did not answer at all (a timeout: :class:`~.errors.NoAnswer`), the
site is *probed*: one request at a time, the others wait, holding no connection. An answer
(any response, even an error status, or bytes of a body) makes it healthy again. When nothing
has answered for the silence limit (see :func:`silence_limit`), the site is *silent*: every
request left to it fails at once with ``no answer from HOST for N s``. A site that could not
be reached on first contact (:class:`~.errors.SiteUnreachable`) stays so for the session.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TypeVar

from .config import SessionConfig
from .errors import Interrupted, NoAnswer, SiteSilent, SiteUnreachable, SourceError
from .log import vlog
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

#: A request outstanding this long is said (``--verbose 2``, the live display).
WAIT_NOTICE = 2.0
#: ...and said again this often while it lasts (verbose 2).
WAIT_REPEAT = 15.0


def silence_limit(config: SessionConfig) -> float:
    """Seconds without any answer after which a site is given up: one request's timeout,
    and one more (a probe) when retries are allowed. At the defaults (60 s, 5 retries):
    120 s, so a silent site ends a session of any size within about two minutes."""
    return config.timeout * (1 + min(config.retries, 1))


class State(Enum):
    """How a site is doing."""

    HEALTHY = "healthy"  # requests go as they come
    PROBING = "probing"  # the last request got no answer: one at a time
    SILENT = "silent"  # nothing answered for the silence limit: every request fails at once
    UNREACHABLE = "unreachable"  # could not be reached on first contact


def host_of(label: str) -> str:
    """The host a site label names (the endpoint's, for S3 behind one)."""
    hosts = re.findall(r"[a-z0-9+.-]+://(?:[^@/\s]*@)?([^/:\s)]+)", label, re.IGNORECASE)
    return hosts[-1] if hosts else label


class SiteHealth:
    """The health of one site, shared by every request of a session to it."""

    def __init__(
        self,
        label: str,
        limit: float,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host_of(label)
        self.limit, self.stop, self.clock = limit, stop, clock
        self.state = State.HEALTHY
        self.last_answer = clock()
        self._why = ""  # the message every request fails with once silent or unreachable
        self._probing = False  # a probe is out
        self._quiet_since = self.last_answer  # (while probing) when the silence began
        self._waiting: dict[int, tuple[float, str]] = {}  # request id -> (start, what)
        self._ids = iter(range(1 << 62))
        self._cond = threading.Condition()

    # -- around each request --------------------------------------------------------------
    @contextmanager
    def request(self, what: str) -> Iterator[None]:
        """Around one request: wait for the probe slot when probing, fail at once when the
        site is given up, and learn from how the request ended."""
        probe = self._enter()
        with self._cond:
            token = next(self._ids)
            self._waiting[token] = (self.clock(), what)
        try:
            yield
        except NoAnswer:
            self._no_answer(self._waiting[token][0])
            raise
        except SiteUnreachable as exc:
            self._unreachable(str(exc))
            raise
        except SourceError:
            self.answered()  # a status, a reply, a reset: the site is there
            raise
        else:
            self.answered()
        finally:
            with self._cond:
                del self._waiting[token]
                if probe:
                    self._probing = False
                self._cond.notify_all()

    def _enter(self) -> bool:
        """Wait until this request may go; True when it goes as the probe."""
        with self._cond:
            while True:
                if self.state in (State.SILENT, State.UNREACHABLE):
                    raise self._given_up()
                if self.stop.is_set():
                    raise Interrupted()
                if self.state is State.HEALTHY:
                    return False
                if not self._probing:
                    self._probing = True
                    return True
                self._cond.wait(0.2)

    def _given_up(self) -> SourceError:
        if self.state is State.UNREACHABLE:
            return SiteUnreachable(self._why)
        return SiteSilent(self._why)

    def answered(self) -> None:
        """The site answered (a response, a reply, bytes of a body)."""
        now = self.clock()
        with self._cond:
            self.last_answer = now
            if self.state is State.PROBING:
                vlog(2, "%s answers again", self.host)
                self.state = State.HEALTHY
                self._cond.notify_all()

    def _no_answer(self, started: float) -> None:
        """A request begun at ``started`` got no answer."""
        with self._cond:
            if self.state is State.HEALTHY:
                vlog(2, "no answer from %s; probing it with one request at a time", self.host)
                self.state = State.PROBING
                # Silent since the later of its last answer and this request's start (a site
                # left alone for a while is not silent for all that while).
                self._quiet_since = max(self.last_answer, started)
            quiet = self.clock() - max(self.last_answer, self._quiet_since)
            if self.state is State.PROBING and quiet >= self.limit:
                self._why = f"no answer from {self.host} for {quiet:.0f} s"
                vlog(1, "%s; giving up every request left to it", self._why)
                self.state = State.SILENT
            self._cond.notify_all()

    def _unreachable(self, why: str) -> None:
        with self._cond:
            if self.state is not State.UNREACHABLE:
                self._why, self.state = why, State.UNREACHABLE
            self._cond.notify_all()

    # -- what is being waited for ---------------------------------------------------------
    def oldest_wait(self) -> tuple[float, str] | None:
        """The request waited for longest: (seconds so far, what it is), or None."""
        with self._cond:
            if not self._waiting:
                return None
            start, what = min(self._waiting.values())
        return self.clock() - start, what


class WatchedSource(WrappedSource):
    """``inner`` with each request through its site's :class:`SiteHealth` (and each read of
    a body counted as an answer)."""

    def __init__(self, inner: Source, health: SiteHealth) -> None:
        super().__init__(inner)
        self.health = health

    def list_obsid(self, obsid: int) -> list[RemoteFile]:  # noqa: D102
        with self.health.request(f"the listing of ObsId {obsid}"):
            return self.inner.list_obsid(obsid)

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:  # noqa: D102
        with self.health.request(f"the listing of ObsId {obsid} {ref.prefix}".rstrip()):
            return self.inner.list_page(obsid, ref)

    def list_pages(self, pages: list[tuple[int, PageRef]]) -> list[ListingPage | Exception | None]:
        """The inner source's pipelined listing pages, as one request to the site."""
        obsids = sorted({obsid for obsid, _ in pages})
        shown = ", ".join(map(str, obsids[:3])) + (", ..." if len(obsids) > 3 else "")
        try:
            with self.health.request(f"the listings of ObsIds {shown}"):
                got = self.inner.list_pages(pages)
                if not got:
                    raise _NothingAnswered()  # (not an answer: the health learns nothing)
        except _NothingAnswered:
            return []
        return got

    def learn_sizes(self, files: list[RemoteFile]) -> None:
        """The inner source's pipelined HEADs, as one request to the site."""
        with self.health.request(f"the sizes of {len(files)} files"):
            self.inner.learn_sizes(files)

    def size(self, f: RemoteFile) -> int:  # noqa: D102
        with self.health.request(f"the size of {f.relpath}"):
            return self.inner.size(f)

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:  # noqa: D102
        with self.health.request(f.relpath):
            body = self.inner.open(f, offset, end)
        return _AnsweringBody(body, self.health)


class _NothingAnswered(Exception):
    """A pipeline brought no answer (its connection closed first): nothing to learn."""


class _AnsweringBody(WrappedBody):
    """A body whose bytes tell the site's health that the site answers."""

    def __init__(self, inner: Body, health: SiteHealth) -> None:
        super().__init__(inner)
        self._health = health

    def read(self, n: int) -> bytes:  # noqa: D102
        data = self.inner.read(n)
        if data:
            self._health.last_answer = self._health.clock()
        return data
