"""File bytes go to disk in writes of at most stream.WRITE_SLICE: on this machine a 1 MiB
write to the page cache cost about twice the kernel CPU of eight 128 KiB ones (the source
of a small write stays in the CPU's cache while the kernel copies it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chandra_download import download, stream
from chandra_download.config import SessionConfig
from chandra_download.simulator import generate_archive, iter_files
from chandra_download.simulator.http import ArchiveHTTPServer

OBSID = 1843


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_archive(
        tmp_path_factory.mktemp("slices"), {OBSID: "acis"}, scale=0.1, sizes={"evt1": 3_000_000}
    )


def _spy_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real = os.pwrite

    def pwrite(fd: int, data: bytes | memoryview, pos: int) -> int:
        sizes.append(len(data))
        return real(fd, data, pos)

    monkeypatch.setattr(os, "pwrite", pwrite)
    return sizes


@pytest.mark.parametrize("split", [0, 1_000_000])
def test_fetched_bytes_are_written_in_slices(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: int
) -> None:
    sizes = _spy_writes(monkeypatch)
    with ArchiveHTTPServer(root) as srv:
        results = download(
            OBSID, "evt1", mirror=srv.base_url, outdir=tmp_path, split_threshold=split, jobs=4
        )
    assert results.ok, results.summary()
    ((rel, path),) = [(r, p) for r, p in iter_files(root, OBSID) if r.endswith("evt1.fits.gz")]
    assert (tmp_path / str(OBSID) / rel).read_bytes() == path.read_bytes()
    assert sum(sizes) >= path.stat().st_size  # (every byte went through pwrite)
    assert max(sizes) <= stream.WRITE_SLICE < SessionConfig().chunk_size


def test_a_local_mirror_copy_is_written_in_slices(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _spy_writes(monkeypatch)
    results = download(OBSID, "evt1", mirror=str(root), outdir=tmp_path, split_threshold=0)
    assert results.ok, results.summary()
    assert sum(sizes) >= 3_000_000  # (copied, never linked)
    assert max(sizes) <= stream.WRITE_SLICE
