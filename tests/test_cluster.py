"""Dask: ObsIds as tasks on a LocalCluster of worker processes, one budget per site."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

dask = pytest.importorskip("dask")  # the [dask] extra, which [test] brings
distributed = pytest.importorskip("distributed")

from chandra_download import cli, cluster  # noqa: E402
from chandra_download.results import Status  # noqa: E402
from chandra_download.simulator import (  # noqa: E402
    ArchiveHTTPServer,
    LinkModel,
    generate_archive,
    iter_files,  # noqa: E402
)
from chandra_download.simulator.ftp import ArchiveFTPServer  # noqa: E402

OBSIDS = [6298, 1843, 2749]  # not sorted: results and blocks must keep this order
BIG = "secondary/acisf01843_000N005_evt1.fits.gz"
BIG_SIZE = 6_000_000


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kinds = {6298: "hrc", 1843: "acis", 2749: "acis-grating"}
    return generate_archive(
        tmp_path_factory.mktemp("cluster-archive"), kinds, scale=0.3, sizes={"evt1": BIG_SIZE}
    )


@contextmanager
def _two_workers() -> Iterator[Any]:
    """A client of a new local cluster of two worker processes."""
    # A dead worker's leases come back within lease-timeout + this interval.
    with dask.config.set({"distributed.scheduler.locks.lease-validation-interval": "0.5s"}):
        lc = distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0"
        )
    with lc, distributed.Client(lc) as c:
        yield c


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with _two_workers() as c:
        yield c


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def mismatches(root: Path, out: Path, obsids=OBSIDS) -> list[str]:
    problems = []
    for obsid in obsids:
        want = dict(iter_files(root, obsid))
        top = out / str(obsid)
        got = {p.relative_to(top).as_posix(): p for p in top.rglob("*") if p.is_file()}
        problems += [f"{obsid}: missing {r}" for r in sorted(set(want) - set(got))]
        problems += [f"{obsid}: extra {r}" for r in sorted(set(got) - set(want))]
        problems += [
            f"{obsid}: differs {r}" for r in want if r in got and sha(got[r]) != sha(want[r])
        ]
    return problems


def fetch(client, server, out: Path, **options):
    options.setdefault("jobs", 4)
    options.setdefault("backoff", 0.05)
    return cluster.download(OBSIDS, client=client, mirror=server.base_url, outdir=out, **options)


def test_the_budget_bounds_the_open_sockets_at_the_site(client, root, tmp_path, caplog):
    link = LinkModel(latency=0.02, conn_bandwidth=4_000_000)
    caplog.set_level(logging.INFO, logger="chandra_download")
    with ArchiveHTTPServer(root, link=link) as server:
        results = fetch(client, server, tmp_path, connections=3, blocks=True)
        peak = server.stats.peak_connections  # open sockets, idle keep-alive ones included
    assert results.ok, results.summary()
    assert [r.obsid for r in results] == OBSIDS
    assert mismatches(root, tmp_path) == []
    assert 2 <= peak <= 3, peak  # 2 workers x 2 tasks x 4 jobs want far more
    heads = [m for m in caplog.messages if m.startswith("Downloading files for ObsId")]
    assert [int(h.split()[4].rstrip(",")) for h in heads] == OBSIDS


def test_the_budget_bounds_the_ftp_sessions_at_the_site(client, root, tmp_path):
    with ArchiveFTPServer(root, link=LinkModel(latency=0.01)) as server:
        results = fetch(client, server, tmp_path, connections=2)
        peak = server.stats.peak_connections  # control connections (each with its data one)
    assert results.ok, results.summary()
    assert mismatches(root, tmp_path) == []
    assert 1 <= peak <= 2, peak


def test_two_clients_at_once_run_each_obsid_once(client, root, tmp_path):
    out = tmp_path / "out"
    with ArchiveHTTPServer(root, link=LinkModel(latency=0.02)) as server:
        with distributed.Client(client.scheduler.address) as other:
            got: dict[str, object] = {}
            runs = [
                threading.Thread(target=lambda c=c, n=n: got.update({n: fetch(c, server, out)}))
                for n, c in (("a", client), ("b", other))
            ]
            for t in runs:
                t.start()
            for t in runs:
                t.join(120)
        stats = server.stats
        files = [(m, p) for (m, p) in stats.requests if m == "GET" and not p.endswith("/")]
        twice = [p for m, p in files if stats.requests[(m, p)] > 1]
    assert all(r.ok for r in got.values()), [r.summary() for r in got.values()]  # type: ignore[attr-defined]
    assert len(got) == 2
    assert mismatches(root, out) == []
    assert twice == []  # one task per ObsId: never two runs of one at once


def _part_bytes(out: Path) -> int:
    """The largest partial file's bytes (one may be renamed into place as we look)."""
    sizes = [0]
    for p in out.rglob("*.part"):
        try:
            sizes.append(p.stat().st_size)
        except FileNotFoundError:
            pass
    return max(sizes)


def _kill_worker_running(client, key: str, pids: dict[str, int]) -> None:
    """SIGKILL the worker process running task ``key``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        where = [w for w, keys in client.processing().items() if key in keys]
        if where:
            os.kill(pids[where[0]], signal.SIGKILL)
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} never ran")


def _run_and_kill(client, server, out: Path, **options):
    """Download in a thread; kill the worker of ObsId 1843 once 1 MB of its big file is on disk."""
    got: list[object] = []
    pids = client.run(os.getpid)  # asked now: at the kill, one request less under load
    t = threading.Thread(target=lambda: got.append(fetch(client, server, out, **options)))
    t.start()
    key = cluster._key(1843, None, cluster._checked(None, _options(server, out, options)))
    deadline = time.monotonic() + 60
    while _part_bytes(out) < 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _part_bytes(out) >= 1_000_000
    _kill_worker_running(client, key, pids)
    assert not (out / "1843" / BIG).exists()  # killed in the middle of the file
    t.join(180)
    return got[0]


def _options(server, out: Path, options: dict) -> dict:
    return {"jobs": 4, "backoff": 0.05, "mirror": server.base_url, "outdir": out, **options}


def test_a_worker_killed_mid_file_is_resumed_elsewhere(client, root, tmp_path):
    link = LinkModel(conn_bandwidth=600_000)  # the big file takes ~10 s: killed well before
    with ArchiveHTTPServer(root, link=link) as server:
        results = _run_and_kill(client, server, tmp_path, split_threshold=0)
        big = server.stats.get_count(f"*/1843/{BIG}")
        served = server.stats.bytes_sent
    assert results.ok, results.summary()
    assert mismatches(root, tmp_path) == []
    fr = next(f for f in results[1].files if f.relpath == BIG)
    assert fr.status is Status.RESUMED
    assert big >= 2  # fetched again after the kill, from where it stopped:
    total = sum(p.stat().st_size for o in OBSIDS for _, p in iter_files(root, o))
    assert served < total + BIG_SIZE * 0.9


def test_a_task_whose_worker_may_not_die_fails_alone(client, root, tmp_path):
    scheduler = client.cluster.scheduler
    saved, scheduler.allowed_failures = scheduler.allowed_failures, 0
    try:
        with ArchiveHTTPServer(root, link=LinkModel(conn_bandwidth=600_000)) as server:
            results = _run_and_kill(client, server, tmp_path, split_threshold=0)
    finally:
        scheduler.allowed_failures = saved
    by = {r.obsid: r for r in results}
    assert [r.obsid for r in results] == OBSIDS
    assert not by[1843].found and "died" in (by[1843].error or "")
    assert by[6298].ok and by[2749].ok
    assert mismatches(root, tmp_path, [6298, 2749]) == []
    assert not results.ok


def _hold_the_lease(budget, site):
    held = distributed.Event(site)
    if held.is_set():
        return  # run again once its worker died: the test is over by then
    with budget.on_worker().lease(site):
        held.set()
        time.sleep(30)


def _take_the_lease(budget, site):
    with budget.on_worker().lease(site):
        return True


def test_a_killed_workers_lease_comes_back_at_once():
    """Worker A holds the budget's one lease; B waits for it; A is SIGKILLed. The
    scheduler's plugin gives A's lease back as it removes A: B gets it long before the
    lease would time out unrefreshed (10 s; the lease-validation interval here is 0.5 s)."""
    budget, site = cluster.DaskBudget(1), f"killed-holder-{os.getpid()}-{time.time_ns()}"
    # A cluster of its own: the module's may have lost a worker an earlier test killed (a
    # Nanny under load can fail to restart one: then it never comes back).
    with _two_workers() as client:
        cluster._give_back_dead_leases(client)
        a, b = sorted(client.scheduler_info()["workers"])
        holder = client.submit(
            _hold_the_lease, budget, site, workers=[a], allow_other_workers=False, pure=False
        )
        assert distributed.Event(site, client=client).wait(60)
        waiter = client.submit(
            _take_the_lease, budget, site, workers=[b], allow_other_workers=False, pure=False
        )
        time.sleep(1)
        assert not waiter.done()  # the one lease is held
        pid = client.run(os.getpid, workers=[a])[a]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        assert waiter.result(timeout=60)
        waited = time.monotonic() - killed
        client.cancel(holder)
    assert waited < cluster.LEASE_TIMEOUT / 2, waited


def test_the_command_line_runs_on_the_scheduler(client, root, tmp_path, capsys):
    with ArchiveHTTPServer(root) as server:
        args = [",".join(map(str, OBSIDS)), "--mirror", server.base_url, "--outdir", str(tmp_path)]
        code = cli.main([*args, "--scheduler", client.scheduler.address, "--connections", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert mismatches(root, tmp_path) == []
    heads = [line for line in out.splitlines() if line.startswith("Downloading files for ObsId")]
    assert [int(h.split()[4].rstrip(",")) for h in heads] == OBSIDS


def test_connections_without_a_scheduler_is_exit_2(capsys):
    assert cli.main(["1843", "--connections", "4"]) == 2
    assert "--connections needs --scheduler" in capsys.readouterr().err


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -m (a private mount namespace)")
def test_workers_that_cannot_see_the_outdir_fetch_nothing(root, tmp_path):
    """A worker in its own mount namespace, where an empty file system hides the output
    directory (as on a node that does not mount it): one clear error, nothing fetched."""
    out = tmp_path / "shared" / "out"
    out.mkdir(parents=True)
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as lc:
        hide = f"mount -t tmpfs none {tmp_path / 'shared'} && exec {sys.executable} -m "
        worker = (
            f"{hide}distributed.cli.dask_worker {lc.scheduler.address} --nthreads 1 --no-dashboard"
        )
        proc = subprocess.Popen(["unshare", "-m", "sh", "-c", worker], stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(lc) as c, ArchiveHTTPServer(root) as server:
                c.wait_for_workers(1, timeout=60)
                with pytest.raises(cluster.ClusterError, match="cannot see the output directory"):
                    fetch(c, server, out)
                assert server.stats.get_count("*", method=None) == 0
        finally:
            proc.terminate()
            proc.wait(30)
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []


def test_a_whole_run_option_is_refused_before_anything_starts(client, tmp_path):
    with pytest.raises(ValueError, match="manifest= is not available on a cluster"):
        cluster.download([1843], client=client, outdir=tmp_path, manifest=tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []
