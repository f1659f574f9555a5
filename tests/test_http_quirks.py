"""Quirks of real HTTP mirrors (issues 18.1, 20.3): Apache's ``AddEncoding x-gzip .gz`` and an
HTTPS mirror redirecting to plain HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from chandra_download import download
from chandra_download.simulator import ArchiveHTTPServer


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("coding", ["x-gzip", "gzip"])
def test_gz_files_labelled_gzip_encoded_are_the_stored_files(
    archive_root, source_files, tmp_path, fast, coding
):
    """Apache mirrors with ``AddEncoding x-gzip .gz`` label every ``.fits.gz`` as encoded: the
    bytes are the stored file, taken as they are (and still gzip-checked)."""
    want = source_files(1843)
    assert any(rel.endswith(".gz") for rel in want)
    with ArchiveHTTPServer(archive_root, gz_encoding=coding) as server:
        results = download(1843, mirror=server.base_url, outdir=tmp_path, **fast)
    assert results.ok, [(f.relpath, f.reason) for f in results[0].files if f.reason]
    for rel, src in want.items():
        assert _sha(tmp_path / "1843" / rel) == _sha(src), rel


def _moved_to_http(archive_root: Path):
    """An HTTPS mirror whose every answer is a 301 to the same path on a plain HTTP one."""
    plain = ArchiveHTTPServer(archive_root).start()
    secure = ArchiveHTTPServer(archive_root, tls=True, redirect_base=plain.base_url).start()
    return plain, secure


def test_https_mirror_redirecting_to_plain_http_is_refused(archive_root, tmp_path, fast):
    plain, secure = _moved_to_http(archive_root)
    try:
        results = download(
            1843, mirror=secure.base_url, outdir=tmp_path, ca_bundle=secure.ca_file, **fast
        )
    finally:
        secure.stop()
        plain.stop()
    assert not results.ok
    error = results[0].error or ""
    assert "downgrades HTTPS to plain HTTP" in error and "--insecure" in error, error
    assert "\n" not in error
    assert plain.stats.get_count("*", method=None) == 0  # nothing went over plain HTTP
    assert not (tmp_path / "1843").exists()


def test_downgrade_is_followed_with_insecure(archive_root, source_files, tmp_path, fast):
    plain, secure = _moved_to_http(archive_root)
    try:
        with pytest.warns(UserWarning, match="insecure"):
            results = download(1843, mirror=secure.base_url, outdir=tmp_path, insecure=True, **fast)
    finally:
        secure.stop()
        plain.stop()
    assert results.ok
    assert plain.stats.get_count("*") > 0
    for rel, src in source_files(1843).items():
        assert _sha(tmp_path / "1843" / rel) == _sha(src), rel


def test_header_deadlines_need_no_thread_per_request(
    archive_http, source_files, tmp_path, fast, monkeypatch
):
    """One watchdog serves every request's header deadline (issue 18.5): threads started by
    a whole download stay far below the number of requests it makes."""
    import threading

    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    results = download(1843, mirror=archive_http.base_url, outdir=tmp_path, jobs=2, **fast)
    assert results.ok
    requests = archive_http.stats.get_count("*", method=None)
    assert requests >= len(source_files(1843)) > 20
    assert len(started) < 10, started
