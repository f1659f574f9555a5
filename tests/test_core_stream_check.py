"""Checks and sha256 as the bytes stream in (issue 19.2): a finished whole file is not read back,
and every file written (or checked) carries its sha256."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from chandra_download import download, verify
from chandra_download.errors import VerificationError
from chandra_download.results import Status
from chandra_download.simulator import generate_archive, iter_files
from chandra_download.simulator.http import ArchiveHTTPServer

OBSID = 1843
FAST = dict(retries=1, timeout=5.0, backoff=0.01, backoff_max=0.05)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stream-archive")
    return generate_archive(out, {OBSID: "acis"}, scale=0.1, sizes={"evt1": 3_000_000})


@pytest.fixture
def server(root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(root) as srv:
        yield srv


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_whole_files_are_checked_as_they_come_and_carry_their_sha256(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path, read_backs: list[str]
) -> None:
    results = download(OBSID, mirror=server.base_url, outdir=tmp_path, split_threshold=0, **FAST)
    assert results.ok
    assert read_backs == []  # no finished whole file was read back
    src = dict(iter_files(root, OBSID))
    assert len(results.files) == len(src)
    for fr in results.files:
        assert fr.status is Status.DOWNLOADED
        assert fr.sha256 == _sha(src[fr.relpath]) == _sha(fr.path), fr.relpath


def test_split_files_and_repaired_present_files_carry_their_sha256(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    opts = dict(split_threshold=1_000_000, jobs=4, **FAST)
    results = download(OBSID, "evt1,oif", mirror=server.base_url, outdir=tmp_path, **opts)
    src = dict(iter_files(root, OBSID))
    assert results.ok and len(results.files) == 2
    for fr in results.files:
        assert fr.sha256 == _sha(src[fr.relpath])
    again = download(OBSID, "evt1,oif", mirror=server.base_url, outdir=tmp_path, repair=True)
    for fr in again.files:  # checked, so hashed in the same read
        assert fr.status is Status.PRESENT and fr.sha256 == _sha(src[fr.relpath])


def test_a_resume_checks_the_bytes_on_disk_and_the_new_ones(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path, read_backs: list[str]
) -> None:
    ((rel, path),) = [(r, p) for r, p in iter_files(root, OBSID) if r.endswith("evt1.fits.gz")]
    data = path.read_bytes()
    target = tmp_path / str(OBSID) / rel
    target.parent.mkdir(parents=True)
    target.write_bytes(data[: len(data) // 2])  # CIAO's partial file at the final name
    results = download(OBSID, "evt1", mirror=server.base_url, outdir=tmp_path, **FAST)
    (fr,) = results.files
    assert fr.status is Status.RESUMED and fr.sha256 == hashlib.sha256(data).hexdigest()
    assert read_backs == []


# -- the checker ----------------------------------------------------------------------------
def _gz(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_checker_takes_pieces_of_any_size(root: Path, piece: int) -> None:
    ((rel, path),) = [(r, p) for r, p in iter_files(root, OBSID) if r.endswith("evt2.fits.gz")]
    data = path.read_bytes()
    data = data[: min(len(data) // 2, 50_000)] if piece == 1 else data
    checker = verify.Checker(rel)
    for i in range(0, len(data), piece):
        checker.feed(memoryview(data)[i : i + piece])
    if piece == 1:  # a cut file: truncated, and still hashed
        with pytest.raises(VerificationError, match="truncated"):
            checker.finish()
        assert checker.digest == hashlib.sha256(data).hexdigest()
    else:
        assert checker.finish() == hashlib.sha256(data).hexdigest()
        assert checker.checks == ["gzip", "fits"]


def test_checker_keeps_hashing_after_a_failure_and_reports_the_first() -> None:
    good = _gz(b"x" * 100_000)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    checker = verify.Checker("a.txt.gz")
    checker.feed(bytes(bad[:1000]))
    checker.feed(bytes(bad[1000:]))
    with pytest.raises(VerificationError, match="a.txt.gz"):
        checker.finish()
    assert checker.digest == hashlib.sha256(bad).hexdigest() and checker.size == len(bad)
    members = _gz(b"one") + _gz(b"two") + b"\0" * 10  # members and NUL padding, fed apart
    two = verify.Checker("m.gz")
    for piece in (members[:5], members[5:30], members[30:]):
        two.feed(piece)
    two.finish()


def test_check_file_still_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "t.gz"
    path.write_bytes(_gz(b"hello")[:-3])
    with pytest.raises(VerificationError, match="truncated|corrupt"):
        verify.check_file(path, "t.gz")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert verify.check_fd(fd, "t.txt").checks == []
    finally:
        os.close(fd)
