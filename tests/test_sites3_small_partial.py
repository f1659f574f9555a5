"""Issue 20.9, a partial file below ``record.PARTIAL_NOTE_LIMIT`` of a type without content
check (a jpg): changed at the site with the same size, it is never completed with old bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from partial_support import JPG, change_head, fetch, serve
from statedir_support import ours

from chandra_download.record import PARTIAL_NOTE_LIMIT
from chandra_download.results import Status
from chandra_download.simulator import ArchiveHTTPServer, Fault
from chandra_download.stream import OVERLAP

SIZE = 400_000  # below PARTIAL_NOTE_LIMIT: no note when its bytes begin
KEEP = 300_000  # the partial file: far past the 16 KiB overlap the resume compares


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[Path, ArchiveHTTPServer]]:
    src, server = serve(tmp_path, SIZE)
    with server:
        yield src, server


@pytest.mark.parametrize("where", ["part", "final"])
def test_an_unnoted_small_partial_of_an_old_copy_is_fetched_from_the_start(
    archive, tmp_path, where
):
    """A killed run's partial file (ours) or CIAO's leftover (at the final name): nothing
    says whose copy it holds, so it is fetched again from byte 0 (under 1 MiB)."""
    src, server = archive
    assert SIZE < PARTIAL_NOTE_LIMIT and src.stat().st_size == SIZE
    out = tmp_path / "out"
    old = src.read_bytes()
    seed = ours(out, 1843, JPG) if where == "part" else out / "1843" / JPG
    seed.parent.mkdir(parents=True, exist_ok=True)
    seed.write_bytes(old[:KEEP])
    new = change_head(src)
    fr = fetch(server, out)
    assert fr.status is Status.DOWNLOADED, (fr.status, fr.reason)
    assert fr.bytes_transferred == SIZE
    assert (out / "1843" / JPG).read_bytes() == new


def left_by_a_failed_attempt(server: ArchiveHTTPServer, out: Path) -> None:
    server.faults.add(Fault("drop", "*_full_img2.jpg", after_bytes=KEEP))
    first = fetch(server, out, retries=0)
    assert first.status is Status.FAILED, (first.status, first.reason)
    # bytes kept for a resume, beyond what a resume compares again (the first 100 are not)
    assert ours(out, 1843, JPG).stat().st_size > 2 * OVERLAP
    server.faults.clear()


def test_a_small_partial_left_by_a_failed_attempt_is_not_resumed_onto_a_changed_copy(
    archive, tmp_path
):
    src, server = archive
    out = tmp_path / "out"
    left_by_a_failed_attempt(server, out)
    new = change_head(src)
    fr = fetch(server, out)
    assert fr.ok and fr.changed and "partial download began" in fr.changed, fr.changed
    assert (out / "1843" / JPG).read_bytes() == new


def test_a_small_partial_left_by_a_failed_attempt_is_resumed_when_unchanged(archive, tmp_path):
    """The failed attempt noted whose copy its bytes are: the next run resumes them."""
    src, server = archive
    out = tmp_path / "out"
    left_by_a_failed_attempt(server, out)
    kept = ours(out, 1843, JPG).stat().st_size
    fr = fetch(server, out)
    assert fr.status is Status.RESUMED, (fr.status, fr.reason)
    assert fr.bytes_transferred == SIZE - kept
    assert (out / "1843" / JPG).read_bytes() == src.read_bytes()
