"""A split file's checks and sha256 follow its parts (follow.py, issue 16's 2 GB figure): the
finished prefix is checked while the rest comes, parts are fetched in order, and a follow
whose bytes were written again is dropped for a read-back, never trusted."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from statedir_support import ours

from chandra_download import download, split
from chandra_download.progress import Reporter
from chandra_download.results import FileResult, Status
from chandra_download.simulator import generate_archive, iter_files
from chandra_download.simulator.faults import Fault
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.split import PartsState

OBSID = 1843
BIG = 3_000_000  # the evt1 file (gzip, FITS inside: both checks apply)
MB = 1 << 20


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("follow-archive")
    return generate_archive(root, {OBSID: "acis"}, scale=0.1, sizes={"evt1": BIG})


@pytest.fixture
def server(big_root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(big_root) as srv:
        yield srv


@pytest.fixture
def pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split plans in pieces of 256 KiB: 12 of the 3 MB file on 2 jobs, fetched in order."""
    monkeypatch.setattr(split, "PIECE", 256 * 1024)


def _evt1(root: Path) -> tuple[str, bytes]:
    ((rel, path),) = [(r, p) for r, p in iter_files(root, OBSID) if r.endswith("evt1.fits.gz")]
    return rel, path.read_bytes()


def _opts(**kw: object) -> dict[str, object]:
    base = dict(split_threshold=1_000_000, jobs=2, retries=2, timeout=5.0, backoff=0.01)
    return {**base, **kw}


def _followers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "chandra-download follow"]


def test_a_large_file_is_planned_in_pieces_fetched_in_order() -> None:
    size = 10 * split.PIECE + 5
    parts = PartsState.plan(size, jobs=4, threshold=64 * MB).parts
    # More than jobs: pieces of at most PIECE, in whole rounds of one piece per job (11
    # pieces on 4 jobs would leave 3 of them idle for the last).
    assert len(parts) == 12
    assert all(p.end - p.start <= split.PIECE for p in parts)
    assert parts[0].start == 0 and parts[-1].end == size
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
    # A file below jobs x PIECE keeps one part per job, as before.
    assert len(PartsState.plan(3 * split.PIECE, jobs=4, threshold=64 * MB).parts) == 4
    # The count is bounded, so a state file stays small whatever the file's size.
    huge = PartsState.plan(10**13, jobs=8, threshold=64 * MB).parts
    assert len(huge) == split.MAX_PARTS


def test_a_split_file_is_checked_as_its_parts_come(
    server: ArchiveHTTPServer,
    big_root: Path,
    tmp_path: Path,
    pieces: None,
    read_backs: list[str],
) -> None:
    rel, data = _evt1(big_root)
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert results.ok, results.summary()
    fr = next(f for f in results[0].files if f.relpath == rel)
    assert fr.status is Status.DOWNLOADED
    assert (tmp_path / str(OBSID) / rel).read_bytes() == data
    assert server.stats.get_count(f"*/{rel}") == 12  # one request per piece
    # Checked and hashed as the parts came: never read back whole afterwards.
    assert rel not in read_backs
    assert fr.sha256 == hashlib.sha256(data).hexdigest()
    assert not _followers()


def test_a_damaged_split_file_followed_is_fetched_again(
    server: ArchiveHTTPServer,
    big_root: Path,
    tmp_path: Path,
    pieces: None,
) -> None:
    rel, data = _evt1(big_root)
    server.faults.add(Fault("corrupt", f"*{rel}", times=1, after_bytes=1000))
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert results.ok, results.summary()
    fr = next(f for f in results[0].files if f.relpath == rel)
    assert fr.warning is None  # damage in transit, fetched again: not "kept as served"
    assert (tmp_path / str(OBSID) / rel).read_bytes() == data
    assert fr.sha256 == hashlib.sha256(data).hexdigest()


def test_bytes_written_again_below_the_follow_are_read_back(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path, read_backs: list[str]
) -> None:
    """A resumed part whose bytes on disk differ from the site's is fetched again from its
    start: a follower that already read them must not vouch for the file."""
    rel, data = _evt1(big_root)
    size = len(data)
    # An earlier run's state: part 0 complete, part 1 half done, part 2 not begun.
    parts = [[0, MB, MB], [MB, 2 * MB, MB // 2], [2 * MB, size, 0]]
    state = {"relpath": rel, "size": size, "parts": parts}
    ours(tmp_path, OBSID, rel, "state").write_text(json.dumps(state))
    have = bytearray(data[: MB + MB // 2])
    have[-1] ^= 0xFF  # the last byte part 1 claims (inside its resume's compared bytes)
    ours(tmp_path, OBSID, rel, "part").write_bytes(bytes(have))
    # Each answer waits before its first byte: the follower reads the claimed prefix first.
    server.faults.add(Fault("stall", f"*{rel}", times=None, after_bytes=0, seconds=0.5))
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert results.ok, results.summary()
    fr = next(f for f in results[0].files if f.relpath == rel)
    assert (tmp_path / str(OBSID) / rel).read_bytes() == data
    assert fr.sha256 == hashlib.sha256(data).hexdigest()
    # Part 1 written again from its start, part 2 whole; then the file read back once (the
    # followed checks saw the old byte): no check failed, no whole fetch again.
    assert fr.status is Status.RESUMED and fr.warning is None
    assert fr.bytes_transferred == size - MB
    assert read_backs.count(rel) == 1
    assert not _followers()


def test_a_failed_split_file_leaves_no_follower(
    server: ArchiveHTTPServer,
    big_root: Path,
    tmp_path: Path,
    pieces: None,
) -> None:
    rel, _ = _evt1(big_root)
    # Every part breaks after its first bytes and retries are spent: the file fails with its
    # parts' progress kept, and the followers (caught up, waiting) are let go.
    server.faults.add(Fault("drop", f"*{rel}", times=None, after_bytes=100_000))
    alive: list[int] = []  # followers alive when the file was settled (the session goes on)

    class Settled(Reporter):
        def file_done(self, fr: FileResult) -> None:
            if fr.relpath == rel:
                alive.append(len(_followers()))

    results = download(
        OBSID, mirror=server.base_url, outdir=tmp_path, reporter=Settled(), **_opts(retries=0)
    )
    fr = next(f for f in results[0].files if f.relpath == rel)
    assert fr.status is Status.FAILED
    assert json.loads(ours(tmp_path, OBSID, rel, "state").read_text())["relpath"] == rel
    assert alive == [0]
    assert not _followers()


def test_a_split_file_stopped_midway_leaves_no_follower(
    server: ArchiveHTTPServer,
    big_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pieces: None,
) -> None:
    """The session stops (as on Ctrl-C) once the parts and their followers have begun: the
    followers end with the parts, before the .part is closed; the progress is kept."""
    from chandra_download import parts

    rel, _ = _evt1(big_root)
    server.faults.add(Fault("stall", f"*{rel}", times=None, after_bytes=50_000, seconds=0.5))
    real = parts.RangedParts._first_started
    began: list[int] = []
    timers: list[threading.Timer] = []

    def first_started(self: parts.RangedParts) -> None:
        real(self)
        began.append(len(self._followers))
        # The session's stop (what Ctrl-C sets), once the parts have written some bytes
        # and stall (every answer waits after its first 50 kB).
        timer = threading.Timer(0.25, self.file.retry.stop.set)
        timer.start()
        timers.append(timer)

    monkeypatch.setattr(parts.RangedParts, "_first_started", first_started)
    results = download(OBSID, "evt1", mirror=server.base_url, outdir=tmp_path, **_opts())
    fr = next(f for f in results[0].files if f.relpath == rel)
    assert max(began) == 1  # (its follower had started; other parts may start first)
    for timer in timers:
        timer.join()
    assert fr.status is Status.INTERRUPTED
    state = json.loads(ours(tmp_path, OBSID, rel, "state").read_text())
    assert state["relpath"] == rel and sum(done for _, _, done in state["parts"]) > 0
    assert not _followers()


def test_parts_wait_for_followers_that_fall_behind(
    server: ArchiveHTTPServer,
    big_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    read_backs: list[str],
) -> None:
    """Where the checks cannot keep up, a part starts at most FOLLOW_LEAD beyond what the
    followers have read: they are not left a tail of the whole file once the parts end."""
    from chandra_download import parts, verify

    monkeypatch.setattr(split, "PIECE", 128 * 1024)  # 24 pieces, 2 jobs
    monkeypatch.setattr(parts, "FOLLOW_LEAD", 512 * 1024)
    real_feed = verify.Checker.feed

    def slow_feed(self: verify.Checker, data: bytes | memoryview) -> None:
        time.sleep(0.01)  # (checks far slower than a loopback transfer)
        real_feed(self, data)

    monkeypatch.setattr(verify.Checker, "feed", slow_feed)
    leads: list[int] = []
    real_wait = parts.RangedParts._wait_for_followers

    def waited(self: parts.RangedParts, start: int) -> None:
        real_wait(self, start)
        if self._followers:  # (how far beyond the followers each request began)
            leads.append(start - min(f.pos for f in self._followers))

    monkeypatch.setattr(parts.RangedParts, "_wait_for_followers", waited)
    rel, data = _evt1(big_root)
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert results.ok, results.summary()
    assert (tmp_path / str(OBSID) / rel).read_bytes() == data
    assert rel not in read_backs  # (followed to the end, not read back)
    assert len(leads) > 10 and max(leads) <= parts.FOLLOW_LEAD
