"""A connection budget bounds open sockets, not requests in flight (issue 15): several
downloads in one process share one budget, as a cluster's tasks do, and the simulator never
sees more connections open at once than the budget, idle keep-alive ones included."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
