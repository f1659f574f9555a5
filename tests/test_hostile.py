"""Hostile servers (issue 12, failures 5-11; issue 9's unreachable sites and non-listings).

Each test runs against the simulator with a fault that reproduces one failure, and fails on
the code before its fix.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fault_support import FAST, OBSID, README, by_rel, sha256

from chandra_download import download
from chandra_download.results import Status
from chandra_download.simulator import Fault, iter_files

SECRET = "s3cr3t"


def _closed_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first(root: Path, suffix: str) -> str:
    return next(rel for rel, _ in sorted(iter_files(root, OBSID)) if rel.endswith(suffix))


# -- 5. redirects ---------------------------------------------------------------------------
def test_redirect_loop_is_a_clear_error_not_a_saved_file(archive_http, tmp_path) -> None:
    archive_http.faults.add(Fault("redirect_loop", README, times=None))
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    f = by_rel(results)[README]
    assert f.status is Status.FAILED
    assert "too many redirects" in (f.reason or "")
    assert not (tmp_path / str(OBSID) / README).exists()
    assert not results.ok


# -- 6. endless body ------------------------------------------------------------------------
def test_endless_body_is_cut_and_fails(archive_http, archive_root, tmp_path) -> None:
    size = (archive_root / f"byobsid/3/{OBSID}" / README).stat().st_size
    archive_http.faults.add(Fault("endless", README, times=None))  # 64 MiB, then it stops
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    f = by_rel(results)[README]
    assert f.status is Status.FAILED
    assert "more than" in (f.reason or "") or "size" in (f.reason or ""), f.reason
    top = tmp_path / str(OBSID)
    assert not (top / README).exists()
    part = top / f"{README}.part"
    assert not part.exists() or part.stat().st_size < size + 2048


# -- 7. slowloris ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_trickle_fails_on_the_minimum_rate(archive_http, tmp_path) -> None:
    """Needs the transfer's minimum-rate rule (SessionConfig.min_rate) from the core."""
    archive_http.faults.add(Fault("trickle", README, times=None, seconds=1.0))
    out: dict = {}

    def run() -> None:
        out["results"] = download(
            OBSID, mirror=archive_http.base_url, outdir=tmp_path, timeout=2, retries=0
        )

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "a 1 byte/s transfer was not stopped"
    assert time.monotonic() - started < 15
    f = by_rel(out["results"])[README]
    assert f.status is Status.FAILED
    assert "rate" in (f.reason or ""), f.reason


# -- 8. a file and a directory of the same name ---------------------------------------------
def test_file_and_directory_of_the_same_name_is_an_error(archive_http, tmp_path) -> None:
    archive_http.faults.add(
        Fault("dup_dir", f"byobsid/3/{OBSID}/", times=None, entries=("oif.fits",))
    )
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    assert not results.ok
    error = results[0].error or ""
    assert "both a file and a directory named oif.fits" in error, error
    assert str(OBSID) in results.summary()


# -- 9. lying Content-Range -----------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".jpg", "00README"])
def test_lying_content_range_on_resume_is_caught(
    archive_http, archive_root, tmp_path, suffix
) -> None:
    """Needs the core's overlap check on resume (ask for bytes before the offset, compare)."""
    rel = _first(archive_root, suffix)
    src = archive_root / f"byobsid/3/{OBSID}" / rel
    data = src.read_bytes()
    part = tmp_path / str(OBSID) / f"{rel}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[: len(data) // 2])
    archive_http.faults.add(Fault("lying_range", rel, times=1))
    results = download(OBSID, None, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    assert by_rel(results)[rel].ok, by_rel(results)[rel].reason
    assert sha256(tmp_path / str(OBSID) / rel) == sha256(src)


# -- 10. gzip bomb --------------------------------------------------------------------------
def test_gzip_bomb_stops_at_the_first_fits_failure(tmp_path) -> None:
    from chandra_download.errors import VerificationError
    from chandra_download.verify import check_file

    zeros = gzip.compress(bytes(16 * 1024 * 1024), compresslevel=1)  # ~16 KB per 16 MiB
    bomb = tmp_path / "bomb.fits.gz"
    with open(bomb, "wb") as fh:
        fh.write(gzip.compress(b"NOT A FITS HEADER".ljust(2880)))
        for _ in range(640):  # 10 GiB inflated, about 10 MB on disk
            fh.write(zeros)
    started = time.process_time()
    with pytest.raises(VerificationError, match="not a readable FITS file"):
        check_file(bomb, "primary/bomb.fits.gz")
    assert time.process_time() - started < 3


# -- 11. passwords --------------------------------------------------------------------------
_MIRRORS = [
    "s3://AKIDKEY:{pw}@bucket/chandra/data/",
    "https://alice:{pw}@127.0.0.1:{port}/cdaftp/",
    "http://alice:{pw}@127.0.0.1:{port}/cdaftp/",
    "ftp://alice:{pw}@127.0.0.1:{port}/pub/",
    "ftps://alice:{pw}@127.0.0.1:{port}/pub/",
]
_PASSWORDS = [SECRET, f"{SECRET}%40x", f"p@{SECRET}"]


@pytest.mark.parametrize("password", _PASSWORDS)
@pytest.mark.parametrize("template", _MIRRORS)
def test_passwords_never_shown_in_results(template: str, password: str, tmp_path) -> None:
    port = _closed_port()
    mirror = template.format(pw=password, port=port)
    results = download(
        OBSID,
        mirror=mirror,
        outdir=tmp_path,
        endpoint_url=f"http://127.0.0.1:{port}",
        retries=0,
        timeout=2,
    )
    assert not results.ok
    shown = [repr(results), str(results), results.summary(), *results.errors]
    shown += [str(r.error) for r in results] + [repr(r) for r in results]
    for text in shown:
        assert SECRET not in text, text


@pytest.mark.parametrize("template", [_MIRRORS[0], _MIRRORS[1], _MIRRORS[3]])
def test_passwords_never_shown_by_the_cli(template: str, tmp_path) -> None:
    port = _closed_port()
    mirror = template.format(pw=f"p@{SECRET}", port=port)
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "chandra_download", str(OBSID), "--mirror", mirror]
        + ["--outdir", str(tmp_path), "--retries", "0", "--timeout", "2", "-v", "5"]
        + ["--endpoint-url", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode != 0
    assert SECRET not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# -- issue 9: unreachable sites, pages that are not listings --------------------------------
@pytest.mark.parametrize("scheme", ["http", "ftp", "s3"])
def test_refused_site_is_reported_at_once(scheme: str, tmp_path) -> None:
    port = _closed_port()
    mirror = {
        "http": f"http://127.0.0.1:{port}/cdaftp/",
        "ftp": f"ftp://127.0.0.1:{port}/",
        "s3": "s3://bucket/chandra/data/",
    }[scheme]
    started = time.monotonic()
    results = download(
        OBSID, mirror=mirror, outdir=tmp_path, retries=5, endpoint_url=f"http://127.0.0.1:{port}"
    )
    assert time.monotonic() - started < 3
    assert not results.ok
    assert "cannot reach" in (results[0].error or ""), results[0].error


def test_fallback_moves_on_from_a_dead_site_at_once(archive_http, tmp_path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/cdaftp/"
    started = time.monotonic()
    results = download(
        OBSID, ["oif"], mirror=[dead, archive_http.base_url], outdir=tmp_path, retries=5
    )
    assert time.monotonic() - started < 3
    assert results.ok, results.summary()


def test_page_that_is_not_a_listing_names_the_mirror_and_the_base(archive_http, tmp_path):
    archive_http.faults.add(Fault("html", f"byobsid/3/{OBSID}/", times=None))
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    error = results[0].error or ""
    assert not results.ok and archive_http.base_url in error, error
    assert "byobsid/" in error and "https://cxc.cfa.harvard.edu/cdaftp/" in error


# -- one parser for Range, Content-Range and Retry-After ------------------------------------
def test_range_and_content_range_parsed_in_one_place() -> None:
    from chandra_download.sources.wire import (
        ContentRange,
        check_content_range,
        parse_content_range,
        range_header,
    )

    assert range_header(0) is None and range_header(5) == "bytes=5-"
    assert range_header(5, 10) == "bytes=5-9"
    assert parse_content_range("bytes 5-9/10") == ContentRange(5, 10, 10)
    assert parse_content_range("BYTES 0-9/*") == ContentRange(0, 10, None)
    assert parse_content_range("bytes */10") == ContentRange(None, None, 10)
    for bad in ("bytes 9-5/10", "bytes 5-10/10", "bytes=5-9/10", "5-9/10", "", None):
        assert parse_content_range(bad) is None
    ok = parse_content_range("bytes 5-9/10")
    assert check_content_range(ok, 5, None) is None and check_content_range(ok, 5, 10) is None
    assert check_content_range(ok, 5, 20) is None  # asked past the end: to the end it is
    assert "start at the requested byte 4" in check_content_range(ok, 4, None)
    assert "end at byte 7" in check_content_range(ok, 5, 8)
    assert check_content_range(None, 5, None) == "no valid Content-Range"


def test_retry_after_seconds_and_http_date() -> None:
    from chandra_download.sources.wire import parse_retry_after

    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    for bad in (None, "", "soon", "nan", "Wed, 99 Foo 2015"):
        assert parse_retry_after(bad) is None


# -- the HTTP source's contract -------------------------------------------------------------
def _http_source(server, **cfg):
    from chandra_download.config import SessionConfig
    from chandra_download.sources import choose_source

    return choose_source(server.base_url, SessionConfig(timeout=5, **cfg))


def _read(body) -> bytes:
    out = bytearray()
    while chunk := body.read(65536):
        out += chunk
    body.close()
    return bytes(out)


def test_http_open_answers_start_total_end_and_refuses_other_bytes(
    archive_http, archive_root
) -> None:
    from chandra_download.errors import ContentRangeMismatch, RangeNotSatisfiable

    rel = "oif.fits"
    data = (archive_root / f"byobsid/3/{OBSID}" / rel).read_bytes()
    with _http_source(archive_http) as src:
        f = by_rel_remote(src.list_obsid(OBSID))[rel]
        body = src.open(f, 100, 200)
        assert (body.start, body.total, body.end) == (100, len(data), 200)
        assert _read(body) == data[100:200]
        archive_http.faults.add(Fault("ignore_range", rel))
        body = src.open(f, 100)
        assert (body.start, body.total, body.end) == (0, len(data), None)
        assert _read(body) == data
        archive_http.faults.add(Fault("wrong_content_range", rel))
        with pytest.raises(ContentRangeMismatch, match="does not start at the requested byte"):
            src.open(f, 1000)  # never reopened from 0 behind the caller's back
        with pytest.raises(RangeNotSatisfiable) as info:
            src.open(f, len(data))
        assert info.value.total == len(data)


def test_http_size_is_exact_and_free_once_a_response_stated_it(archive_http, archive_root):
    rel = "oif.fits"
    size = (archive_root / f"byobsid/3/{OBSID}" / rel).stat().st_size
    with _http_source(archive_http) as src:
        f = by_rel_remote(src.list_obsid(OBSID))[rel]
        assert f.size is None and f.approx_size is not None
        assert src.size(f) == size  # a HEAD
        other = by_rel_remote(src.list_obsid(OBSID))[README]
        src.open(other, 0).close()  # the response's Content-Length is remembered
        before = archive_http.stats.to_dict()["requests"]
        assert src.size(other) == (archive_root / f"byobsid/3/{OBSID}" / README).stat().st_size
        assert archive_http.stats.to_dict()["requests"] == before  # no request


def test_listing_page_size_is_bounded(archive_http, monkeypatch) -> None:
    from chandra_download.errors import SourceError
    from chandra_download.sources import http

    monkeypatch.setattr(http, "MAX_LISTING_BYTES", 2000)
    with _http_source(archive_http) as src, pytest.raises(SourceError, match="larger than"):
        src.list_obsid(OBSID)


def test_refused_after_the_site_answered_keeps_the_retries(archive_root) -> None:
    from chandra_download.errors import SiteUnreachable, TransientError
    from chandra_download.simulator import ArchiveHTTPServer

    with ArchiveHTTPServer(archive_root) as server:
        src = _http_source(server)
        f = by_rel_remote(src.list_obsid(OBSID))[README]
    with src, pytest.raises(TransientError) as info:
        src.open(f, 0)
    assert not isinstance(info.value, SiteUnreachable)


def test_base_without_byobsid_is_not_found_with_a_hint(archive_http, tmp_path) -> None:
    wrong = archive_http.base_url.replace("/cdaftp/", "/")
    results = download(OBSID, mirror=wrong, outdir=tmp_path, **FAST)
    assert results.found == [False]
    from chandra_download.config import SessionConfig
    from chandra_download.errors import ObsIdNotFound
    from chandra_download.sources import choose_source

    with choose_source(wrong, SessionConfig(timeout=5)) as src:
        with pytest.raises(ObsIdNotFound, match="byobsid/ does not exist.*cxc.cfa.harvard"):
            src.list_obsid(OBSID)


def by_rel_remote(files) -> dict:
    return {f.relpath: f for f in files}


# -- QA round 12: a small hostile server (listings and encodings the simulator cannot fake) -
HOSTILE_FILES = {"00README": b"readme line\n" * 170, "notes.txt": b"x" * 3000, "z.txt": b"z\n"}


def _hostile_listing(files: dict) -> bytes:
    rows = "".join(
        f'<tr><td><a href="{n}">{n}</a></td><td align="right">2019-06-13 07:42  </td>'
        f'<td align="right">{len(d)} </td></tr>\n'
        for n, d in files.items()
    )
    return (
        "<html>\n <head>\n  <title>Index of /byobsid/9/9999</title>\n </head>\n <body>\n"
        '<table>\n<tr><td><a href="/byobsid/9/">Parent Directory</a></td></tr>\n'
        + rows
        + "</table>\n</body></html>\n"
    ).encode()


class _Hostile:
    """One misbehaviour (``mode``) on 127.0.0.1; every trickle stops at ``stop`` or 30 s."""

    def __init__(self, mode: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.mode, self.stop = mode, threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def trickle(self, h, data: bytes, pause: float) -> None:
        deadline = time.monotonic() + 30
        for i in range(len(data)):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                h.wfile.write(data[i : i + 1])
                h.wfile.flush()
            except OSError:
                return
            time.sleep(pause)

    def trickle_headers(self, h, last: str) -> None:
        """The status line at once, then the headers at 5 bytes a second (``last`` last)."""
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        h.wfile.flush()
        self.trickle(h, f"X-Pad: {'a' * 300}\r\n{last}\r\n".encode(), 0.2)
        h.close_connection = True

    def handle(self, h) -> None:
        name = h.path.rsplit("/", 1)[-1]
        if h.path.endswith("/"):
            body = _hostile_listing(HOSTILE_FILES)
            return self.send_listing(h, body)
        data = HOSTILE_FILES.get(name)
        if data is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if self.mode == "fhtrickle" and name == "00README":
            return self.trickle_headers(h, f"Content-Length: {len(data)}\r\n")
        coding = None
        if self.mode == "ce_gzip" and name == "00README":
            data, coding = gzip.compress(data), "gzip"
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        if coding:
            h.send_header("Content-Encoding", coding)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def send_listing(self, h, body: bytes) -> None:
        if self.mode == "htrickle":
            return self.trickle_headers(
                h, f"Content-Type: text/html\r\nContent-Length: {len(body)}\r\n"
            )
        h.send_response(200)
        h.send_header("Content-Type", "text/html;charset=UTF-8")
        if self.mode == "ltrunc":  # no Content-Length; closed two-thirds through the table
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body[: len(body) * 2 // 3])
            h.close_connection = True
            return
        if self.mode == "nolength":  # no Content-Length, but the whole page
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body)
            h.close_connection = True
            return
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if self.mode == "ltrickle":  # honest length, 5 bytes a second
            self.trickle(h, body, 0.2)
            h.close_connection = True
            return
        h.wfile.write(body)


def _hostile_download(server: _Hostile, tmp_path: Path, **kw):
    opts = dict(FAST, retries=0, timeout=2) | kw
    return download(9999, mirror=server.base, outdir=tmp_path, **opts)


def test_content_encoding_is_never_saved_as_the_file(tmp_path) -> None:
    with _Hostile("ce_gzip") as server:
        results = _hostile_download(server, tmp_path)
    f = by_rel(results)["00README"]
    assert f.status is Status.FAILED
    assert "gzip-encoded although asked not to" in (f.reason or ""), f.reason
    assert not (tmp_path / "9999" / "00README").exists()
    assert (tmp_path / "9999" / "z.txt").read_bytes() == HOSTILE_FILES["z.txt"]
    assert not results.ok


def test_listing_cut_short_is_an_error_not_fewer_files(tmp_path) -> None:
    with _Hostile("ltrunc") as server:
        results = _hostile_download(server, tmp_path, retries=1)
    assert not results.ok
    error = results[0].error or ""
    assert "was cut short" in error, error
    assert not (tmp_path / "9999").exists() or not any((tmp_path / "9999").iterdir())


def test_listing_without_content_length_but_whole_is_taken(tmp_path) -> None:
    with _Hostile("nolength") as server:
        results = _hostile_download(server, tmp_path)
    assert results.ok, results.summary()
    assert sorted(f.relpath for f in results[0].files) == sorted(HOSTILE_FILES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["ltrickle", "htrickle"])
def test_slow_listing_fails_on_the_minimum_rate(mode: str, tmp_path) -> None:
    out: dict = {}
    with _Hostile(mode) as server:
        worker = threading.Thread(
            target=lambda: out.update(results=_hostile_download(server, tmp_path, timeout=1)),
            daemon=True,
        )
        started = time.monotonic()
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "a listing sent at 5 bytes/s was not stopped"
    assert time.monotonic() - started < 15
    results = out["results"]
    assert not results.ok
    assert "rate" in (results[0].error or ""), results[0].error


@pytest.mark.timeout(60)
def test_trickled_file_headers_fail_on_the_minimum_rate(tmp_path) -> None:
    with _Hostile("fhtrickle") as server:
        started = time.monotonic()
        results = _hostile_download(server, tmp_path, timeout=1)
    assert time.monotonic() - started < 15
    f = by_rel(results)["00README"]
    assert f.status is Status.FAILED
    assert "rate" in (f.reason or ""), f.reason
    assert not (tmp_path / "9999" / "00README").exists()
    assert (tmp_path / "9999" / "z.txt").read_bytes() == HOSTILE_FILES["z.txt"]
