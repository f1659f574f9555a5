"""Large files fetched as ranged parts over several connections, on every kind of site."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from statedir_support import ours

from chandra_download import download
from chandra_download.results import Status
from chandra_download.simulator import generate_archive, iter_files
from chandra_download.simulator.faults import Fault
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.split import PartsState

OBSID = 1843
BIG = 3_000_000  # the evt1 file; parts of ~1 MB with split_threshold below


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("split-archive")
    return generate_archive(root, {OBSID: "acis"}, scale=0.1, sizes={"evt1": BIG})


@pytest.fixture
def server(big_root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(big_root) as srv:
        yield srv


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _evt1(root: Path) -> tuple[str, Path]:
    ((rel, path),) = [(r, p) for r, p in iter_files(root, OBSID) if r.endswith("evt1.fits.gz")]
    return rel, path


def _opts(**kw: object) -> dict[str, object]:
    base = dict(split_threshold=1_000_000, jobs=4, retries=0, timeout=5.0, backoff=0.01)
    return {**base, **kw}


def _assert_whole(root: Path, out: Path) -> None:
    want = {rel: _sha(p) for rel, p in iter_files(root, OBSID)}
    top = out / str(OBSID)
    got = {
        p.relative_to(top).as_posix(): _sha(p)
        for p in top.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    }
    assert got == want  # identical, and no .part or state files left behind


def test_parts_cover_the_file_exactly() -> None:
    for size, jobs, have in [(10, 3, 0), (3_000_001, 4, 0), (100, 4, 7), (5, 8, 0), (9, 3, 9)]:
        parts = PartsState.plan(size, jobs, threshold=2, have=have).parts
        assert parts[0].start == 0 and parts[-1].end == size
        assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
        assert all(p.start < p.end for p in parts)
        assert len(parts) <= jobs + (1 if have else 0)
    # Bytes already on disk are the first part, done.
    first = PartsState.plan(100, 4, threshold=2, have=7).parts[0]
    assert (first.start, first.end, first.done) == (0, 7, 7)
    assert [(p.start, p.end) for p in PartsState.plan(10, 3, threshold=2).parts] == [
        (0, 4),
        (4, 8),
        (8, 10),
    ]


def test_http_large_file_comes_in_ranged_parts(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path
) -> None:
    rel, path = _evt1(big_root)
    size = path.stat().st_size
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert results.ok, results.summary()
    _assert_whole(big_root, tmp_path)
    fr = next(f for f in results[0].files if f.relpath == rel)
    assert fr.status is Status.DOWNLOADED and fr.size == size
    assert fr.bytes_transferred == size  # each byte fetched once
    # Several ranged GETs for the big file (HTTP sizes are rounded: the first one learns the
    # exact size), one for each small file, and never more connections than jobs.
    assert server.stats.get_count(f"*/{rel}") == 4
    assert server.stats.get_count("*/oif.fits") == 1
    assert server.stats.peak_connections <= 4


def test_no_split_when_disabled_or_one_job(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path
) -> None:
    rel, _ = _evt1(big_root)
    for i, opts in enumerate([_opts(split_threshold=0), _opts(jobs=1)]):
        server.stats.reset()
        assert download(OBSID, mirror=server.base_url, outdir=tmp_path / str(i), **opts).ok
        assert server.stats.get_count(f"*/{rel}") == 1
        _assert_whole(big_root, tmp_path / str(i))


def test_interrupted_split_resumes_part_by_part(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path
) -> None:
    rel, path = _evt1(big_root)
    size = path.stat().st_size
    # Every ranged request for the big file breaks after 200 kB: all parts stop early.
    server.faults.add(Fault("drop", f"*{rel}", times=None, after_bytes=200_000))
    first = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    fr = next(f for f in first[0].files if f.relpath == rel)
    assert fr.status is Status.FAILED and not first.ok
    target = tmp_path / str(OBSID) / rel
    assert not target.exists()
    state = json.loads(ours(tmp_path, OBSID, rel, "state").read_text())
    assert state["relpath"] == rel
    done = sum(d for _, _, d in state["parts"])
    assert state["size"] == size and 0 < done < size and len(state["parts"]) == 4

    server.faults.clear()
    server.stats.reset()
    again = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert again.ok, again.summary()
    fr = next(f for f in again[0].files if f.relpath == rel)
    assert fr.status is Status.RESUMED
    assert fr.bytes_transferred == size - done  # only what was missing
    _assert_whole(big_root, tmp_path)


def test_site_ignoring_ranges_falls_back_to_one_connection(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path
) -> None:
    rel, _ = _evt1(big_root)
    server.faults.add(Fault("ignore_range", f"*{rel}", times=None))
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert results.ok, results.summary()
    assert next(f for f in results[0].files if f.relpath == rel).status is Status.DOWNLOADED
    _assert_whole(big_root, tmp_path)


def test_corrupt_part_is_caught_and_the_file_fetched_again(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path
) -> None:
    rel, _ = _evt1(big_root)
    server.faults.add(Fault("corrupt", f"*{rel}", times=1, after_bytes=1000))
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert results.ok, results.summary()
    _assert_whole(big_root, tmp_path)


def test_stale_state_without_data_starts_over(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path
) -> None:
    rel, _ = _evt1(big_root)
    target = tmp_path / str(OBSID) / rel
    target.parent.mkdir(parents=True)
    # A state claiming half the file while the .part holding it is gone: must not be trusted.
    parts = {"relpath": rel, "size": BIG, "parts": [[0, BIG, BIG // 2]]}
    ours(tmp_path, OBSID, rel, "state").write_text(json.dumps(parts))
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, **_opts())
    assert results.ok, results.summary()
    _assert_whole(big_root, tmp_path)


@pytest.mark.parametrize("kind", ["ftp", "s3", "local"])
def test_split_on_other_sites(
    kind: str, big_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra: dict[str, object] = {}
    if kind == "ftp":
        from chandra_download.simulator.ftp import ArchiveFTPServer

        ctx = ArchiveFTPServer(big_root)
    elif kind == "s3":
        from chandra_download.simulator.s3 import ArchiveS3Server

        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        ctx = ArchiveS3Server(big_root, bucket="split-test")
    if kind == "local":
        results = download(OBSID, mirror=str(big_root), outdir=tmp_path / "out", **_opts())
    else:
        with ctx as srv:
            if kind == "s3":
                extra["endpoint_url"] = srv.endpoint_url
            results = download(
                OBSID, mirror=srv.base_url, outdir=tmp_path / "out", **_opts(**extra)
            )
    assert results.ok, results.summary()
    _assert_whole(big_root, tmp_path / "out")


def test_split_size_option(capsys: pytest.CaptureFixture[str]) -> None:
    from chandra_download.cli import _size_arg, main

    assert _size_arg("32M") == 32 * 2**20 and _size_arg("1.5G") == int(1.5 * 2**30)
    assert _size_arg("4096") == 4096 and _size_arg("0") == 0 and _size_arg("64kb") == 65536
    for bad in ("abc", "-1M"):
        with pytest.raises(SystemExit) as exc:
            main(["1843", "--split-size", bad])
        assert exc.value.code == 2
        assert "--split-size" in capsys.readouterr().err
