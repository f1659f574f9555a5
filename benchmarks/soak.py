"""Seeded randomized soak: many ObsIds, random faults on a share of the files, full verification.

Generates a small simulated archive, serves it (HTTP, and optionally FTP and S3), switches on a
random fault for ``--fault-rate`` of the files (drop, stall, 503, 429, truncate, corrupt, and on
files with a partial ``.part`` already on disk: ignore_range / wrong_content_range), runs
``download()`` with retries, then checks every file by sha256 against the simulator's tree.

With ``--kill-rate R`` the download first runs as the command in child processes, each
SIGKILLed at a random moment (R kills per second of running, on average), restarted until a run
ends by itself (at most ``--max-kills`` kills per protocol); a final ``download()`` then finishes
whatever is left, and the same checks follow: the crashes must cost nothing but time.

    python benchmarks/soak.py [--seed N] [--transfers 300] [--fault-rate 0.15]
                              [--protocols http,ftp,s3] [--split-size BYTES]
                              [--kill-rate R] [--max-kills N]

Exit status 0 only when every file is complete and identical and nothing is left over.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from chandra_download import download
from chandra_download.results import Results
from chandra_download.simulator import Fault, FaultPlan, generate_archive, iter_files
from chandra_download.statedir import Spot
from chandra_download.verify import is_fits_name

HTTP_KINDS = ("drop", "stall", "503", "429", "truncate", "corrupt", "ignore_range",
              "wrong_content_range")  # fmt: skip
FTP_KINDS = ("drop", "stall", "503", "truncate", "corrupt")  # RETR faults FTP can express
RANGE_KINDS = ("ignore_range", "wrong_content_range")
FILES_PER_OBSID = 36  # about: 30 (HRC) to 41 (grating) files per generated ObsId
TIMEOUT = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--transfers", type=int, default=300, help="about how many files to fetch")
    p.add_argument("--fault-rate", type=float, default=0.15, help="share of files given a fault")
    p.add_argument("--protocols", default="http", help="comma list of http, ftp, s3")
    p.add_argument("--obsids", type=int, default=None, help="ObsIds (default: from --transfers)")
    p.add_argument("--scale", type=float, default=0.1, help="archive size scale (default 0.1)")
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--retries", type=int, default=6)
    p.add_argument("--split-size", type=int, default=20_000,
                   help="bytes from which files go in ranged parts (default 20000, so the "
                   "larger files of the small archive are split; 0: never)")  # fmt: skip
    p.add_argument(
        "--kill-rate",
        type=float,
        default=0.0,
        help="SIGKILLs per second of running: the download runs as child processes "
        "killed at random moments, then is finished (default 0: no kills)",
    )
    p.add_argument(
        "--max-kills",
        type=int,
        default=50,
        help="most kills per protocol before letting a run finish (default 50)",
    )
    args = p.parse_args(argv)
    args.protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    bad = set(args.protocols) - {"http", "ftp", "s3"}
    if bad or not args.protocols:
        p.error(f"unknown protocol(s): {', '.join(sorted(bad)) or '(none)'}")
    if not 0 <= args.fault_rate <= 1:
        p.error("--fault-rate must be between 0 and 1")
    if args.kill_rate < 0 or args.max_kills < 0:
        p.error("--kill-rate and --max-kills must not be negative")
    return args


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkable(rel: str) -> bool:
    """True when a content check covers the file (gzip CRC, FITS CHECKSUM/DATASUM)."""
    return rel.endswith(".gz") or is_fits_name(rel)


def make_fault(kind: str, rel: str, size: int, rng: random.Random) -> Fault:
    """One fault on one file; 1-2 uses so that the retry budget always suffices."""
    times = rng.choice((1, 1, 2))
    after = rng.randrange(0, max(1, size))
    if kind in ("503", "429"):
        retry_after = 1 if kind == "429" and rng.random() < 0.5 else None
        return Fault("status", rel, times=times, status=int(kind), retry_after=retry_after)
    if kind == "stall":
        return Fault("stall", rel, times=1, after_bytes=after, seconds=TIMEOUT + 0.5)
    if kind == "corrupt":
        # Damage in transit differs on every fetch; the same damage twice would be the
        # archive's own copy, which the client rightly keeps (with a warning).
        return Fault("corrupt", rel, times=times, after_bytes=after, vary=True)
    return Fault(kind, rel, times=times, after_bytes=after)


def plan_faults(
    root: Path, obsids: list[int], outdir: Path, protocol: str, rate: float, rng: random.Random
) -> tuple[FaultPlan, dict[tuple[int, str], int]]:
    """Faults for a random share of the files; seeds a .part for the range faults to bite on.

    Returns the plan and the seeded ``.part`` sizes.
    """
    plan, seeded = FaultPlan(), {}
    kinds = FTP_KINDS if protocol == "ftp" else HTTP_KINDS
    for obsid in obsids:
        for rel, path in iter_files(root, obsid):
            size = path.stat().st_size
            if rng.random() >= rate or size < 2:
                continue
            kind = rng.choice(kinds)
            if kind == "corrupt" and not checkable(rel):
                # Same-length damage to a file with no checksum (jpg, par, pdf, README) cannot
                # be detected by any client: corrupt only what gzip CRC / FITS sums cover.
                kind = "truncate"
            glob = f"byobsid/{obsid % 10}/{obsid}/{rel}"
            plan.add(make_fault(kind, glob, size, rng))
            if kind in RANGE_KINDS:  # a previous run was cut short: there is something to resume
                keep = rng.randrange(1, size)
                spot = Spot(outdir, str(obsid), rel)  # our own name space (issue 20.1)
                spot.partial_dir.mkdir(parents=True, exist_ok=True)
                spot.part.write_bytes(path.read_bytes()[:keep])
                seeded[(obsid, rel)] = keep
    return plan, seeded


@contextmanager
def serve(protocol: str, root: Path, plan: FaultPlan) -> Iterator[dict[str, Any]]:
    """Start a simulator for a protocol; yields download() keyword arguments."""
    if protocol == "http":
        from chandra_download.simulator.http import ArchiveHTTPServer

        with ArchiveHTTPServer(root, faults=plan) as s:
            yield {"mirror": s.base_url}
    elif protocol == "ftp":
        from chandra_download.simulator.ftp import ArchiveFTPServer

        with ArchiveFTPServer(root, faults=plan) as s:
            yield {"mirror": s.base_url}
    else:
        from chandra_download.simulator.s3 import ArchiveS3Server

        with ArchiveS3Server(root, bucket="soak-archive", faults=plan) as s:
            yield {"mirror": s.base_url, "endpoint_url": s.endpoint_url}


def child_command(
    obsids: list[int], outdir: Path, args: argparse.Namespace, where: dict[str, Any]
) -> list[str]:
    """The download as the command (``python -m chandra_download``) with the soak's options."""
    cmd = [sys.executable, "-m", "chandra_download", ",".join(map(str, obsids)),
           "--mirror", where["mirror"], "--outdir", str(outdir), "--jobs", str(args.jobs),
           "--retries", str(args.retries), "--timeout", str(TIMEOUT),
           "--split-size", str(args.split_size), "--no-progress", "-q"]  # fmt: skip
    if "endpoint_url" in where:
        cmd += ["--endpoint-url", where["endpoint_url"]]
    return cmd


def killed_runs(cmd: list[str], rate: float, most: int, rng: random.Random) -> tuple[int, int]:
    """Run ``cmd`` until one run ends by itself, SIGKILLing each run after a random delay
    (exponential, ``rate`` kills per second on average) while fewer than ``most`` runs were
    killed. Returns (kills, runs)."""
    kills = runs = 0
    while True:
        runs += 1
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.expovariate(rate) if kills < most else None)
            return kills, runs
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            kills += 1


def verify(root: Path, outdir: Path, obsids: list[int], results: Results) -> tuple[int, int, list]:
    """(files checked, files correct, problems) comparing the output with the archive."""
    checked = correct = 0
    problems: list[str] = []
    reported = {(f.obsid, f.relpath): f for f in results.files}
    for obsid in obsids:
        top = outdir / str(obsid)
        src = dict(iter_files(root, obsid))
        for rel, path in src.items():
            checked += 1
            got = top / rel
            fr = reported.get((obsid, rel))
            if fr is None or not fr.ok:
                problems.append(f"{obsid}/{rel}: {fr.status if fr else 'not listed'} "
                                f"({fr.reason if fr else ''})")  # fmt: skip
            elif not got.is_file() or sha256(got) != sha256(path):
                problems.append(f"{obsid}/{rel}: reported {fr.status} but differs on disk")
            else:
                correct += 1
        extra = sorted(
            p.relative_to(top).as_posix() for p in top.rglob("*")
            if p.is_file() and p.relative_to(top).as_posix() not in src
        )  # fmt: skip
        problems += [f"{obsid}/{rel}: left over in the output" for rel in extra]
    return checked, correct, problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    kill_rng = random.Random(f"kills {args.seed}")  # the faults stay those of --seed alone
    n_obsids = args.obsids or max(len(args.protocols), math.ceil(args.transfers / FILES_PER_OBSID))
    obsids = sorted(rng.sample(range(100, 30000), n_obsids))
    t_start = time.monotonic()
    totals: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    problems: list[str] = []
    statuses: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="chandra-soak-") as tmp, ExitStack():
        root = generate_archive(Path(tmp) / "archive", obsids, scale=args.scale, seed=args.seed)
        t_gen = time.monotonic() - t_start
        for i, protocol in enumerate(args.protocols):
            mine = obsids[i :: len(args.protocols)]
            outdir = Path(tmp) / f"out-{protocol}"
            plan, seeded = plan_faults(root, mine, outdir, protocol, args.fault_rate, rng)
            totals[f"faults planned ({protocol})"] = len(plan)
            t0 = time.monotonic()
            with serve(protocol, root, plan) as where:
                if args.kill_rate > 0:
                    cmd = child_command(mine, outdir, args, where)
                    kills, runs = killed_runs(cmd, args.kill_rate, args.max_kills, kill_rng)
                    totals["kills"] += kills
                    totals["child runs"] += runs
                    print(f"{protocol}: {kills} SIGKILLs in {runs} runs; finishing")
                results = download(
                    mine, outdir=outdir, jobs=args.jobs, retries=args.retries,
                    timeout=TIMEOUT, backoff=0.02, backoff_max=0.2,
                    split_threshold=args.split_size, **where,
                )  # fmt: skip
            elapsed = time.monotonic() - t0
            checked, correct, bad = verify(root, outdir, mine, results)
            totals["transfers"] += checked
            totals["correct"] += correct
            totals["retries"] += sum(max(0, f.attempts - 1) for f in results.files)
            totals["seeded .part files"] += len(seeded)
            statuses.update(str(f.status) for f in results.files)
            fired.update(kind for _, _, kind in plan.fired)
            problems += [f"[{protocol}] {p}" for p in bad]
            print(
                f"{protocol}: {len(mine)} ObsIds, {checked} files, {len(plan.fired)} faults fired, "
                f"{elapsed:.1f} s; {results.summary()}"
            )
    pct = 100.0 * totals["correct"] / max(1, totals["transfers"])
    print(f"seed {args.seed}, fault rate {args.fault_rate:g}, archive generated in {t_gen:.1f} s")
    print(f"transfers: {totals['transfers']}")
    for key in sorted(k for k in totals if k.startswith("faults planned")):
        print(f"{key}: {totals[key]}")
    print(f"seeded .part files: {totals['seeded .part files']}")
    print(
        "faults fired by kind: "
        + (", ".join(f"{k}={n}" for k, n in sorted(fired.items())) or "none")
    )
    print(f"retries (extra attempts): {totals['retries']}")
    if args.kill_rate > 0:
        print(f"SIGKILLs: {totals['kills']} (kill rate {args.kill_rate:g}/s, "
              f"{totals['child runs']} child runs, then one final run per protocol)")  # fmt: skip
    print("statuses: " + ", ".join(f"{k}={n}" for k, n in sorted(statuses.items())))
    print(f"final correct: {totals['correct']}/{totals['transfers']} ({pct:.1f}%)")
    print(f"total time: {time.monotonic() - t_start:.1f} s")
    for p in problems[:20]:
        print("PROBLEM", p)
    return 0 if not problems and totals["correct"] == totals["transfers"] else 1


if __name__ == "__main__":
    sys.exit(main())
