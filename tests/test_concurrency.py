"""Correctness of concurrent downloads: bytes, request counts, ordering, the job limit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from chandra_download.api import download
from chandra_download.results import Status
from chandra_download.simulator import (
    DEFAULT_OBSIDS,
    ArchiveHTTPServer,
    Fault,
    LinkModel,
    iter_files,
)

OBSIDS = list(DEFAULT_OBSIDS)  # 1843 (acis), 2749 (acis-grating), 6298 (hrc)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def below(obsid: int, rel: str = "") -> str:
    """Path of an archive file below the mirror base, as the server's stats key it."""
    return f"byobsid/{obsid % 10}/{obsid}/{rel}"


def fetch(server: ArchiveHTTPServer, outdir: Path, obsids=OBSIDS, **options):
    options.setdefault("backoff", 0.01)
    options.setdefault("backoff_max", 0.05)
    return download(obsids, mirror=server.base_url, outdir=outdir, **options)


def test_batch_is_byte_identical_and_each_file_is_fetched_once(
    archive_root, archive_http, tmp_path
):
    results = fetch(archive_http, tmp_path, jobs=8)

    assert results.ok, results.summary()
    stats = archive_http.stats
    for obsid in OBSIDS:
        tree = iter_files(archive_root, obsid)
        assert tree
        got = sorted(
            p.relative_to(tmp_path / str(obsid)).as_posix()
            for p in (tmp_path / str(obsid)).rglob("*")
            if p.is_file() and ".chandra-download" not in p.parts
        )
        assert got == [rel for rel, _ in tree]  # nothing missing, no stray .part files
        for rel, src in tree:
            assert sha256(tmp_path / str(obsid) / rel) == sha256(src), rel
            assert stats.requests[("GET", below(obsid, rel))] == 1, rel
    # No size-only requests: a fresh download is one GET per file plus directory listings.
    assert stats.get_count("*", method="HEAD") == 0
    files = sum(len(iter_files(archive_root, o)) for o in OBSIDS)
    listings = stats.get_count("*/")
    assert stats.get_count("*", method=None) == files + listings
    assert all(f.status is Status.DOWNLOADED for r in results for f in r.files)


@pytest.mark.parametrize("status", [404, 500])
def test_a_failing_file_does_not_stop_the_others(archive_root, archive_http, tmp_path, status):
    bad = "primary/acisf02749N004_evt2.fits.gz"
    archive_http.faults.add(Fault("status", bad, times=None, status=status))

    results = fetch(archive_http, tmp_path, jobs=8, retries=1)

    assert not results.ok
    failed = [(f.obsid, f.relpath) for r in results for f in r.files if f.status is Status.FAILED]
    assert failed == [(2749, bad)]
    for obsid in OBSIDS:
        for rel, src in iter_files(archive_root, obsid):
            out = tmp_path / str(obsid) / rel
            if (obsid, rel) == (2749, bad):
                assert not out.exists()
            else:
                assert out.read_bytes() == src.read_bytes(), rel
    # A 404 is final; a 500 is retried exactly `retries` times.
    assert archive_http.stats.requests[("GET", below(2749, bad))] == (1 if status == 404 else 2)


def test_results_keep_obsid_order_when_the_first_obsid_is_slowest(
    archive_root, archive_http, tmp_path
):
    order = [6298, 2749, 1843]
    # Every file (and listing) of the first ObsId stalls before its first byte.
    archive_http.faults.add(Fault("stall", below(6298) + "*", times=None, seconds=0.15))
    finished: list[int] = []

    class Recorder:
        """Minimal reporter noting the order in which ObsIds complete."""

        def obsid_listed(self, r):
            pass

        def file_started(self, fr):
            pass

        def file_bytes(self, fr, n):
            pass

        def file_done(self, fr):
            pass

        def obsid_done(self, r):
            finished.append(r.obsid)

    results = fetch(archive_http, tmp_path, obsids=order, jobs=8, reporter=Recorder())

    assert results.ok, results.summary()
    assert finished[-1] == 6298  # it really was the slowest...
    assert [r.obsid for r in results] == order  # ...and still comes first in the results
    for r in results:
        assert [f.relpath for f in r.files] == [rel for rel, _ in iter_files(archive_root, r.obsid)]


def test_job_limit_bounds_connections(archive_root, tmp_path):
    # 4 MB/s per connection: the ~1 MB evt1 files take a quarter second, so transfers overlap.
    link = LinkModel(latency=0.01, conn_bandwidth=4e6)
    with ArchiveHTTPServer(archive_root, link=link) as server:
        results = fetch(server, tmp_path, jobs=3)
        peak = server.stats.peak_connections

    assert results.ok, results.summary()
    assert 1 < peak <= 3
