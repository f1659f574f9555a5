"""Re-runs that cost listings only (issue 19.3): a complete local copy that its fetch record or
its content check vouches for needs no HEAD; the HEAD stays where nothing else can tell."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chandra_download import cli, download
from chandra_download.results import Status
from chandra_download.simulator import generate_archive, iter_files
from chandra_download.simulator.http import ArchiveHTTPServer

OBSID = 1843
FAST = dict(retries=1, timeout=5.0, backoff=0.01, backoff_max=0.05, split_threshold=0)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_archive(tmp_path_factory.mktemp("rerun-archive"), {OBSID: "acis"}, scale=0.1)


@pytest.fixture
def server(root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(root) as srv:
        yield srv


def _heads(server: ArchiveHTTPServer) -> int:
    return server.stats.get_count("*", method="HEAD")


def _file_gets(server: ArchiveHTTPServer) -> int:
    return sum(
        r["count"]
        for r in server.stats.to_dict()["requests"]
        if r["method"] == "GET" and not r["path"].endswith("/")
    )


def _checked(rel: str) -> bool:
    return rel.endswith((".gz", ".fits"))


def test_a_nothing_to_do_rerun_sends_no_head(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    first = download(OBSID, mirror=server.base_url, outdir=tmp_path, **FAST)
    assert first.ok
    # (a pipeline run one gave up on, slowed under load, is counted when read here)
    assert server.wait_idle()
    before, gets = _heads(server), _file_gets(server)
    assert gets >= len(first.files)
    again = download(OBSID, mirror=server.base_url, outdir=tmp_path, **FAST)
    assert again.ok and all(f.status is Status.PRESENT for f in again.files)
    assert server.wait_idle()
    assert _heads(server) == before  # the records vouch for every file
    assert _file_gets(server) == gets  # and no file is fetched again
    # --list too
    out = tmp_path
    rc = cli.main([str(OBSID), "-m", server.base_url, "--outdir", str(out), "--list", "-q"])
    assert rc == 0 and _heads(server) == before


def test_without_records_the_content_check_vouches_and_the_rest_is_asked(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    assert download(OBSID, mirror=server.base_url, outdir=tmp_path, **FAST).ok
    shutil.rmtree(tmp_path / ".chandra-download")  # no records: only the bytes can tell
    src = dict(iter_files(root, OBSID))
    unchecked = [rel for rel in src if not _checked(rel)]
    assert unchecked and len(unchecked) < len(src)
    before = _heads(server)
    again = download(OBSID, mirror=server.base_url, outdir=tmp_path, **FAST)
    assert again.ok and all(f.status is Status.PRESENT for f in again.files)
    assert _heads(server) - before == len(unchecked)  # a HEAD only where no check applies
    for fr in again.files:
        assert (fr.sha256 is not None) == _checked(fr.relpath)


def test_a_short_copy_within_the_rounding_is_still_asked_and_resumed(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    evt1 = "secondary/acisf01843_000N005_evt1.fits.gz"
    data = dict(iter_files(root, OBSID))[evt1].read_bytes()
    target = tmp_path / str(OBSID) / evt1
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:-2000])  # CIAO's partial: within 10% of the listing's size
    before = _heads(server)
    results = download(OBSID, "evt1", mirror=server.base_url, outdir=tmp_path, **FAST)
    (fr,) = results.files
    assert fr.status is Status.RESUMED and target.read_bytes() == data
    assert _heads(server) - before == 1  # the check failed (truncated): the site's size decides


def test_check_still_asks_the_site(server: ArchiveHTTPServer, tmp_path: Path) -> None:
    assert download(OBSID, "evt2,oif", mirror=server.base_url, outdir=tmp_path, **FAST).ok
    before = _heads(server)
    rc = cli.main([str(OBSID), "evt2,oif", "-m", server.base_url, "--outdir", str(tmp_path)]
                  + ["--check", "-q"])  # fmt: skip
    assert rc == 0 and _heads(server) - before >= 2  # --check asks the site about each file
