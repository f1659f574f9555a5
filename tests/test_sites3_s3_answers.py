"""Hostile S3-like endpoints (issue 20, items 4 and 9): a listing that always says "more to
come" with a new token and no keys ends at the page cap; a listing answer cut short is said
to be truncated or malformed, never shown as botocore's stand-in "500"; a listing trickled a
byte at a time ends within the timeout."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from s3_support import clean_aws_env

from chandra_download import cli
from chandra_download.sources.base import MAX_PAGES

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<Name>bucket</Name><Prefix>chandra/byobsid/3/1843/</Prefix><MaxKeys>1000</MaxKeys>"
)


def _endless(n: int) -> bytes:
    """Page ``n`` of a listing that never ends: no keys, always truncated, a new token."""
    return (
        f"{_HEAD}<KeyCount>0</KeyCount><IsTruncated>true</IsTruncated>"
        f"<NextContinuationToken>token-{n}</NextContinuationToken></ListBucketResult>"
    ).encode()


def _cut() -> bytes:
    """A listing answer cut off in the middle of a key (its Content-Length says so)."""
    return (f"{_HEAD}<KeyCount>1</KeyCount><Contents><Key>chandra/byobsid/3/1843/oif.fi").encode()


def _empty() -> bytes:
    """A whole, valid listing page with no key (what a trickle would end with)."""
    return (
        f"{_HEAD}<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"
    ).encode()


class _S3Like:
    """An S3-like endpoint on 127.0.0.1 answering every request with ``mode``'s page."""

    def __init__(self, mode: str) -> None:
        self.requests = self.sent = 0
        self.stop = threading.Event()
        counter, outer = itertools.count(), self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests += 1
                body = _endless(next(counter)) if mode == "endless" else _cut()
                if mode == "trickle":
                    body = _empty()
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "trickle":
                    return outer.trickle(self, body)
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trickle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        """One byte every 0.2 s (never a socket timeout), until the client hangs up."""
        for i in range(len(body)):
            if self.stop.wait(0.2):
                return
            try:
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
            except OSError:
                return
            self.sent += 1

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def s3_like(request: pytest.FixtureRequest) -> Iterator[_S3Like]:
    server = _S3Like(request.param)
    yield server
    server.close()


def _run(
    server: _S3Like, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout: str = "5"
) -> int:
    clean_aws_env(monkeypatch, tmp_path)
    out = tmp_path / "out"
    args = ["1843", "--mirror", "s3://bucket/chandra/", "--endpoint-url", server.url]
    opts = ["--outdir", str(out), "--timeout", timeout, "--retries", "1", "--no-progress"]
    return cli.main([*args, *opts])


def _problem_lines(err: str) -> list[str]:
    """The run's complaint about ObsId 1843, each wrapped message joined back into one line."""
    joined = err.replace("\n    ", " ")
    return [line for line in joined.splitlines() if "1843" in line and "could not" in line]


@pytest.mark.parametrize("s3_like", ["endless"], indirect=True)
def test_an_endless_s3_listing_ends_at_the_page_cap(
    s3_like: _S3Like, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert _run(s3_like, tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line, *_) = _problem_lines(err)
    assert f"more than {MAX_PAGES} listing pages" in line
    assert "more is to come" in line  # says why: the site never stopped saying so
    assert "''" not in line  # not "at ''": the ObsId's own directory is named as such
    assert s3_like.requests <= MAX_PAGES + 1  # the cap counts pages, not only keys
    assert not (tmp_path / "out" / "1843").exists() or not any((tmp_path / "out").rglob("*.fits"))


@pytest.mark.parametrize("s3_like", ["cut"], indirect=True)
def test_a_truncated_s3_listing_is_said_so_not_500(
    s3_like: _S3Like, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert _run(s3_like, tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line, *_) = _problem_lines(err)
    assert "500" not in line and "Internal Server Error" not in line
    assert "truncated or malformed" in line
    assert "oif.fi" not in err  # the hostile body itself is not echoed
    assert 1 <= s3_like.requests <= 4  # retried within --retries, then given up


@pytest.mark.parametrize("s3_like", ["trickle"], indirect=True)
def test_a_trickled_s3_listing_ends_within_the_timeout(
    s3_like: _S3Like, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """One byte every 0.2 s never trips a 1 s socket timeout: the call's own deadline does
    (issue 20.4: every listing has a total deadline that --timeout and --retries bound)."""
    assert _run(s3_like, tmp_path, monkeypatch, timeout="1") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line, *_) = _problem_lines(err)
    assert "not complete within 1 s" in line
    # About 5 bytes an attempt (timeout / 0.2 s), a few attempts: never the page's whole length.
    assert s3_like.sent < len(_empty()) // 2, s3_like.sent
