"""A connection budget for tests: the stand-in for a cluster's shared semaphore."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SharedBudget:
    """``n`` leases shared by every download that holds this budget (a test's stand-in for
    the cluster's semaphore), counting the most held at once."""

    def __init__(self, n: int) -> None:
        self._sem = threading.BoundedSemaphore(n)
        self._lock = threading.Lock()
        self.held = self.peak = 0

    @contextmanager
    def lease(self, site: str) -> Iterator[None]:
        self._sem.acquire()
        with self._lock:
            self.held += 1
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._lock:
                self.held -= 1
            self._sem.release()
