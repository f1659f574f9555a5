#!/usr/bin/env python
"""CPU, syscalls and futex calls per small file: chandra-download against aria2c (issue 19.4).

Run ``python benchmarks/bench_cpu.py`` (``--quick``: 12 ObsIds instead of 60). It serves the
small-file regime of ``bench_speed.py`` (every file small, a shared round trip, Apache's 100
requests per connection) from a simulator process, downloads it with each tool into a fresh
directory, then re-runs it with nothing to do, and prints the client's own CPU (user + sys of
the child, from ``wait4``) per file. With ``strace`` on PATH it runs each command a second time
under ``strace -f -c`` (all threads) for the syscalls and futex calls per file; without it the
table shows CPU only. The start-up row (``--version``: interpreter and imports) is what every
run pays once; "net" subtracts it.

The commands run with their bytecode cached (``PYTHONPYCACHEPREFIX`` below the work
directory, even where ``PYTHONDONTWRITEBYTECODE`` is set), as an installed copy runs: compiling
every module afresh was a quarter of the start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import bench_speed as bs
from bench_speed import Simulator, aria2, expected_files, ours, timed

from chandra_download.simulator import generate_archive


@dataclass
class Cost:
    """What one command cost, per file."""

    name: str
    files: int
    wall: float
    cpu: float
    syscalls: int | None = None
    futex: int | None = None
    complete: str = "ok"

    def per_file(self, value: float | None, scale: float = 1.0) -> str:
        return "-" if value is None else f"{value * scale / self.files:.2f}"


def strace_counts(cmd: list[str], cwd: Path) -> tuple[int, int] | None:
    """(all syscalls, futex calls) of ``cmd`` and every thread and child it starts."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        proc = subprocess.run(["strace", "-f", "-c", "-o", out.name, *cmd], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        if proc.returncode != 0:
            return None
        total = futex = 0
        for line in out.read().splitlines():
            cols = line.split()
            if len(cols) >= 5 and cols[-1] == "total":
                total = int(cols[3])
            elif len(cols) >= 5 and cols[-1] == "futex":
                futex = int(cols[3])
        return total, futex


def measure(name: str, cmd: list[str], out: Path, expected: dict[str, int], rerun: bool,
            traced: bool) -> Cost:  # fmt: skip
    """CPU of ``cmd`` (a fresh ``out`` unless ``rerun``), then its syscalls under strace."""
    run = timed(name, cmd, out, expected, keep=True)
    cost = Cost(name, len(expected), run.wall, run.cpu, complete=run.complete)
    if traced:
        if not rerun:
            bs.discard(out)  # (moved aside: deleting it now would charge the next creates)
            out.mkdir(parents=True)
        counts = strace_counts(cmd, out)
        if counts:
            cost.syscalls, cost.futex = counts
    return cost


def cache_bytecode() -> None:
    """Let the commands (children of this process) keep their compiled modules, in a cache
    of the work directory's, as pip's install leaves them beside an installed copy."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(bs.WORK / "pycache")


def startup(traced: bool) -> Cost:
    """The interpreter and imports alone (``--version``), paid once by every run."""
    cmd = [sys.executable, "-m", "chandra_download", "--version"]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)  # fills the bytecode cache
    with tempfile.TemporaryDirectory() as tmp:
        run = timed("chandra-download --version (start-up)", cmd, Path(tmp), {}, keep=True)
        cost = Cost(run.name, 1, run.wall, run.cpu)
        counts = strace_counts(cmd, Path(tmp)) if traced else None
    if counts:
        cost.syscalls, cost.futex = counts
    return cost


def show(costs: list[Cost], start: Cost) -> None:
    print(f"\n{'command':<44}{'files':>6}{'wall s':>8}{'CPU s':>7}{'CPU ms/file':>12}"
          f"{'net ms':>8}{'syscalls/f':>11}{'futex/f':>9}  complete")  # fmt: skip
    for c in [start, *costs]:
        net = c.cpu - start.cpu if c is not start and c.name.startswith("chandra") else None
        print(f"{c.name:<44}{c.files:>6}{c.wall:8.2f}{c.cpu:7.2f}{c.per_file(c.cpu, 1e3):>12}"
              f"{c.per_file(net, 1e3):>8}{c.per_file(c.syscalls):>11}{c.per_file(c.futex):>9}"
              f"  {c.complete}")  # fmt: skip


def run_all(args: argparse.Namespace, root: Path, obsids: list[int], expected: dict[str, int],
            out: Path, traced: bool) -> tuple[Cost, list[Cost]]:  # fmt: skip
    """The start-up, then each command's download and nothing-to-do re-run."""
    costs: list[Cost] = []
    start = startup(traced)
    with Simulator(root, ["--latency", str(args.latency)]) as sim:
        mine = ours(sim.url, obsids, out)
        costs.append(measure("chandra-download (download)", mine, out, expected, False, traced))
        costs.append(measure("chandra-download (nothing-to-do re-run)", mine, out, expected,
                             True, traced))  # fmt: skip
        if shutil.which("aria2c") and not args.no_aria2c:
            bs.discard(out)
            cmd = aria2(sim.url, expected, out, 8, 1)
            costs.append(measure("aria2c -j 8 -x 1 (download)", cmd, out, expected, False, traced))
            again = [*cmd, "-c", "--allow-overwrite=false"]
            costs.append(measure("aria2c -c (nothing-to-do re-run)", again, out, expected, True,
                                 traced))  # fmt: skip
    bs.discard(out)
    return start, costs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="12 ObsIds instead of 60")
    p.add_argument("--latency", type=float, default=0.04, help="seconds per round trip")
    p.add_argument("--no-strace", action="store_true", help="CPU only, even if strace is here")
    p.add_argument("--no-aria2c", action="store_true", help="only chandra-download's rows")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    traced = not args.no_strace and shutil.which("strace") is not None
    if not traced and not args.no_strace:
        print("strace is not on PATH: CPU only (apt-get install strace for syscall counts)")
    obsids = list(bs.SMALL_OBSIDS["quick" if args.quick else "full"])
    root = bs.WORK / "archive-small"
    generate_archive(root, dict.fromkeys(obsids, "acis"), scale=0.05, sizes=bs.SMALL_SIZES)
    expected = expected_files(root, obsids)
    print(f"Machine: {bs.machine()}\nSmall files: {len(obsids)} ObsIds, {len(expected)} files; "
          f"{args.latency * 1000:.0f} ms round trip", flush=True)  # fmt: skip
    out = bs.WORK / "out-cpu"
    bs.discard(out)
    cache_bytecode()
    try:
        start, costs = run_all(args, root, obsids, expected, out, traced)
    finally:
        bs.empty_trash()  # every run's tree, deleted once all are measured
    show(costs, start)
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in [start, *costs]], indent=1))
    return 0 if all(c.complete == "ok" for c in costs) else 1


if __name__ == "__main__":
    sys.exit(main())
