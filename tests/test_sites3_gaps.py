"""Gaps of issues 16 and 20 found by the item-by-item audit (/work/coord/GAPS.md): ``--repair``
over a read-only tree of good files (20.8, fixed); end to end, what had only unit tests or
none: a redirect to a ``file://`` URL, a ``--ca-bundle`` that does not sign the site (20.9), a
2 GB footprint or catalogue answer (20.4), a local name the archive still lists (16.1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import command, run

from chandra_download import cli, download
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


class _Huge:
    """A service on 127.0.0.1 whose every answer claims 2 GB and streams until the client
    hangs up; counts the bytes it managed to send."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.sent = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "application/x-votable+xml")
                self.send_header("Content-Length", str(2 * 1024**3))
                self.end_headers()
                block = b"<VOTABLE>" + b" " * 65527
                try:
                    for _ in range(2 * 1024**3 // len(block)):
                        self.wfile.write(block)
                        outer.sent += len(block)
                except OSError:
                    pass  # the client hung up

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def huge(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Huge]:
    server = _Huge()
    monkeypatch.setenv("CHANDRA_FOOTPRINT_URL", server.url + "footprints")
    monkeypatch.setenv("CHANDRA_OCAT_URL", server.url + "srservices/")
    yield server
    server.close()


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if "ERROR" in ln or "WARNING" in ln]


def test_find_given_a_2_gb_footprint_answer_says_so_in_one_line(huge, capsys) -> None:
    from chandra_download import find_cli
    from chandra_download.services import MAX_ANSWER

    assert find_cli.main(["10.68", "41.27", "--timeout", "10"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "OverflowError" not in err
    (line,) = _error_lines(err)
    assert "footprint" in line and "larger than 64 MiB" in line
    assert huge.sent < 4 * MAX_ANSWER["footprint"]  # streamed and cut, not read to 2 GB


def test_a_missing_obsid_explained_by_a_2_gb_catalogue_answer_is_bounded(
    huge, site, tmp_path, capsys
) -> None:
    from chandra_download import cli
    from chandra_download.services import MAX_ANSWER

    root, server = site
    argv = ["4242", "--mirror", server.base_url, "--outdir", str(tmp_path / "o"), "--no-progress"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert any("catalogue" in ln and "larger than 64 MiB" in ln for ln in _error_lines(err)), err
    assert "4242" in err
    assert huge.sent < 4 * MAX_ANSWER["ocat"]


def test_a_ca_bundle_that_does_not_sign_the_site_says_so(archive_root, tmp_path) -> None:
    import certifi

    with ArchiveHTTPServer(archive_root, tls=True) as server:
        given = download([1843], ["oif"], mirror=server.base_url, outdir=tmp_path / "a",
                         ca_bundle=certifi.where(), status=False)  # fmt: skip
        none = download([1843], ["oif"], mirror=server.base_url, outdir=tmp_path / "b",
                        status=False)  # fmt: skip
    error = given[0].error or ""
    assert f"not signed by a certificate authority of {certifi.where()}" in error, error
    assert "pass --ca-bundle" not in error
    assert "pass --ca-bundle" in (none[0].error or "")  # none given: the hint is the option


def test_a_local_name_the_archive_still_lists_is_never_superseded() -> None:
    from chandra_download.revisions import find_superseded

    old, new = "primary/acisf01843N005_evt2.fits.gz", "primary/acisf01843N006_evt2.fits.gz"
    assert find_superseded(1843, [old], [old, new]) == []  # both listed: not superseded
    assert [s.relpath for s in find_superseded(1843, [old], [new])] == [old]


def test_a_manifest_says_which_file_was_kept_as_served(site, tmp_path) -> None:
    """16.3: per file, what was checked: verified, kept as served, no content check."""
    import json

    from chandra_download.simulator import Fault

    root, server = site
    out, m = tmp_path / "out", tmp_path / "m.json"
    server.faults.add(Fault("corrupt", "*_evt2.fits.gz", times=None, after_bytes=3000))
    res = download(1843, ["evt2", "oif", "full_img"], mirror=server.base_url, outdir=out,
                   status=False, manifest=m)  # fmt: skip
    assert res.ok
    checked = {
        f["relpath"].rsplit("/", 1)[-1]: f["checked"] for f in json.loads(m.read_text())["files"]
    }
    assert checked["acisf01843N005_evt2.fits.gz"] == "kept as served"
    assert checked["oif.fits"] == "verified"
    assert checked["acisf01843N005_full_img2.jpg"] == "no content check"


EVT2_OLD = "primary/acisf01843N005_evt2.fits.gz"


def _reprocessed(site, tmp_path) -> Path:
    """ObsId 1843 downloaded (evt2), then reprocessed at the archive."""
    from chandra_download.simulator import reprocess

    root, server = site
    out = tmp_path / "out"
    assert download([1843], ["evt2"], mirror=server.base_url, outdir=out, status=False).ok
    reprocess(root, 1843)
    return out


def _prune_args(server: ArchiveHTTPServer, out: Path) -> list[str]:
    return ["1843", "evt2", "--mirror", server.base_url, "--outdir", str(out), "--no-status",
            "--prune-superseded"]  # fmt: skip


def test_prune_never_moves_a_file_through_a_symlink_planted_in_superseded(
    site, tmp_path, capsys
) -> None:
    """16.1 with 20.2: ``<outdir>/superseded`` (or a directory below it) swapped for a symlink
    leading outside the tree: nothing is moved there; the file stays, with one line why."""
    root, server = site
    out = _reprocessed(site, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "superseded").symlink_to(outside)
    capsys.readouterr()
    assert cli.main([*_prune_args(server, out)]) == 0  # the download's own status is unchanged
    err = capsys.readouterr().err
    assert list(outside.rglob("*")) == []
    assert (out / "1843" / EVT2_OLD).is_file()
    assert "left in place" in err and "symlink" in err, err


def test_prune_never_replaces_a_file_already_in_superseded(site, tmp_path, capsys) -> None:
    root, server = site
    out = _reprocessed(site, tmp_path)
    there = out / "superseded" / "1843" / EVT2_OLD
    there.parent.mkdir(parents=True)
    there.write_bytes(b"an older copy kept by hand")
    capsys.readouterr()
    assert cli.main([*_prune_args(server, out)]) == 0
    assert there.read_bytes() == b"an older copy kept by hand"
    assert (out / "1843" / EVT2_OLD).is_file()
    assert "exists already" in capsys.readouterr().err


def test_prune_finishes_a_move_a_crash_left_halfway(site, tmp_path) -> None:
    """Both names of one file (a crash between linking the new name and dropping the old):
    the next prune drops the old name, the bytes stay under superseded/."""
    root, server = site
    out = _reprocessed(site, tmp_path)
    there = out / "superseded" / "1843" / EVT2_OLD
    there.parent.mkdir(parents=True)
    os.link(out / "1843" / EVT2_OLD, there)
    data = there.read_bytes()
    res = download([1843], ["evt2"], mirror=server.base_url, outdir=out, status=False,
                   prune_superseded=True)  # fmt: skip
    assert res[0].superseded == []
    assert not (out / "1843" / EVT2_OLD).exists() and there.read_bytes() == data


def test_frozen_into_a_directory_it_cannot_write_fails_that_file_in_one_line(site, tmp_path):
    """16.4: a manifest's file whose final directory is read-only fails, saying so (it was an
    'internal error: PermissionError' for the whole run); the others are put in place."""
    root, server = site
    first, m = tmp_path / "first", tmp_path / "m.json"
    assert download(1843, ["oif", "evt2"], mirror=server.base_url, outdir=first, status=False,
                    manifest=m).ok  # fmt: skip
    out = tmp_path / "again"
    (out / "1843" / "primary").mkdir(parents=True)
    (out / "1843" / "primary").chmod(0o555)
    prefix = _no_dac_override()
    try:
        cmd = [*command(server.base_url, out, "--frozen", str(m), obsids="1843")]
        done = run(prefix + cmd, timeout=120)
    finally:
        (out / "1843" / "primary").chmod(0o755)
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert "internal error" not in text and "Traceback" not in text, text
    assert "cannot write" in text and "Permission denied" in text, text
    assert (out / "1843" / "oif.fits").read_bytes() == (first / "1843" / "oif.fits").read_bytes()
    assert not (out / "1843" / EVT2_OLD).exists()
    again = run(command(server.base_url, out, "--frozen", str(m), obsids="1843"), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr  # the verified copy was kept
    assert (out / "1843" / EVT2_OLD).read_bytes() == (first / "1843" / EVT2_OLD).read_bytes()


def test_check_frozen_says_unreadable_and_not_a_file_for_what_is_there(site, tmp_path, capsys):
    """16.4: a manifest's file that is there but cannot be read (no permission, a FIFO, a
    directory) is said so, not 'missing'; a FIFO does not hang the audit."""
    from chandra_download.frozen import audit
    from chandra_download.manifest import read

    root, server = site
    out, m = tmp_path / "out", tmp_path / "m.json"
    assert download(1843, ["oif", "full_img"], mirror=server.base_url, outdir=out, status=False,
                    manifest=m).ok  # fmt: skip
    jpg = out / "1843" / "primary" / "acisf01843N005_full_img2.jpg"
    oif = out / "1843" / "oif.fits"
    jpg.unlink()
    os.mkfifo(jpg)
    oif.unlink()
    oif.mkdir()
    report = audit(read(m), out)
    assert not report.ok and report.missing == []
    reasons = {f.relpath: why for f, why in report.unreadable}
    assert reasons == {jpg.relative_to(out / "1843").as_posix(): "not a regular file",
                       "oif.fits": "not a regular file"}  # fmt: skip
    assert "2 unreadable" in report.lines()[-1]
