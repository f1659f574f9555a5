"""Rival processes: three downloads of the same ObsId into the same directory at once.

Together they must fetch the archive about once (a waiter that gets a file's lock checks again
and finds it done), all succeed, and never replace a file another one completed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from crash_support import (
    OBSID,
    SPLIT,
    archive_bytes,
    archive_files,
    archive_fixture,
    command,
    mismatches,
    outside_obsid,
    spawn,
)

from chandra_download import download
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.simulator.link import LinkModel

RIVALS = 3
LIMIT = 1.05  # bytes served, at most this many times the archive's (listings aside)


root = archive_fixture("rivals-archive")


def listing_bytes(root: Path, tmp_path: Path) -> int:
    """Bytes one lone run is sent beyond the files' own: its directory listings."""
    with ArchiveHTTPServer(root) as alone:
        results = download(OBSID, mirror=alone.base_url, outdir=tmp_path / "alone", jobs=4)
        assert results.ok, results.summary()
        return alone.stats.bytes_sent - archive_bytes(root)


def watch(out: Path, names: list[str], procs: list) -> dict[str, tuple[int, int]]:
    """Until every process ends: (inode, mtime) of each final file when first seen."""
    first: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        running = any(p.poll() is None for p in procs)
        for rel in names:
            if rel not in first:
                try:
                    st = os.stat(out / str(OBSID) / rel)
                except FileNotFoundError:
                    continue
                first[rel] = (st.st_ino, st.st_mtime_ns)
        if not running:
            break
        time.sleep(0.005)
    return first


@pytest.mark.parametrize("split", [SPLIT, "0"], ids=["split", "whole"])
def test_three_rivals_fetch_the_archive_once(root: Path, tmp_path: Path, split: str) -> None:
    extra = listing_bytes(root, tmp_path)
    out = tmp_path / "out"
    names = sorted(archive_files(root))
    link = LinkModel(latency=0.01, total_bandwidth=3_000_000)  # ~1.5 s alone: they overlap
    with ArchiveHTTPServer(root, link=link) as server:
        cmd = command(server.base_url, out, "-j", "4", "--split-size", split)
        procs = [spawn(cmd) for _ in range(RIVALS)]
        first = watch(out, names, procs)
        codes = [p.wait(timeout=60) for p in procs]
        served = server.stats.bytes_sent
    assert codes == [0] * RIVALS
    assert mismatches(root, out) == []
    assert outside_obsid(out) == []
    allowed = LIMIT * archive_bytes(root) + RIVALS * extra
    assert served <= allowed, f"{served / archive_bytes(root):.2f}x the archive's bytes"
    # A complete file is never replaced: the inode first seen at the final name stays.
    for rel in names:
        st = os.stat(out / str(OBSID) / rel)
        assert first[rel] == (st.st_ino, st.st_mtime_ns), rel
