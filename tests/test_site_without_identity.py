"""A site that states neither ``Last-Modified`` nor ``ETag`` (some CGI-backed mirrors): a
download, a nothing-to-do re-run, ``--check``, a resume (a plain Range, no ``If-Range``) and
a change of size at the archive all work from sizes and content checks alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from partial_support import JPG, serve
from statedir_support import ours

from chandra_download import cli, download
from chandra_download.results import Status
from chandra_download.simulator import ArchiveHTTPServer, iter_files

OBSID = 1843
FAST = dict(retries=1, timeout=5.0, backoff=0.01, backoff_max=0.05, status=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ArchiveHTTPServer]:
    _, srv = serve(tmp_path, 1_500_000)  # (the partial tests' archive: a 1.5 MB jpg)
    srv.identity = False
    with srv:
        yield srv


@pytest.fixture
def root(server: ArchiveHTTPServer) -> Path:
    return server.root


def _same(out: Path, root: Path) -> None:
    for rel, src in iter_files(root, OBSID):
        assert (out / str(OBSID) / rel).read_bytes() == src.read_bytes(), rel


def test_the_site_states_no_identity(server: ArchiveHTTPServer, tmp_path: Path) -> None:
    import urllib3

    resp = urllib3.request("HEAD", f"{server.base_url}byobsid/3/{OBSID}/{JPG}")
    assert resp.status == 200 and "Content-Length" in resp.headers
    assert "Last-Modified" not in resp.headers and "ETag" not in resp.headers


def test_download_rerun_and_check(server: ArchiveHTTPServer, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = download(OBSID, mirror=server.base_url, outdir=out, **FAST)
    assert first.ok and all(f.status is Status.DOWNLOADED for f in first.files)
    assert all(f.last_modified is None and f.etag is None for f in first.files)
    _same(out, root)
    again = download(OBSID, mirror=server.base_url, outdir=out, **FAST)
    assert again.ok and all(f.status is Status.PRESENT for f in again.files), [
        (f.relpath, f.status, f.reason) for f in again.files if f.status is not Status.PRESENT
    ]
    rc = cli.main([str(OBSID), "-m", server.base_url, "--outdir", str(out), "--check", "-q"])
    assert rc == 0


def test_a_partial_resumes_with_a_plain_range(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    src = dict(iter_files(root, OBSID))[JPG]
    out, keep = tmp_path / "out", 1_200_000
    ours(out, OBSID, JPG).write_bytes(src.read_bytes()[:keep])
    res = download(OBSID, ["full_img"], mirror=server.base_url, outdir=out, **FAST)
    fr = next(f for f in res.files if f.relpath == JPG)
    assert fr.status is Status.RESUMED, (fr.status, fr.reason)
    assert (out / str(OBSID) / JPG).read_bytes() == src.read_bytes()
    resumed = server.stats.bytes_sent
    server.stats.reset()
    assert download(OBSID, ["full_img"], mirror=server.base_url, outdir=tmp_path / "b", **FAST).ok
    assert server.stats.bytes_sent - resumed >= 0.9 * keep  # (less an overlap checked)


def test_a_change_of_size_at_the_archive_is_fetched_again(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert download(OBSID, ["full_img"], mirror=server.base_url, outdir=out, **FAST).ok
    src = dict(iter_files(root, OBSID))[JPG]
    new = src.read_bytes()[:-1000]  # the archive's copy, shorter now
    src.write_bytes(new)
    res = download(OBSID, ["full_img"], mirror=server.base_url, outdir=out, **FAST)
    fr = next(f for f in res.files if f.relpath == JPG)
    assert fr.status is Status.DOWNLOADED and fr.changed, (fr.status, fr.reason, fr.changed)
    assert (out / str(OBSID) / JPG).read_bytes() == new
