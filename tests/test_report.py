"""``--json FILE``: a machine-readable report of a download, a listing and a check, with every
password masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chandra_download import cli
from chandra_download.simulator.fixtures import FTP_PASSWORD, FTP_USER

FILE_KEYS = {"obsid", "path", "type", "size", "status", "reason", "warning", "site", "url"}


def _with_password(base_url: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{scheme}://{FTP_USER}:{FTP_PASSWORD}@{rest}"


def test_download_report_masks_the_password(archive_ftp, tmp_path):
    report = tmp_path / "report.json"
    mirror = _with_password(archive_ftp.base_url)
    args = ["1843,99999", "oif,evt2", "-m", mirror, "--outdir", str(tmp_path / "o")]
    rc = cli.main([*args, "--json", str(report), "-q"])
    assert rc == 1
    text = report.read_text()
    assert FTP_PASSWORD not in text
    data = json.loads(text)
    assert data["mode"] == "download" and data["ok"] is False
    found, missing = data["obsids"]
    assert (found["obsid"], found["found"], missing["obsid"], missing["found"]) == (
        1843,
        True,
        99999,
        False,
    )
    assert "why_missing" in missing and missing["files"] == []
    assert [f["type"] for f in found["files"]] == ["oif", "evt2"]  # sorted by path
    for f in found["files"]:
        assert FILE_KEYS <= set(f)
        assert f["status"] == "downloaded" and f["size"] > 0
        assert f["url"].startswith("ftp://") and f["url"].endswith(f["path"])


def test_list_report_on_stdout_is_only_json(archive_http, tmp_path):
    out = tmp_path / "o"
    (out / "1843").mkdir(parents=True)
    (out / "1843" / "oif.fits").write_bytes(b"x" * 10)
    p = subprocess.run(
        [sys.executable, "-m", "chandra_download", "1843", "oif,evt2", "--list", "--json", "-",
         "-m", archive_http.base_url, "--outdir", str(out)],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    files = {f["path"]: f for f in data["obsids"][0]["files"]}
    assert files["oif.fits"]["local"] == "partial" and files["oif.fits"]["local_size"] == 10
    assert files["oif.fits"]["to_fetch"] == files["oif.fits"]["size"] - 10
    assert data["mode"] == "list" and all(f["status"] == "planned" for f in files.values())
    assert not Path(out / "1843" / "primary").exists()


def test_check_report(archive_http, tmp_path):
    out = tmp_path / "o"
    assert cli.main(["1843", "oif", "-m", archive_http.base_url, "--outdir", str(out), "-q"]) == 0
    (out / "1843" / "stray.txt").write_text("mine")
    report = tmp_path / "check.json"
    args = ["1843", "oif,evt2", "--check", "-m", archive_http.base_url, "--outdir", str(out)]
    assert cli.main([*args, "--json", str(report), "-q"]) == 1
    data = json.loads(report.read_text())
    assert data["mode"] == "check" and data["ok"] is False
    states = {f["path"]: f["status"] for f in data["obsids"][0]["files"]}
    assert states["oif.fits"] == "complete" and states["stray.txt"] == "extra"
    assert [s for p, s in states.items() if "evt2" in p] == ["missing"]


def test_unwritable_report_is_an_error_before_anything_is_fetched(archive_http, tmp_path, capsys):
    args = ["1843", "oif", "-m", archive_http.base_url, "--outdir", str(tmp_path / "o")]
    assert cli.main([*args, "--json", str(tmp_path / "no" / "dir" / "r.json")]) == 2
    assert "JSON report" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_download_report_on_stdout_stays_json_at_any_verbosity(archive_http, tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "chandra_download", "1843", "oif", "--json", "-", "--verbose", "3",
         "-m", archive_http.base_url, "--outdir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)  # the log lines went to standard error
    assert data["obsids"][0]["files"][0]["path"] == "oif.fits"
    assert "oif.fits" in p.stderr
