"""The output tree, race-free (issue 20.2) and others' files left alone (20.9).

Every directory below the output directory is opened with O_NOFOLLOW relative to its parent,
every name goes through those descriptors (tree.py): a symlink swapped in for a directory
after the last check is never followed. A file with other hard links is never written
through, and a partial file at a final name that another user owns, or that is read-only,
is left as it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from statedir_support import ours

from chandra_download import transfer
from chandra_download.config import SessionConfig
from chandra_download.engine import Engine
from chandra_download.errors import ObsIdNotFound
from chandra_download.filetypes import Selection
from chandra_download.progress import Reporter
from chandra_download.results import FileResult, ObsIdResult, Status
from chandra_download.retry import Interrupted
from chandra_download.sources.base import Body, RemoteFile, Source
from chandra_download.statedir import PARTIAL, STATE_DIR, Spot
from chandra_download.tree import Tree

OBSID = 1843
FILES = {
    "primary/a.txt": bytes(range(256)) * 300,
    "secondary/deep/b.txt": bytes(range(255, -1, -1)) * 200,
    "c.txt": b"c" * 5000,
}


class _Body(Body):
    def __init__(self, data: bytes, start: int, total: int) -> None:
        self._data, self.start, self.total = data, start, total

    def read(self, n: int) -> bytes:
        out, self._data = self._data[:n], self._data[n:]
        return out


class MemorySource(Source):
    """The same few files for every ObsId asked for."""

    label = "memory://site/"

    def __init__(self, obsids: range | tuple[int, ...] = (OBSID,)) -> None:
        self.obsids = set(obsids)

    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        if obsid not in self.obsids:
            raise ObsIdNotFound(str(obsid))
        return [RemoteFile(r, len(d), f"memory://site/{obsid}/{r}") for r, d in FILES.items()]

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        data = FILES[f.relpath]
        return _Body(data[offset : len(data) if end is None else end], offset, len(data))

    def size(self, f: RemoteFile) -> int:
        return len(FILES[f.relpath])


def _run(
    out: Path, obsids: list[int] | None = None, reporter: Reporter | None = None
) -> list[ObsIdResult]:
    config = SessionConfig(retries=1, backoff=0.01, timeout=5.0, jobs=4)
    source = MemorySource(tuple(obsids or [OBSID]))
    engine = Engine([source], config, reporter or Reporter())
    return engine.run(obsids or [OBSID], Selection(None, None), out)


def _files(results: list[ObsIdResult]) -> dict[str, FileResult]:
    return {fr.relpath: fr for r in results for fr in r.files}


def _files_below(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if not p.is_dir() or p.is_symlink()]


def _swap_for_symlink(directory: Path, outside: Path) -> None:
    """What a rival does: move a directory aside and put a symlink to ``outside`` there."""
    directory.rename(directory.with_name(directory.name + ".aside"))
    directory.symlink_to(outside, target_is_directory=True)


def test_directories_swapped_for_symlinks_after_the_last_check_are_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    real_acquire = transfer.acquire
    swapped: list[str] = []

    def acquire_after_a_swap(part: Path, dir_fd: int | None = None) -> int:
        # Between every check and the first open of a .part: the file's directory and our
        # temporaries' directory become symlinks to a directory outside the tree.
        if not swapped:
            swapped.append(str(part))
            _swap_for_symlink(out / str(OBSID) / "primary", outside)
            _swap_for_symlink(out / STATE_DIR / PARTIAL / str(OBSID), outside)
        return real_acquire(part, dir_fd) if dir_fd is not None else real_acquire(part)

    monkeypatch.setattr(transfer, "acquire", acquire_after_a_swap)
    monkeypatch.setattr(MemorySource, "list_obsid", _only("primary/a.txt", MemorySource.list_obsid))
    files = _files(_run(out))
    assert swapped
    assert _files_below(outside) == []  # nothing written, created or moved outside the tree
    # The bytes went into the directories opened before the swap (moved aside, in the tree).
    fr = files["primary/a.txt"]
    assert fr.status is Status.DOWNLOADED, fr.reason
    aside = out / str(OBSID) / "primary.aside" / "a.txt"
    assert aside.read_bytes() == FILES["primary/a.txt"]


def _only(rel: str, listing: Callable[..., list[RemoteFile]]) -> Callable[..., list[RemoteFile]]:
    def one(self: MemorySource, obsid: int) -> list[RemoteFile]:
        return [f for f in listing(self, obsid) if f.relpath == rel]

    return one


_RACER = textwrap.dedent(
    """
    import os, sys, time
    out, outside, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    open(stop + ".ready", "w").close()
    def tops():
        partial = os.path.join(out, ".chandra-download", "partial")
        for base in (out, partial):
            try:
                names = os.listdir(base)
            except OSError:
                continue
            for n in names:
                if n.isdigit():
                    yield os.path.join(base, n)
                    yield os.path.join(base, n, "primary")
    while not os.path.exists(stop):
        for d in list(tops()):
            aside = d + ".aside"
            try:
                if os.path.islink(d) or not os.path.isdir(d):
                    continue
                os.rename(d, aside)
                os.symlink(outside, d)
                time.sleep(0.001)
                os.unlink(d)
                os.rename(aside, d)
            except OSError:
                pass
    """
)


def test_a_racing_process_swapping_directories_for_symlinks_never_gets_a_byte_outside(
    tmp_path: Path,
) -> None:
    """The issue's race (6 files outside the tree in 62 runs): many runs, each of a new
    ObsId, while another process keeps swapping its directories for symlinks."""
    out, outside, stop = tmp_path / "out", tmp_path / "outside", tmp_path / "stop"
    out.mkdir()
    outside.mkdir()
    racer = subprocess.Popen([sys.executable, "-c", _RACER, str(out), str(outside), str(stop)])
    ready = tmp_path / "stop.ready"
    try:
        while not ready.exists():
            assert racer.poll() is None, "the racer died"
            time.sleep(0.01)
        for obsid in range(100, 300):
            _run(out, [obsid])
            assert _files_below(outside) == [], obsid
    finally:
        stop.touch()
        racer.wait(timeout=30)
    assert _files_below(outside) == []


def test_a_partial_file_at_its_final_name_with_other_hard_links_is_not_written_through(
    tmp_path: Path,
) -> None:
    out, snapshot = tmp_path / "out", tmp_path / "snapshot"
    final = out / str(OBSID) / "primary" / "a.txt"
    final.parent.mkdir(parents=True)
    final.write_bytes(FILES["primary/a.txt"][:30_000])  # CIAO's partial leftover
    os.link(final, snapshot)  # a `cp -al` snapshot of the tree
    fr = _files(_run(out))["primary/a.txt"]
    assert fr.status is Status.RESUMED, fr.reason
    assert final.read_bytes() == FILES["primary/a.txt"]
    assert snapshot.read_bytes() == FILES["primary/a.txt"][:30_000]  # the other link unchanged
    assert final.stat().st_nlink == 1


def test_a_part_file_with_other_hard_links_is_fetched_anew_into_a_part_of_our_own(
    tmp_path: Path,
) -> None:
    out, snapshot = tmp_path / "out", tmp_path / "snapshot"
    part = ours(out, OBSID, "primary/a.txt")
    part.write_bytes(b"x" * 10_000)
    os.link(part, snapshot)
    fr = _files(_run(out))["primary/a.txt"]
    assert fr.status is Status.DOWNLOADED, fr.reason
    assert (out / str(OBSID) / "primary" / "a.txt").read_bytes() == FILES["primary/a.txt"]
    assert snapshot.read_bytes() == b"x" * 10_000


def test_a_directory_replaced_by_a_symlink_after_the_listing_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (out / str(OBSID) / "primary").mkdir(parents=True)
    real_start = transfer.FileJob.start

    def start_after_a_swap(job: transfer.FileJob) -> transfer.Next:
        primary = out / str(OBSID) / "primary"
        if job.fr.relpath == "primary/a.txt" and not primary.is_symlink():
            _swap_for_symlink(primary, outside)
        return real_start(job)

    monkeypatch.setattr(transfer.FileJob, "start", start_after_a_swap)
    files = _files(_run(out))
    fr = files["primary/a.txt"]
    assert fr.status is Status.FAILED
    assert fr.reason is not None and "\n" not in fr.reason
    assert "symlink" in fr.reason and str(out / str(OBSID) / "primary") in fr.reason
    assert _files_below(outside) == []
    assert {r: f.status for r, f in files.items() if r != "primary/a.txt"} == {
        "secondary/deep/b.txt": Status.DOWNLOADED,
        "c.txt": Status.DOWNLOADED,
    }


class _CountingReporter(Reporter):
    """Records how many directory descriptors the session holds as each ObsId ends."""

    def __init__(self) -> None:
        super().__init__()
        self.engine: Engine | None = None
        self.held: list[int] = []
        self._lock = threading.Lock()

    def obsid_done(self, result: ObsIdResult) -> None:
        assert self.engine is not None
        with self._lock:
            self.held.append(len(self.engine.ctx.tree))


def _open_fds(below: Path | None = None) -> int:
    """Descriptors open in this process (``below``: only those of paths under it, so that
    other tests' descriptors closed meanwhile by the garbage collector do not count)."""
    if below is None:
        return len(os.listdir("/proc/self/fd"))
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # (the listing's own descriptor, closed by now)
        held += target == str(below) or target.startswith(str(below) + os.sep)
    return held


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_directory_descriptors_are_closed_per_obsid_and_at_the_end(tmp_path: Path) -> None:
    obsids = list(range(1000, 2000))
    reporter = _CountingReporter()
    config = SessionConfig(retries=1, backoff=0.01, timeout=5.0, jobs=4)
    engine = Engine([MemorySource(range(1000, 2000))], config, reporter)
    reporter.engine = engine
    assert _open_fds(tmp_path) == 0
    results = engine.run(obsids, Selection(None, None), tmp_path)
    assert all(fr.status is Status.DOWNLOADED for r in results for fr in r.files)
    assert sum(len(r.files) for r in results) == len(obsids) * len(FILES)
    # While running: the descriptors of the ObsIds in flight only, never one per ObsId run
    # so far (5,000 here): in flight are those of the 4 workers and of the finisher (8
    # waiting, 8 in batches), 5 directories each; after the run: none left open.
    assert max(reporter.held) < 5 * 4 * 5 + 3 + 1, max(reporter.held)
    assert len(engine.ctx.tree) == 0
    assert _open_fds(tmp_path) == 0


def test_a_descriptor_held_by_a_file_outlives_forget_and_close(tmp_path: Path) -> None:
    tree = Tree()
    spot = Spot(tmp_path, str(OBSID), "primary/a.txt")
    dirs = tree.hold(spot)
    tree.forget(tmp_path, str(OBSID))
    tree.close()
    # Still open, still the file's directories (a closed number could be reused meanwhile).
    assert os.path.samestat(os.fstat(dirs.target_fd), (tmp_path / str(OBSID) / "primary").stat())
    assert os.path.samestat(os.fstat(dirs.partial_fd), spot.partial_dir.stat())
    tree.let_go(dirs)
    for fd in (dirs.target_fd, dirs.partial_fd):
        with pytest.raises(OSError):
            os.fstat(fd)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_finisher_outliving_a_stopped_session_renames_through_its_own_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the finisher is held up: the session closes its tree and returns, the
    finisher then finishes its files into their directories (never a closed descriptor)."""
    entered, gate = threading.Event(), threading.Event()

    def held_up(point: str) -> None:
        entered.set()
        gate.wait(30)

    def ctrl_c_once_held_up(engine: Engine) -> None:
        # (on the session's own thread, in its waiting loop: where a Ctrl-C lands)
        if entered.is_set():
            raise KeyboardInterrupt

    monkeypatch.setattr("chandra_download.finisher._crashpoint.delay", held_up)
    monkeypatch.setattr(Engine, "_tell_waits", ctrl_c_once_held_up)
    before = _open_fds(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    finishers = [t for t in threading.enumerate() if t.name.startswith("finisher-")]
    gate.set()
    for t in finishers:
        t.join(30)
    for rel, data in FILES.items():
        assert (tmp_path / str(OBSID) / rel).read_bytes() == data, rel
        assert not ours(tmp_path, OBSID, rel).exists(), rel
    assert (
        _open_fds(tmp_path) == before
    )  # each file let its directories go; the last one closed them


def _a_partial_left(out: Path) -> Path:
    final = out / str(OBSID) / "primary" / "a.txt"
    final.parent.mkdir(parents=True)
    final.write_bytes(FILES["primary/a.txt"][:30_000])
    return final


def _left_alone(out: Path, final: Path, said: str) -> None:
    before = final.stat()
    files = _files(_run(out))
    fr = files["primary/a.txt"]
    assert fr.status is Status.SKIPPED
    assert fr.reason is not None and "\n" not in fr.reason
    assert said in fr.reason and str(final) in fr.reason and "left alone" in fr.reason
    after = final.stat()
    assert final.read_bytes() == FILES["primary/a.txt"][:30_000]
    assert (after.st_ino, after.st_uid, after.st_mode) == (
        before.st_ino,
        before.st_uid,
        before.st_mode,
    )
    assert not ours(out, OBSID, "primary/a.txt").exists()  # nothing of ours left for it
    assert files["c.txt"].status is Status.DOWNLOADED  # the rest of the run completes
    assert files["secondary/deep/b.txt"].status is Status.DOWNLOADED


def test_a_read_only_partial_file_is_left_alone(tmp_path: Path) -> None:
    final = _a_partial_left(tmp_path)
    final.chmod(0o444)
    _left_alone(tmp_path, final, "read-only")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file of another user")
def test_another_users_partial_file_is_left_alone(tmp_path: Path) -> None:
    final = _a_partial_left(tmp_path)
    os.chown(final, 54321, 54321)
    _left_alone(tmp_path, final, "belongs to another user (uid 54321)")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_stop_after_the_lock_lets_the_lock_and_directories_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted while asking the size under the lock (a HEAD's retry wait when Ctrl-C
    comes): the lock is let go (a later run in this process would wait on it forever), its
    empty .part removed, its directories let go."""
    real = transfer.FileJob._learn_size
    calls: list[str] = []

    def stopped_under_the_lock(job: transfer.FileJob, disk: object) -> None:
        calls.append(job.fr.relpath)
        if job.fd >= 0:  # (the second look: under the lock)
            raise Interrupted()
        real(job, disk)  # type: ignore[arg-type]

    monkeypatch.setattr(transfer.FileJob, "_learn_size", stopped_under_the_lock)
    monkeypatch.setattr(MemorySource, "list_obsid", _only("c.txt", MemorySource.list_obsid))
    before = _open_fds(tmp_path)
    fr = _files(_run(tmp_path))["c.txt"]
    assert fr.status is Status.INTERRUPTED and len(calls) == 2
    assert not ours(tmp_path, OBSID, "c.txt").exists()
    assert _open_fds(tmp_path) == before
