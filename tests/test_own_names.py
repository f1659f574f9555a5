"""Our own name space (issue 20.1): a listing that uses our temporaries' names downloads whole.

Our ``.part``, split state and its temporary live in ``<outdir>/.chandra-download/partial/``
under fixed-length names, so an archive file named ``x.part`` or ``x.part.parts`` is just
another file, and a state left for one file is never taken for another's.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from statedir_support import ours

from chandra_download import download
from chandra_download.results import Status
from chandra_download.simulator import ArchiveHTTPServer, generate_archive, iter_files

OBSID = 1843
FAST = dict(retries=1, backoff=0.01, timeout=5.0, status=False)
OURS = ["e.fits.gz", "e.fits.gz.part", "e.fits.gz.part.parts", "a.jpg", "a.jpg.part"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = generate_archive(tmp_path_factory.mktemp("names"), {OBSID: "acis"}, scale=0.05)
    top = out / f"byobsid/3/{OBSID}"
    fits = sorted(top.rglob("*.fits.gz"))[0].read_bytes()  # a valid FITS file of the archive
    for i, name in enumerate(OURS):  # each a different file, valid for its kind
        data = os.urandom(20_000 + 1000 * i)
        (top / name).write_bytes(fits if name.endswith(".fits.gz") else gzip.compress(data))
    return out


@pytest.fixture
def http(root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(root) as server:
        yield server


def _archive(root: Path) -> dict[str, bytes]:
    return {rel: p.read_bytes() for rel, p in iter_files(root, OBSID)}


def _local(out: Path) -> dict[str, bytes]:
    top = out / str(OBSID)
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*") if p.is_file()}


def test_the_simulator_lists_files_named_like_our_temporaries(root: Path) -> None:
    assert set(OURS) <= set(_archive(root))


@pytest.mark.parametrize("split", [0, 10_000], ids=["whole", "split"])
def test_a_listing_holding_our_names_downloads_every_file_byte_identical(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, split: int
) -> None:
    want = _archive(root)
    for _ in range(2):  # run after run: nothing replaced, nothing lost
        results = download(
            OBSID, mirror=http.base_url, outdir=tmp_path, split_threshold=split, jobs=4, **FAST
        )
        assert results.ok, results.errors
        assert all(fr.warning is None for fr in results.files), [
            (fr.relpath, fr.warning) for fr in results.files if fr.warning
        ]
        assert _local(tmp_path) == want
    assert {fr.relpath: fr.status for fr in results.files if fr.relpath in OURS} == dict.fromkeys(
        OURS, Status.PRESENT
    )


def test_a_state_left_for_another_file_is_discarded(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path
) -> None:
    rel = "e.fits.gz"
    data = _archive(root)[rel]
    ours(tmp_path, OBSID, rel).write_bytes(b"\0" * len(data))  # holes a state would claim
    state = {"relpath": "other.fits", "size": len(data), "parts": [[0, len(data), len(data)]]}
    ours(tmp_path, OBSID, rel, "state").write_text(json.dumps(state))
    results = download(OBSID, mirror=http.base_url, outdir=tmp_path, **FAST)
    fr = {f.relpath: f for f in results.files}[rel]
    assert fr.status is Status.DOWNLOADED and fr.bytes_transferred == len(data), fr.reason
    assert (tmp_path / str(OBSID) / rel).read_bytes() == data


def test_other_bytes_swapped_in_at_the_rename_are_not_taken_for_the_file(
    http: ArchiveHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chandra_download import _crashpoint

    target = tmp_path / str(OBSID) / "oif.fits"

    def swap(point: str, name: str) -> None:  # a name swapped in our directory at the rename
        if point == "renamed" and name == target.name:
            planted = tmp_path / "planted"
            planted.write_bytes(b"not the archive's bytes")
            os.replace(planted, target)

    monkeypatch.setattr(_crashpoint, "crashpoint", swap)
    results = download(OBSID, "oif", http.base_url, outdir=tmp_path, **FAST)
    (fr,) = results.files
    assert fr.status is Status.FAILED and "moved in its place" in (fr.reason or ""), fr.reason
    assert not target.exists()  # the swapped-in bytes are not left as the file
