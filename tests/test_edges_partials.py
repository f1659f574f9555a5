"""Issue 20's last partial-file gaps: a partial file of a type without content check that
holds bytes of an older copy of the archive's file (changed in place, same size) is never
completed with them: a hard-linked CIAO leftover below ``record.PARTIAL_NOTE_LIMIT``
(20.2 + 20.9), and a large partial file with no note of whose copy it holds, last written
before the site's copy existed (its ``Last-Modified``)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from partial_support import JPG, change_head, fetch, serve
from statedir_support import ours, state_text

from chandra_download import download
from chandra_download.record import MODIFIED_SLACK, PARTIAL_NOTE_LIMIT, modified_epoch
from chandra_download.results import Status
from chandra_download.simulator import ArchiveHTTPServer, generate_archive, iter_files

SMALL = 400_000  # below PARTIAL_NOTE_LIMIT: no note when its bytes begin
KEEP = 300_000  # the partial file: far past the 16 KiB overlap a resume compares


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Path, ArchiveHTTPServer]]:
    src, server = serve(tmp_path, SMALL)
    with server:
        yield src, server


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


LARGE = 1_500_000  # at least PARTIAL_NOTE_LIMIT: noted when a run of ours begins its bytes
KEEP_LARGE = 1_200_000


@pytest.fixture
def large(tmp_path: Path) -> Iterator[tuple[Path, ArchiveHTTPServer]]:
    src, server = serve(tmp_path, LARGE)
    with server:
        yield src, server


def seed_large(where: str, out: Path, tmp_path: Path, data: bytes) -> Path | None:
    """A partial file with no note of whose copy it holds: ours (the note lost), CIAO's or
    wget's at the final name, or that one with another hard link; the other link, if any."""
    seed = ours(out, 1843, JPG) if where == "part" else out / "1843" / JPG
    seed.parent.mkdir(parents=True, exist_ok=True)
    seed.write_bytes(data)
    if where != "linked":
        return None
    os.link(seed, tmp_path / "snapshot.jpg")
    return tmp_path / "snapshot.jpg"


@pytest.mark.parametrize("where", ["part", "final", "linked"])
def test_a_large_unnoted_partial_written_before_the_sites_copy_is_fetched_from_the_start(
    large, tmp_path, where
):
    """Its bytes were last written a day before the site's copy changed (same size): they
    cannot be of it, whatever the 16 KiB compared at the resume point say."""
    src, server = large
    assert src.stat().st_size == LARGE >= PARTIAL_NOTE_LIMIT
    out = tmp_path / "out"
    old = src.read_bytes()
    other = seed_large(where, out, tmp_path, old[:KEEP_LARGE])
    new = change_head(src)  # a day after the partial file was written
    fr = fetch(server, out)
    assert fr.status is Status.DOWNLOADED, (fr.status, fr.reason)
    assert fr.bytes_transferred == LARGE
    assert fr.changed is None  # not "changed at the archive since it was fetched"
    assert (out / "1843" / JPG).read_bytes() == new
    assert other is None or other.read_bytes() == old[:KEEP_LARGE]


@pytest.mark.parametrize("where", ["part", "final", "linked"])
def test_a_large_unnoted_partial_written_after_the_sites_copy_is_resumed(large, tmp_path, where):
    """The archive's copy is older than the partial file's last write: resumed as before."""
    src, server = large
    out = tmp_path / "out"
    other = seed_large(where, out, tmp_path, src.read_bytes()[:KEEP_LARGE])
    assert src.stat().st_mtime < time.time() - 3600  # (the simulator's files: 2019)
    fr = fetch(server, out)
    assert fr.status is Status.RESUMED, (fr.status, fr.reason)
    assert fr.bytes_transferred == LARGE - KEEP_LARGE
    assert (out / "1843" / JPG).read_bytes() == src.read_bytes()
    assert other is None or other.read_bytes() == src.read_bytes()[:KEEP_LARGE]


def test_a_partial_written_within_the_slack_of_the_sites_date_is_resumed(large, tmp_path):
    """Clocks differ a little: a partial file written just before the site's stated date
    (within MODIFIED_SLACK) is not taken for bytes of an older copy."""
    src, server = large
    out = tmp_path / "out"
    seed = seed_large("part", out, tmp_path, src.read_bytes()[:KEEP_LARGE])
    assert seed is None
    mtime = src.stat().st_mtime
    os.utime(ours(out, 1843, JPG), (mtime, mtime - MODIFIED_SLACK / 2))
    fr = fetch(server, out)
    assert fr.status is Status.RESUMED, (fr.status, fr.reason)
    assert (out / "1843" / JPG).read_bytes() == src.read_bytes()


EPOCH = 1560411720.0  # 2019-06-13 07:42:00 UTC
ZONELESS = EPOCH - 14 * 3600  # a date without a zone, at its earliest (UTC+14)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("Thu, 13 Jun 2019 07:42:00 GMT", EPOCH),  # HTTP (RFC 7231 IMF-fixdate)
        ("Thursday, 13-Jun-19 07:42:00 GMT", EPOCH),  # HTTP (RFC 850 form)
        ("Thu Jun 13 07:42:00 2019", EPOCH),  # HTTP (asctime form)
        ("Thu, 13 Jun 2019 07:42:00 -0000", EPOCH),  # email.utils.formatdate (local source)
        ("Thu, 13 Jun 2019 09:42:00 +0200", EPOCH),
        ("20190613074200", EPOCH),  # FTP MLSD modify / MDTM
        ("20190613074200.250", EPOCH + 0.25),
        ("2019-06-13T07:42:00+00:00", EPOCH),  # S3, and FTP's modify as its source keeps it
        ("2019-06-13T07:42:00.000Z", EPOCH),
        ("2019-06-13 07:42", ZONELESS),  # Apache listing (server's local time, minutes)
        ("13-Jun-2019 07:42", ZONELESS),  # older Apache listing
    ],
)
def test_modified_epoch_reads_every_sites_date(text, epoch):
    assert modified_epoch(text) == epoch


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "yesterday",
        "2019-13-45 07:42",
        "13-Foo-2019 07:42",
        "99999999999999",
        "Thu, 13 Jun 99999 07:42:00 GMT",
        "2019-06-13T07:42:00+99:00",
        "0001-01-01T00:00:00",
        "9" * 200,
    ],
)
def test_modified_epoch_of_what_cannot_be_read_is_none(text):
    assert modified_epoch(text) is None


def test_over_ftp_a_large_unnoted_partial_older_than_the_sites_copy_is_fetched_anew(tmp_path):
    """The same over FTP: the site's date is MLSD's ``modify`` fact."""
    pytest.importorskip("pyftpdlib")
    from chandra_download.simulator.ftp import ArchiveFTPServer

    root = generate_archive(
        tmp_path / "archive", {1843: "acis"}, scale=0.05, sizes={"full_img": LARGE}
    )
    src = dict(iter_files(root, 1843))[JPG]
    out = tmp_path / "out"
    seed_large("part", out, tmp_path, src.read_bytes()[:KEEP_LARGE])
    new = change_head(src)
    with ArchiveFTPServer(root) as server:
        res = download(1843, ["full_img"], mirror=server.base_url, outdir=out, status=False)
    fr = next(f for f in res.files if f.relpath == JPG)
    assert fr.status is Status.DOWNLOADED, (fr.status, fr.reason)
    assert fr.bytes_transferred == LARGE and fr.changed is None
    assert (out / "1843" / JPG).read_bytes() == new


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_a_whole_unnoted_partial_of_an_older_copy_is_not_put_in_place(tmp_path, size):
    """A .part of full size (a run killed before its rename) holds no byte a resume would
    compare: last written before the site's copy, it is fetched again, not moved into place."""
    src, server = serve(tmp_path, size)
    out = tmp_path / "out"
    with server:
        ours(out, 1843, JPG).write_bytes(src.read_bytes())
        new = change_head(src)
        fr = fetch(server, out)
    assert fr.status is Status.DOWNLOADED, (fr.status, fr.reason)
    assert fr.bytes_transferred == size and fr.changed is None
    assert (out / "1843" / JPG).read_bytes() == new


def test_a_whole_unnoted_partial_of_the_sites_copy_is_put_in_place(large, tmp_path):
    src, server = large
    out = tmp_path / "out"
    ours(out, 1843, JPG).write_bytes(src.read_bytes())
    fr = fetch(server, out)
    assert fr.ok and fr.bytes_transferred == 0, (fr.status, fr.bytes_transferred)
    assert (out / "1843" / JPG).read_bytes() == src.read_bytes()


def seed_parts(out: Path, data: bytes) -> None:
    """A split download of ``data`` killed with its first of two parts done and the second
    half done: a .part with a hole, and its state; no note of whose copy it holds."""
    size, half = len(data), len(data) // 2
    part = ours(out, 1843, JPG)
    with open(part, "wb") as fh:
        fh.write(data[: half // 2])
        fh.seek(half)
        fh.write(data[half : half + half // 2])
    text = json.dumps({"size": size, "parts": [[0, half, half // 2], [half, size, half // 2]]})
    ours(out, 1843, JPG, "state").write_text(state_text(JPG, text))


@pytest.mark.parametrize("changed", [True, False])
def test_unnoted_parts_of_an_older_copy_are_fetched_again(large, tmp_path, changed):
    """Parts a killed run wrote, with no note (lost), last written before the site's copy:
    fetched again from byte 0; written after it, resumed part by part as before."""
    src, server = large
    out = tmp_path / "out"
    seed_parts(out, src.read_bytes())
    new = change_head(src) if changed else src.read_bytes()
    fr = fetch(server, out, jobs=2, split_threshold=256 * 1024)
    assert fr.ok, (fr.status, fr.reason)
    assert fr.bytes_transferred == (LARGE if changed else LARGE - 2 * (LARGE // 4))
    assert (out / "1843" / JPG).read_bytes() == new
