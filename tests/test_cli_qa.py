"""Defects a QA engineer found in download_chandra_obsid (issue 9 follow-up): @file type
lists, closed pipes for -t/-c/-v, --list/--check exits when nothing is selected, --check's
missing-ObsId lines, CIAO's error line for bad values, a larger local file said once, and the
hint for a mirror base that is not the archive's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chandra_download import __version__, cli

PREFIX = f"# download_chandra_obsid ({__version__}):"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chandra_download", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60,
    )  # fmt: skip


def landed(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    }


def test_types_at_file_for_filetypes_and_exclude(archive_http, tmp_path):
    types = tmp_path / "types.txt"
    types.write_text("# what we want\noif\n\nfov  \n")
    excl = tmp_path / "excl.txt"
    excl.write_text("fov # not this one\n")
    out = tmp_path / "out"
    p = run("1843", f"@{types}", "--exclude", f"@{excl}", "-m", archive_http.base_url,
            "--outdir", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert landed(out) == {"1843/oif.fits"}


def test_a_missing_types_file_is_one_ciao_error_line(archive_http, tmp_path):
    for args in (["1843", "@nosuch.txt"], ["1843", "--exclude", "@nosuch.txt"]):
        p = run(*args, "-m", archive_http.base_url, "--outdir", str(tmp_path / "o"))
        assert p.returncode == 2
        assert p.stderr.splitlines() == [p.stderr.strip()], p.stderr
        assert p.stderr.startswith(f"{PREFIX} ERROR ") and "nosuch.txt" in p.stderr
    assert archive_http.stats.connections_opened == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["1843", "evt9"], "evt9"), (["18a3"], "18a3"), (["5-2"], "5-2"), (["@none.txt"], "none")],
)
def test_bad_values_get_ciaos_error_line_not_usage(args, needle, tmp_path):
    p = run(*args, "--outdir", str(tmp_path))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [p.stderr.strip()], p.stderr
    assert p.stderr.startswith(f"{PREFIX} ERROR ") and needle in p.stderr
    assert "usage:" not in p.stderr


@pytest.mark.parametrize("flag", ["-t", "-c", "-v"])
def test_info_options_end_quietly_on_a_closed_pipe(flag):
    proc = subprocess.Popen(
        [sys.executable, "-m", "chandra_download", flag],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert proc.returncode == 0


@pytest.mark.parametrize("mode", ["--list", "--check"])
def test_nothing_selected_exits_1_as_a_download_does(archive_http, tmp_path, mode):
    base = ["-m", archive_http.base_url, "--outdir", str(tmp_path)]
    p = run("1843", "dtf", mode, *base)
    assert p.returncode == 1, p.stdout
    assert "No files found for ObsId 1843!" in p.stdout
    # Some ObsId has a file of the type: said for the other, but not an error (as download).
    p = run("1843,6298", "dtf", mode, *base)
    assert "No files found for ObsId 1843!" in p.stdout
    assert "No files found for ObsId 6298!" not in p.stdout
    if mode == "--list":
        assert p.returncode == 0, p.stderr
    else:  # nothing is on disk: --check says what is missing
        assert p.returncode == 1 and "6298" in p.stderr and "1843" not in p.stderr


def test_check_missing_obsid_on_a_mirror_uses_ciaos_skip_line_and_why(archive_http, tmp_path):
    p = run("99999", "--check", "-m", archive_http.base_url, "--outdir", str(tmp_path))
    lines = p.stdout.splitlines()
    assert lines[0] == "Skipping ObsId 99999 as it was not found on the mirror site."
    # The catalogue (refusing here) is asked why, as for --list and --json; its failure is
    # said once, on stderr (issue 17.7), not as the ObsId's reason.
    assert p.stderr.count("the observation catalogue could not be reached") == 1
    assert all(len(line) <= 80 for line in lines)
    assert "not found in the archive" not in p.stdout
    assert p.returncode == 1


def test_a_larger_local_file_is_said_once_plus_the_summary(archive_http, source_files, tmp_path):
    oif = tmp_path / "1843" / "oif.fits"
    oif.parent.mkdir(parents=True)
    oif.write_bytes(source_files(1843)["oif.fits"].read_bytes() + b"extra")
    p = run("1843", "oif", "-m", archive_http.base_url, "--outdir", str(tmp_path))
    assert p.returncode == 1
    both = p.stdout + p.stderr
    assert p.stdout.count("Archive size is less than disk size for 1843/oif.fits") == 1
    assert "WARNING" not in p.stderr
    assert len(p.stderr.splitlines()) == 1 and "larger than the archive's" in p.stderr
    assert both.count("oif.fits") == 2


def test_every_obsid_missing_on_a_mirror_hints_at_its_base(archive_root, archive_http, tmp_path):
    wrong = archive_http.base_url.rstrip("/") + "/byobsid/"  # one level too deep
    p = run("1843,2749", "-m", wrong, "--no-status", "--outdir", str(tmp_path))
    assert p.returncode == 1
    hints = [line for line in p.stderr.splitlines() if "byobsid/?" in line]
    assert len(hints) == 1 and wrong in hints[0] and "cdaftp/" in hints[0]
    assert hints[0].startswith(PREFIX)
    # One ObsId found: the base is right, no hint.
    p = run("1843,99999", "oif", "-m", archive_http.base_url, "--no-status",
            "--outdir", str(tmp_path))  # fmt: skip
    assert "byobsid/?" not in p.stderr


def test_exit_status_of_an_unusable_site_is_2_and_of_an_unlisted_obsid_1(
    archive_http, archive_ftp, tmp_path
):
    """README's exit-status text, checked: a setup error is 2; a site that cannot be reached
    leaves ObsIds unlisted, which is 1."""
    assert cli.main(["1843", "-m", "nosuchsite", "--outdir", str(tmp_path)]) == 2
    dead = "http://127.0.0.1:9/"
    assert cli.main(["1843", "-m", dead, "--retries", "0", "--outdir", str(tmp_path)]) == 1
    refused = ["--username", "alice", "--userpass", "wrong", "--retries", "0"]
    assert cli.main(["1843", "-m", archive_ftp.base_url, *refused, "--outdir", str(tmp_path)]) == 1
    assert cli.main(["1843", "evt9", "--outdir", str(tmp_path)]) == 2


@pytest.mark.parametrize("mode", [[], ["--list"]], ids=["download", "list"])
def test_json_ok_agrees_with_the_exit_when_nothing_is_selected(archive_http, tmp_path, mode):
    import json

    p = run("1843", "dtf", *mode, "--json", "-", "-m", archive_http.base_url,
            "--outdir", str(tmp_path))  # fmt: skip
    assert p.returncode == 1
    assert json.loads(p.stdout)["ok"] is False


def test_not_found_on_one_site_while_another_is_dead_is_not_found(archive_http, tmp_path):
    import socket

    with socket.socket() as dead:  # bound, not listening: refused
        dead.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{dead.getsockname()[1]}/cdaftp/"
        p = run("99999", "-m", archive_http.base_url, "-m", gone, "--outdir", str(tmp_path),
                "--no-status")  # fmt: skip
    lines = p.stdout.splitlines()
    assert lines[0] == "Skipping ObsId 99999 as it was not found on the mirror site."
    assert lines[1].startswith("  (another site could not be asked: ") and gone in lines[1]
    assert p.returncode == 1 and "not found: ObsId 99999" in p.stderr
