"""A connection budget bounds open sockets, not requests in flight (issue 15): several
downloads in one process share one budget, as a cluster's tasks do, and the simulator never
sees more connections open at once than the budget, idle keep-alive ones included."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
from budget_support import SharedBudget

from chandra_download import budget as budget_mod
from chandra_download import download
from chandra_download.simulator import (
    ArchiveHTTPServer,
    LinkModel,
    generate_archive,
    iter_files,
)
from chandra_download.simulator.ftp import ArchiveFTPServer

OBSIDS = [1843, 2749, 6298]
OPTS = {"timeout": 20.0, "retries": 3, "backoff": 0.05, "backoff_max": 0.2, "status": False}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kinds = {1843: "acis", 2749: "acis-grating", 6298: "hrc"}
    return generate_archive(tmp_path_factory.mktemp("budget-archive"), kinds, scale=0.2)


def _complete(root: Path, out: Path, obsid: int) -> bool:
    for rel, src in iter_files(root, obsid):
        got = out / str(obsid) / rel
        if (
            not got.is_file()
            or hashlib.sha256(got.read_bytes()).digest()
            != hashlib.sha256(src.read_bytes()).digest()
        ):
            return False
    return True


def _three_at_once(url: str, out: Path, budget: SharedBudget, **options: object) -> list:
    """One download per ObsId, each in its own thread with its own pools, one budget."""
    got: list = []

    def one(obsid: int) -> None:
        got.append(download([obsid], mirror=url, outdir=out, budget=budget, **OPTS, **options))

    threads = [threading.Thread(target=one, args=(o,)) for o in OBSIDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(got) == 3, "a download did not end (a lease never came back?)"
    return got


def _settled(budget: SharedBudget) -> bool:
    deadline = time.monotonic() + 10
    while budget.held and time.monotonic() < deadline:
        time.sleep(0.05)
    return budget.held == 0


def test_http_sockets_never_outnumber_the_budget(root, tmp_path):
    budget = SharedBudget(2)
    link = LinkModel(latency=0.01, conn_bandwidth=3_000_000)
    with ArchiveHTTPServer(root, link=link) as server:
        results = _three_at_once(server.base_url, tmp_path, budget, jobs=4)
        peak = server.stats.peak_connections
        opened = server.stats.connections_opened
    assert all(r.ok for r in results), [r.summary() for r in results]
    assert all(_complete(root, tmp_path, o) for o in OBSIDS)
    assert 1 <= peak <= 2, peak  # 3 downloads x 4 jobs would open 12
    assert budget.peak <= 2
    assert opened >= 2  # idle sockets were closed and their leases went to the others
    assert _settled(budget)  # every lease came back once the sockets closed


def test_a_small_budget_with_pipelining_and_parts_completes(root, tmp_path):
    """Budget 1: a pipelined batch holds its one socket, split parts each want one, and
    a download's idle socket must go for the next to get the lease: no deadlock."""
    budget = SharedBudget(1)
    with ArchiveHTTPServer(root, link=LinkModel(latency=0.005)) as server:
        results = _three_at_once(
            server.base_url, tmp_path, budget, jobs=3, split_threshold=100_000, pipeline_depth=8
        )
        peak = server.stats.peak_connections
        pipelined = server.stats.pipelined
    assert all(r.ok for r in results), [r.summary() for r in results]
    assert all(_complete(root, tmp_path, o) for o in OBSIDS)
    assert peak == 1
    assert pipelined > 0  # pipelining stays on under a budget (one batch, one socket)
    assert _settled(budget)


def test_ftp_control_connections_never_outnumber_the_budget(root, tmp_path):
    budget = SharedBudget(2)
    with ArchiveFTPServer(root, link=LinkModel(latency=0.005)) as server:
        results = _three_at_once(server.base_url, tmp_path, budget, jobs=4)
        peak = server.stats.peak_connections
    assert all(r.ok for r in results), [r.summary() for r in results]
    assert all(_complete(root, tmp_path, o) for o in OBSIDS)
    assert 1 <= peak <= 2, peak
    assert _settled(budget)


def test_without_a_budget_no_reaper_runs(root, tmp_path, monkeypatch):
    """One machine: no leased sockets, no reaper thread, keep-alive as ever."""
    monkeypatch.setattr(budget_mod, "_reaper", budget_mod._Reaper())
    with ArchiveHTTPServer(root) as server:
        results = download([1843], mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
        opened = server.stats.connections_opened
    assert results.ok
    assert budget_mod._reaper._thread is None
    assert opened <= 2


def test_a_thread_waiting_for_a_lease_takes_a_socket_that_came_free():
    """The budget's one lease is held elsewhere: a waiting thread is served by what its own
    source gives back (poke), and the lease asked for meanwhile is given back once it comes,
    nobody here wanting it any more."""
    budget = SharedBudget(1)
    leases = budget_mod.SiteLeases(budget, "site")
    freed: list[str] = []
    got: list[object] = []
    with budget.lease("site"):
        waiter = threading.Thread(
            target=lambda: got.append(leases.wait(lambda: freed.pop() if freed else None))
        )
        waiter.start()
        time.sleep(0.2)
        assert got == []  # no lease, nothing free: it waits
        freed.append("a socket of its own")
        leases.poke()
        waiter.join(5)
        assert got == ["a socket of its own"]
    assert _settled(budget)  # the lease its helper got after that went back


@pytest.mark.parametrize("protocol", ["http", "ftp"])
def test_one_download_under_a_small_budget_reuses_its_sockets(root, tmp_path, protocol):
    """jobs 8 under a budget of 2: the six threads without a socket are served by the two
    sockets as they come free, not by new connections once the idle ones are closed."""
    budget = SharedBudget(2)
    serve = ArchiveHTTPServer if protocol == "http" else ArchiveFTPServer
    with serve(root, link=LinkModel(latency=0.01)) as server:
        results = download([2749], mirror=server.base_url, outdir=tmp_path, budget=budget,
                           jobs=8, **OPTS)  # fmt: skip
        stats = server.stats
        opened = stats.connections_opened if protocol == "http" else stats.total_connections
        peak = stats.peak_connections
    assert results.ok, results.summary()
    assert sum(1 for p in tmp_path.rglob("*") if p.is_file()) > 20
    assert peak <= 2
    assert opened <= 4, opened  # (waiting for leases instead: one new socket per thread)


def test_s3_sockets_never_outnumber_the_budget(root, tmp_path, monkeypatch):
    """botocore's pools too: the connections at the endpoint (counted by the simulator's
    proxy in front of moto) never outnumber the budget."""
    pytest.importorskip("moto")
    from chandra_download.simulator.faults import FaultPlan
    from chandra_download.simulator.s3 import ArchiveS3Server

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    budget = SharedBudget(2)
    out = tmp_path / "out"
    with ArchiveS3Server(root, bucket="budget-archive", prefix="", faults=FaultPlan()) as srv:
        results = _three_at_once(srv.base_url, out, budget, jobs=4, endpoint_url=srv.endpoint_url)
        peak = srv.stats.peak_connections
    assert all(r.ok for r in results), [r.summary() for r in results]
    assert all(_complete(root, out, o) for o in OBSIDS)
    assert 1 <= peak <= 2, peak
    assert _settled(budget)
