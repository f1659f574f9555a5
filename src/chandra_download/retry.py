"""One retry policy for every network step: attempts, backoff, ``Retry-After`` and a deadline.

:class:`RetryPolicy` is modelled on urllib3's ``Retry``: the caller makes an attempt, and on a
:class:`~chandra_download.errors.TransientError` asks the policy (:meth:`RetryPolicy.increment`)
whether another attempt is allowed and how long to wait first. The policy raises
:class:`RetriesExhausted` when none is: the retries are spent, the wait the site asks for
(``Retry-After``, parsed only by :mod:`chandra_download.sources.wire`) is longer than this
session waits, or the wait would end past the policy's deadline. Whole files, ranged parts
(:meth:`RetryPolicy.for_part`: a part's own retries, counted in its file's attempts too),
listings and the services all retry through it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .config import SessionConfig
from .errors import Interrupted, TransientError
from .log import vlog

T = TypeVar("T")

__all__ = ["Interrupted", "RetriesExhausted", "RetryPolicy", "RetryListener", "with_retries"]

#: ``on_retry(attempt, delay, reason)``: told of each retry (the number of the attempt to
#: come, counted from 1) before its wait.
RetryListener = Callable[[int, float, str], None]


class RetriesExhausted(TransientError):
    """No attempt is left: the message says why; ``cause`` is the last failure.

    A :class:`TransientError`, so callers that turn transient failures into their own errors
    keep doing so; but no :class:`RetryPolicy` retries it again (an outer loop around an inner
    one that gave up does not multiply the attempts).
    """

    def __init__(self, message: str, cause: BaseException, attempts: int) -> None:
        super().__init__(message)
        self.cause = cause
        self.attempts = attempts


class RetryPolicy:
    """The retry budget of one operation (a file, a listing, a service request).

    Parameters
    ----------
    retries : int
        Attempts allowed after the first (per part, for a file's ranged parts).
    backoff, backoff_max : float
        First delay in seconds, doubled each retry with jitter, capped at ``backoff_max``.
    max_wait : float
        The longest single wait, ``Retry-After`` included: a site asking for more is not
        waited for (the operation fails at once, saying so).
    deadline : float or None
        ``time.monotonic()`` value after which no wait may end (None: no deadline).
    stop : threading.Event
        Set when the session stops: waits end at once with :class:`Interrupted`.
    what : str
        The operation, for the log (``ObsId 1843``, ``primary/x.fits.gz``).
    on_retry : callable or None
        ``on_retry(attempt, delay, reason)`` hears of each retry before its wait; without
        one, retries are logged at verbosity 3.
    """

    def __init__(
        self,
        retries: int,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        *,
        max_wait: float = 60.0,
        deadline: float | None = None,
        stop: threading.Event | None = None,
        what: str = "",
        on_retry: RetryListener | None = None,
        parent: RetryPolicy | None = None,
    ) -> None:
        self.retries, self.backoff, self.backoff_max = retries, backoff, backoff_max
        self.max_wait, self.deadline = max_wait, deadline
        self.stop = stop if stop is not None else threading.Event()
        self.what, self.on_retry = what, on_retry
        self.retried = 0  # retries granted through this policy (and its parts')
        self._parent = parent
        self._lock = threading.Lock()

    @classmethod
    def for_session(
        cls,
        config: SessionConfig,
        stop: threading.Event,
        what: str = "",
        *,
        budget: float | None = None,
        on_retry: RetryListener | None = None,
    ) -> RetryPolicy:
        """The session's policy (``--retries``, its backoff) for one operation; ``budget``
        (seconds from now) gives it a total deadline. A single wait is at most the longer of
        ``backoff_max`` and ``timeout``: the session's own bound on waiting for a site."""
        return cls(
            config.retries,
            config.backoff,
            config.backoff_max,
            max_wait=max(config.backoff_max, config.timeout),
            deadline=None if budget is None else time.monotonic() + budget,
            stop=stop,
            what=what,
            on_retry=on_retry,
        )

    def for_part(self, what: str) -> RetryPolicy:
        """A policy for one ranged part: its own ``retries``, this one's deadline and stop,
        and each of its retries counted in this policy's :attr:`attempts` too."""
        return RetryPolicy(
            self.retries,
            self.backoff,
            self.backoff_max,
            max_wait=self.max_wait,
            deadline=self.deadline,
            stop=self.stop,
            what=what,
            on_retry=self.on_retry,
            parent=self,
        )

    @property
    def attempts(self) -> int:
        """Attempts made so far, counting the first: 1 + the retries granted."""
        return 1 + self.retried

    def time_left(self) -> float | None:
        """Seconds to the deadline (never below 0), or None without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def increment(self, error: Exception, *, extra: bool = False) -> float:
        """Count a failed attempt; return the delay before the next one.

        ``extra`` grants the attempt even when the retries are spent (a second fetch to
        compare bytes that failed a content check with). Raises :class:`RetriesExhausted`
        when no attempt is left, :class:`Interrupted` when the session is stopping.
        """
        if isinstance(error, RetriesExhausted):
            raise error  # an inner policy gave up: no retrying on top of it
        if self.stop.is_set():
            raise Interrupted()
        if self.retried >= self.retries and not extra:
            raise RetriesExhausted(str(error), error, self.attempts)
        delay = self._delay(error)
        self._count()
        return delay

    def _delay(self, error: Exception) -> float:
        """Doubling, jittered, capped; a site's ``Retry-After`` wins when longer, up to
        :attr:`max_wait`; never past the deadline."""
        delay = min(self.backoff_max, self.backoff * 2**self.retried) * random.uniform(0.5, 1.0)
        asked = getattr(error, "retry_after", None)
        if asked is not None:
            if asked > self.max_wait:
                raise RetriesExhausted(
                    f"{error}; the site asks to wait {asked:.0f} s before retrying, "
                    f"longer than this session waits ({self.max_wait:.0f} s)",
                    error,
                    self.attempts,
                )
            delay = max(delay, asked)
        left = self.time_left()
        if left is not None and delay > left:
            raise RetriesExhausted(
                f"{error}; no time left to retry within the deadline", error, self.attempts
            )
        return delay

    def _count(self) -> None:
        with self._lock:
            self.retried += 1
        if self._parent is not None:
            self._parent._count()

    def wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds; :class:`Interrupted` at once when the session stops."""
        if self.stop.wait(delay):
            raise Interrupted()

    def retry(self, error: Exception, *, extra: bool = False) -> None:
        """:meth:`increment`, tell the listener, then :meth:`wait`: the step between two
        attempts (raises as :meth:`increment` does)."""
        delay = self.increment(error, extra=extra)
        if self.on_retry is not None:  # the listener shows it (the reporter logs it)
            self.on_retry(self._top().attempts, delay, str(error))
        else:
            vlog(3, "%s: %s; retry %d in %.1f s", self.what, error, self.retried, delay)
        self.wait(delay)

    def _top(self) -> RetryPolicy:
        return self._parent._top() if self._parent is not None else self

    def call(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` until it returns, retrying :class:`TransientError` within the budget;
        the last failure is raised as :class:`RetriesExhausted` (other errors at once)."""
        while True:
            if self.stop.is_set():
                raise Interrupted()
            try:
                return fn()
            except RetriesExhausted:
                raise
            except TransientError as exc:
                self.retry(exc)


def with_retries(
    fn: Callable[[], T],
    config: SessionConfig,
    stop: threading.Event,
    what: str,
    on_retry: RetryListener | None = None,
) -> T:
    """``RetryPolicy.for_session(config, stop, what, on_retry=on_retry).call(fn)``."""
    return RetryPolicy.for_session(config, stop, what, on_retry=on_retry).call(fn)
