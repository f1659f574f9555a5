"""Exponential backoff with jitter, honouring a server's Retry-After."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TypeVar

from .config import SessionConfig
from .errors import Interrupted, TransientError
from .log import vlog

T = TypeVar("T")


def backoff_delay(config: SessionConfig, attempt: int, retry_after: float | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): doubling, jittered, capped; a server's
    Retry-After wins when longer (capped at five minutes so a bad header cannot hang us)."""
    delay = min(config.backoff_max, config.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(config.backoff_max, 300.0)))
    return delay


def with_retries(
    fn: Callable[[], T],
    config: SessionConfig,
    stop: threading.Event,
    what: str,
    on_retry: Callable[[int, float, str], None] | None = None,
) -> T:
    """Call fn, retrying TransientError with the session's backoff; ``on_retry(attempt,
    delay, reason)`` hears of each retry before its wait."""
    for attempt in range(1, config.retries + 2):
        try:
            return fn()
        except TransientError as exc:
            if attempt > config.retries:
                raise
            delay = backoff_delay(config, attempt, exc.retry_after)
            if on_retry is not None:  # the listener shows it (the reporter logs it)
                on_retry(attempt + 1, delay, str(exc))
            else:
                vlog(3, "%s: %s; retry %d in %.1f s", what, exc, attempt, delay)
            if stop.wait(delay):
                raise Interrupted() from None
    raise AssertionError("unreachable")
