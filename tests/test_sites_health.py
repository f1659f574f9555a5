"""Sites that do not answer: the site's state, not each request's (issue 17.5).

Hostile loopback servers (one that accepts and never answers, one that never accepts) with
reduced timeouts; assertions count connections and requests, never seconds.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3.util.connection

from chandra_download.api import download
from chandra_download.config import SessionConfig
from chandra_download.errors import NoAnswer, SiteSilent, SiteUnreachable, TransientError
from chandra_download.health import SiteHealth, State, host_of, silence_limit

OBSIDS = list(range(1000, 1020))
QUICK = {"timeout": 0.5, "retries": 5, "backoff": 0.01, "backoff_max": 0.05, "status": False}


class SilentServer:
    """Accepts every connection, reads what is sent, never answers a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self._conns.append(conn)  # kept open, never read from nor written to

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._conns:
            conn.close()
        self.sock.close()


class Blackhole:
    """A listening socket that never accepts, its backlog full: connections time out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self._plugs: list[socket.socket] = []
        for _ in range(4):  # fill the accept queue so later SYNs are dropped
            plug = socket.socket()
            plug.setblocking(False)
            plug.connect_ex(("127.0.0.1", self.port))
            self._plugs.append(plug)

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        for plug in self._plugs:
            plug.close()
        self.sock.close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the HTTP connections urllib3 tries to open."""
    count = [0]
    real = urllib3.util.connection.create_connection

    def counting(*a, **kw):  # type: ignore[no-untyped-def]
        count[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    yield count


def test_silent_http_site_ends_every_obsid_at_once(tmp_path: Path) -> None:
    # Before: each ObsId's listing waited for timeout x (retries + 1), `jobs` at a time,
    # about 120 connections here. Now the site is probed one request at a time after the
    # first timeouts, and given up when nothing answered for the silence limit.
    with SilentServer() as server:
        results = download(
            OBSIDS, mirror=f"http://127.0.0.1:{server.port}/", outdir=tmp_path, jobs=4, **QUICK
        )
        accepted = server.accepted
    assert not results.ok
    for r in results:
        assert r.error is not None and "no answer from 127.0.0.1 for" in r.error, r.error
    assert accepted <= 4 + 3  # the first round, then probes one at a time


def test_silent_ftp_site_ends_every_obsid_at_once(tmp_path: Path) -> None:
    # An FTP server that accepts and never greets: not reached on first contact, so every
    # ObsId fails with that, after one round of connections rather than one per ObsId.
    with SilentServer() as server:
        results = download(
            OBSIDS, mirror=f"ftp://127.0.0.1:{server.port}/", outdir=tmp_path, jobs=4, **QUICK
        )
        accepted = server.accepted
    assert not results.ok
    for r in results:
        assert r.error is not None and "cannot reach 127.0.0.1" in r.error, r.error
    assert accepted <= 4


def test_blackhole_http_site_ends_every_obsid_at_once(tmp_path: Path, connects: list[int]) -> None:
    with Blackhole() as hole:
        results = download(
            OBSIDS, mirror=f"http://127.0.0.1:{hole.port}/", outdir=tmp_path, jobs=4, **QUICK
        )
    assert not results.ok
    errors = {r.error for r in results}
    assert len(errors) == 1 and errors != {None}, errors
    assert connects[0] <= 4  # one round of connects; no ObsId tried on its own after it


# -- the state machine, with a clock of our own ---------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail(health: SiteHealth, exc: Exception, begun: float | None = None) -> None:
    """A request that fails with ``exc`` now, begun at ``begun`` (default: now)."""
    clock = health.clock
    assert isinstance(clock, Clock)
    now = clock.now
    clock.now = now if begun is None else begun
    with pytest.raises(type(exc)), health.request("x"):
        clock.now = now
        raise exc


def test_no_answer_probes_then_gives_up_after_the_limit() -> None:
    clock, stop = Clock(), threading.Event()
    health = SiteHealth("https://example.org/base/", 10.0, stop, clock)
    clock.now = 4.0
    _fail(health, NoAnswer("timed out"), begun=0.0)
    assert health.state is State.PROBING
    clock.now = 9.0
    _fail(health, NoAnswer("timed out"), begun=5.0)
    assert health.state is State.PROBING  # 9 s without an answer: not yet the limit
    clock.now = 10.5
    _fail(health, NoAnswer("timed out"), begun=9.5)
    assert health.state is State.SILENT
    with pytest.raises(SiteSilent, match=r"no answer from example.org for 10 s"):
        with health.request("y"):
            raise AssertionError("a silent site is not asked")


def test_an_answer_makes_the_site_healthy_again() -> None:
    clock, stop = Clock(), threading.Event()
    health = SiteHealth("ftp://h.example:2121/pub/", 10.0, stop, clock)
    _fail(health, NoAnswer("timed out"))
    assert health.state is State.PROBING
    _fail(health, TransientError("HTTP 503"))  # an error status is an answer
    assert health.state is State.HEALTHY
    clock.now = 30.0
    _fail(health, NoAnswer("timed out"), begun=25.0)  # idle from 0 to 25 s: not silence
    assert health.state is State.PROBING


def test_probing_lets_one_request_through_at_a_time() -> None:
    clock, stop = Clock(), threading.Event()
    health = SiteHealth("http://h/", 10.0, stop, clock)
    _fail(health, NoAnswer("timed out"))
    inside, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def probe() -> None:
        with health.request("probe"):
            inside.set()
            release.wait(10)

    def second() -> None:
        with health.request("second"):
            second_in.set()

    t1 = threading.Thread(target=probe)
    t1.start()
    assert inside.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    assert not second_in.wait(0.5)  # waits while the probe is out
    release.set()  # the probe is answered: healthy, the other goes
    assert second_in.wait(10)
    t1.join()
    t2.join()
    assert health.state is State.HEALTHY


def test_stop_ends_a_wait_for_the_probe_slot() -> None:
    from chandra_download.errors import Interrupted

    stop = threading.Event()
    health = SiteHealth("http://h/", 10.0, stop, Clock())
    _fail(health, NoAnswer("timed out"))
    gate = threading.Event()
    errors: list[BaseException] = []

    def probe() -> None:
        with health.request("probe"):
            gate.wait(10)

    def waiter() -> None:
        try:
            with health.request("w"):
                pass
        except BaseException as exc:
            errors.append(exc)

    t1 = threading.Thread(target=probe)
    t1.start()
    t2 = threading.Thread(target=waiter)
    t2.start()
    stop.set()
    t2.join(10)
    gate.set()
    t1.join()
    assert errors and isinstance(errors[0], Interrupted)


def test_unreachable_on_first_contact_stays_so() -> None:
    health = SiteHealth("http://h/", 10.0, threading.Event(), Clock())
    _fail(health, SiteUnreachable("cannot reach h: refused"))
    with pytest.raises(SiteUnreachable, match="cannot reach h: refused"):
        with health.request("again"):
            raise AssertionError("not asked again")


def test_silence_limit_and_hosts() -> None:
    assert silence_limit(SessionConfig()) == 120.0  # defaults: 100 ObsIds end in ~2 min
    assert silence_limit(SessionConfig(timeout=5, retries=0)) == 5.0
    assert host_of("https://user@cxc.cfa.harvard.edu/cdaftp/") == "cxc.cfa.harvard.edu"
    assert host_of("s3://bucket/p/ (endpoint http://127.0.0.1:9000)") == "127.0.0.1"
