#!/usr/bin/env python
"""Speed benchmark of chandra-download against the sequential baseline, wget, aria2c and curl.

Run ``python benchmarks/bench_speed.py`` (about 10 minutes; ``--quick``: about 1 minute). It
generates a simulated archive under ``benchmarks/_work/`` (cached between runs), serves it
from simulator processes separate from the client (so the client's CPU is its own), runs each
tool into a fresh empty directory, checks every output is byte-complete (all files, exact
sizes) and prints tables. See ``benchmarks/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from chandra_download.config import SessionConfig
from chandra_download.filetypes import classify
from chandra_download.simulator import generate_archive, iter_files

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
MB = 1e6  # decimal megabytes, as the simulator's "8M" means 8e6 bytes/s

# ObsId -> kind groups with their large-file sizes; every ObsId also has ~30-45 small files.
PROFILES = {
    "full": {
        "groups": [
            ({1843: "acis", 2749: "acis-grating"}, 2.0, {"evt1": 100e6, "evt1a": 20e6, "evt2": 30e6}),
            ({3392: "acis", 4396: "hrc"}, 2.0, {"evt1": 50e6, "evt2": 15e6}),
            ({5337: "acis", 6298: "hrc", 7435: "acis-grating", 8490: "acis", 9768: "hrc",
              11010: "acis", 12345: "acis-grating", 14022: "acis"}, 2.0,
             {"evt1": 8e6, "evt1a": 3e6, "evt2": 5e6}),
        ],
        "split_size": 300e6,
        "big_size": 2e9,
    },
    "quick": {
        "groups": [
            ({1843: "acis", 2749: "acis-grating"}, 1.0, {"evt1": 20e6, "evt1a": 5e6, "evt2": 6e6}),
            ({3392: "acis", 4396: "hrc", 5337: "acis", 6298: "hrc", 7435: "acis-grating",
              8490: "acis", 9768: "hrc", 11010: "acis"}, 1.0,
             {"evt1": 2e6, "evt1a": 1e6, "evt2": 1e6}),
        ],
        "split_size": 80e6,
        "big_size": 500e6,
    },
}  # fmt: skip
SPLIT_OBSID, BIG_OBSID = 29001, 29002
#: The small-file regime (issue 19): many ObsIds whose every file is small.
SMALL_OBSIDS = {"full": range(30000, 30060), "quick": range(30000, 30012)}
SMALL_SIZES = {"evt1": 60_000, "evt1a": 40_000, "evt2": 30_000}
#: Many 10 MB files over unthrottled loopback (issue 19's "200 x 10 MB"): one evt1 per ObsId.
MEDIUM_OBSIDS = {"full": range(31000, 31200), "quick": range(31000, 31040)}
MEDIUM_SIZE = 10_000_000


@dataclass
class Run:
    """One timed command."""

    name: str
    wall: float
    rc: int
    rss_mb: float
    cpu: float
    nbytes: int
    complete: str  # "ok" or what is missing

    @property
    def ok(self) -> bool:
        return self.complete == "ok"


# --- processes -------------------------------------------------------------------------------

# Runs a command and writes its peak RSS (KiB) and CPU seconds to argv[1]. A small launcher is
# needed because Linux carries the parent's RSS into ru_maxrss of a child forked from it, and
# this process holds numpy and astropy; the launcher's own ~10 MB is the floor of the figure.
_LAUNCH = """
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{ru.ru_maxrss} {ru.ru_utime + ru.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


#: Output trees of finished runs, deleted when the benchmark ends (see :func:`discard`).
TRASH = WORK / "trash"


def discard(path: Path) -> None:
    """Delete a run's output tree, or, when it holds little data, move it aside to be deleted
    when the benchmark ends (:func:`empty_trash`).

    Deleting thousands of small files at once would charge the next run for it on file
    systems that reuse inodes lazily: ext4 without a journal (this machine's) skips inodes
    freed in the last minutes, so every file created after them scans past them
    (``recently_deleted`` was a quarter of a small-file download's CPU, and of aria2c's). A
    tree of much data is deleted at once: kept, its pages would crowd the page cache and the
    next runs would pay for reclaiming them.
    """
    if not path.exists():
        return
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    if size > _KEEP_AT_MOST:
        shutil.rmtree(path, ignore_errors=True)
        return
    TRASH.mkdir(parents=True, exist_ok=True)
    path.rename(TRASH / f"{path.name}-{time.time_ns()}")


#: The most data a discarded tree may hold to be moved aside rather than deleted.
_KEEP_AT_MOST = 256e6


def empty_trash() -> None:
    shutil.rmtree(TRASH, ignore_errors=True)


def timed(
    name: str, cmd: list[str], outdir: Path, expected: dict[str, int], keep: bool = False
) -> Run:
    """Run ``cmd`` into a fresh ``outdir`` (``keep``: into the one there, kept after: a
    re-run); wall time, peak RSS and CPU of that child alone."""
    if not keep:
        discard(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as usage:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _LAUNCH, usage.name, *cmd],
                              stdout=subprocess.DEVNULL, stderr=err, cwd=outdir)  # fmt: skip
        wall = time.perf_counter() - t0
        err.seek(0)
        message = err.read().decode(errors="replace").strip()
        maxrss_kb, cpu = map(float, usage.read().split())
    complete = compare(outdir, expected)
    if proc.returncode != 0 or complete != "ok":
        print(f"  ! {name}: exit {proc.returncode}; {complete}; {message[-300:]}", flush=True)
    run = Run(name, wall, proc.returncode, maxrss_kb / 1024, cpu, sum(expected.values()), complete)
    print(f"  {name:<44} {wall:7.2f} s  {run.nbytes / MB / wall:7.1f} MB/s  {run.complete}",
          flush=True)  # fmt: skip
    if not keep:
        discard(outdir)
    return run


def compare(outdir: Path, expected: dict[str, int]) -> str:
    """ "ok" when ``outdir`` holds exactly the expected files with their exact sizes."""
    got = {p.relative_to(outdir).as_posix(): p.stat().st_size for p in outdir.rglob("*")
           if p.is_file() and ".chandra-download" not in p.parts and not p.name.endswith(".aria2")}  # fmt: skip
    if got == expected:
        return "ok"
    same = sum(1 for k, v in expected.items() if got.get(k) == v)
    extra = len(set(got) - set(expected))
    return (f"INCOMPLETE: {same}/{len(expected)} files right, {sum(got.values()) / MB:.1f}"
            f"/{sum(expected.values()) / MB:.1f} MB, {extra} unexpected")  # fmt: skip


class Simulator:
    """``python -m chandra_download.simulator serve`` in its own process."""

    def __init__(self, root: Path, link: list[str]) -> None:
        cmd = [sys.executable, "-m", "chandra_download.simulator", "serve", "--root", str(root)]
        self.proc = subprocess.Popen(cmd + link, stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith("Base URL:"):
                self.url = line.split(":", 1)[1].strip()
                return
        raise RuntimeError("the simulator did not start")

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


def ours(url: str, obsids: list[int], outdir: Path, *extra: str) -> list[str]:
    ids = ",".join(map(str, obsids))
    return [sys.executable, "-m", "chandra_download", ids, *extra, "--mirror", url,
            "--outdir", str(outdir), "--quiet", "--no-progress"]  # fmt: skip


def file_url(url: str, key: str) -> str:
    obsid = int(key.split("/", 1)[0])
    return f"{url}byobsid/{obsid % 10}/{key}"


def aria2(url: str, expected: dict[str, int], outdir: Path, jobs: int, conns: int) -> list[str]:
    listing = WORK / f"aria2-{jobs}-{conns}.txt"
    listing.write_text(
        "".join(f"{file_url(url, k)}\n  dir={outdir}\n  out={k}\n" for k in expected)
    )
    return ["aria2c", "-i", str(listing), "-j", str(jobs), "-x", str(conns), "-s", str(conns),
            "-k", "1M", "--file-allocation=none", "--auto-file-renaming=false",
            "--allow-overwrite=true", "-q", "--summary-interval=0"]  # fmt: skip


# --- data ------------------------------------------------------------------------------------


def expected_files(root: Path, obsids: list[int], ftype: str | None = None) -> dict[str, int]:
    out = {}
    for obsid in obsids:
        for rel, path in iter_files(root, obsid):
            if ftype is None or classify(rel) == ftype:
                out[f"{obsid}/{rel}"] = path.stat().st_size
    return out


def prepare(root: Path, profile: dict) -> list[int]:
    t0 = time.perf_counter()
    print(f"Generating the archive in {root} (cached)...", flush=True)
    obsids: list[int] = []
    for kinds, scale, sizes in profile["groups"]:
        generate_archive(root, kinds, scale=scale, sizes={k: int(v) for k, v in sizes.items()})
        obsids += list(kinds)
    generate_archive(
        root, {SPLIT_OBSID: "acis"}, scale=0.1, sizes={"evt1": int(profile["split_size"])}
    )
    generate_archive(root, {BIG_OBSID: "acis"}, scale=0.1, sizes={"evt1": int(profile["big_size"])})
    which = "quick" if profile is PROFILES["quick"] else "full"
    small = SMALL_OBSIDS[which]
    generate_archive(root, dict.fromkeys(small, "acis"), scale=0.05, sizes=SMALL_SIZES)
    medium = MEDIUM_OBSIDS[which]
    generate_archive(root, dict.fromkeys(medium, "acis"), scale=0.02, sizes={"evt1": MEDIUM_SIZE})
    print(f"  ready in {time.perf_counter() - t0:.0f} s", flush=True)
    return obsids


def cache_bytecode() -> None:
    """Let the commands (children of this process) keep their compiled modules, in a cache
    of the work directory's, as pip's install leaves them beside an installed copy (an
    environment with PYTHONDONTWRITEBYTECODE would compile every module on every run)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, {datetime.date.today()}")  # fmt: skip


# --- the three experiments -------------------------------------------------------------------


def bench_batch(args, root: Path, obsids: list[int], tools: dict[str, bool]) -> dict:
    expected = expected_files(root, obsids)
    total, largest = sum(expected.values()), max(expected.values())
    depth = max(k.count("/") for k in expected)  # listing round trips, one per directory level
    jobs = SessionConfig().jobs
    print(f"\n[1] Batch: {len(obsids)} ObsIds, {len(expected)} files, {total / MB:.1f} MB "
          f"(largest {largest / MB:.0f} MB); link {args.latency * 1000:.0f} ms/request, "
          f"{args.conn_bandwidth / MB:g} MB/s per connection, {args.total_bandwidth / MB:g} MB/s "
          "in total", flush=True)  # fmt: skip
    out = WORK / "out"
    runs = []
    with Simulator(root, link_options(args)) as sim:
        runs.append(timed(f"chandra-download (default: {jobs} jobs)",
                          ours(sim.url, obsids, out), out, expected))  # fmt: skip
        runs.append(timed("chandra-download --no-verify (as aria2c: no checks)",
                          ours(sim.url, obsids, out, "--no-verify"), out, expected))  # fmt: skip
        runs.append(timed(f"chandra-download --jobs {2 * jobs} (less polite)",
                          ours(sim.url, obsids, out, "--jobs", str(2 * jobs)), out, expected))  # fmt: skip
        if not args.no_sequential:
            runs.append(timed("chandra-download --jobs 1 (CIAO-style)",
                              ours(sim.url, obsids, out, "--jobs", "1"), out, expected))  # fmt: skip
        if tools["aria2c"]:
            runs.append(timed(f"aria2c -j {jobs} -x 1 (given the URL list)",
                              aria2(sim.url, expected, out, jobs, 1), out, expected))  # fmt: skip
            runs.append(timed(f"aria2c -j {jobs} -x 4 -s 4 (split, URL list)",
                              aria2(sim.url, expected, out, jobs, 4), out, expected))  # fmt: skip
        if tools["wget"] and not args.no_sequential:
            cut = len([p for p in sim.url.split("/", 3)[3].split("/") if p]) + 2
            dirs = sorted({file_url(sim.url, k.split("/", 1)[0] + "/") for k in expected})
            cmd = ["wget", "-r", "-np", "-nH", f"--cut-dirs={cut}", "-c", "-q", "-e", "robots=off",
                   "-R", "index.html*", "--reject-regex", r"\?C=", *dirs]  # fmt: skip
            runs.append(timed("wget -r -np (1 connection)", cmd, out, expected))
    latency = (depth + 1) * args.latency  # listing levels, then the file request itself
    limit = latency + total / args.total_bandwidth
    no_split = latency + max(total / min(args.total_bandwidth, jobs * args.conn_bandwidth),
                             largest / args.conn_bandwidth)  # fmt: skip
    # Any client with `jobs` connections and one request per file: each request waits its
    # latency, each connection carries at most conn_bandwidth.
    per_conn = latency + max(total / args.total_bandwidth,
                             (len(expected) * args.latency + total / args.conn_bandwidth) / jobs)  # fmt: skip
    base = runs[0].wall
    print(f"\n{'tool':<46}{'wall s':>8}{'MB/s':>8}{'x ours':>8}{'x limit':>9}{'CPU s':>7}"
          f"{'RSS MB':>8}  complete")  # fmt: skip
    for r in runs:
        print(f"{r.name:<46}{r.wall:8.2f}{total / MB / r.wall:8.1f}{r.wall / base:8.2f}"
              f"{r.wall / limit:9.2f}{r.cpu:7.1f}{r.rss_mb:8.0f}  {r.complete}")  # fmt: skip
    for name, t in (("physical limit (aggregate cap + latency)", limit),
                    (f"limit with 1 connection per file, {jobs} at once", no_split),
                    (f"limit for {jobs} connections, 1 request/file", per_conn)):  # fmt: skip
        print(f"{name:<46}{t:8.2f}{total / MB / t:8.1f}{t / base:8.2f}{t / limit:9.2f}")
    return {"runs": [asdict(r) for r in runs], "total": total, "largest": largest,
            "files": len(expected), "limit": limit, "no_split_limit": no_split,
            "per_connection_limit": per_conn}  # fmt: skip


def bench_small(args, root: Path, tools: dict[str, bool]) -> dict:
    """Many ObsIds of small files over a shared round trip, Apache's 100 requests per
    connection (the simulator's default): ours against aria2c on the same connections, a
    nothing-to-do re-run of each, and ``--list`` over the complete tree and over none."""
    obsids = list(SMALL_OBSIDS["quick" if args.quick else "full"])
    expected = expected_files(root, obsids)
    total, jobs = sum(expected.values()), SessionConfig().jobs
    print(f"\n[4] Small files: {len(obsids)} ObsIds, {len(expected)} files, {total / MB:.1f} MB "
          f"(largest {max(expected.values()) / 1e3:.0f} kB); link {args.latency * 1000:.0f} ms "
          "per round trip, 100 requests per connection", flush=True)  # fmt: skip
    out = WORK / "out"
    runs = []
    with Simulator(root, link_options(args)) as sim:
        runs.append(timed(f"chandra-download (default: {jobs} jobs, pipelined)",
                          ours(sim.url, obsids, out), out, expected, keep=True))  # fmt: skip
        runs.append(timed("chandra-download, nothing-to-do re-run",
                          ours(sim.url, obsids, out), out, expected, keep=True))  # fmt: skip
        runs.append(timed("chandra-download --list (all on disk)",
                          ours(sim.url, obsids, out, "--list"), out, expected, keep=True))  # fmt: skip
        discard(out)
        runs.append(timed("chandra-download --list (nothing on disk: HEADs)",
                          ours(sim.url, obsids, out, "--list"), out, {}))  # fmt: skip
        runs.append(timed("chandra-download --pipeline-depth 1",
                          ours(sim.url, obsids, out, "--pipeline-depth", "1"), out, expected))  # fmt: skip
        if tools["aria2c"]:
            runs.append(timed(f"aria2c -j {jobs} -x 1 (given the URL list)",
                              aria2(sim.url, expected, out, jobs, 1), out, expected, keep=True))  # fmt: skip
            runs.append(timed("aria2c -c, nothing-to-do re-run",
                              [*aria2(sim.url, expected, out, jobs, 1), "-c",
                               "--allow-overwrite=false"], out, expected, keep=True))  # fmt: skip
            discard(out)
    bound = len(expected) * args.latency / jobs  # one request per round trip, `jobs` at once
    base = runs[0].wall
    print(f"\n{'tool':<46}{'wall s':>8}{'x ours':>8}{'x bound':>9}{'CPU s':>7}{'RSS MB':>8}  "
          "complete")  # fmt: skip
    for r in runs:
        print(f"{r.name:<46}{r.wall:8.2f}{r.wall / base:8.2f}{r.wall / bound:9.2f}{r.cpu:7.1f}"
              f"{r.rss_mb:8.0f}  {r.complete}")  # fmt: skip
    print(f"{f'bound for {jobs} connections, 1 request per round trip':<46}{bound:8.2f}")
    return {"runs": [asdict(r) for r in runs], "total": total, "files": len(expected),
            "bound": bound}  # fmt: skip


def bench_single(args, root: Path, tools: dict[str, bool]) -> dict:
    expected = expected_files(root, [BIG_OBSID], "evt1")
    ((key, size),) = expected.items()
    print(f"\n[2] One {size / MB:.0f} MB file over unthrottled loopback", flush=True)
    out = WORK / "out"
    runs = []
    with Simulator(root, []) as sim:
        if tools["curl"]:
            runs.append(timed("curl -o", ["curl", "-sS", "--create-dirs", "-o", str(out / key),
                                          file_url(sim.url, key)], out, expected))  # fmt: skip
        runs.append(timed("chandra-download (verifying)", ours(sim.url, [BIG_OBSID], out, "evt1"),
                          out, expected))  # fmt: skip
        runs.append(timed("chandra-download --no-verify",
                          ours(sim.url, [BIG_OBSID], out, "evt1", "--no-verify"), out, expected))  # fmt: skip
    base = runs[0].wall
    print(
        f"\n{'tool':<46}{'wall s':>8}{'MB/s':>8}{'x first':>8}{'CPU s':>7}{'RSS MB':>8}  complete"
    )
    for r in runs:
        print(f"{r.name:<46}{r.wall:8.2f}{size / MB / r.wall:8.1f}{base / r.wall:8.2f}"
              f"{r.cpu:7.1f}{r.rss_mb:8.0f}  {r.complete}")  # fmt: skip
    return {"runs": [asdict(r) for r in runs], "size": size}


def bench_split(args, root: Path, tools: dict[str, bool]) -> dict:
    expected = expected_files(root, [SPLIT_OBSID], "evt1")
    ((key, size),) = expected.items()
    print(f"\n[3] One {size / MB:.0f} MB file over the throttled link (would splitting help?)",
          flush=True)  # fmt: skip
    out = WORK / "out"
    runs = []
    with Simulator(root, link_options(args)) as sim:
        runs.append(timed(f"chandra-download (default: parts over {SessionConfig().jobs} jobs)",
                          ours(sim.url, [SPLIT_OBSID], out, "evt1"), out, expected))  # fmt: skip
        runs.append(timed("chandra-download --split-size 0 (1 connection)",
                          ours(sim.url, [SPLIT_OBSID], out, "evt1", "--split-size", "0"), out,
                          expected))  # fmt: skip
        if tools["aria2c"]:
            for n in (1, 8):
                runs.append(timed(f"aria2c -x {n} -s {n}", aria2(sim.url, expected, out, 1, n),
                                  out, expected))  # fmt: skip
    limit = args.latency + size / args.total_bandwidth
    base = runs[0].wall
    print(f"\n{'tool':<46}{'wall s':>8}{'MB/s':>8}{'x ours':>8}{'x limit':>9}  complete")
    for r in runs:
        print(f"{r.name:<46}{r.wall:8.2f}{size / MB / r.wall:8.1f}{r.wall / base:8.2f}"
              f"{r.wall / limit:9.2f}  {r.complete}")  # fmt: skip
    print(f"{'physical limit (aggregate cap + latency)':<46}{limit:8.2f}{size / MB / limit:8.1f}")
    return {"runs": [asdict(r) for r in runs], "size": size, "limit": limit}


def bench_medium(args, root: Path, tools: dict[str, bool]) -> dict:
    """Many 10 MB files over unthrottled loopback: ours, verifying, against curl given the
    URL list, one file after another and 8 at once (issue 19's goal: 0.7x curl or better)."""
    obsids = list(MEDIUM_OBSIDS["quick" if args.quick else "full"])
    expected = expected_files(root, obsids, "evt1")
    total, jobs = sum(expected.values()), SessionConfig().jobs
    print(f"\n[5] {len(expected)} files of {MEDIUM_SIZE / MB:.0f} MB ({total / MB:.0f} MB) over "
          "unthrottled loopback", flush=True)  # fmt: skip
    out = WORK / "out"
    runs = []
    with Simulator(root, []) as sim:
        server_cpu = None
        if tools["curl"]:
            pairs = [a for key in expected for a in ("-o", str(out / key), file_url(sim.url, key))]
            runs.append(timed("curl -o (one after another)",
                              ["curl", "-sS", "--create-dirs", *pairs], out, expected))  # fmt: skip
            before = process_cpu(sim.proc.pid)
            runs.append(timed(f"curl -Z --parallel-max {jobs}",
                              ["curl", "-sS", "--create-dirs", "-Z", "--parallel-max", str(jobs),
                               *pairs], out, expected))  # fmt: skip
            server_cpu = process_cpu(sim.proc.pid) - before
        runs.append(timed(f"chandra-download (verifying, {jobs} jobs)",
                          ours(sim.url, obsids, out, "evt1"), out, expected))  # fmt: skip
        runs.append(timed("chandra-download --no-verify",
                          ours(sim.url, obsids, out, "evt1", "--no-verify"), out, expected))  # fmt: skip
        runs.append(timed("chandra-download --no-verify --no-fsync (as curl)",
                          ours(sim.url, obsids, out, "evt1", "--no-verify", "--no-fsync"), out,
                          expected))  # fmt: skip
    fastest = min(r.wall for r in runs)
    print(f"\n{'tool':<46}{'wall s':>8}{'MB/s':>8}{'x fastest':>10}{'CPU s':>7}{'RSS MB':>8}  "
          "complete")  # fmt: skip
    for r in runs:
        print(f"{r.name:<46}{r.wall:8.2f}{total / MB / r.wall:8.1f}{r.wall / fastest:10.2f}"
              f"{r.cpu:7.1f}{r.rss_mb:8.0f}  {r.complete}")  # fmt: skip
    floor = verifying_floor(root, expected, runs, server_cpu)
    return {"runs": [asdict(r) for r in runs], "total": total, "files": len(expected),
            "floor": floor}  # fmt: skip


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def verifying_floor(root: Path, expected: dict[str, int], runs: list[Run],
                    server_cpu: float | None) -> dict | None:  # fmt: skip
    """The least wall time any verifying client could take here: the CPU that cannot be
    avoided (curl -Z's own copies in and out, the simulator serving them, and this
    machine's sha256 and content checks of the same bytes, timed in this process with no
    overhead at all) spread perfectly over every CPU. Generous: no fsync, no start-up."""
    curl = next((r for r in runs if r.name.startswith("curl -Z")), None)
    if curl is None or server_cpu is None:
        return None
    import hashlib

    from chandra_download.verify import Checker

    sha = checks = 0.0
    for key in expected:
        data = memoryview((root / "byobsid" / str(int(key.split("/")[0]) % 10) / key).read_bytes())
        t0 = time.process_time()
        digest = hashlib.sha256()
        for i in range(0, len(data), 2**20):
            digest.update(data[i : i + 2**20])
        t1 = time.process_time()
        checker = Checker(key)
        checker.hash_apart()
        for i in range(0, len(data), 2**20):
            checker.feed(data[i : i + 2**20])
        checker.finish()
        sha, checks = sha + t1 - t0, checks + time.process_time() - t1
    cpus = os.cpu_count() or 1
    wall = (curl.cpu + server_cpu + sha + checks) / cpus
    print(f"\nFloor of a verifying client on {cpus} CPUs: {wall:.2f} s = (curl -Z's CPU "
          f"{curl.cpu:.2f} + the simulator's {server_cpu:.2f} + sha256 {sha:.2f} + checks "
          f"{checks:.2f}) / {cpus}; 70% of curl's best allows {curl.wall / 0.7:.2f} s")  # fmt: skip
    return {"wall": wall, "curl_cpu": curl.cpu, "server_cpu": server_cpu, "sha256": sha,
            "checks": checks, "cpus": cpus}  # fmt: skip


def targets(res: dict) -> None:
    print("\nTargets")

    def show(what: str, ok: bool | None, detail: str) -> None:
        print(f"  [{'n/a ' if ok is None else 'MET ' if ok else 'MISS'}] {what}: {detail}")

    if "batch" in res:
        b = res["batch"]
        by = {r["name"].split(" (")[0].split(" -")[0] + (" -j1" if "--jobs 1 (" in r["name"] else "")
              + (" x1" if "-x 1" in r["name"] else ""): r for r in b["runs"]}  # fmt: skip
        ours_t = b["runs"][0]["wall"]
        seq = by.get("chandra-download -j1")
        show(">= 5x faster than --jobs 1", None if not seq else seq["wall"] / ours_t >= 5,
             f"{seq['wall'] / ours_t:.2f}x" if seq else "not run")  # fmt: skip
        a = by.get("aria2c x1")
        nv = next((r["wall"] for r in b["runs"] if "--no-verify" in r["name"]), None)
        show("as fast as aria2c, same connections", None if not a else ours_t <= a["wall"] * 1.02,
             f"aria2c's time / ours = {a['wall'] / ours_t:.2f}" + (
                 f" ({a['wall'] / nv:.2f} with --no-verify)" if nv else "") if a else "not run")  # fmt: skip
        show("within 1.25x of the physical limit", ours_t <= 1.25 * b["limit"],
             f"{ours_t / b['limit']:.2f}x (any client on {SessionConfig().jobs} connections with "
             f"one request per file: at best {b['per_connection_limit'] / b['limit']:.2f}x)")  # fmt: skip
    if "small" in res:
        runs = res["small"]["runs"]
        mine, again = runs[0]["wall"], runs[1]["wall"]
        aria = next((r["wall"] for r in runs if r["name"].startswith("aria2c -j")), None)
        show("small files at most 0.5x aria2c's time", None if aria is None else mine <= aria / 2,
             f"{mine / aria:.2f}x" if aria else "not run")  # fmt: skip
        show("nothing-to-do re-run at most 0.25x of the download", again <= mine / 4,
             f"{again / mine:.2f}x")  # fmt: skip
        for r in runs:  # (over an empty tree --list asks a HEAD per file: no target)
            if "--list" in r["name"]:
                goal = None if "nothing on disk" in r["name"] else r["wall"] <= mine / 4
                show(f"{r['name'][17:]} at most 0.25x of the download", goal,
                     f"{r['wall'] / mine:.2f}x")  # fmt: skip
    if "single" in res:
        s = res["single"]["runs"]
        mine = [r for r in s if r["name"].startswith("chandra")]
        peak = max(r["rss_mb"] for r in mine)
        show("peak RSS < 150 MB for the big file", peak < 150, f"{peak:.0f} MB")
        curl = [r for r in s if r["name"].startswith("curl")]
        if curl:
            for r in mine:
                share = curl[0]["wall"] / r["wall"]
                show(f"unthrottled >= 70% of curl ({r['name'][17:]})", share >= 0.7, f"{share:.0%}")
    if "medium" in res:
        m = res["medium"]["runs"]
        curl = [r["wall"] for r in m if r["name"].startswith("curl")]
        for r in (r for r in m if r["name"].startswith("chandra")):
            share = min(curl) / r["wall"] if curl else None
            show(f"{res['medium']['files']} x 10 MB >= 70% of curl's best ({r['name'][17:]})",
                 None if share is None else share >= 0.7, f"{share:.0%}" if share else "not run")  # fmt: skip
        floor = res["medium"].get("floor")
        if floor and curl:
            print(f"         (no verifying client can beat {min(curl) / floor['wall']:.0%} of curl "
                  f"on these {floor['cpus']} CPUs: floor {floor['wall']:.2f} s)")  # fmt: skip


def link_options(args) -> list[str]:
    return ["--latency", str(args.latency), "--conn-bandwidth", str(args.conn_bandwidth),
            "--total-bandwidth", str(args.total_bandwidth)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller data (about a minute)")
    p.add_argument("--latency", type=float, default=0.04, help="seconds per request")
    p.add_argument("--conn-bandwidth", type=float, default=8e6, help="bytes/s per connection")
    p.add_argument("--total-bandwidth", type=float, default=120e6, help="bytes/s in total")
    p.add_argument("--only", choices=["batch", "single", "split", "small", "medium"],
                   action="append", help="run only these experiments (repeatable)")  # fmt: skip
    p.add_argument("--no-sequential", action="store_true",
                   help="skip the slow one-connection runs (--jobs 1, wget)")  # fmt: skip
    p.add_argument("--setup", action="store_true", help="run setup.sh first (apt-get install)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.setup:
        subprocess.run(["sh", str(HERE / "setup.sh")], check=True)
    tools = {t: shutil.which(t) is not None for t in ("wget", "aria2c", "curl")}
    if not all(tools.values()):
        missing = ", ".join(t for t, ok in tools.items() if not ok)
        print(f"Missing {missing}: their rows are skipped; run benchmarks/setup.sh", flush=True)
    profile = PROFILES["quick" if args.quick else "full"]
    root = WORK / ("archive-quick" if args.quick else "archive")
    obsids = prepare(root, profile)
    cache_bytecode()
    subprocess.run([sys.executable, "-m", "chandra_download", "--version"],
                   stdout=subprocess.DEVNULL, check=False)  # fills the cache  # fmt: skip
    print(f"Machine: {machine()}")
    t0 = time.perf_counter()
    res: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    experiments = {"batch": lambda: bench_batch(args, root, obsids, tools),
                   "single": lambda: bench_single(args, root, tools),
                   "split": lambda: bench_split(args, root, tools),
                   "small": lambda: bench_small(args, root, tools),
                   "medium": lambda: bench_medium(args, root, tools)}  # fmt: skip
    try:
        for name, fn in experiments.items():
            if not args.only or name in args.only:
                res[name] = fn()
    finally:
        empty_trash()
    targets(res)
    print(f"\nBenchmark time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    failed = [r for x in res.values() if isinstance(x, dict) for r in x.get("runs", [])
              if r["name"].startswith("chandra") and r["complete"] != "ok"]  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
