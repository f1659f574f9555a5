"""Pipelined HTTP/1.1 GETs of small files (issue 19.1), against the simulator's Apache
behaviour (a round trip that pipelined requests share, ``MaxKeepAliveRequests``) and servers
that break pipelining in each way a real one can."""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from pathlib import Path

import pytest

from chandra_download import Status, download
from chandra_download.config import SessionConfig
from chandra_download.log import LEVELS
from chandra_download.simulator import ArchiveHTTPServer, Fault
from chandra_download.simulator.link import LinkModel
from chandra_download.sources.http import HTTPSource

OBSID = 1843
OPTS = {"timeout": 10.0, "retries": 2, "backoff": 0.01, "backoff_max": 0.05}
FALLBACK = "requests go one at a time from now on"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_complete(results, out: Path, source_files) -> None:
    assert results.ok, [(f.relpath, f.reason) for f in results[0].files if f.reason]
    want = source_files(OBSID)
    for rel, src in want.items():
        assert _sha(out / str(OBSID) / rel) == _sha(src), rel


def _gets(server: ArchiveHTTPServer) -> int:
    """File GETs (listings end in /)."""
    return sum(n for (m, p), n in server.stats.requests.items() if m == "GET" and p[-1] != "/")


def test_small_files_are_pipelined_on_at_most_jobs_connections(
    archive_root, source_files, tmp_path
):
    with ArchiveHTTPServer(archive_root, link=LinkModel(latency=0.02)) as server:
        results = download(OBSID, mirror=server.base_url, outdir=tmp_path, jobs=3, **OPTS)
    _assert_complete(results, tmp_path, source_files)
    assert server.stats.pipelined > len(source_files(OBSID)) // 2
    assert server.stats.peak_connections <= 3
    assert _gets(server) == len(source_files(OBSID))  # each file asked for once


def test_depth_one_sends_one_request_at_a_time(archive_root, source_files, tmp_path):
    with ArchiveHTTPServer(archive_root) as server:
        results = download(
            OBSID, mirror=server.base_url, outdir=tmp_path, jobs=3, pipeline_depth=1, **OPTS
        )
    _assert_complete(results, tmp_path, source_files)
    assert server.stats.pipelined == 0


def test_pipeline_depth_is_validated():
    with pytest.raises(ValueError, match="pipeline_depth"):
        SessionConfig(pipeline_depth=0)


def test_pipelined_requests_share_their_round_trip(archive_root):
    """The simulator's latency is a link's: three requests sent back to back are answered
    about one round trip later, not three (the old per-request sleep serialised them)."""
    with ArchiveHTTPServer(archive_root, link=LinkModel(latency=1.0)) as server:
        path = f"{server.prefix}byobsid/3/{OBSID}/oif.fits"
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            t0 = time.monotonic()
            sock.sendall(request * 3)
            got = b""
            while got.count(b"HTTP/1.1 200") < 3 or len(got) < 3 * 17280:  # oif.fits: 17280
                chunk = sock.recv(1 << 20)
                assert chunk
                got += chunk
            elapsed = time.monotonic() - t0
    assert elapsed >= 1.0
    assert elapsed < 2.5  # serialised: 3.0 s or more


def test_keep_alive_max_announced_and_closed_after(archive_root):
    with ArchiveHTTPServer(archive_root, keepalive_max=2) as server:
        path = f"{server.prefix}byobsid/3/{OBSID}/00README"
        request = f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request * 3)
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
    answers = got.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 2  # the third request is never answered
    assert b"Keep-Alive: timeout=5, max=1" in answers[0]
    assert b"Connection: close" in answers[1]


def test_apache_keep_alive_max_sends_the_unanswered_again(archive_root, source_files, tmp_path):
    """Apache closes after N requests (``Connection: close`` on the last): what was sent
    behind it goes again on another connection, no file is lost or asked for twice over."""
    with ArchiveHTTPServer(archive_root, keepalive_max=5) as server:
        results = download(OBSID, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    _assert_complete(results, tmp_path, source_files)
    files = len(source_files(OBSID))
    assert server.stats.connections_opened >= files // 5
    assert server.stats.pipelined > 0
    assert server.stats.peak_connections <= 2
    assert _gets(server) < 2 * files


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("pipeline_close", "closed connections with pipelined requests unanswered"),
        ("pipeline_swap", "answered"),
        ("pipeline_slow", "pipelined answers came slowly"),
    ],
)
def test_a_site_breaking_pipelining_is_fetched_one_at_a_time(
    archive_root, source_files, tmp_path, caplog, kind, why
):
    """Every way of answering pipelined requests wrongly is detected; the site falls back to
    one request at a time, said at --verbose 3, and every file arrives intact."""
    with ArchiveHTTPServer(archive_root) as server:
        server.faults.add(Fault(kind, "*", times=None, seconds=3.0))
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(OBSID, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    _assert_complete(results, tmp_path, source_files)
    said = [r for r in caplog.records if FALLBACK in r.getMessage()]
    assert len(said) == 1 and why in said[0].getMessage(), said
    assert said[0].levelno == LEVELS[3]  # shown from --verbose 3 on


def _small_files(source_files) -> list[str]:
    return sorted(rel for rel, p in source_files(OBSID).items() if p.stat().st_size < 100_000)


def test_one_slow_answer_leaves_pipelining_on(archive_root, source_files, tmp_path, caplog):
    """One pipelined answer that comes slowly may be this machine's own stall (under load
    the answer waits in the socket): pipelining stays on, every file is asked for once."""
    small = _small_files(source_files)
    with ArchiveHTTPServer(archive_root) as server:
        slow = Fault("pipeline_slow", small[len(small) // 2], times=1, seconds=1.5)
        server.faults.add(slow)
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(OBSID, mirror=server.base_url, outdir=tmp_path, jobs=1, **OPTS)
        assert server.wait_idle()
    _assert_complete(results, tmp_path, source_files)
    assert slow.times == 0  # it was pipelined, and delayed
    assert not any(FALLBACK in r.getMessage() for r in caplog.records)
    assert _gets(server) == len(source_files(OBSID))
    assert server.stats.pipelined > len(source_files(OBSID)) // 2


def test_a_slow_answer_read_whole_is_kept_not_fetched_again(
    archive_root, source_files, tmp_path, caplog
):
    """Pipelining goes off when an answer comes slowly, but the answers read whole, the slow
    one included, are good (only answers out of order are not trusted): written, not asked
    for again."""
    small = _small_files(source_files)
    with ArchiveHTTPServer(archive_root) as server:
        for rel in small[1:]:  # (whichever is behind another in a pipeline is delayed)
            server.faults.add(Fault("pipeline_slow", rel, times=1, seconds=1.5))
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(OBSID, mirror=server.base_url, outdir=tmp_path, jobs=1, **OPTS)
        assert server.wait_idle()
    _assert_complete(results, tmp_path, source_files)
    said = [r.getMessage() for r in caplog.records if FALLBACK in r.getMessage()]
    assert len(said) == 1 and "came slowly" in said[0], said
    slow = [p for (m, p) in server.stats.pipelined_requests if m == "GET" and p[-1] != "/"]
    assert slow  # the pipelined requests, the slow one among them
    asked = {p: n for (m, p), n in server.stats.requests.items() if m == "GET"}
    assert max(asked[p] for p in slow) <= 2  # (one sent behind the slow one goes again)
    assert sum(asked[p] == 1 for p in slow) >= len(slow) - 1, asked


def test_errors_in_the_middle_of_a_pipeline(archive_root, source_files, tmp_path, caplog):
    """A 503 once and a 404 for good in the middle of pipelines: the 503's file comes on
    the normal path, the 404's fails alone, the answers around them are kept."""
    small = _small_files(source_files)
    flaky, gone = small[len(small) // 3], small[2 * len(small) // 3]
    with ArchiveHTTPServer(archive_root) as server:
        server.faults.add(Fault("status", flaky, times=1, status=503))
        server.faults.add(Fault("status", gone, times=None, status=404))
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(OBSID, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    by = {f.relpath: f for f in results[0].files}
    assert by[gone].status is Status.FAILED and "404" in (by[gone].reason or "")
    assert by[flaky].status is Status.DOWNLOADED
    for rel, src in source_files(OBSID).items():
        if rel != gone:
            assert _sha(tmp_path / str(OBSID) / rel) == _sha(src), rel
    assert not any(FALLBACK in r.getMessage() for r in caplog.records)
    assert server.stats.pipelined > 0


def test_redirect_in_a_pipeline_goes_the_normal_path(archive_root, source_files, tmp_path):
    small = _small_files(source_files)
    looping = small[len(small) // 2]
    with ArchiveHTTPServer(archive_root) as server:
        server.faults.add(Fault("redirect_loop", looping, times=None))
        results = download(OBSID, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    by = {f.relpath: f for f in results[0].files}
    assert by[looping].status is Status.FAILED and "redirects" in (by[looping].reason or "")
    assert sum(f.status is Status.DOWNLOADED for f in results[0].files) == len(by) - 1


def test_pipelined_over_tls_with_basic_auth(archive_root, source_files, tmp_path):
    with ArchiveHTTPServer(archive_root, tls=True, auth=("ann", "s3cret")) as server:
        results = download(
            OBSID,
            mirror=server.base_url,
            outdir=tmp_path,
            jobs=2,
            ca_bundle=server.ca_file,
            username="ann",
            userpass="s3cret",
            **OPTS,
        )
    _assert_complete(results, tmp_path, source_files)
    assert server.stats.pipelined > 0
    assert server.stats.peak_connections <= 2


def test_no_pipelining_through_a_proxy(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = HTTPSource("http://mirror.example/cdaftp/", SessionConfig())
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("http_proxy", raising=False)
    direct = HTTPSource("http://mirror.example/cdaftp/", SessionConfig())
    assert (proxied.pipeline_depth, direct.pipeline_depth) == (1, 8)
