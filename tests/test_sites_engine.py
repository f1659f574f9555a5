"""The engine's one queue: ``jobs`` bounds every connection to a site, listings included;
ObsIds are worked in the order given; a failed listing page is retried on its own."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chandra_download.api import download
from chandra_download.config import SessionConfig
from chandra_download.engine import Engine
from chandra_download.filetypes import Selection
from chandra_download.progress import Reporter
from chandra_download.simulator import ArchiveHTTPServer, LinkModel, generate_archive, iter_files
from chandra_download.simulator.ftp import ArchiveFTPServer
from chandra_download.sources.base import (
    MAX_PAGES,
    ListingPage,
    PageRef,
    RemoteFile,
    Source,
)
from chandra_download.sources.local import LocalSource

OBSIDS = [1843, 2749, 6298, 3002, 4001, 5005, 7007, 8008]
FAST = {"backoff": 0.01, "backoff_max": 0.05}


@pytest.fixture(scope="module")
def many_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_archive(tmp_path_factory.mktemp("many"), OBSIDS, scale=0.3)


@pytest.mark.parametrize("jobs", [1, 2])
def test_ftp_connections_never_exceed_jobs(many_root: Path, tmp_path: Path, jobs: int) -> None:
    # Latency on every command makes listings and transfers overlap: before listings were
    # steps of the queue, FTP ran up to `jobs` listing connections beside `jobs` transfers.
    with ArchiveFTPServer(many_root, link=LinkModel(latency=0.01)) as server:
        results = download(OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=jobs, **FAST)
        peak = server.stats.peak_connections
    assert results.ok, results.summary()
    assert 1 <= peak <= jobs


def test_http_connections_never_exceed_jobs(many_root: Path, tmp_path: Path) -> None:
    with ArchiveHTTPServer(many_root, link=LinkModel(latency=0.01)) as server:
        results = download(OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, **FAST)
        # Requests in flight (a connection the client has closed may linger a moment at the
        # server, so its connection count can briefly overlap a new one).
        peak = server.stats.peak_requests
    assert results.ok, results.summary()
    assert 1 <= peak <= 2


class _Recorder(Reporter):
    """Which ObsIds each file that ended belonged to, in the order they ended."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[int] = []
        self.ended: list[int] = []
        self.done: list[int] = []
        self._lock = threading.Lock()

    def file_started(self, fr) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.started.append(fr.obsid)

    def file_done(self, fr) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.ended.append(fr.obsid)

    def obsid_done(self, r) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.done.append(r.obsid)


def test_obsids_are_worked_in_the_order_given(many_root: Path, tmp_path: Path) -> None:
    # One worker: every step of the first ObsId (its pages, then its files largest first)
    # runs before any of the next one, so the ObsIds end in the order given. (Without
    # fsync: no finisher, whose two threads may end one file of an ObsId after the next
    # ObsId's first; the order of starts is the same with it, below.)
    order = [6298, 1843, 2749]
    rec = _Recorder()
    results = download(
        order, mirror=str(many_root), outdir=tmp_path, jobs=1, reporter=rec, fsync=False
    )
    assert results.ok, results.summary()
    assert rec.done == order
    assert rec.ended == sorted(rec.ended, key=order.index)
    assert rec.started == sorted(rec.started, key=order.index)


def test_with_the_finisher_files_start_in_the_order_given(many_root: Path, tmp_path: Path) -> None:
    order = [6298, 1843, 2749]
    rec = _Recorder()
    results = download(order, mirror=str(many_root), outdir=tmp_path, jobs=1, reporter=rec)
    assert results.ok, results.summary()
    assert len(rec.started) == sum(len(r.files) for r in results)
    assert rec.started == sorted(rec.started, key=order.index)


class _FlakyPages(LocalSource):
    """A local tree listed by pages (one per directory) whose sub-directory pages fail
    ``fail`` times each before they answer."""

    def __init__(self, root: Path, fail: int) -> None:
        super().__init__(root)
        self.fail = fail
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:
        from chandra_download.errors import TransientError

        with self._lock:
            self.calls[ref.prefix] = self.calls.get(ref.prefix, 0) + 1
            n = self.calls[ref.prefix]
        if ref.prefix and n <= self.fail:
            raise TransientError(f"page {ref.prefix} failed")
        files = [f for f in self.list_obsid(obsid) if f.relpath.startswith(ref.prefix)]
        rests = [f.relpath[len(ref.prefix) :] for f in files]
        here = [f for f, rest in zip(files, rests, strict=True) if "/" not in rest]
        subdirs = sorted({ref.prefix + rest.split("/")[0] + "/" for rest in rests if "/" in rest})
        return ListingPage(here, [PageRef(d, depth=ref.depth + 1) for d in subdirs])


def test_a_failed_listing_page_is_retried_on_its_own(many_root: Path, tmp_path: Path) -> None:
    src = _FlakyPages(many_root, fail=2)
    engine = Engine([src], SessionConfig(jobs=2, retries=2, **FAST), Reporter())
    [r] = engine.run([1843], Selection(), tmp_path)
    assert r.error is None and r.found
    assert {f.relpath for f in r.files} == {rel for rel, _ in iter_files(many_root, 1843)}
    assert src.calls[""] == 1  # the top page was asked for once: only the failed pages again
    assert all(n == 3 for prefix, n in src.calls.items() if prefix)


class _Endless(Source):
    """A hostile site: every page names forty more sub-directories (and holds no file)."""

    label = "endless"

    def __init__(self) -> None:
        self.pages = 0

    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        raise AssertionError("the engine lists by pages")

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:
        self.pages += 1
        return ListingPage(
            [], [PageRef(f"{ref.prefix}d{i}/", depth=ref.depth + 1) for i in range(40)]
        )

    def open(self, f, offset=0, end=None):  # type: ignore[no-untyped-def]
        raise AssertionError("nothing to open")


def test_a_fan_out_of_directories_is_refused_early(tmp_path: Path) -> None:
    src = _Endless()
    engine = Engine([src], SessionConfig(jobs=4, **FAST), Reporter())
    [r] = engine.run([1843], Selection(), tmp_path)
    assert r.error is not None and "listing pages" in r.error
    assert src.pages <= MAX_PAGES


class _Clash(Source):
    """An S3-like site listing both ``a`` and ``a/b`` (keys, so one page holds both)."""

    label = "clash"

    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        return [RemoteFile("a", 1, "x://a"), RemoteFile("a/b", 1, "x://a/b")]

    def open(self, f, offset=0, end=None):  # type: ignore[no-untyped-def]
        raise AssertionError("nothing to open")


def test_a_file_and_a_directory_of_one_name_is_said_as_such(tmp_path: Path) -> None:
    from chandra_download.results import Results

    engine = Engine([_Clash()], SessionConfig(jobs=1, **FAST), Reporter())
    results = Results(engine.run([1843], Selection(), tmp_path))
    summary = results.summary()
    assert "both a file and a directory named a" in summary, summary
    assert "no files of the selected types" not in summary
