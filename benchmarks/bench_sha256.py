#!/usr/bin/env python
"""What a read-back sha256 costs beside a download: the batch, and one large file.

Run ``python benchmarks/bench_sha256.py`` (``--big-gb 2`` for the 2 GB file; ``--big-gb 0``
skips it). It generates a simulated archive under ``benchmarks/_work/sha256/`` (cached),
serves it over HTTP on loopback, downloads it into a fresh directory (the record of what was
fetched is written at the end of the session, with the sha256 the copy loop computed as the
bytes arrived), then prints the download's time, the time a read-back sha256 of the same files
takes (what a file found complete but not recorded, or a manifest of large unrecorded files,
pays), and the share of the second in the first. Under shared load the figures are noisy: run
it twice.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from chandra_download import download
from chandra_download.record import sha256_file
from chandra_download.simulator import ArchiveHTTPServer, generate_archive

WORK = Path(__file__).resolve().parent / "_work" / "sha256"


def measure(root: Path, obsids: list[int], label: str) -> None:
    """One download of ``obsids`` and the read-back sha256 of what it wrote."""
    with ArchiveHTTPServer(root) as server, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        results = download(obsids, mirror=server.base_url, outdir=out, status=False)
        elapsed = time.perf_counter() - t0
        assert results.ok, results.summary()
        files = [f.path for f in results.files]
        t0 = time.perf_counter()
        for path in files:
            sha256_file(path)
        hashing = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in files)
    print(
        f"{label:<10} {len(files):>5} files {size / 1e6:>9.1f} MB  download {elapsed:7.2f} s  "
        f"read-back sha256 {hashing:6.2f} s ({100 * hashing / elapsed:5.1f}% of the download)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--big-gb", type=float, default=2.0, help="size of the large file (0: skip)")
    p.add_argument("--batch", type=int, default=20, help="ObsIds in the batch")
    args = p.parse_args()
    batch = list(range(1000, 1000 + args.batch))
    generate_archive(WORK / "batch", batch, scale=1.0)
    measure(WORK / "batch", batch, "batch")
    if args.big_gb > 0:
        big = WORK / "big"
        generate_archive(big, {1843: "acis"}, sizes={"evt1": int(args.big_gb * 1e9)})
        measure(big, [1843], f"{args.big_gb:g} GB")


if __name__ == "__main__":
    main()
