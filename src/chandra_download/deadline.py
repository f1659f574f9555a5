"""One deadline on an exchange of many reads (an FTP listing, an S3 call and its retries).

Each socket armed for it is shut down when the deadline passes (``http_body``'s watchdog: one
thread for the process, not one per request), so the read blocked on it returns at once: a
site trickling its answer a byte at a time never trips a socket's own timeout (issue 20.4).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from .sources.http_body import arm_header_deadline


class Deadline:
    """The end of one exchange, ``seconds`` from now; a context that disarms on exit.

    Examples
    --------
    >>> with Deadline(5.0) as deadline:  # doctest: +SKIP
    ...     deadline.arm(sock)
    ...     data = read_everything(sock)
    >>> deadline.fired  # doctest: +SKIP
    False
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._armed: list[Any] = []

    def arm(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline (at once if it has passed), unless the exchange
        ends first."""
        self._armed.append(arm_header_deadline(sock, max(0.0, self.end - time.monotonic())))

    @property
    def fired(self) -> bool:
        """Whether the deadline passed and shut one of its sockets down."""
        return any(armed.fired for armed in self._armed)

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, *exc: object) -> None:
        for armed in self._armed:
            armed.disarm()
