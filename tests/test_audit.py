"""``--check`` / ``audit.check``: compare a local tree with the archive, writing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chandra_download import download
from chandra_download.audit import check


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    }


def test_check_reports_missing_partial_corrupt_extra(archive_http, tmp_path: Path) -> None:
    assert download([1843], mirror=archive_http.base_url, outdir=tmp_path).ok
    top = tmp_path / "1843"
    clean = check([1843], mirror=archive_http.base_url, outdir=tmp_path)
    assert clean.ok and not clean.obsids[0].missing and len(clean.obsids[0].complete) > 20

    evt2 = next(top.glob("primary/*_evt2.fits.gz"))
    os.truncate(evt2, 1000)  # partial, CIAO-style, at the final name
    fov = next(top.glob("primary/*_fov1.fits.gz"))
    fov.unlink()  # missing
    oif = top / "oif.fits"
    data = bytearray(oif.read_bytes())
    data[-100] ^= 0xFF  # corrupt, same size: only the checksum can tell
    oif.write_bytes(bytes(data))
    (top / "notes.txt").write_text("mine")  # extra
    before = _snapshot(tmp_path)
    archive_http.stats.reset()

    report = check([1843], mirror=archive_http.base_url, outdir=tmp_path)
    audit = report.obsids[0]
    assert not report.ok
    assert audit.partial == [evt2.relative_to(top).as_posix()]
    assert audit.missing == [fov.relative_to(top).as_posix()]
    assert [rel for rel, _ in audit.failing] == ["oif.fits"]
    assert "CHECKSUM" in audit.failing[0][1] or "DATASUM" in audit.failing[0][1]
    assert audit.extra == ["notes.txt"]
    assert _snapshot(tmp_path) == before  # nothing written or touched
    # Only listings and HEAD requests: no file body was fetched.
    gets = [k for k, n in archive_http.stats.requests.items() if k[0] == "GET" and n]
    assert all(path.endswith("/") for _, path in gets)
    assert any(method == "HEAD" for method, _ in archive_http.stats.requests)


def test_check_respects_filetypes_and_not_found(archive_http, tmp_path: Path) -> None:
    assert download([1843], ["evt2"], mirror=archive_http.base_url, outdir=tmp_path).ok
    report = check([1843, 99999], ["evt2"], mirror=archive_http.base_url, outdir=tmp_path)
    assert report.obsids[0].ok and len(report.obsids[0].complete) == 1
    assert not report.obsids[1].found and not report.ok
    # Without the type filter, everything else is missing.
    full = check([1843], mirror=archive_http.base_url, outdir=tmp_path)
    assert not full.ok and len(full.obsids[0].missing) > 10


def test_check_command_exit_status(archive_http, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "chandra_download",
        "1843",
        "evt2,fov",
        "--mirror",
        archive_http.base_url,
        "--outdir",
        str(tmp_path),
    ]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    ok = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ObsId 1843: OK" in ok.stdout
    next((tmp_path / "1843").glob("primary/*_fov1.fits.gz")).unlink()
    bad = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "missing" in bad.stdout and "fov1" in bad.stdout
