"""Files waiting in the finisher (issue 19.2) when the run is killed or interrupted: each ends
as a finished, verified file or as a resumable ``.part``, never lost; the next run completes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from crash_support import (
    OBSID,
    archive_files,
    archive_fixture,
    child_env,
    command,
    http_fixture,
    mismatches,
    run,
)
from signal_support import sigint_as_default

from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.statedir import Spot

root = archive_fixture("finisher-crash-archive")
http = http_fixture()

#: Each finisher batch first sleeps this long: verified files queue up behind it.
SLOW = {"CHANDRA_DOWNLOAD_TEST_DELAY": "finishing:0.5"}


def _waiting(root: Path, outdir: Path) -> dict[str, bytes]:
    """Files whose whole bytes are in their .part (received, waiting to be finished)."""
    out = {}
    for rel, path in archive_files(root).items():
        part = Spot(outdir, str(OBSID), rel).part
        try:
            if part.stat().st_size == path.stat().st_size:
                out[rel] = path.read_bytes()
        except OSError:
            continue
    return out


def _run_until_waiting(cmd: list[str], root: Path, outdir: Path, at_least: int, **kw):  # type: ignore[no-untyped-def]
    """Start ``cmd``; (the process, files waiting) once ``at_least`` wait in the finisher."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env(SLOW), **kw
    )
    end = time.monotonic() + 60
    waiting: dict[str, bytes] = {}
    while proc.poll() is None and len(waiting) < at_least and time.monotonic() < end:
        waiting = _waiting(root, outdir)
        time.sleep(0.005)
    return proc, waiting


def _each_kept(root: Path, outdir: Path, waiting: dict[str, bytes]) -> None:
    """Every file that was waiting is at its final name, whole, or still whole in its .part;
    any other .part holds a prefix of the archive's bytes (resumable)."""
    for rel, want in waiting.items():
        final, part = outdir / str(OBSID) / rel, Spot(outdir, str(OBSID), rel).part
        got = final.read_bytes() if final.exists() else part.read_bytes()
        assert got == want, rel
    for rel, path in archive_files(root).items():
        final, part = outdir / str(OBSID) / rel, Spot(outdir, str(OBSID), rel).part
        if final.exists():
            assert final.read_bytes() == path.read_bytes(), rel
        elif part.exists():
            assert path.read_bytes().startswith(part.read_bytes()), rel


def test_a_kill_while_files_wait_in_the_finisher_loses_none(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cmd = command(http.base_url, out, "--pipeline-depth", "1")
    proc, waiting = _run_until_waiting(cmd, root, out, at_least=3)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before files waited"
    assert len(waiting) >= 3
    _each_kept(root, out, waiting)
    again = run(cmd)
    assert again.returncode == 0, again.stdout + again.stderr
    assert mismatches(root, out) == []


def test_ctrl_c_while_files_wait_in_the_finisher_finishes_or_keeps_them(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cmd = command(http.base_url, out, "--pipeline-depth", "1")
    proc, waiting = _run_until_waiting(cmd, root, out, 3, preexec_fn=sigint_as_default)
    assert proc.poll() is None, "the run ended before files waited"
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert took < 20, f"took {took:.1f} s to stop"  # about 2 s by design
    _each_kept(root, out, waiting)
    finished = [rel for rel in waiting if (out / str(OBSID) / rel).exists()]
    assert finished, "the finisher finished none of the files it held"
    again = run(cmd)
    assert again.returncode == 0, again.stdout + again.stderr
    assert mismatches(root, out) == []
