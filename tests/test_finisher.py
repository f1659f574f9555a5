"""The finisher (issue 19.2): fsync and rename off the transfer slot, in the durable order."""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from finisher_support import LoggedJob

from chandra_download import download
from chandra_download import transfer as transfer_mod
from chandra_download.finisher import Finisher
from chandra_download.progress import Reporter
from chandra_download.results import Status
from chandra_download.simulator import generate_archive, iter_files
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.sources.http import HTTPSource
from chandra_download.statedir import Spot

OBSID = 1843
FAST = dict(retries=0, timeout=10.0, backoff=0.01, split_threshold=0)
NEEDS_PROC = pytest.mark.skipif(
    not Path("/proc/self/fd").exists(), reason="needs /proc to name descriptors"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_archive(tmp_path_factory.mktemp("finisher-archive"), {OBSID: "acis"}, scale=0.1)


@pytest.fixture
def server(root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(root) as srv:
        yield srv


def _named(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@NEEDS_PROC
def test_the_worker_sends_its_next_request_while_the_last_file_is_fsynced(
    server: ArchiveHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker, one request at a time: the first file's fsync waits until a GET for
    another file starts. Were the fsync still in the transfer slot, no GET could start
    meanwhile and the fsync would wait out its 10 s and say so."""
    real_fsync, real_open = os.fsync, HTTPSource.open
    opened = threading.Event()
    blocked: list[str] = []
    outcome: list[bool] = []

    def fsync(fd: int) -> None:
        if not blocked and _named(fd).endswith(".part"):
            blocked.append(_named(fd))
            outcome.append(opened.wait(10))  # True: a GET started during this fsync
        real_fsync(fd)

    def open_(self, f, offset=0, end=None):  # type: ignore[no-untyped-def]
        if blocked:
            opened.set()
        return real_open(self, f, offset, end)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(HTTPSource, "open", open_)
    out = tmp_path / "out"
    res = download(OBSID, mirror=server.base_url, outdir=out, jobs=1, pipeline_depth=1, **FAST)
    assert res.ok
    assert outcome == [True]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str]]:
    """fsyncs, renames, lock releases and reports of done files, in the order they happen."""
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()
    real_fsync, real_rename, real_release = os.fsync, os.rename, transfer_mod.release
    real_done = Reporter.file_done

    def note(kind: str, what: str) -> None:
        with lock:
            seen.append((kind, what))

    def fsync(fd: int) -> None:
        real_fsync(fd)
        note("fsync", _named(fd))

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):  # type: ignore[no-untyped-def]
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        # (by open directories: tree.py) named as full paths
        src = src if src_dir_fd is None else f"{_named(src_dir_fd)}/{src}"
        dst = dst if dst_dir_fd is None else f"{_named(dst_dir_fd)}/{dst}"
        note("replace", f"{src} -> {dst}")

    def release(fd: int) -> None:
        note("release", _named(fd))
        real_release(fd)

    def file_done(self, fr):  # type: ignore[no-untyped-def]
        note("done", str(fr.path))
        real_done(self, fr)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(transfer_mod, "release", release)
    monkeypatch.setattr(Reporter, "file_done", file_done)
    return seen


@NEEDS_PROC
def test_fsync_rename_directory_fsync_then_done_with_the_lock_held_throughout(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path, events: list[tuple[str, str]]
) -> None:
    out = tmp_path / "out"
    assert download(OBSID, mirror=server.base_url, outdir=out, **FAST).ok
    for rel, _ in iter_files(root, OBSID):
        final = out / str(OBSID) / rel
        part = str(Spot(out, str(OBSID), rel).part)
        renamed = events.index(("replace", f"{part} -> {final}"))
        flushed = events.index(("fsync", part))
        done = events.index(("done", str(final)))
        released = events.index(("release", str(final)))  # (the fd now names the final file)
        dir_synced = [i for i, e in enumerate(events) if e == ("fsync", str(final.parent))]
        assert flushed < renamed < released, rel  # no moment with neither lock nor file
        assert any(renamed < i < done for i in dir_synced), rel
        assert released < done, rel


def test_a_batch_fsyncs_each_directory_once_after_every_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[tuple[str, int]] = []
    monkeypatch.setattr("chandra_download.finisher.fsync_at", lambda d: log.append(("dir", d)))
    gate = threading.Event()
    monkeypatch.setattr("chandra_download.finisher._crashpoint.delay", lambda point: gate.wait(10))
    finisher = Finisher(depth=16, threads=1)
    jobs = [LoggedJob(3, log, n) for n in range(6)]
    for job in jobs:
        finisher.take(job)  # type: ignore[arg-type]
    gate.set()
    assert finisher.close(10) == []
    # Batches: every file's move, one fsync of their directory, every file's done. The first
    # batch held one file or more; the rest waited behind the gate and came as one.
    shape = "".join({"move": "m", "dir": "d", "done": "x"}[k] for k, _ in log)
    batches = re.findall(r"(m+)d(x+)", shape)
    assert "".join(m + "d" + x for m, x in batches) == shape
    assert all(len(m) == len(x) for m, x in batches)
    assert sum(len(m) for m, _ in batches) == 6
    assert len(batches) <= 2


def test_a_file_taken_after_close_is_finished_at_once_by_its_worker(tmp_path: Path) -> None:
    log: list[tuple[str, int]] = []
    finisher = Finisher(depth=2, threads=1)
    assert finisher.close(10) == []
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        finisher.take(LoggedJob(dir_fd, log, 7))  # type: ignore[arg-type]
    finally:
        os.close(dir_fd)
    assert log == [("move", 7), ("done", 7)]


@NEEDS_PROC
def test_a_full_disk_at_the_fsync_keeps_the_bytes_for_the_next_run(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real_fsync = os.fsync
    refused: list[str] = []

    def fsync(fd: int) -> None:
        if not refused and _named(fd).endswith(".part"):
            refused.append(_named(fd))
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    res = download(OBSID, mirror=server.base_url, outdir=out, jobs=2, **FAST)
    (failed,) = [f for f in res.files if str(Spot.of(f).part) == refused[0]]
    assert failed.status is Status.FAILED, failed.reason
    part = Spot.of(failed).part
    want = dict(iter_files(root, OBSID))[failed.relpath].read_bytes()
    assert part.read_bytes() == want  # every byte kept, unrenamed
    assert not failed.path.exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    again = download(OBSID, mirror=server.base_url, outdir=out, jobs=2, **FAST)
    assert again.ok
    assert failed.path.read_bytes() == want
    assert not part.exists()


def test_a_ctrl_c_while_the_finisher_starts_leaves_no_thread_waiting(monkeypatch) -> None:
    """A KeyboardInterrupt between its threads' starts (a Ctrl-C at that moment) ends the
    threads already started instead of leaving them waiting for work for good."""
    real, started = threading.Thread.start, []

    def start(self: threading.Thread) -> None:
        if self.name.startswith("finisher-") and started:
            raise KeyboardInterrupt
        real(self)
        started.append(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(KeyboardInterrupt):
        Finisher(depth=4, threads=3)
    assert len(started) == 1
    started[0].join(5)
    assert not started[0].is_alive()
