"""The transfer core's safety rules (issue 12): no write through a symlink, corrupt files
repaired on request, local errors told once and clearly, a full disk and Ctrl-C handled."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import (
    EVT1,
    OBSID,
    OIF,
    SPLIT,
    archive_files,
    archive_fixture,
    child_env,
    command,
    http_fixture,
    run,
    tree,
    wait_for,
)
from signal_support import sigint_as_default
from statedir_support import ours

from chandra_download import cli, download
from chandra_download.results import Status
from chandra_download.simulator.faults import Fault
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.simulator.link import LinkModel

PRECIOUS = b"precious data outside the output tree\n"
SPLIT_BYTES = 256 * 1024


root = archive_fixture("safety-archive")
http = http_fixture()


def lines_with(text: str, *words: str) -> list[str]:
    """Lines of ``text`` holding every one of ``words`` (case-insensitive)."""
    return [ln for ln in text.splitlines() if all(w.lower() in ln.lower() for w in words)]


def result_of(results, rel: str):
    return next(f for f in results.files if f.relpath == rel)


# -- no write through a symlink -------------------------------------------------------------
@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
@pytest.mark.parametrize("kind", ["state_tmp", "state", "part", ""])
def test_symlink_planted_at_a_file_or_our_names_is_never_written_through(
    http: ArchiveHTTPServer, tmp_path: Path, kind: str, dangling: bool
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    if not dangling:
        victim.write_bytes(PRECIOUS)
    out = tmp_path / "out"
    target = out / str(OBSID) / EVT1
    target.parent.mkdir(parents=True)
    planted = ours(out, OBSID, EVT1, kind) if kind else target
    planted.symlink_to(victim)
    results = download(
        OBSID, mirror=http.base_url, outdir=out, jobs=4, split_threshold=SPLIT_BYTES, retries=0
    )
    if dangling:
        assert list(outside.iterdir()) == []  # nothing created through the link
    else:
        assert victim.read_bytes() == PRECIOUS
    fr = result_of(results, EVT1)
    assert fr.status is Status.FAILED
    assert "symlink" in (fr.reason or "") and planted.name in (fr.reason or ""), fr.reason
    assert planted.is_symlink()  # left for the user to look at, not followed


def test_symlinked_directory_leading_outside_is_never_written(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / Path(EVT1).name).write_bytes(PRECIOUS)
    out = tmp_path / "out"
    (out / str(OBSID)).mkdir(parents=True)
    (out / str(OBSID) / "secondary").symlink_to(outside, target_is_directory=True)
    results = download(
        OBSID, mirror=http.base_url, outdir=out, jobs=4, split_threshold=SPLIT_BYTES, retries=0
    )
    assert {p.name for p in outside.iterdir()} == {Path(EVT1).name}
    assert (outside / Path(EVT1).name).read_bytes() == PRECIOUS
    below = [f for f in results.files if f.relpath.startswith("secondary/")]
    assert below and all(f.status is Status.FAILED for f in below)
    assert all("symlink" in (f.reason or "") and "secondary" in f.reason for f in below)
    assert result_of(results, OIF).ok  # the rest of the ObsId is fetched


# -- corrupt local files: --check says what to do, --repair does it -------------------------
def damage(path: Path) -> bytes:
    """Flip one byte in the middle of a file (same size); the damaged bytes."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def test_corrupt_file_is_present_to_a_normal_run_and_repaired_on_request(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = archive_files(root)[OIF].read_bytes()
    out = tmp_path / "out"
    target = out / str(OBSID) / OIF
    assert download(OBSID, "oif", mirror=http.base_url, outdir=out).ok
    damage(target)
    again = download(OBSID, "oif", mirror=http.base_url, outdir=out)
    assert result_of(again, OIF).status is Status.PRESENT  # sizes only: cheap and unchanged

    args = [str(OBSID), "oif", "--mirror", http.base_url, "--outdir", str(out)]
    capsys.readouterr()
    assert cli.main([*args, "--check"]) != 0
    seen = capsys.readouterr()
    last = [text.strip().splitlines()[-1] for text in (seen.out, seen.err) if text.strip()]
    assert any("--repair" in line for line in last), seen

    repaired = download(OBSID, "oif", mirror=http.base_url, outdir=out, repair=True)
    assert result_of(repaired, OIF).status is Status.DOWNLOADED
    assert target.read_bytes() == good

    damage(target)
    assert cli.main([*args, "--repair"]) == 0
    assert target.read_bytes() == good
    assert sorted(tree(out)) == [f"{OBSID}/{OIF}"]


def test_repair_keeps_the_bad_copy_until_a_good_one_is_in_place(
    http: ArchiveHTTPServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    target = out / str(OBSID) / OIF
    assert download(OBSID, "oif", mirror=http.base_url, outdir=out).ok
    bad = damage(target)
    http.faults.add(Fault("status", f"*{OIF}", times=None, status=503))
    results = download(
        OBSID, "oif", mirror=http.base_url, outdir=out, repair=True, retries=0, backoff=0.01
    )
    assert result_of(results, OIF).status is Status.FAILED
    assert target.read_bytes() == bad


# -- local errors: one clear line naming the path and the cause ----------------------------
def run_main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    rc = cli.main(args)
    seen = capsys.readouterr()
    return rc, seen.out + seen.err


def assert_told_once(output: str, cause: str, path: str) -> None:
    """The cause is told on one line naming the path (not once per file), never as a bug."""
    assert "internal error" not in output and "Traceback" not in output, output
    told = lines_with(output, cause)
    assert 1 <= len(told) <= 2, output  # an ObsId of 37 files: not once per file
    assert any(path in line for line in told), output


def test_obsid_directory_is_a_file(
    http: ArchiveHTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / str(OBSID)).write_text("not a directory")
    rc, output = run_main([str(OBSID), "--mirror", http.base_url, "--outdir", str(out)], capsys)
    assert rc == 1
    assert_told_once(output, "not a directory", str(out / str(OBSID)))


def test_outdir_name_too_long(
    http: ArchiveHTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    long = "x" * 300
    out = tmp_path / long
    rc, output = run_main([str(OBSID), "--mirror", http.base_url, "--outdir", str(out)], capsys)
    assert rc == 1
    assert_told_once(output, "too long", long)


def test_outdir_not_writable(http: ArchiveHTTPServer, tmp_path: Path) -> None:
    """EACCES. Root ignores modes: as root, the run is made without CAP_DAC_OVERRIDE."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ["setpriv", "--bounding-set", "-dac_override", "--"]
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    try:
        done = run(prefix + command(http.base_url, out))
        assert done.returncode == 1, done.stdout + done.stderr
        assert_told_once(done.stdout + done.stderr, "permission denied", str(out))
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (mounting needs root; skipped where it is not permitted)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small file system")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip("mounting a small tmpfs is not permitted here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_stops_new_transfers_and_keeps_part_files(
    http: ArchiveHTTPServer, root: Path, small_disk: Path
) -> None:
    jobs = 2
    # One request per worker in flight (pipelined batches send up to 8 at once, all before
    # the disk is full: the bound below counts requests, one a worker).
    done = run(
        command(http.base_url, small_disk, "-j", str(jobs), "--split-size", "0")
        + ["--pipeline-depth", "1"]
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "internal error" not in output and "Traceback" not in output, output
    # Before starting: the selection (~4 MB) does not fit in the free space (2 MB).
    warned = [ln for ln in output.splitlines() if re.search(r"\b(space|free)\b", ln, re.I)]
    assert [ln for ln in warned if "no space left" not in ln.lower()], output
    told = lines_with(output, "no space left")
    assert 1 <= len(told) <= 2, output
    files = tree(small_disk / str(OBSID))
    complete = [rel for rel in archive_files(root) if rel in files]
    parts = sorted((small_disk / ".chandra-download" / "partial").rglob("*.part"))
    assert parts and all(p.stat().st_size > 0 for p in parts)  # kept for a later resume
    gets = http.stats.get_count("byobsid/*[!/]")  # file requests, listings aside
    assert gets <= len(complete) + jobs, (gets, complete, parts)  # none started after


# -- Ctrl-C --------------------------------------------------------------------------------
def test_ctrl_c_leaves_no_empty_part_files(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    link = LinkModel(latency=0.3, total_bandwidth=1_000_000)  # requests wait: .part files open
    with ArchiveHTTPServer(root, link=link) as slow:
        proc = subprocess.Popen(
            command(slow.base_url, out, "-j", "8", "--split-size", SPLIT),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            preexec_fn=sigint_as_default,
        )
        try:
            started = wait_for(lambda: any(out.rglob("*.part")), timeout=30)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert started
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    empty = [rel for rel, p in tree(out).items() if rel.endswith(".part") and p.stat().st_size == 0]
    assert empty == []
