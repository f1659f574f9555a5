"""Logs that stream (issue 17.4, the output side): with standard output going to a file (nohup,
Slurm), each ObsId's block is in the file as soon as it is complete and every earlier block is
out, while later ObsIds are still downloading."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from chandra_download.simulator import ArchiveHTTPServer, LinkModel


def _blocks_done(text: str) -> list[int]:
    """ObsIds whose block is complete in ``text`` (its totals lines written)."""
    return [
        int(m) for m in re.findall(r"^      Total download time for ObsId (\d+) = ", text, re.M)
    ]


def test_each_block_reaches_the_file_while_later_obsids_download(archive_root, tmp_path):
    log = tmp_path / "run.log"
    # 100 kB/s a connection: each ObsId's 400 kB evt2 takes seconds, so the first block
    # is complete long before the last ObsId is.
    with ArchiveHTTPServer(archive_root, link=LinkModel(conn_bandwidth=100_000)) as slow:
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "chandra_download", "1843,2749,6298", "evt2,oif",
                 "-m", slow.base_url, "--outdir", str(tmp_path / "data"), "--jobs", "2"],
                stdout=out, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            seen_while_running: list[int] = []
            last_evt2 = tmp_path / "data/6298/primary/hrcf06298N006_evt2.fits.gz"
            last_done = True
            deadline = time.monotonic() + 180  # a safety net only; nothing is timed
            while proc.poll() is None and time.monotonic() < deadline:
                done = _blocks_done(log.read_text())
                if done and proc.poll() is None:
                    seen_while_running = done
                    last_done = last_evt2.exists()
                    break
                time.sleep(0.05)
            _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    # The first ObsId's block was in the file, whole, while the run was still going ...
    assert seen_while_running and seen_while_running[0] == 1843, seen_while_running
    assert 6298 not in seen_while_running
    # ObsId by ObsId: the first ObsId's data came first, not the last one's largest file.
    assert not last_done
    # ... and in the end every block is there, in the order given.
    assert _blocks_done(log.read_text()) == [1843, 2749, 6298]
