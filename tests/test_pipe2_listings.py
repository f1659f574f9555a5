"""Pipelined listing pages and HEADs (issue 19.1): the listing pages of many ObsIds and the
HEADs that sizes still need go back to back on the site's keep-alive connections, with the
same fallbacks as pipelined GETs (``Keep-Alive: max``, unannounced closes, errors in the
middle, servers answering out of order or slowly: one request at a time from then on)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from pathlib import Path

import pytest
from budget_support import SharedBudget

from chandra_download import Status, download
from chandra_download.config import SessionConfig
from chandra_download.log import LEVELS
from chandra_download.progress import Reporter
from chandra_download.simulator import ArchiveHTTPServer, Fault
from chandra_download.simulator.link import LinkModel
from chandra_download.sources.base import ListingPage, PageRef, RemoteFile
from chandra_download.sources.http import HTTPSource

OBSIDS = [1843, 2749, 6298]
OPTS = {"timeout": 10.0, "retries": 2, "backoff": 0.01, "backoff_max": 0.05}
FALLBACK = "requests go one at a time from now on"
LISTINGS = "*/"  # a fault's glob for listing pages only (their paths end in /)
FILES = "*[!/]"  # ... and for files only


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_complete(results, out: Path, source_files, obsids=OBSIDS) -> None:
    assert all(r.ok for r in results), [(f.relpath, f.reason) for r in results for f in r.files]
    for obsid in obsids:
        for rel, src in source_files(obsid).items():
            assert _sha(out / str(obsid) / rel) == _sha(src), rel


def _pages(server: ArchiveHTTPServer, pipelined: bool = False) -> dict[str, int]:
    """Listing requests the server saw (or those of them that came pipelined), by path."""
    seen = server.stats.pipelined_requests if pipelined else server.stats.requests
    return {p: n for (m, p), n in seen.items() if m == "GET" and p.endswith("/")}


def _heads(server: ArchiveHTTPServer, pipelined: bool = False) -> dict[str, int]:
    seen = server.stats.pipelined_requests if pipelined else server.stats.requests
    return {p: n for (m, p), n in seen.items() if m == "HEAD"}


def _fallbacks(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if FALLBACK in r.getMessage()]


def test_listing_pages_of_many_obsids_are_pipelined(archive_root, source_files, tmp_path):
    with ArchiveHTTPServer(archive_root, link=LinkModel(latency=0.02)) as server:
        results = download(OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    _assert_complete(results, tmp_path, source_files)
    pages = _pages(server)
    assert len(pages) >= 3 * len(OBSIDS)  # every ObsId has sub-directories
    assert set(pages.values()) == {1}  # each page asked for once
    # The top pages of all three ObsIds go in one pipeline at the start, at least.
    assert len(_pages(server, pipelined=True)) >= len(OBSIDS) - 1
    assert server.stats.peak_connections <= 2


def test_depth_one_lists_one_page_at_a_time(archive_root, tmp_path):
    with ArchiveHTTPServer(archive_root) as server:
        results = download(
            OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, pipeline_depth=1, **OPTS
        )
    assert results.ok
    assert server.stats.pipelined == 0


def test_keep_alive_max_for_listings_sends_the_unanswered_again(
    archive_root, source_files, tmp_path
):
    """Apache's ``max=N`` closes after N answers: the pages sent behind go again, on another
    connection, and none is lost or asked for over and over."""
    with ArchiveHTTPServer(archive_root, keepalive_max=2) as server:
        results = download(OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    _assert_complete(results, tmp_path, source_files)
    pages = _pages(server)
    assert max(pages.values()) <= 2
    assert _pages(server, pipelined=True)
    assert server.stats.connections_opened >= sum(pages.values()) // 2


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("pipeline_close", "closed connections with pipelined requests unanswered"),
        ("pipeline_swap", "with another directory's listing"),
        ("pipeline_slow", "pipelined answers came slowly"),
    ],
)
def test_a_site_breaking_pipelined_listings_is_listed_one_at_a_time(
    archive_root, source_files, tmp_path, caplog, kind, why
):
    """Listing pages answered wrongly (closed unannounced, another directory's page, late):
    detected, said once at --verbose 3, and every ObsId is listed and fetched whole."""
    with ArchiveHTTPServer(archive_root) as server:
        server.faults.add(Fault(kind, LISTINGS, times=None, seconds=3.0))
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    _assert_complete(results, tmp_path, source_files)
    said = _fallbacks(caplog)
    assert len(said) == 1 and why in said[0].getMessage(), [r.getMessage() for r in said]
    assert said[0].levelno == LEVELS[3]


def test_errors_in_the_middle_of_pipelined_listings(archive_root, source_files, tmp_path, caplog):
    """A 503 once for a sub-directory's page and a 404 for a missing ObsId's page amid
    pipelined pages: the 503's page is asked again on its own, the missing ObsId is not
    found, the other ObsIds are listed whole, and pipelining stays on."""
    flaky = f"byobsid/{2749 % 10}/2749/primary/"
    obsids = [1843, 9999, 2749, 6298]
    with ArchiveHTTPServer(archive_root) as server:
        server.faults.add(Fault("status", flaky, times=1, status=503))
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(obsids, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    by = {r.obsid: r for r in results}
    assert not by[9999].found and by[9999].error is None
    for obsid in OBSIDS:
        assert by[obsid].found and by[obsid].ok, (obsid, by[obsid].error)
    _assert_complete([by[o] for o in OBSIDS], tmp_path, source_files)
    pages = _pages(server)
    assert pages[flaky] == 2  # the 503, then its own request
    assert _pages(server, pipelined=True)
    assert not _fallbacks(caplog)


def test_list_pipelines_the_heads(archive_root, source_files, tmp_path):
    """``--list`` needs every file's exact size (the HTML listing rounds): the HEADs go
    pipelined, each file's once, and every size is right."""
    with ArchiveHTTPServer(archive_root, link=LinkModel(latency=0.02)) as server:
        results = download(
            OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, list_only=True, **OPTS
        )
    files = sum(len(source_files(o)) for o in OBSIDS)
    heads = _heads(server)
    assert len(heads) == files and set(heads.values()) == {1}
    assert len(_heads(server, pipelined=True)) >= files // 3
    for r in results:
        want = {rel: p.stat().st_size for rel, p in source_files(r.obsid).items()}
        assert {f.relpath: f.size for f in r.files} == want
    assert not any((tmp_path / str(o)).exists() for o in OBSIDS)  # --list writes nothing
    assert server.stats.peak_connections <= 2


def test_a_rerun_without_records_pipelines_its_heads(archive_root, source_files, tmp_path):
    """Files on disk that no record vouches for and without a content check of their own
    need the site's exact size: asked by pipelined HEADs, then each is present."""
    with ArchiveHTTPServer(archive_root) as server:
        first = download(OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
        assert first.ok
        shutil.rmtree(tmp_path / ".chandra-download" / "records")
        server.stats.reset()
        again = download(OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, **OPTS)
    statuses = {f.status for r in again for f in r.files}
    assert statuses == {Status.PRESENT}
    heads = _heads(server)
    assert heads and set(heads.values()) == {1}
    assert _heads(server, pipelined=True)
    assert not [k for k in server.stats.requests if k[0] == "GET" and not k[1].endswith("/")]


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("pipeline_swap", "answered a pipelined HEAD"),
        ("pipeline_close", "closed connections with pipelined requests unanswered"),
    ],
)
def test_heads_answered_wrongly_fall_back_to_one_at_a_time(
    archive_root, source_files, tmp_path, caplog, kind, why
):
    """HEADs answered out of order (another file's size) or left unanswered: detected, said
    once, and every size ``--list`` gives is still the file's own."""
    with ArchiveHTTPServer(archive_root) as server:
        server.faults.add(Fault(kind, FILES, times=None))
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(
                OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, list_only=True, **OPTS
            )
    for r in results:
        want = {rel: p.stat().st_size for rel, p in source_files(r.obsid).items()}
        assert {f.relpath: f.size for f in r.files} == want
    said = _fallbacks(caplog)
    assert len(said) == 1 and why in said[0].getMessage(), [r.getMessage() for r in said]
    assert said[0].levelno == LEVELS[3]


def test_listings_and_heads_are_pipelined_under_a_connection_budget(
    archive_root, source_files, tmp_path
):
    """A budget leases sockets, not requests: pipelined pages and HEADs stay on under it,
    and never more sockets are open than it allows."""
    budget = SharedBudget(2)
    with ArchiveHTTPServer(archive_root, link=LinkModel(latency=0.01)) as server:
        results = download(
            OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=4, budget=budget, **OPTS
        )
        _assert_complete(results, tmp_path, source_files)
        listed = download(
            OBSIDS,
            mirror=server.base_url,
            outdir=tmp_path / "list",
            jobs=4,
            budget=budget,
            list_only=True,
            **OPTS,
        )
    assert all(r.found for r in listed)
    assert len(_pages(server, pipelined=True)) >= len(OBSIDS) - 1
    assert _heads(server, pipelined=True)
    assert server.stats.peak_connections <= 2
    assert budget.peak <= 2


def _groups_sent(source: HTTPSource, monkeypatch) -> list[list[RemoteFile]]:
    sent: list[list[RemoteFile]] = []
    real = source._heads

    def heads(todo: list[RemoteFile]) -> None:
        sent.append(list(todo))
        real(todo)

    monkeypatch.setattr(source, "_heads", heads)
    return sent


def test_heads_go_together_only_when_their_answers_cannot_be_mistaken(
    archive_root, source_files, monkeypatch
):
    """Until the site has answered pipelined listing pages in order (told apart by their
    titles), a HEAD pipeline holds files whose listed sizes cannot pass for each other's;
    once it has, only neighbours must differ, and every size learnt is still the file's own."""
    with ArchiveHTTPServer(archive_root) as server:
        source = HTTPSource(server.base_url, SessionConfig(timeout=10.0))
        files = source.list_obsid(OBSIDS[0])  # one page at a time: nothing proven
        sent = _groups_sent(source, monkeypatch)
        source.learn_sizes(files)
        assert not source.pipeliner.proven
        for group in sent:
            spans = [source.size_window(f) for f in group]
            for i, (a, b) in enumerate(spans):
                assert all(b < c or d < a for c, d in spans[i + 1 :]), spans
        other = source.list_obsid(OBSIDS[1])
        refs = [PageRef(), PageRef("primary/")]
        got = source.list_pages([(OBSIDS[1], ref) for ref in refs])
        assert all(isinstance(page, ListingPage) for page in got)
        assert source.pipeliner.proven
        sent.clear()
        source.learn_sizes(other)
        assert max(len(g) for g in sent) == source.pipeline_depth
        for group in sent:  # any sizes together, but no two neighbours alike
            spans = [source.size_window(f) for f in group]
            assert all(b < c or d < a for (a, b), (c, d) in zip(spans, spans[1:], strict=False)), (
                spans
            )
        assert any(
            not (b < c or d < a)
            for g in sent
            for (a, b) in map(source.size_window, g)
            for (c, d) in map(source.size_window, g)
            if (a, b) != (c, d)
        )  # (two in one pipeline whose sizes overlap: more together than before proof)
        learnt = 0
        for obsid, listed in ((OBSIDS[0], files), (OBSIDS[1], other)):
            for f in listed:
                if f.url in source._sizes:  # (a file alone in its group is left to size())
                    learnt += 1
                    assert source._sizes[f.url] == source_files(obsid)[f.relpath].stat().st_size
        assert learnt >= len(other) - 1
        assert all(f.url in source._sizes for g in sent for f in g if len(g) > 1)
        source.close()


def test_a_site_swapping_every_answer_is_listed_one_at_a_time(
    archive_root, source_files, tmp_path, caplog
):
    """A server that answers every pipelined request with the next one's answer: told by
    the first listing pipeline, and ``--list`` still gives every file's own size."""
    with ArchiveHTTPServer(archive_root) as server:
        server.faults.add(Fault("pipeline_swap", "*", times=None))
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(
                OBSIDS, mirror=server.base_url, outdir=tmp_path, jobs=2, list_only=True, **OPTS
            )
    for r in results:
        want = {rel: p.stat().st_size for rel, p in source_files(r.obsid).items()}
        assert {f.relpath: f.size for f in r.files} == want
    said = _fallbacks(caplog)
    assert len(said) == 1 and "listing" in said[0].getMessage()
    assert not _heads(server, pipelined=True)


class _Events(Reporter):
    """The order ObsIds were listed and files ended in."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def obsid_listed(self, r) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.events.append(("listed", r.obsid))

    def file_done(self, fr) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.events.append(("file", fr.obsid))


def test_pipelined_listings_go_ahead_of_files(archive_root, tmp_path):
    """At a pipelining site the next ObsIds' listing pages run before the first ObsId's
    files (they wait a round trip for little work): with one worker, every ObsId is listed
    before any file ends."""
    events = _Events()
    with ArchiveHTTPServer(archive_root, link=LinkModel(latency=0.01)) as server:
        results = download(
            OBSIDS,
            mirror=server.base_url,
            outdir=tmp_path,
            jobs=1,
            pipeline_depth=2,  # (pipelines of a few pages: not all the listings in one)
            reporter=events,
            **OPTS,
        )
    assert all(r.ok for r in results)
    kinds = [kind for kind, _ in events.events]
    assert kinds.index("file") == len(OBSIDS)  # all listed first
    assert [o for kind, o in events.events if kind == "listed"] == OBSIDS


def test_redirected_pages_in_a_pipeline_go_the_normal_path(
    archive_root, source_files, tmp_path, caplog
):
    """A mirror that moved answers every pipelined page with a redirect: each page is then
    asked on its own, the normal path follows the redirect (and bounds it), every ObsId is
    listed and fetched, and pipelining stays on (a redirect is no disorder)."""
    with ArchiveHTTPServer(archive_root) as target:
        with ArchiveHTTPServer(archive_root, redirect_base=target.base_url) as moved:
            with caplog.at_level(logging.DEBUG, logger="chandra_download"):
                results = download(OBSIDS, mirror=moved.base_url, outdir=tmp_path, jobs=2, **OPTS)
    _assert_complete(results, tmp_path, source_files)
    assert _pages(moved, pipelined=True)  # the redirects were answers in a pipeline
    assert set(_pages(target).values()) == {1}  # each page read once, where it moved to
    assert not _fallbacks(caplog)
