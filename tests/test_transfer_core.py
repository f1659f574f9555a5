"""The transfer core against a scripted source: servers that lie about ranges, trickle bytes,
or send more than the file holds. Each fails on the core before the one-path rebuild."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from statedir_support import ours

from chandra_download.config import SessionConfig
from chandra_download.engine import Engine
from chandra_download.errors import ObsIdNotFound, RangeNotSatisfiable
from chandra_download.filetypes import Selection
from chandra_download.progress import Reporter
from chandra_download.results import FileResult, Status
from chandra_download.sources.base import Body, RemoteFile, Source

OBSID = 1843
NAME = "notes.txt"  # no content check: only the transfer's own checks protect it
DATA = bytes(range(256)) * 400  # 102400 bytes, no two 16 KiB windows alike at other offsets


class _Body(Body):
    def __init__(self, chunks: list[bytes], start: int, total: int | None, pause: float = 0.0):
        self._chunks, self.start, self.total, self._pause = list(chunks), start, total, pause

    def read(self, n: int) -> bytes:
        if self._pause:
            time.sleep(self._pause)
        return self._chunks.pop(0) if self._chunks else b""


class ScriptedSource(Source):
    """One file; ``serve(offset, end)`` decides each response."""

    label = "scripted://site/"

    def __init__(self, serve: Callable[[int, int | None], Body], size: int | None = len(DATA)):
        self.serve, self.file_size, self.opened = serve, size, []

    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        if obsid != OBSID:
            raise ObsIdNotFound(str(obsid))
        return [RemoteFile(NAME, self.file_size, f"scripted://site/{NAME}", len(DATA))]

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        self.opened.append(offset)
        return self.serve(offset, end)

    def size(self, f: RemoteFile) -> int:
        return len(DATA)


def _run(source: Source, out: Path, **options: object) -> FileResult:
    config = SessionConfig(**{"retries": 1, "backoff": 0.01, "timeout": 5.0, **options})
    (result,) = Engine([source], config, Reporter()).run([OBSID], Selection(None, None), out)
    (fr,) = result.files
    return fr


def _honest(offset: int, end: int | None) -> Body:
    stop = len(DATA) if end is None else end
    return _Body([DATA[offset:stop]], offset, len(DATA))


def test_a_lying_content_range_on_resume_is_caught_and_the_file_fetched_again(
    tmp_path: Path,
) -> None:
    part = ours(tmp_path, OBSID, NAME)
    part.write_bytes(DATA[:60_000])
    lies = [True]

    def serve(offset: int, end: int | None) -> Body:
        if lies and offset:
            lies.clear()  # claims to start at `offset`, but its bytes are the file's first ones
            return _Body([DATA[: len(DATA) - offset]], offset, len(DATA))
        return _honest(offset, end)

    source = ScriptedSource(serve)
    fr = _run(source, tmp_path)
    assert fr.status is Status.DOWNLOADED, fr.reason
    assert (tmp_path / str(OBSID) / NAME).read_bytes() == DATA
    assert source.opened[0] < 60_000  # the resume asked for bytes it already had, to compare


def test_an_honest_resume_keeps_the_bytes_on_disk(tmp_path: Path) -> None:
    part = ours(tmp_path, OBSID, NAME)
    part.write_bytes(DATA[:60_000])
    fr = _run(ScriptedSource(_honest), tmp_path)
    assert fr.status is Status.RESUMED, fr.reason
    assert fr.bytes_transferred == len(DATA) - 60_000  # the overlap is compared, not counted
    assert (tmp_path / str(OBSID) / NAME).read_bytes() == DATA


def test_a_trickling_server_fails_at_the_minimum_rate(tmp_path: Path) -> None:
    def serve(offset: int, end: int | None) -> Body:
        return _Body([DATA[i : i + 1] for i in range(offset, len(DATA))], offset, len(DATA), 0.05)

    t0 = time.monotonic()
    fr = _run(ScriptedSource(serve), tmp_path, timeout=1.0, retries=0)
    assert time.monotonic() - t0 < 10
    assert fr.status is Status.FAILED and "too slow" in fr.reason, fr.reason
    assert not (tmp_path / str(OBSID) / NAME).exists()


@pytest.mark.parametrize("total", [len(DATA), None], ids=["announced", "unannounced"])
def test_a_body_longer_than_the_file_is_cut_and_fails(tmp_path: Path, total: int | None) -> None:
    sent = [0]

    def serve(offset: int, end: int | None) -> Body:
        endless = [DATA[offset:]] + [b"x" * 65536] * 10_000  # 650 MB if it were all read
        body = _Body(endless, offset, total)
        real_read = body.read

        def read(n: int) -> bytes:
            data = real_read(n)
            sent[0] += len(data)
            return data

        body.read = read  # type: ignore[method-assign]
        return body

    fr = _run(ScriptedSource(serve), tmp_path, retries=0)
    assert fr.status is Status.FAILED and "more than" in fr.reason, fr.reason
    assert sent[0] < len(DATA) + 2 * 65536  # stopped at the file's size, not at the server's
    assert not (tmp_path / str(OBSID) / NAME).exists()


def test_a_full_part_left_by_a_crash_is_finished_without_asking_past_its_end(
    tmp_path: Path,
) -> None:
    part = ours(tmp_path, OBSID, NAME)
    part.write_bytes(DATA)

    def serve(offset: int, end: int | None) -> Body:
        if offset >= len(DATA):
            raise RangeNotSatisfiable("past the end", len(DATA))
        return _honest(offset, end)

    fr = _run(ScriptedSource(serve), tmp_path)
    assert fr.status is Status.RESUMED, fr.reason
    assert (tmp_path / str(OBSID) / NAME).read_bytes() == DATA
    assert not part.exists()


def test_retries_are_reported_to_the_display(tmp_path: Path) -> None:
    from chandra_download.errors import TransientError

    failures = [TransientError("connection reset")]

    def serve(offset: int, end: int | None) -> Body:
        if failures:
            raise failures.pop()
        return _honest(offset, end)

    heard: list[tuple[int, str]] = []
    lock = threading.Lock()

    class Listener(Reporter):
        def file_retry(self, fr: FileResult, attempt: int, delay: float, reason: str) -> None:
            with lock:
                heard.append((attempt, reason))

    config = SessionConfig(retries=2, backoff=0.01, timeout=5.0)
    engine = Engine([ScriptedSource(serve)], config, Listener())
    (result,) = engine.run([OBSID], Selection(None, None), tmp_path)
    assert result.files[0].status is Status.DOWNLOADED
    assert heard == [(2, "connection reset")]


def test_a_retry_is_logged_once_at_verbose_3(archive_http, tmp_path: Path) -> None:
    import io

    from chandra_download import download, set_verbosity
    from chandra_download.simulator import Fault

    log = io.StringIO()
    set_verbosity(3, log)
    archive_http.faults.add(Fault("drop", "*evt2*", after_bytes=1000))
    download(1843, "evt2", archive_http.base_url, outdir=tmp_path, backoff=0.01, status=False)
    retries = [line for line in log.getvalue().splitlines() if "retry" in line]
    assert len(retries) == 1 and "retry 2 in" in retries[0], retries


def test_split_parts_answered_with_bytes_from_elsewhere_are_caught(
    archive_http, archive_root, tmp_path: Path
) -> None:
    """Fresh parts have nothing on disk to compare: each asks for the previous part's last
    bytes too, and they must join. A .jpg has no content check to catch it otherwise."""
    from chandra_download import download
    from chandra_download.simulator import Fault

    rel = "primary/acisf01843N005_full_img2.jpg"
    archive_http.faults.add(Fault("lying_range", f"*{rel}", times=None))
    results = download(
        1843, "full_img", archive_http.base_url, outdir=tmp_path, split_threshold=16_384,
        jobs=4, retries=1, backoff=0.01, status=False,
    )  # fmt: skip
    (fr,) = [f for f in results.files if f.relpath == rel]
    assert fr.ok, fr.reason
    got = (tmp_path / "1843" / rel).read_bytes()
    assert got == (archive_root / "byobsid/3/1843" / rel).read_bytes()


def test_a_file_with_no_size_anywhere_is_sized_first_and_cut_there(tmp_path: Path) -> None:
    class NoSizes(ScriptedSource):
        def list_obsid(self, obsid: int) -> list[RemoteFile]:
            return [RemoteFile(NAME, None, f"scripted://site/{NAME}", None)]  # listing: "-"

    def serve(offset: int, end: int | None) -> Body:  # no Content-Length, never ends
        return _Body([DATA[offset:]] + [b"x" * 65536] * 10_000, offset, None)

    fr = _run(NoSizes(serve), tmp_path, retries=0)
    assert fr.status is Status.FAILED and "more than" in fr.reason, fr.reason
    assert not (tmp_path / str(OBSID) / NAME).exists()
