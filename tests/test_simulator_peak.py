"""The HTTP simulator's peak of open connections counts what clients hold open: a
connection its client has closed is not counted against the next one, even while the
server's thread has not yet seen the close (under load it lags; tests bound clients by it)."""

from __future__ import annotations

import socket
import threading
import time

from chandra_download.simulator import http as sim_http
from chandra_download.simulator.http import ArchiveHTTPServer


def _wait(cond, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_the_peak_counts_the_connections_clients_hold(archive_root, monkeypatch):
    gate = threading.Event()
    real = sim_http._Handler.handle

    def lagging(self):  # the server's threads held up, as under load: closes not yet seen
        gate.wait(30)
        real(self)

    monkeypatch.setattr(sim_http._Handler, "handle", lagging)
    with ArchiveHTTPServer(archive_root) as server:
        stats = server.stats
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        assert _wait(lambda: stats.connections_opened == 3)
        assert stats.peak_connections == 3
        held.pop().close()
        held.append(socket.create_connection(("127.0.0.1", server.port)))
        assert _wait(lambda: stats.connections_opened == 4)
        assert stats.peak_connections == 3  # three open at the client, never four
        held.append(socket.create_connection(("127.0.0.1", server.port)))
        assert _wait(lambda: stats.connections_opened == 5)
        assert stats.peak_connections == 4
        for s in held:
            s.close()
        gate.set()


def test_a_new_connection_is_served_while_another_threads_socket_is_read(archive_root, monkeypatch):
    """Counting the connections clients closed never waits on a socket: one found readable
    whose thread here took its bytes just after (emulated: every socket looks readable)
    once held up the next connection's thread for the socket's whole timeout."""
    import select

    monkeypatch.setattr(select, "select", lambda r, w, x, t=None: (list(r), [], []))
    gate = threading.Event()
    real = sim_http._Handler.handle

    def lagging(self):  # (its thread must not see the close first: it would untrack it)
        gate.wait(30)
        real(self)

    monkeypatch.setattr(sim_http._Handler, "handle", lagging)
    with ArchiveHTTPServer(archive_root) as server:
        idle = socket.create_connection(("127.0.0.1", server.port))  # open, nothing sent
        closed = socket.create_connection(("127.0.0.1", server.port))
        assert _wait(lambda: server.stats.current_connections == 2)
        for sock in list(server._live):
            sock.settimeout(30)  # (as a reading thread's socket has)
        closed.close()
        took: list[float] = []

        def one_ended() -> bool:
            t0 = time.monotonic()
            ended = server._ended_by_clients()
            took.append(time.monotonic() - t0)
            return ended == 1  # the closed one (once its end has come in), not the idle one

        assert _wait(one_ended, 10)
        idle.close()
        gate.set()
    assert max(took) < 2, took
