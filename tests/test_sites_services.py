"""Unbounded service answers and waits (issues 20.4, 17.5): every service request has a total
deadline and a cap on its answer. Hostile loopback servers; assertions count requests and
bytes, never seconds."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chandra_download import services
from chandra_download.config import SessionConfig
from chandra_download.find import find_chandra_obsids
from chandra_download.services import ServiceClient, ServiceError
from chandra_download.status import CatalogueStatus

Handler = Callable[[BaseHTTPRequestHandler], None]
QUICK = SessionConfig(timeout=1.0, retries=5, backoff=0.01, backoff_max=0.05)


class Hostile:
    """An HTTP server answering every GET with ``behave(handler)``; counts requests and
    the body bytes it managed to send."""

    def __init__(self, behave: Handler) -> None:
        owner = self
        self.requests = 0
        self.sent = 0
        self.lock = threading.Lock()

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's
                with owner.lock:
                    owner.requests += 1
                try:
                    behave(self)
                except OSError:
                    pass  # the client hung up: what it was sent so far is counted

            def log_message(self, *a: object) -> None:
                pass

            def send(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                with owner.lock:
                    owner.sent += len(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _huge(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/x-votable+xml")
    h.send_header("Content-Length", str(2 * 1024**3))  # "2 GB"
    h.end_headers()
    block = b"<VOTABLE>" + b" " * 65527
    for _ in range(2 * 1024**3 // len(block)):
        h.send(block)  # type: ignore[attr-defined]


def _trickle(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    for _ in range(1000):
        h.send(b"x")  # type: ignore[attr-defined]
        time.sleep(0.2)


def _retry_after(value: str) -> Handler:
    def behave(h: BaseHTTPRequestHandler) -> None:
        h.send_response(503)
        h.send_header("Retry-After", value)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return behave


def _silent(h: BaseHTTPRequestHandler) -> None:
    time.sleep(30)  # reads the request, never answers (the client hangs up first)


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    cap = 1024 * 1024
    monkeypatch.setitem(services.MAX_ANSWER, "footprint", cap)
    yield cap


def test_a_huge_answer_is_refused_once_past_the_cap(small_cap: int) -> None:
    with Hostile(_huge) as server:
        client = ServiceClient(QUICK)
        with pytest.raises(ServiceError, match="larger than 1 MiB"):
            client.get("footprint", server.url + "footprints?POS=1,2")
        client.close()
        time.sleep(0.2)
        sent, requests = server.sent, server.requests
    assert requests == 1  # not retried: the same answer would come again
    assert sent < 64 * small_cap  # streamed and dropped, not read to its 2 GB end


def test_a_trickling_service_ends_within_its_timeout() -> None:
    # One byte every 0.2 s never trips a socket timeout of 1 s: the attempt's own deadline
    # does, and a trickle is not retried.
    with Hostile(_trickle) as server:
        client = ServiceClient(QUICK)
        with pytest.raises(ServiceError, match="too slow"):
            client.get("ocat", server.url + "ocatDetails.do?obsid=1")
        client.close()
        sent, requests = server.sent, server.requests
    assert requests == 1
    assert sent < 100  # about timeout / 0.2 bytes, not the 1000 of the whole answer


@pytest.mark.parametrize(
    "value",
    ["100000", email.utils.formatdate(time.time() + 86400, usegmt=True)],
    ids=["seconds", "http-date"],
)
def test_the_catalogue_budget_holds_against_retry_after(value: str) -> None:
    # The catalogue's own budget (10 s, one retry): a site asking to wait longer is not
    # waited for, whether it says seconds or an HTTP date.
    with Hostile(_retry_after(value)) as server:
        status = CatalogueStatus(QUICK, ocat_url=server.url + "srservices/")
        why = status.why_missing(1843)
        status.close()
        requests = server.requests
    assert "could not be reached" in why and "asks to wait" in why, why
    assert requests == 1


def test_find_with_silent_resolvers_asks_each_once() -> None:
    # Silent on first contact: neither resolver is asked again (before: 1 + retries each).
    with Hostile(_silent) as cadc, Hostile(_silent) as sesame:
        with pytest.raises(ServiceError) as caught:
            find_chandra_obsids(
                "m87",
                config=QUICK,
                cadc_url=cadc.url + "find",
                sesame_url=sesame.url + "sesame",
                footprint_url="http://127.0.0.1:9/",
                ocat_url="http://127.0.0.1:9/",
            )
        counts = cadc.requests, sesame.requests
    assert "CADC" in str(caught.value) and "Sesame" in str(caught.value)
    assert counts == (1, 1)


def test_services_have_a_timeout_of_their_own() -> None:
    client = ServiceClient(SessionConfig())  # the defaults: 60 s, 5 retries
    assert client.timeout == services.SERVICE_TIMEOUT
    # Two silent resolvers cost at most 2 x SERVICE_TIMEOUT: within a minute.
    assert 2 * client.timeout < 60
    assert client.budget() == 2 * services.SERVICE_TIMEOUT
