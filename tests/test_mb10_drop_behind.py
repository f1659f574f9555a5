"""A whole file's bytes handed to writeback as they are written, and dropped from the page
cache once written (stream.Copy.drop_behind), only where the file is to be fsynced; the
bytes on disk the same, and nothing changed where the advice is missing or refused."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest
from test_transfer_core import OBSID, ScriptedSource, _Body

from chandra_download import stream
from chandra_download.config import SessionConfig
from chandra_download.engine import Engine
from chandra_download.filetypes import Selection
from chandra_download.progress import Reporter
from chandra_download.results import Status
from chandra_download.sources.base import RemoteFile

MiB = 2**20
BIG = random.Random(7).randbytes(10 * MiB + 12345)


def _advised(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Every posix_fadvise call (fd, offset, length), passed on to the real one."""
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        calls.append((fd, offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    return calls


def _copy(tmp_path: Path, drop_behind: int, start: int = 0) -> tuple[Path, int]:
    path = tmp_path / "f.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        pieces = [BIG[i : i + MiB] for i in range(start, len(BIG), MiB)]
        copy = stream.Copy(fd, path, _Body(pieces, start, len(BIG)), 0, None, threading.Event(),
                           stream.RateGuard(0, 60), MiB, lambda n, pos: None,
                           drop_behind=drop_behind)  # fmt: skip
        return path, copy.run()
    finally:
        os.close(fd)


pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="Linux advice")


def test_written_bytes_go_to_writeback_then_leave_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _advised(monkeypatch)
    path, pos = _copy(tmp_path, 4 * MiB)
    assert pos == len(BIG) and path.read_bytes() == BIG
    ranges = [(off, off + n) for _fd, off, n in calls]
    # Every 4 MiB: the new bytes, and again those handed over the time before (written by
    # now: dropped), so every byte before the last hand-over is advised twice.
    assert ranges == [(0, 4 * MiB), (0, 8 * MiB)]


def test_a_resume_hands_over_only_its_own_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _advised(monkeypatch)
    _path, pos = _copy(tmp_path, 2 * MiB, start=3 * MiB)
    assert pos == len(BIG)
    assert [off for _fd, off, _n in calls][:2] == [3 * MiB, 3 * MiB]
    assert all(off >= 3 * MiB for _fd, off, _n in calls)


def test_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _advised(monkeypatch)
    assert _copy(tmp_path, 0)[1] == len(BIG)
    assert calls == []


@pytest.mark.parametrize("how", ["missing", "refused"])
def test_advice_missing_or_refused_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "missing":
        monkeypatch.delattr(os, "posix_fadvise")
    else:

        def refuse(*_args: object) -> None:
            raise OSError(22, "Invalid argument")

        monkeypatch.setattr(os, "posix_fadvise", refuse)
    path, pos = _copy(tmp_path, MiB)
    assert pos == len(BIG) and path.read_bytes() == BIG


class _BigSource(ScriptedSource):
    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        return [RemoteFile("big.txt", len(BIG), "scripted://site/big.txt", len(BIG))]


def _download(tmp_path: Path, fsync: bool) -> Status:
    def serve(off: int, end: int | None) -> _Body:
        return _Body([BIG[i : i + MiB] for i in range(off, len(BIG), MiB)], off, len(BIG))

    source = _BigSource(serve, len(BIG))
    config = SessionConfig(retries=1, backoff=0.01, timeout=5.0, fsync=fsync)
    (result,) = Engine([source], config, Reporter()).run([OBSID], Selection(None, None), tmp_path)
    (fr,) = result.files
    assert fr.status is Status.DOWNLOADED, fr.reason
    assert (tmp_path / str(OBSID) / "big.txt").read_bytes() == BIG
    return fr.status


@pytest.mark.parametrize("fsync", [True, False])
def test_a_download_drops_behind_only_what_it_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    calls = _advised(monkeypatch)
    assert _download(tmp_path, fsync) is Status.DOWNLOADED
    # (--no-fsync: bytes that may be deleted before the kernel writes them are not pushed)
    assert bool(calls) is fsync
