"""The download_chandra_obsid command, run as ``python -m chandra_download`` (a real process)
and through ``cli.main(argv)``, against the simulated archive over HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from signal_support import sigint_as_default
from statedir_support import ours

from chandra_download import DESCRIPTIONS, FILETYPES, __version__, classify, cli
from chandra_download.simulator import Fault

EVT1 = "secondary/acisf01843_000N005_evt1.fits.gz"
EVT2 = "primary/acisf01843N005_evt2.fits.gz"
OIF = "oif.fits"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the command in a child process; returns the CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}  # the autouse fixture removed CDA_MIRROR_SITE
    return subprocess.run(
        [sys.executable, "-m", "chandra_download", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,
    )


def landed(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    }


def same(a: Path, b: Path) -> bool:
    return hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version_is_ciaos_v(flag):
    p = run(flag)
    assert p.returncode == 0
    assert p.stdout.strip() == __version__


@pytest.mark.parametrize("flag", ["-c", "--copyright"])
def test_copyright(flag):
    p = run(flag)
    assert p.returncode == 0 and "Copyright" in p.stdout and "BSD" in p.stdout


@pytest.mark.parametrize("flag", ["-t", "--filetypes"])
def test_filetypes_in_ciaos_form(flag):
    p = run(flag)
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert lines[:2] == ["The list of valid file types is:", ""]
    block = lines[2 : lines.index("", 2)]  # CIAO's block; our named selections follow it
    assert " ".join(block).split() == sorted(FILETYPES)
    assert all(line.startswith("   ") for line in block)
    assert all(len(line) < 80 for line in lines)


def test_filetypes_with_descriptions_from_verbose_2():
    lines = run("-t", "--verbose", "2").stdout.splitlines()
    for t in FILETYPES:
        assert any(line.split()[:1] == [t] and DESCRIPTIONS[t] in line for line in lines), t


def test_download_with_types_in_a_child_process(archive_http, source_files, tmp_path):
    out = tmp_path / "out"
    p = run("1843,6298", "evt2,oif", "--mirror", archive_http.base_url, "--outdir", str(out))
    assert p.returncode == 0, p.stderr
    want = {
        f"{o}/{rel}": path
        for o in (1843, 6298)
        for rel, path in source_files(o).items()
        if classify(rel) in ("evt2", "oif")
    }
    assert landed(out) == set(want)
    assert all(same(out / rel, src) for rel, src in want.items())
    assert "Downloading files for ObsId 1843, total size is" in p.stdout
    assert "Downloading files for ObsId 6298, total size is" in p.stdout
    assert "\n  evt2     fits " in p.stdout  # CIAO's rows name the type, not the file
    assert "Traceback" not in p.stderr


def test_default_outdir_is_the_current_directory(archive_http, tmp_path):
    p = run("1843", "oif", "--mirror", archive_http.base_url, "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert landed(tmp_path) == {"1843/oif.fits"}


def test_mirror_from_environment(archive_http, tmp_path):
    env = {"CDA_MIRROR_SITE": archive_http.base_url}
    p = run("2749", "oif", "--outdir", str(tmp_path), env=env)
    assert p.returncode == 0, p.stderr
    assert landed(tmp_path) == {"2749/oif.fits"}


def test_quiet_prints_nothing(archive_http, tmp_path):
    p = run("1843", "oif", "--mirror", archive_http.base_url, "--outdir", str(tmp_path), "--quiet")
    assert p.returncode == 0
    assert p.stdout == "" and p.stderr == ""
    assert landed(tmp_path) == {"1843/oif.fits"}


def test_range_and_missing_obsids_exit_1_with_a_summary(archive_http, tmp_path, capsys):
    rc = cli.main(
        [
            "1842-1844",
            "oif",
            "--mirror",
            archive_http.base_url,
            "--outdir",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert rc == 1
    lines = capsys.readouterr().err.strip().splitlines()
    # The catalogue (refused here) is said once as a warning (issue 17.7), then the summary.
    assert len(lines) == 2 and "catalogue could not be reached" in lines[0]
    err = lines[1:]
    assert "not found" in err[0] and "1842" in err[0] and "1844" in err[0]
    assert "1843" not in err[0]
    assert landed(tmp_path) == {"1843/oif.fits"}  # the others went on


def test_at_file_and_exclude(archive_http, source_files, tmp_path, capsys):
    lst = tmp_path / "ids.txt"
    lst.write_text("# sample\n1843\n2749, 6298\n")
    out = tmp_path / "out"
    rc = cli.main(
        [
            f"@{lst}",
            "--exclude",
            "evt1,vvref,evt1a",
            "--mirror",
            archive_http.base_url,
            "--outdir",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out == ""  # verbose 0: no table
    want = {
        f"{o}/{rel}"
        for o in (1843, 2749, 6298)
        for rel in source_files(o)
        if classify(rel) not in ("evt1", "vvref", "evt1a")
    }
    assert landed(out) == want
    assert any(p.endswith("_process.par") for p in want)  # untyped kept with exclude only


def test_verbose_levels(archive_http, tmp_path, capsys):
    args = ["1843", "oif", "--mirror", archive_http.base_url, "--outdir", str(tmp_path)]
    assert cli.main([*args, "--verbose", "1"]) == 0
    normal = capsys.readouterr().out
    assert "Downloading files for ObsId 1843" in normal and "\n  oif      fits " in normal
    (tmp_path / "1843" / OIF).unlink()
    assert cli.main([*args, "--verbose", "3"]) == 0
    detailed = capsys.readouterr().out
    assert "Downloading files for ObsId 1843" in detailed
    assert len(detailed.splitlines()) > len(normal.splitlines())


def test_failed_file_exits_1_naming_it(archive_http, tmp_path):
    archive_http.faults.add(Fault("status", "*_evt2.fits.gz", status=404, times=None))
    p = run(
        "1843",
        "evt2,oif",
        "--mirror",
        archive_http.base_url,
        "--outdir",
        str(tmp_path),
        "--retries",
        "0",
        "-q",
    )
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "failed" in lines[0] and "1843" in lines[0]
    assert "Traceback" not in p.stderr
    assert landed(tmp_path) == {"1843/oif.fits"}


def test_rerun_after_success_transfers_nothing(archive_http, tmp_path):
    args = ["1843", "--mirror", archive_http.base_url, "--outdir", str(tmp_path)]
    assert run(*args).returncode == 0
    archive_http.stats.reset()
    p = run(*args)
    assert p.returncode == 0
    assert "already" in p.stdout
    total = sum(
        f.stat().st_size
        for f in tmp_path.rglob("*")
        if f.is_file() and ".chandra-download" not in f.parts
    )
    assert archive_http.stats.bytes_sent < total * 0.05


def test_list_reports_state_and_writes_nothing(
    archive_http, source_files, tmp_path, snapshot, capsys
):
    files = source_files(1843)
    out = tmp_path / "out"
    (out / "1843/primary").mkdir(parents=True)
    (out / "1843/secondary").mkdir(parents=True)
    (out / "1843" / OIF).write_bytes(files[OIF].read_bytes())  # complete
    evt1 = files[EVT1].read_bytes()
    ours(out, 1843, EVT1).write_bytes(evt1[:1000])  # interrupted
    (out / "1843" / EVT2).write_bytes(files[EVT2].read_bytes() + b"extra")  # larger
    before = snapshot(out)
    rc = cli.main(
        [
            "1843",
            "oif,evt1,evt2,asol",
            "--list",
            "--mirror",
            archive_http.base_url,
            "--outdir",
            str(out),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert snapshot(out) == before
    assert archive_http.stats.get_count("*.fits*", method="GET") == 0  # no file was fetched
    assert rc in (0, 1)
    rows = {line.split()[-1]: line for line in text.splitlines() if "1843 " in line}
    by_name = {Path(k).name: v for k, v in rows.items()}
    asol = next(rel for rel in files if classify(rel) == "asol")
    for rel in (OIF, EVT1, EVT2, asol):
        line = by_name[Path(rel).name]
        assert classify(rel) in line.split()
    assert "complete" in by_name[OIF]
    assert "partial" in by_name[Path(EVT1).name] and "1000" in by_name[Path(EVT1).name]
    assert "larger" in by_name[Path(EVT2).name]
    assert "missing" in by_name[Path(asol).name]
    assert "Total: 4 file(s)" in text


def test_list_of_a_missing_obsid_exits_1(archive_http, tmp_path, capsys):
    rc = cli.main(["99999", "--list", "--mirror", archive_http.base_url, "--outdir", str(tmp_path)])
    assert rc == 1
    assert "99999" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["1843", "evt9"], "evt9"),
        (["1843", "--exclude", "nope"], "nope"),
        (["18a3"], "18a3"),
        (["-5"], ""),
        (["1843", "--mirror", "gopher://example.org/"], "gopher"),
        (["1843", "--mirror", "http://"], "http://"),
        (["1843", "--verbose", "9"], "verbose"),
        ([], "ObsId"),
    ],
)
def test_bad_arguments_exit_2_without_traceback(archive_http, tmp_path, args, needle):
    p = run(*args, "--outdir", str(tmp_path))
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert "error" in p.stderr.lower() and needle in p.stderr
    assert p.stdout == ""
    assert list(tmp_path.iterdir()) == []
    assert archive_http.stats.connections_opened == 0


def test_https_ca_bundle_option_and_clear_tls_error(archive_https, tmp_path):
    base = ["1843", "oif", "--mirror", archive_https.base_url, "--no-progress"]
    env = {"SSL_CERT_FILE": ""}  # only what the command is told to trust
    bad = run(*base, "--outdir", str(tmp_path / "bad"), "-q", env=env)
    assert bad.returncode == 1
    assert "certificate" in (bad.stdout + bad.stderr).lower()  # shown even with --quiet
    assert "1843" in bad.stderr.strip().splitlines()[-1]
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
    good = run(
        *base, "--outdir", str(tmp_path / "ok"), "--ca-bundle", archive_https.ca_file, env=env
    )
    assert good.returncode == 0, good.stderr
    assert landed(tmp_path / "ok") == {"1843/oif.fits"}


# -- CIAO's options and honest exits (issue 9) --------------------------------------------------


@pytest.mark.parametrize(
    ("mirror", "needle"),
    [
        ("cdaa", "Unknown site 'cdaa'"),
        ("/nonexistent/mirror", "/nonexistent/mirror does not exist"),
        ("ftp:/x", "Malformed mirror URL 'ftp:/x'"),
        ("http://127.0.0.1:99999/", "port"),
    ],
)
def test_setup_errors_exit_2_in_one_ciao_line(tmp_path, mirror, needle):
    p = run("1843", "-m", mirror, "--outdir", str(tmp_path / "out"))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [p.stderr.strip()]  # one line
    assert p.stderr.startswith(f"# download_chandra_obsid ({__version__}): ERROR ")
    assert needle in p.stderr and p.stdout == ""
    assert not (tmp_path / "out").exists()


def test_unknown_aws_profile_exits_2(tmp_path):
    env = {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    p = run("1843", "-m", "aws", "--aws-profile", "nosuch", "--outdir", str(tmp_path), env=env)
    assert p.returncode == 2 and "nosuch" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("flag", ["-d", "--debug", "--tracebackdebug"])
def test_debug_shows_the_traceback(tmp_path, flag):
    p = run("1843", "-m", "cdaa", flag, "--outdir", str(tmp_path))
    assert p.returncode == 2
    assert "Traceback" in p.stderr and p.stderr.rstrip().splitlines()[-1].startswith("# ")


def test_debug_is_verbose_3(archive_http, tmp_path):
    p = run("1843", "oif", "-d", "-m", archive_http.base_url, "--outdir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert f"download_chandra_obsid: {__version__}" in p.stdout
    assert "fetching " in p.stdout and "Downloading files for ObsId 1843" in p.stdout


def test_a_type_the_obsid_lacks_is_said_and_not_ok(archive_http, tmp_path):
    p = run("1843", "dtf", "-m", archive_http.base_url, "--outdir", str(tmp_path))
    assert p.stdout == "No files found for ObsId 1843!\n"
    assert p.returncode == 1 and "1843" in p.stderr


def test_missing_obsid_on_a_mirror_says_mirror_site(archive_http, tmp_path):
    out = str(tmp_path)
    p = run("99999,1843", "oif", "-m", archive_http.base_url, "--outdir", out, "--no-status")
    lines = p.stdout.splitlines()
    assert lines[0] == "Skipping ObsId 99999 as it was not found on the mirror site."
    assert lines[1] == "Downloading files for ObsId 1843, total size is 17 Kb."
    assert p.returncode == 1


def test_repeated_m_is_a_fallback_list(archive_http, tmp_path):
    empty = tmp_path / "empty"
    (empty / "byobsid").mkdir(parents=True)
    out = tmp_path / "out"
    p = run("1843", "oif", "-m", str(empty), "-m", archive_http.base_url, "--outdir", str(out))
    assert p.returncode == 0, p.stderr
    assert landed(out) == {"1843/oif.fits"}


def test_each_warning_once_without_python_source_lines(archive_http, tmp_path):
    p = run(
        "1843", "oif,evt2", "--exclude", "evt2", "--insecure", "-m", archive_http.base_url,
        "--outdir", str(tmp_path),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("TLS certificate verification is OFF") == 1
    assert p.stderr.count("both requested and excluded") == 1
    assert "UserWarning" not in p.stderr and "api.py" not in p.stderr
    assert all(line.startswith("# download_chandra_obsid") for line in p.stderr.splitlines())


@pytest.mark.parametrize("mode", [["--list"], []], ids=["list", "download"])
def test_a_closed_pipe_ends_quietly(archive_http, tmp_path, mode):
    proc = subprocess.Popen(
        [sys.executable, "-m", "chandra_download", "1843,2749", *mode, "-m", archive_http.base_url,
         "--outdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Logging error" not in err
    assert proc.returncode in (0, 1)


def test_ctrl_c_prints_one_line_with_the_counts(archive_root, tmp_path):
    from chandra_download.simulator import ArchiveHTTPServer, LinkModel

    with ArchiveHTTPServer(archive_root, link=LinkModel(conn_bandwidth=200_000)) as slow:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chandra_download", "1843,2749", "-m", slow.base_url,
             "--outdir", str(tmp_path), "--jobs", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=sigint_as_default,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            p.stat().st_size > 50_000 for p in tmp_path.rglob("*.part")
        ):
            time.sleep(0.05)
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.splitlines() == [err.strip()], err
    assert err.startswith(
        f"# download_chandra_obsid ({__version__}): Keyboard interrupt (control-c): "
    )
    assert re.search(r"\d+ file\(s\) downloaded, \d+ already present, 0 failed, [1-9]\d* not", err)
    assert "interrupted" not in out and "FAILED" not in out


def test_mirror_from_the_environment_is_a_mirror_site(archive_http, tmp_path):
    p = run("99999", "--outdir", str(tmp_path), env={"CDA_MIRROR_SITE": archive_http.base_url})
    (skip,) = p.stdout.splitlines()
    assert skip == "Skipping ObsId 99999 as it was not found on the mirror site."
    # The catalogue (refusing here) is asked why; its failure is said once, on stderr, and
    # changes nothing else.
    assert p.stderr.count("the observation catalogue could not be reached") == 1
    assert p.returncode == 1 and "not found: ObsId 99999" in p.stderr


def test_a_type_only_some_obsids_have_is_said_but_ok(archive_http, tmp_path):
    p = run("1843,6298", "dtf", "-m", archive_http.base_url, "--outdir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("No files found for ObsId 1843!\nDownloading files for ObsId 6298")
