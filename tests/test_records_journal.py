"""Records survive a SIGKILL (issue 16.2): each file is journaled the moment it is done, so a
run killed before its end leaves a record of the files it finished, and a change in place at
the archive of one of them is told by the next run. The journal's mechanics: a torn last line
is ignored, rival processes' lines are all kept, the session's end folds it into the record."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from crash_support import JPG, OBSID, child_env, command, make_archive

from chandra_download import download
from chandra_download.record import (
    RecordBook,
    journal_path,
    load,
    record_path,
    record_session,
)
from chandra_download.results import FileResult, ObsIdResult, Status
from chandra_download.simulator import change_in_place
from chandra_download.simulator.http import ArchiveHTTPServer

CHANGED = "changed at the archive since it was fetched"
#: Each finisher batch first sleeps this long: the run lasts long enough to be killed.
SLOW = {"CHANDRA_DOWNLOAD_TEST_DELAY": "finishing:0.3"}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_once_journaled(proc: subprocess.Popen, journal: Path, rel: str) -> bool:
    """SIGKILL ``proc`` once ``journal`` names ``rel``; True when it was still running."""
    end = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < end:
        try:
            if f'"relpath":"{rel}"'.encode() in journal.read_bytes():
                proc.kill()
                proc.wait(30)
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    proc.kill()
    proc.wait(30)
    return False


def test_a_killed_runs_finished_files_are_recorded(tmp_path: Path) -> None:
    root = make_archive(tmp_path / "archive")
    out = tmp_path / "out"
    with ArchiveHTTPServer(root) as http:
        cmd = command(http.base_url, out, "--pipeline-depth", "1", "-j", "2")
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(SLOW)
        )
        assert _kill_once_journaled(proc, journal_path(out, OBSID), JPG)  # killed mid-run
        assert not record_path(out, OBSID).exists()  # the end of the session never came
        recs = load(out, OBSID)
        local = out / str(OBSID) / JPG
        assert recs[JPG].sha256 == sha(local) and recs[JPG].size == local.stat().st_size
        for rel, rec in recs.items():  # every line is of a file done: whole, in place
            assert rec.sha256 == sha(out / str(OBSID) / rel), rel

        at_archive = change_in_place(root, OBSID, JPG)
        res = download([OBSID], mirror=http.base_url, outdir=out, status=False)
    assert res.ok
    fr = next(f for f in res.files if f.relpath == JPG)
    assert fr.status is Status.DOWNLOADED and fr.changed and CHANGED in fr.changed
    assert sha(local) == sha(at_archive)
    # The session's end folded the journal into the record.
    assert not journal_path(out, OBSID).exists()
    assert load(out, OBSID)[JPG].sha256 == sha(at_archive)


def _done_file(out: Path, rel: str, data: bytes) -> FileResult:
    path = out / str(OBSID) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    fr = FileResult(OBSID, rel, f"http://site/{rel}", path, None)
    fr.status, fr.sha256, fr.size = Status.DOWNLOADED, hashlib.sha256(data).hexdigest(), len(data)
    return fr


def test_journal_lines_of_rivals_are_kept_and_a_torn_line_ignored(tmp_path: Path) -> None:
    out = tmp_path / "out"
    one, two = _done_file(out, "a.txt", b"a" * 10), _done_file(out, "b/c.txt", b"c" * 20)
    RecordBook().journal(one, (out / "1843" / "a.txt").stat(), True)
    RecordBook().journal(two, (out / "1843" / "b/c.txt").stat(), True)  # another process
    with open(journal_path(out, OBSID), "ab") as fh:
        fh.write(b'{"relpath":"torn.txt","size":3,"sha')  # killed mid-line
    recs = load(out, OBSID)
    assert set(recs) == {"a.txt", "b/c.txt"} and recs["b/c.txt"].size == 20
    assert recs["a.txt"].describes(out / "1843" / "a.txt")


def test_the_sessions_end_folds_the_journal_into_the_record(tmp_path: Path) -> None:
    out = tmp_path / "out"
    killed = _done_file(out, "a.txt", b"a" * 10)  # journaled by a run killed since
    RecordBook().journal(killed, (out / "1843" / "a.txt").stat(), True)
    now = _done_file(out, "b.txt", b"b" * 5)
    r = ObsIdResult(OBSID)
    r.found, r.files = True, [now]
    record_session(out, [r], verify=True, fsync=False)
    assert not journal_path(out, OBSID).exists()
    assert record_path(out, OBSID).exists() and set(load(out, OBSID)) == {"a.txt", "b.txt"}
