"""Issue 20's last partial-file gaps: a partial file of a type without content check that
holds bytes of an older copy of the archive's file (changed in place, same size) is never
completed with them: a hard-linked CIAO leftover below ``record.PARTIAL_NOTE_LIMIT``
(20.2 + 20.9), and a large partial file with no note of whose copy it holds, last written
before the site's copy existed (its ``Last-Modified``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chandra_download import download
from chandra_download.record import PARTIAL_NOTE_LIMIT
from chandra_download.results import FileResult, Status
from chandra_download.simulator import ArchiveHTTPServer, generate_archive, iter_files

JPG = "primary/acisf01843N005_full_img2.jpg"
SMALL = 400_000  # below PARTIAL_NOTE_LIMIT: no note when its bytes begin
KEEP = 300_000  # the partial file: far past the 16 KiB overlap a resume compares


def serve(tmp_path: Path, size: int) -> tuple[Path, ArchiveHTTPServer]:
    root = generate_archive(
        tmp_path / "archive", {1843: "acis"}, scale=0.05, sizes={"full_img": size}
    )
    return dict(iter_files(root, 1843))[JPG], ArchiveHTTPServer(root)


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Path, ArchiveHTTPServer]]:
    src, server = serve(tmp_path, SMALL)
    with server:
        yield src, server


def change_head(src: Path) -> bytes:
    """The archive's copy changes its first 100 bytes (same size) and its date, a day on."""
    new = bytearray(src.read_bytes())
    new[:100] = bytes(100)
    src.write_bytes(bytes(new))
    st = src.stat()
    os.utime(src, (st.st_atime, st.st_mtime + 86400))
    return bytes(new)


def fetch(server: ArchiveHTTPServer, out: Path, **kw: object) -> FileResult:
    res = download(1843, ["full_img"], mirror=server.base_url, outdir=out, status=False, **kw)
    return next(f for f in res.files if f.relpath == JPG)


def test_a_small_hard_linked_leftover_of_an_old_copy_is_fetched_from_the_start(small, tmp_path):
    """CIAO's leftover at the final name, hard-linked into a snapshot (``cp -al``): copied,
    never written through, and (no note says whose copy it holds) fetched from byte 0."""
    src, server = small
    assert SMALL < PARTIAL_NOTE_LIMIT and src.stat().st_size == SMALL
    out = tmp_path / "out"
    old = src.read_bytes()
    seed = out / "1843" / JPG
    seed.parent.mkdir(parents=True)
    seed.write_bytes(old[:KEEP])
    snapshot = tmp_path / "snapshot.jpg"
    os.link(seed, snapshot)
    new = change_head(src)
    fr = fetch(server, out)
    assert fr.status is Status.DOWNLOADED, (fr.status, fr.reason)
    assert fr.bytes_transferred == SMALL
    assert seed.read_bytes() == new
    assert snapshot.read_bytes() == old[:KEEP]  # the other link keeps its bytes
