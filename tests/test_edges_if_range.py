"""HTTP resumes ask only for a range of the copy the site last described (``If-Range``): a
file changed at the site between its HEAD and the ranged GET comes whole (a 200) and is
taken from byte 0, never appended to bytes of the older copy (issue 20.9), whether it
resumes on one connection or comes in ranged parts."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from partial_support import JPG, serve  # (a jpg: no content check, only If-Range can tell)
from statedir_support import ours

from chandra_download import download
from chandra_download.results import FileResult, Status
from chandra_download.simulator import ArchiveHTTPServer
from chandra_download.sources import http as http_mod
from chandra_download.sources.base import WrappedBody
from chandra_download.sources.wire import if_range_header

SIZE = 1_500_000
KEEP = 1_200_000


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, ArchiveHTTPServer]]:
    src, server = serve(tmp_path, SIZE)
    with server:
        yield src, server


def change(src: Path) -> bytes:
    """The archive's copy changes in place, same size (its first and last 100 bytes), and
    its date moves on a day."""
    new = bytearray(src.read_bytes())
    new[:100], new[-100:] = bytes(100), bytes(100)
    st = src.stat()
    tmp = src.with_name(f".{src.name}.new")  # a new file renamed in: answers under way keep
    tmp.write_bytes(bytes(new))  # the old copy's bytes, as a real site's would
    os.utime(tmp, (st.st_atime, st.st_mtime + 86400))
    tmp.replace(src)
    return bytes(new)


def fetch(server: ArchiveHTTPServer, out: Path, **kw: object) -> FileResult:
    res = download(1843, ["full_img"], mirror=server.base_url, outdir=out, status=False, **kw)
    return next(f for f in res.files if f.relpath == JPG)


def changing_before(monkeypatch, src: Path, when) -> list[bytes]:
    """Change the archive's file just before the ranged GET ``when(offset, end, opened)``
    picks (after the HEAD that described it); the new bytes, once changed."""
    real = http_mod.HTTPSource.open
    new: list[bytes] = []
    opened: list[tuple[int, int | None]] = []
    lock = threading.Lock()

    def open_(self, f, offset=0, end=None):
        if f.relpath == JPG:
            with lock:
                opened.append((offset, end))
                if not new and when(offset, end, opened):
                    new.append(change(src))
        return real(self, f, offset, end)

    monkeypatch.setattr(http_mod.HTTPSource, "open", open_)
    return new


def test_a_resume_of_a_file_changed_since_its_head_is_taken_whole(site, tmp_path, monkeypatch):
    src, server = site
    out = tmp_path / "out"
    ours(out, 1843, JPG).write_bytes(src.read_bytes()[:KEEP])  # of the copy served now
    new = changing_before(monkeypatch, src, lambda offset, end, opened: offset > 0)
    fr = fetch(server, out)
    assert new, "the resume's GET never came"
    assert fr.status is Status.DOWNLOADED, (fr.status, fr.reason)
    assert fr.bytes_transferred == SIZE and fr.changed is None
    assert (out / "1843" / JPG).read_bytes() == new[0]


def test_an_unchanged_file_is_still_resumed(site, tmp_path, monkeypatch):
    """If-Range names the copy the site serves: the range comes (a 206), as before."""
    src, server = site
    out = tmp_path / "out"
    ours(out, 1843, JPG).write_bytes(src.read_bytes()[:KEEP])
    seen = changing_before(monkeypatch, src, lambda offset, end, opened: False)
    fr = fetch(server, out)
    assert not seen
    assert fr.status is Status.RESUMED, (fr.status, fr.reason)
    assert fr.bytes_transferred == SIZE - KEEP
    assert (out / "1843" / JPG).read_bytes() == src.read_bytes()


class _Told(WrappedBody):
    """A body that says when it is closed (its part is written)."""

    def __init__(self, inner, closed: threading.Semaphore) -> None:
        super().__init__(inner)
        self._closed = closed

    def close(self) -> None:
        super().close()
        self._closed.release()


def test_a_file_changed_while_its_parts_come_is_fetched_whole_again(site, tmp_path, monkeypatch):
    """Split in 4 parts: the 3 others come (of the old copy), then the file changes and
    part 0 is asked: its whole answer starts at byte 0 as asked, yet it is of another copy,
    so the file is fetched whole again, never put together from two copies."""
    src, server = site
    out = tmp_path / "out"
    real = http_mod.HTTPSource.open
    ended = threading.Semaphore(0)
    new: list[bytes] = []

    def open_(self, f, offset=0, end=None):
        if f.relpath != JPG or end is None:
            return real(self, f, offset, end)
        if offset > 0:
            return _Told(real(self, f, offset, end), ended)
        if not new:  # part 0, the first time: once the others are written
            for _ in range(3):
                assert ended.acquire(timeout=60), "the other parts never ended"
            new.append(change(src))
        return real(self, f, offset, end)

    monkeypatch.setattr(http_mod.HTTPSource, "open", open_)
    fr = fetch(server, out, jobs=4, split_threshold=256 * 1024)
    assert new, "part 0 was never asked"
    assert fr.status is Status.DOWNLOADED, (fr.status, fr.reason)
    assert (out / "1843" / JPG).read_bytes() == new[0]


@pytest.mark.parametrize(
    ("last_modified", "etag", "sent"),
    [
        ("Thu, 13 Jun 2019 07:42:00 GMT", '"5b8d8-58b2c5a0"', '"5b8d8-58b2c5a0"'),
        ("Thu, 13 Jun 2019 07:42:00 GMT", None, "Thu, 13 Jun 2019 07:42:00 GMT"),
        ("Thu, 13 Jun 2019 07:42:00 GMT", 'W/"5b8d8"', None),  # weak: never, nor the date
        (None, None, None),
        (None, '"a"\r\nX-Evil: 1', None),  # not a header value: never sent back
        ("Thu, 13 Jun 2019\r\n 07:42:00 GMT", None, None),
    ],
)
def test_if_range_is_a_strong_etag_else_the_date(last_modified, etag, sent):
    assert if_range_header(last_modified, etag) == sent
