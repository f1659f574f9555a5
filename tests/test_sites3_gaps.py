"""Gaps of issue 20 found by the item-by-item audit (see GAPS.md): ``--repair`` over a
read-only tree of good files (20.8) and a redirect to a ``file://`` URL (20.9)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import command, run

from chandra_download import download
from chandra_download.simulator import ArchiveHTTPServer, generate_archive


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, ArchiveHTTPServer]]:
    root = generate_archive(tmp_path / "archive", {1843: "acis"}, scale=0.05)
    with ArchiveHTTPServer(root) as server:
        yield root, server


def _no_dac_override() -> list[str]:
    """A prefix that makes root feel file modes (as a user would), else skip."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set", "-dac_override", "--"]


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(out).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in out.rglob("*")
    }


def test_repair_of_a_read_only_tree_of_good_files_writes_nothing_and_succeeds(site, tmp_path):
    root, server = site
    out = tmp_path / "out"
    first = download(1843, mirror=server.base_url, outdir=out, status=False)
    assert first.ok and len(first.files) > 10
    prefix = _no_dac_override()
    before = _snapshot(out)
    subprocess.run(["chmod", "-R", "a-w", str(out)], check=True)
    try:
        done = run(prefix + command(server.base_url, out, "--repair"), timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "ermission denied" not in done.stdout + done.stderr
        assert "FAILED" not in done.stdout
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(out)], check=True)
    assert _snapshot(out) == before  # nothing written, moved or created


def test_a_damaged_file_in_a_read_only_tree_still_fails_clearly_on_repair(site, tmp_path):
    """The read-only path is taken only for files that pass their check."""
    root, server = site
    out = tmp_path / "out"
    assert download(1843, "oif", mirror=server.base_url, outdir=out, status=False).ok
    oif = out / "1843" / "oif.fits"
    data = bytearray(oif.read_bytes())
    data[100] ^= 0xFF
    oif.write_bytes(bytes(data))
    prefix = _no_dac_override()
    subprocess.run(["chmod", "-R", "a-w", str(out)], check=True)
    try:
        done = run(prefix + command(server.base_url, out, "--repair", obsids="1843"), timeout=120)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(out)], check=True)
    assert done.returncode == 1
    assert "ermission denied" in done.stdout + done.stderr
    assert oif.read_bytes() == bytes(data)  # the bad copy stays until a good one replaces it


def test_a_redirect_to_a_file_url_is_refused_in_one_line_and_not_retried(tmp_path):
    root = generate_archive(tmp_path / "archive", {1843: "acis"}, scale=0.05)
    with ArchiveHTTPServer(root, redirect_base="file:///etc/") as server:
        results = download(
            1843, mirror=server.base_url, outdir=tmp_path / "out", retries=3, backoff=0.01,
            status=False,
        )  # fmt: skip
        asked = server.stats.get_count("*", method=None)
    error = results[0].error or ""
    assert not results.ok and "refusing the redirect" in error and "file URL" in error, error
    assert "No host specified" not in error and "\n" not in error
    assert asked == 1  # refused at once: a redirect elsewhere is not a transient failure
    assert not (tmp_path / "out" / "1843").exists()
