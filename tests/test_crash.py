"""Crash consistency: a download SIGKILLed at any moment is completed by the next run.

Seeded kills at random moments of real runs (child processes), and kills at the exact moments
between the last byte written and the rename (the ``CHANDRA_DOWNLOAD_TEST_KILL`` hook of
``chandra_download._crashpoint``); then state files in every condition a crash, a disk or a
person can leave. After each, one run without a kill must exit 0 and leave exactly the
archive's files, byte for byte, with no ``.part``, state, temporary or lock file anywhere.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
from crash_support import (
    EVT1,
    EVT2,
    OBSID,
    OIF,
    SPLIT,
    archive_bytes,
    archive_files,
    archive_fixture,
    command,
    disk_bytes,
    http_fixture,
    kill_once_written,
    mismatches,
    outside_obsid,
    run,
    serve,
    spawn,
    tree,
)
from statedir_support import ours

from chandra_download import download
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.simulator.http_response import ResponseHandler
from chandra_download.simulator.link import LinkModel

KILLS = 12  # at least this many real SIGKILLs per random-kill run
# Every request waits this long, so a run lasts ~1.5 s while its transfers stay fast: much of a
# file's life is then spent between its last byte and its rename (checks, fsync), where the
# kills must land too.
LATENCY = 0.05


root = archive_fixture("crash-archive")
http = http_fixture()


def finish_and_check(root: Path, site: str | list[str], out: Path, *args: str) -> None:
    """One run without a kill: exit 0, the archive's bytes exactly, nothing left over."""
    done = run(command(site, out, "-j", "4", *args))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "internal error" not in output and "Traceback" not in output, output
    assert mismatches(root, out) == []
    assert outside_obsid(out) == []


def kill_repeatedly(cmds: list[list[str]], out: Path, total: int, seed: int, kills: int) -> int:
    """Start the commands in turn, again and again, SIGKILLing each run once it has written a
    seeded random number of bytes below ``out`` (a condition, not a clock: under load a run
    may take seconds to write its first byte), until ``kills`` runs were really killed (at
    most 4 * kills starts); the kills. Each run may write at most a small share of the
    ``total`` bytes before its kill, so the kills do not run out of work to interrupt."""
    rng = random.Random(seed)
    killed = 0
    for i in range(4 * kills):
        if killed >= kills:
            break
        before = disk_bytes(out)
        most = max(2, min(total // (2 * kills), (total - before) // 2))
        proc = spawn(cmds[i % len(cmds)])
        if kill_once_written(proc, out, before + rng.randint(1, most)):
            killed += 1
        else:
            _take_a_file_away(out, rng)
    return killed


def _take_a_file_away(out: Path, rng: random.Random) -> None:
    """A run ended before its kill (it had less left to write than its kill waited for, as
    when it only had whole partial files to move into place): one seeded complete file goes,
    so that the next runs have bytes to write while they are killed."""
    done = sorted(tree(out / str(OBSID)).values())
    if done:
        rng.choice(done).unlink()


# -- seeded SIGKILLs at random moments --------------------------------------------------------
@pytest.mark.parametrize(
    ("protocol", "splits", "seed"),
    [
        pytest.param("http", ["16K"], 1, id="http-split"),
        pytest.param("http", ["0"], 2, id="http-whole"),
        # Killed while splitting, resumed by a run that does not split, and back: the state
        # of one mode is understood (or discarded) by the other, never trusted blindly.
        pytest.param("http", [SPLIT, "0"], 3, id="http-alternating"),
        pytest.param("ftp", [SPLIT], 4, id="ftp-split"),
    ],
)
def test_random_kills_then_one_clean_run(
    root: Path, tmp_path: Path, protocol: str, splits: list[str], seed: int
) -> None:
    out = tmp_path / "out"
    with serve(protocol, root, LinkModel(latency=LATENCY)) as site:
        cmds = [command(site, out, "-j", "4", "--split-size", s, "--retries", "1") for s in splits]
        assert kill_repeatedly(cmds, out, archive_bytes(root), seed, KILLS) >= KILLS
        assert (out / str(OBSID)).is_dir()  # the kills landed while files were being written
        finish_and_check(root, site, out, "--split-size", splits[0])


# -- the window between the last byte and the rename, hit deterministically -------------------
WINDOWS = [
    ("http", "part-written", OIF, "0", ("part",)),
    ("http", "part-written", EVT1, "0", ("part",)),
    ("http", "parts-done", EVT1, SPLIT, ("part", "state")),
    # The state file goes before the rename (a lone full .part is contiguous): after it, the
    # final file alone is there, its directory not yet flushed.
    ("http", "renamed", EVT1, SPLIT, ("",)),
    ("http", "renamed", OIF, "0", ("",)),
    ("ftp", "part-written", OIF, "0", ("part",)),
    ("ftp", "parts-done", EVT1, SPLIT, ("part", "state")),
    ("s3", "part-written", OIF, "0", ("part",)),
    ("s3", "parts-done", EVT1, SPLIT, ("part", "state")),
]


@pytest.mark.parametrize(
    ("protocol", "point", "name", "split", "left"),
    [pytest.param(*w, id=f"{w[0]}-{w[1]}-{Path(w[2]).name[:8]}") for w in WINDOWS],
)
def test_kill_between_last_byte_and_rename(
    root: Path,
    tmp_path: Path,
    protocol: str,
    point: str,
    name: str,
    split: str,
    left: tuple[str, ...],
) -> None:
    out = tmp_path / "out"
    target = out / str(OBSID) / name
    hook = {"CHANDRA_DOWNLOAD_TEST_KILL": f"{point}:*{Path(name).name}"}
    with serve(protocol, root) as site:
        killed = run(command(site, out, "-j", "4", "--split-size", split), env=hook)
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        size = archive_files(root)[name].stat().st_size
        for kind in left:  # the crash left the file exactly in the window named by the point
            assert (ours(out, OBSID, name, kind) if kind else target).exists(), kind
        if point != "renamed":
            assert not target.exists()
            assert ours(out, OBSID, name).stat().st_size == size
        finish_and_check(root, site, out, "--split-size", split)


# -- the repros and state files in any condition ----------------------------------------
def _downloaded(http: ArchiveHTTPServer, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    results = download(OBSID, mirror=http.base_url, outdir=out, jobs=4, split_threshold=0)
    assert results.ok, results.summary()
    return out


def test_split_file_with_every_part_done_is_finished(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    """Issue 12, failure 1: ``mv F F.part`` + a state with every part done, then a re-run."""
    out = _downloaded(http, tmp_path)
    target = out / str(OBSID) / EVT1
    n = target.stat().st_size
    h = n // 2
    target.rename(ours(out, OBSID, EVT1))
    done = {"relpath": EVT1, "size": n, "parts": [[0, h, h], [h, n, n - h]]}
    ours(out, OBSID, EVT1, "state").write_text(json.dumps(done))
    finish_and_check(root, http.base_url, out, "--split-size", SPLIT)


def test_a_state_temporary_left_by_a_kill_during_a_save_is_removed(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    """Killed between writing ``<name>.part.parts.tmp`` and renaming it: seen in the soak."""
    out = _downloaded(http, tmp_path)
    target = out / str(OBSID) / EVT1
    n = target.stat().st_size
    target.rename(ours(out, OBSID, EVT1))
    stale = {"relpath": EVT1, "size": n + 1, "parts": [[0, n + 1, 0]]}  # discarded
    ours(out, OBSID, EVT1, "state").write_text(json.dumps(stale))
    ours(out, OBSID, EVT1, "state_tmp").write_text('{"size": ')
    finish_and_check(root, http.base_url, out, "--split-size", "0")  # no later save reuses it


@pytest.mark.parametrize(
    ("protocol", "name", "split"),
    [
        pytest.param("http", OIF, "0", id="http-small-whole"),
        pytest.param("http", EVT1, "0", id="http-big-whole"),
        pytest.param("http", EVT1, SPLIT, id="http-big-split"),
        pytest.param("ftp", OIF, "0", id="ftp-small-whole"),
        pytest.param("s3", OIF, "0", id="s3-small-whole"),
        pytest.param("s3", EVT1, SPLIT, id="s3-big-split"),
    ],
)
def test_full_size_part_without_final_file_is_finished(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, protocol: str, name: str, split: str
) -> None:
    """Issue 12, failure 2: a complete ``.part`` (killed before its rename) and no final file
    must not turn into an endless ``Range: bytes=<size>-`` / 416 loop."""
    out = _downloaded(http, tmp_path)
    target = out / str(OBSID) / name
    target.rename(ours(out, OBSID, name))
    with serve(protocol, root) as site:
        finish_and_check(root, site, out, "--split-size", split, "--retries", "1")


def test_full_size_part_with_a_server_that_hides_the_size_on_416(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure 2 as seen: ``Range: bytes=<size>-`` answered 416 with no ``Content-Range``
    (the size is then learnt otherwise, or the file fetched again), never a loop of 416s."""
    original = ResponseHandler._error

    def no_total(self, code: int, text: str = "", headers=None) -> None:
        original(self, code, text, None if code == 416 else headers)

    monkeypatch.setattr(ResponseHandler, "_error", no_total)
    out = _downloaded(http, tmp_path)
    target = out / str(OBSID) / OIF
    target.rename(ours(out, OBSID, OIF))
    finish_and_check(root, http.base_url, out, "--split-size", "0", "--retries", "1")


def _state_cases(n: int) -> dict[str, tuple[str, int]]:
    """{case: (state file text, bytes of the correct .part beside it)} for a file of n bytes."""
    h = n // 2
    good = {"relpath": EVT1, "size": n, "parts": [[0, h, h], [h, n, 0]]}
    return {
        "all-done": (
            json.dumps({"relpath": EVT1, "size": n, "parts": [[0, h, h], [h, n, n - h]]}),
            n,
        ),
        "half-done": (json.dumps(good), h),
        "stale-size": (
            json.dumps({"relpath": EVT1, "size": n + 5000, "parts": [[0, h, h], [h, n + 5000, 0]]}),
            h,
        ),
        "truncated": (json.dumps(good)[:17], h),
        "invalid": ("this is not JSON {", h),
        "empty": ("", h),
        "wrong-types": (json.dumps({"relpath": EVT1, "size": "big", "parts": "all of them"}), h),
        "wrong-item-types": (
            json.dumps({"relpath": EVT1, "size": n, "parts": [[0, "h", None], {"a": 1}]}),
            h,
        ),
        "not-an-object": (json.dumps([n, [[0, h, h]]]), h),
        "parts-beyond-size": (
            json.dumps({"relpath": EVT1, "size": n, "parts": [[0, h, h], [h, n + 9, n]]}),
            n,
        ),
        "negative": (
            json.dumps({"relpath": EVT1, "size": n, "parts": [[-10, h, h + 10], [h, n, 0]]}),
            h,
        ),
        "overlapping": (
            json.dumps({"relpath": EVT1, "size": n, "parts": [[0, h, h], [10, n, n - 10]]}),
            n,
        ),
        "claims-more-than-on-disk": (
            json.dumps({"relpath": EVT1, "size": n, "parts": [[0, h, h], [h, n, 9]]}),
            h,
        ),
        "nan-and-huge": ('{"size": NaN, "parts": [[0, 1e308, 1e308]]}', h),
        "another-file": (json.dumps({**good, "relpath": OIF}), h),
        "no-relpath": (json.dumps({"size": n, "parts": good["parts"]}), h),
    }


@pytest.mark.parametrize("case", list(_state_cases(100)))
def test_state_file_in_any_condition(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, case: str
) -> None:
    """Issue 12, rule 2: finished, resumed or discarded; never an internal error."""
    out = tmp_path / "out"
    source = archive_files(root)[EVT1]
    data = source.read_bytes()
    text, have = _state_cases(len(data))[case]
    ours(out, OBSID, EVT1).write_bytes(data[:have])
    ours(out, OBSID, EVT1, "state").write_text(text)
    finish_and_check(root, http.base_url, out, "--split-size", SPLIT, "--retries", "1")


def test_interrupted_whole_then_killed_split(http: ArchiveHTTPServer, root: Path, tmp_path: Path):
    """Partial ``.part`` files of a whole-file run (no state file) taken on by a split run,
    killed with every part done, then finished by a run that does not split."""
    out = tmp_path / "out"
    files = archive_files(root)
    for name in (EVT1, EVT2):
        ours(out, OBSID, name).write_bytes(files[name].read_bytes()[:300_000])
    hook = {"CHANDRA_DOWNLOAD_TEST_KILL": "parts-done:*evt2*"}
    run(command(http.base_url, out, "-j", "4", "--split-size", SPLIT), env=hook)
    finish_and_check(root, http.base_url, out, "--split-size", "0")
