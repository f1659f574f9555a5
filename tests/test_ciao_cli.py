"""Issue 17 at the command line and in CIAO's Python function: both signatures (17.2), empty
selections (17.3), and what a newcomer met (17.7): closed or full standard output, a binary
@file, --jobs too large, SIGTERM, the catalogue's failure and the base hint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chandra_download import __version__, classify, download_chandra_obsids

PREFIX = f"# download_chandra_obsid ({__version__}):"


def run(*args: str, stdout=subprocess.PIPE, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "chandra_download", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def landed(out: Path) -> set[str]:
    """The archive's files written under ``out`` (not our own hidden state directory)."""
    files = (p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return {f for f in files if not f.startswith(".chandra-download/")}


# -- 17.2: both Python signatures --------------------------------------------------------------
def test_current_signature_positional_excludes_then_mirror(
    archive_http, source_files, tmp_path, fast
):
    """CIAO's current ``(obsids, filetypes, excludes, mirror)``: was "Unknown site 'vvref'"."""
    found = download_chandra_obsids([1843], None, ["vvref"], archive_http.base_url,
                                    outdir=tmp_path, **fast)  # fmt: skip
    assert found == [True]
    want = {f"1843/{r}" for r in source_files(1843) if classify(r) != "vvref"}
    assert landed(tmp_path) == want


def test_current_signature_none_excludes_then_mirror(archive_http, tmp_path, fast):
    """``(obsids, ["fov"], None, MIRROR)``: the mirror was taken for a user name (the CDA)."""
    found = download_chandra_obsids([1843], ["fov"], None, archive_http.base_url,
                                    outdir=tmp_path, **fast)  # fmt: skip
    assert found == [True]
    files = landed(tmp_path)
    assert files and all(classify(f) == "fov" for f in files)


def test_2013_signature_mirror_third(archive_root, tmp_path, fast):
    found = download_chandra_obsids([1843], ["oif"], str(archive_root), outdir=tmp_path, **fast)
    assert found == [True] and landed(tmp_path) == {"1843/oif.fits"}


def test_comma_string_of_excludes_third(archive_root, source_files, tmp_path, fast):
    download_chandra_obsids([1843], None, "evt1,vvref", str(archive_root), outdir=tmp_path, **fast)
    want = {f"1843/{r}" for r in source_files(1843) if classify(r) not in ("evt1", "vvref")}
    assert landed(tmp_path) == want


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((None, "someone"), "fourth positional argument 'someone' is neither a site"),
        (("nosuchthing",), "third positional argument 'nosuchthing' is neither file types"),
        ((["evt2", "nosite"],), "third positional argument"),
    ],
)
def test_what_fits_neither_signature_is_refused(args, words, tmp_path):
    with pytest.raises(TypeError, match=words):
        download_chandra_obsids([1843], ["oif"], *args, outdir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_value_given_by_position_and_keyword_is_refused(archive_root, tmp_path):
    with pytest.raises(TypeError, match="mirror given twice"):
        download_chandra_obsids([1843], None, None, str(archive_root), mirror=str(archive_root))


def test_the_rule_is_documented():
    doc = download_chandra_obsids.__doc__ or ""
    assert "(obsids, filetypes=None, excludes=None, mirror=None)" in doc
    assert "(obsids, filetypes, mirror, username, userpass)" in doc
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "a list of file types" in readme and "is ``excludes``" not in readme


# -- 17.3: empty selections ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    [[""], [" , "], ["--exclude", ""], ["@EMPTY"], ["oif", "--exclude", "@EMPTY"]],
    ids=["empty-types", "blank-types", "empty-exclude", "empty-file", "empty-exclude-file"],
)
def test_an_empty_selection_is_an_error_and_fetches_nothing(archive_http, tmp_path, extra):
    empty = tmp_path / "types.txt"
    empty.write_text("# nothing here\n\n")
    out = tmp_path / "out"
    args = [str(empty).join(a.split("EMPTY")) if "EMPTY" in a else a for a in extra]
    p = run("1843", *args, "-m", archive_http.base_url, "--outdir", str(out))
    assert p.returncode == 2, p.stdout
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith(f"{PREFIX} ERROR"), p.stderr
    assert "empty" in p.stderr or "holds no types" in p.stderr
    assert p.stdout == "" and not out.exists()


@pytest.mark.parametrize("kw", [{"filetypes": []}, {"filetypes": ""}, {"excludes": []}])
def test_an_empty_selection_is_an_error_in_python(archive_root, tmp_path, kw):
    with pytest.raises(ValueError, match="empty"):
        download_chandra_obsids([1843], mirror=str(archive_root), outdir=tmp_path, **kw)
    assert not any(tmp_path.iterdir())


# -- 17.7: what a newcomer met ---------------------------------------------------------------------
def test_closed_stdout_is_one_line_and_non_zero(archive_root, tmp_path):
    cmd = [sys.executable, "-m", "chandra_download", "1843", "oif", "-m", str(archive_root),
           "--outdir", str(tmp_path / "out")]  # fmt: skip
    p = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: os.close(1),  # `>&-`
    )  # fmt: skip
    assert p.returncode != 0
    assert len(p.stderr.splitlines()) == 1 and "standard output is closed" in p.stderr, p.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize("extra", [[], ["--list"]], ids=["download", "list"])
def test_a_full_stdout_is_one_line_and_non_zero(archive_root, tmp_path, extra):
    with open("/dev/full", "w") as full:
        p = run("1843", "oif", "-m", str(archive_root), "--outdir", str(tmp_path), *extra,
                stdout=full)  # fmt: skip
    assert p.returncode != 0
    assert p.stderr.splitlines() == [
        f"{PREFIX} ERROR cannot write to standard output: No space left on device"
    ], p.stderr


def test_filetypes_to_a_full_stdout(tmp_path):
    with open("/dev/full", "w") as full:
        p = run("-t", stdout=full)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr


@pytest.mark.parametrize("where", ["obsids", "types"])
def test_a_binary_at_file_error_names_the_file(tmp_path, where):
    blob = tmp_path / "list.fits"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    args = [f"@{blob}", "oif"] if where == "obsids" else ["1843", f"@{blob}"]
    p = run(*args, "-m", str(tmp_path), "--outdir", str(tmp_path / "out"))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [f"{PREFIX} ERROR " + p.stderr.split("ERROR ", 1)[1].strip()]
    assert str(blob) in p.stderr and "not a text file" in p.stderr


def test_too_many_jobs_is_refused_at_once(archive_root, tmp_path):
    t0 = time.monotonic()
    p = run("1843", "--jobs", "100000", "-m", str(archive_root), "--outdir", str(tmp_path / "o"))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [f"{PREFIX} ERROR jobs must be at most 64, not 100000"]
    assert time.monotonic() - t0 < 20  # no thread was started (it took 30 s and more)
    assert not (tmp_path / "o").exists()


def test_sigterm_is_reported_as_terminated(archive_root, tmp_path):
    from chandra_download.simulator import ArchiveHTTPServer, LinkModel

    with ArchiveHTTPServer(archive_root, link=LinkModel(conn_bandwidth=200_000)) as slow:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chandra_download", "1843", "-m", slow.base_url,
             "--outdir", str(tmp_path), "--jobs", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            p.stat().st_size > 50_000 for p in tmp_path.rglob("*") if p.is_file()
        ):
            time.sleep(0.05)
        assert proc.poll() is None, "finished before it could be terminated"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert err.splitlines() == [err.strip()], err
    assert err.startswith(f"{PREFIX} Terminated (SIGTERM): ") and "control-c" not in err


def test_catalogue_failure_is_said_once_on_stderr_and_stdout_fits_80(archive_root, tmp_path):
    """A catalogue that cannot be reached (here refusing; the conftest points it at a closed
    port) made a 132-column line under each ``Skipping ObsId``."""
    p = run("99998,99999", "-m", str(archive_root), "--outdir", str(tmp_path))
    assert p.returncode == 1
    assert (
        p.stdout.splitlines()[0] == "Skipping ObsId 99998 as it was not found on the mirror site."
    )
    assert all(len(line) <= 80 for line in p.stdout.splitlines()), p.stdout
    assert "catalogue" not in p.stdout
    assert p.stderr.count("the observation catalogue could not be reached") == 1, p.stderr


def test_no_base_hint_for_one_obsid_missing_from_a_partial_mirror(archive_root, tmp_path):
    p = run("99999", "-m", str(archive_root), "--outdir", str(tmp_path), "--no-status")
    assert p.returncode == 1 and "the archive's base" not in p.stderr, p.stderr


def test_base_hint_when_the_mirror_is_not_the_archives_base(tmp_path):
    wrong = tmp_path / "data"
    wrong.mkdir()
    p = run("1843", "-m", str(wrong), "--outdir", str(tmp_path / "o"), "--no-status")
    assert p.returncode == 1 and "the archive's base, up to byobsid/" in p.stderr, p.stderr


def test_results_in_a_notebook_are_a_short_repr_and_a_table(archive_root, tmp_path, fast):
    from chandra_download import download

    results = download([1843, 2749, 99999], mirror=str(archive_root), outdir=tmp_path,
                       status=False, **fast)  # fmt: skip
    text = repr(results)
    assert len(text) < 1500, len(text)  # 54 KB of dataclass text before
    lines = text.splitlines()
    assert lines[0].startswith("<Results: 3 ObsId(s), 2 found; ")
    assert "downloaded" in lines[0] and len(lines) == 4
    assert lines[1].startswith("  ObsIdResult(obsid=1843, found=True")
    assert "files=" in lines[1] and "relpath" not in text
    page = results._repr_html_()
    assert page.startswith("<table>") and page.count("<tr>") == 4  # the head and 3 ObsIds
    assert "<td>99999</td><td>not found</td>" in page


def test_results_repr_masks_credentials(archive_ftp, tmp_path, fast):
    from chandra_download import download
    from chandra_download.simulator.fixtures import FTP_PASSWORD, FTP_USER

    url = archive_ftp.base_url.replace("ftp://", f"ftp://{FTP_USER}:{FTP_PASSWORD}@")
    results = download([1843], "oif", url, outdir=tmp_path, **fast)
    assert results.ok
    assert FTP_PASSWORD not in repr(results) and FTP_PASSWORD not in results._repr_html_()


def test_a_connect_timeout_says_so_without_an_object_repr(tmp_path):
    """A listening socket whose backlog is full drops new connections: a connect timeout.
    Its message was ``(<DeadlineHTTPConnection(...) at 0x...>, 'Connection ... timed out')``."""
    import socket

    from chandra_download import download

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        port = srv.getsockname()[1]
        fill = [socket.socket() for _ in range(4)]
        try:
            for c in fill:
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
            results = download([1843], "oif", f"http://127.0.0.1:{port}/cdaftp/",
                               outdir=tmp_path, timeout=1, retries=0, status=False)  # fmt: skip
        finally:
            for c in fill:
                c.close()
    error = results[0].error or ""
    assert "timed out" in error, error
    assert " at 0x" not in error and "<" not in error and "Connection(" not in error
