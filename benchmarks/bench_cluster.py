#!/usr/bin/env python
"""Cluster benchmark: the connection budget, not the number of workers, sets the pace.

Run ``python benchmarks/bench_cluster.py`` (a few minutes; needs ``chandra-download[dask]``).
On the simulator's throttled link (a per-connection bandwidth cap, served by a simulator
process of its own) it times, each into a fresh empty directory:

- one process, ``download_chandra_obsid --jobs 8``;
- a LocalCluster of 2 worker processes, ``cluster.download(connections=8)``;
- a LocalCluster of 4 worker processes, ``cluster.download(connections=16)``.

The first two should take about as long (the same 8 connections at once); the third about
half as long. Each output is checked byte-complete. Then it measures how long a killed
worker's leases keep the others waiting (``--lease`` alone runs only that, with and without
the scheduler plugin that gives them back).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
OBSIDS = {3392: "acis", 4396: "hrc", 5337: "acis", 6298: "hrc", 7435: "acis-grating",
          8490: "acis", 9768: "hrc", 11010: "acis"}  # fmt: skip
SIZES = {"evt1": 3e6, "evt1a": 1e6, "evt2": 2e6}
CONN_BANDWIDTH = 300_000  # bytes/s per connection: slow enough that the CPU is not the limit
SPLIT = 1 << 19  # large files in ranged parts, so no single file sets the pace, and the last
#               parts in flight (0.3 MB/s each) end close together: at 1 MB, they took ~1.7 s
LATENCY = 0.03
VALIDATION = "1s"  # the scheduler's locks.lease-validation-interval


def archive() -> Path:
    from chandra_download.simulator import generate_archive

    root = WORK / "cluster-archive-2"
    if not (root / "byobsid").is_dir():
        generate_archive(root, OBSIDS, scale=1.0, sizes={k: int(v) for k, v in SIZES.items()})
    return root


def serve(root: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "chandra_download.simulator", "serve", "--root", str(root),
           "--latency", str(LATENCY), "--conn-bandwidth", str(CONN_BANDWIDTH)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Base URL: "):
            return proc, line.split(": ", 1)[1].strip()
    raise RuntimeError("the simulator did not start")


def site_stats(url: str, method: str = "GET") -> dict:
    """The simulator's counters (DELETE: zeroed, the peak restarting from what is open)."""
    import json
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    req = urllib.request.Request(f"{parts.scheme}://{parts.netloc}/_simulator/stats", method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if method == "GET" and body else {}


def complete(root: Path, out: Path) -> str:
    from chandra_download.simulator import iter_files

    for obsid in OBSIDS:
        for rel, src in iter_files(root, obsid):
            got = out / str(obsid) / rel
            if not got.is_file() or got.stat().st_size != src.stat().st_size:
                return f"missing or short: {obsid}/{rel}"
    return "ok"


def one_process(url: str, out: Path) -> float:
    ids = ",".join(map(str, OBSIDS))
    cmd = [sys.executable, "-m", "chandra_download", ids, "--mirror", url, "--outdir", str(out),
           "--jobs", "8", "--split-size", str(SPLIT), "--no-progress", "--quiet",
           "--no-status"]  # fmt: skip
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t0


def on_cluster(url: str, out: Path, workers: int, connections: int) -> float:
    import dask
    import distributed

    from chandra_download import cluster

    with dask.config.set({"distributed.scheduler.locks.lease-validation-interval": VALIDATION}):
        lc = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=2, processes=True, dashboard_address=None
        )
    with lc, distributed.Client(lc) as client:
        t0 = time.monotonic()
        results = cluster.download(
            list(OBSIDS), client=client, connections=connections, mirror=url, outdir=out,
            jobs=8, split_threshold=SPLIT, status=False,
        )  # fmt: skip
        took = time.monotonic() - t0
    if not results.ok:
        raise RuntimeError(results.summary())
    return took


def lease_stall(plugin: bool = True) -> float:
    """Seconds from SIGKILL of a worker holding every lease until another worker gets one."""
    import dask
    import distributed

    from chandra_download.cluster import DaskBudget
    from chandra_download.cluster_leases import register

    def hold(budget: DaskBudget) -> None:
        leases = budget.on_worker()
        ctx = leases.lease("bench-site")
        ctx.__enter__()
        time.sleep(600)

    def take(budget: DaskBudget) -> float:
        with budget.on_worker().lease("bench-site"):
            return time.time()

    with dask.config.set({"distributed.scheduler.locks.lease-validation-interval": VALIDATION}):
        lc = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    with lc, distributed.Client(lc) as client:
        if not plugin:
            print("  (without the scheduler plugin: the lease timeout alone)")
        elif not register(client):
            raise RuntimeError("the scheduler took no plugin")
        a, b = list(client.scheduler_info()["workers"])
        budget = DaskBudget(1)
        client.submit(hold, budget, workers=[a], pure=False)
        time.sleep(3)  # it holds the only lease
        waiter = client.submit(take, budget, workers=[b], allow_other_workers=False, pure=False)
        time.sleep(1)
        pid = client.run(os.getpid, workers=[a])[a]
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        got = waiter.result(timeout=120)
    return got - killed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lease", action="store_true", help="only measure a killed worker's stall")
    args = p.parse_args()
    if not args.lease:
        throughput()
    print(f"killed worker: the others waited {lease_stall():.2f} s for its lease "
          "(given back by the scheduler plugin as the worker is removed)")  # fmt: skip
    if args.lease:
        print(f"  without the plugin: {lease_stall(plugin=False):.1f} s "
              f"(lease timeout 10 s, validation interval {VALIDATION})")  # fmt: skip


def throughput() -> None:
    root = archive()
    total = sum(f.stat().st_size for f in (root / "byobsid").rglob("*") if f.is_file())
    proc, url = serve(root)
    rows = []
    try:
        for name, run in (
            ("one process, --jobs 8", lambda out: one_process(url, out)),
            ("2 workers, connections=8", lambda out: on_cluster(url, out, 2, 8)),
            ("4 workers, connections=16", lambda out: on_cluster(url, out, 4, 16)),
        ):
            out = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
            try:
                site_stats(url, "DELETE")
                took = run(out)
                peak = site_stats(url)["peak_connections"]
                rows.append((name, took, f"{complete(root, out)}, peak {peak} open at the site"))
            finally:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    print(f"{len(OBSIDS)} ObsIds, {total / 1e6:.0f} MB, {CONN_BANDWIDTH / 1e6:g} MB/s per "
          f"connection, {LATENCY * 1000:.0f} ms per request")  # fmt: skip
    base = rows[0][1]
    for name, took, ok in rows:
        print(f"  {name:<28} {took:6.1f} s  {total / took / 1e6:5.1f} MB/s  "
              f"x{base / took:4.2f}  {ok}")  # fmt: skip
    print(f"2 workers, connections=8 vs one process --jobs 8: x{base / rows[1][1]:.2f} "
          "(the budget sets the pace: want 1.00 within 10%)")  # fmt: skip
    print(f"4 workers, connections=16 vs one process --jobs 8: x{base / rows[2][1]:.2f} "
          f"(want about 2; vs 2 workers x{rows[1][1] / rows[2][1]:.2f})")  # fmt: skip


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
