"""Helpers for the end-to-end mirror tests: trees, servers, a forwarding proxy, leak checks.

Fixtures defined here are imported by the test modules (``from mirror_support import ...``).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from s3_support import clean_aws_env

from chandra_download import log as cd_log
from chandra_download.simulator.faults import FaultPlan
from chandra_download.simulator.ftp import ArchiveFTPServer
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.simulator.s3 import ArchiveS3Server
from chandra_download.simulator.tree import generate_archive, iter_files

USER = "archivist"
#: Distinctive, with an "@" so that userinfo must be percent-decoded (``%40``).
PASSWORD = "Zebra@Quokka-7319-pw"
PASSWORD_URL = quote(PASSWORD, safe="")
WRONG_PASSWORD = "Walrus@Mango-4406-no"
SECRETS = (
    PASSWORD,
    PASSWORD_URL,
    WRONG_PASSWORD,
    quote(WRONG_PASSWORD, safe=""),
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    base64.b64encode(f"{USER}:{WRONG_PASSWORD}".encode()).decode(),
)
OBSIDS = (1843, 2749, 6298)
MANY_OBSID = 4242  # holds more than one S3 listing page of keys
MANY = 1000  # plus the ObsId's own files: more than one page


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digests(root: Path, obsid: int) -> dict[str, str]:
    """relpath -> sha256 of every file of an ObsId in a source tree."""
    return {rel: sha256(p) for rel, p in iter_files(root, obsid)}


def assert_identical(outdir: Path, root: Path, obsid: int, relpaths: set[str] | None = None):
    """The downloaded ObsId holds exactly ``relpaths`` (default: all), byte-identical copies."""
    want = tree_digests(root, obsid)
    if relpaths is not None:
        want = {r: d for r, d in want.items() if r in relpaths}
    top = outdir / str(obsid)
    paths = sorted(p for p in top.rglob("*") if not p.is_dir()) if top.is_dir() else []
    got = {p.relative_to(top).as_posix(): sha256(p) for p in paths}
    assert got == want  # also: no stray .part files
    for p in paths:  # copies, never links to the mirror's files
        assert p.lstat().st_nlink == 1 and not p.is_symlink()


def assert_no_secret(*texts: str) -> None:
    """No password (plain, percent-encoded or in a basic-auth header) in any of the texts."""
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"secret {secret!r} leaked in: {text[:2000]}"


# -- trees -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def partial_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A partial mirror: ObsId 1843 only (same content as ``archive_root``'s)."""
    return generate_archive(tmp_path_factory.mktemp("partial"), {1843: "acis"})


@pytest.fixture(scope="session")
def many_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ObsId with more files than one S3 ListObjectsV2 page."""
    root = generate_archive(tmp_path_factory.mktemp("many"), {MANY_OBSID: "acis"}, scale=0.05)
    extra = root / "byobsid" / str(MANY_OBSID % 10) / str(MANY_OBSID) / "secondary" / "extra"
    extra.mkdir(parents=True, exist_ok=True)
    for i in range(MANY):
        (extra / f"x{i:04d}.dat").write_bytes(bytes([i % 251]) * (i % 13 + 1))
    return root


# -- servers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ftp_server(archive_root: Path) -> Iterator[ArchiveFTPServer]:
    """Anonymous plus one password account (the password has an "@")."""
    with ArchiveFTPServer(archive_root, users={USER: PASSWORD}, faults=FaultPlan()) as srv:
        yield srv


@pytest.fixture(scope="module")
def ftp_old(archive_root: Path) -> Iterator[ArchiveFTPServer]:
    """A server without MLSD (listings must come from LIST) and without anonymous logins."""
    with ArchiveFTPServer(archive_root, users={USER: PASSWORD}, anonymous=False, mlsd=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def ftps_server(archive_root: Path) -> Iterator[ArchiveFTPServer]:
    """Explicit FTPS (certificate from ``srv.ca_file``), no anonymous logins."""
    with ArchiveFTPServer(archive_root, users={USER: PASSWORD}, anonymous=False, tls=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3_server(archive_root: Path) -> Iterator[ArchiveS3Server]:
    # moto keeps buckets per process: a unique name per fixture.
    bucket = f"mirrors-{uuid.uuid4().hex[:12]}"
    with ArchiveS3Server(archive_root, bucket=bucket, prefix="chandra/data/") as srv:
        yield srv


@pytest.fixture
def http_auth(archive_root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(archive_root, auth=(USER, PASSWORD)) as srv:
        yield srv


@pytest.fixture
def anon_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere (requests to S3 must be unsigned)."""
    clean_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def no_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Point NETRC at a missing file so a developer's ~/.netrc cannot change results."""
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


# -- logs ---------------------------------------------------------------------------------------
@dataclass
class Captured:
    """Everything a run showed: the package log at verbose 5 and the root logger's records."""

    stream: io.StringIO
    caplog: pytest.LogCaptureFixture
    capsys: pytest.CaptureFixture[str]
    extra: list[str] = field(default_factory=list)

    def text(self) -> str:
        out, err = self.capsys.readouterr()
        self.extra += [out, err]
        return "\n".join([self.stream.getvalue(), self.caplog.text, *self.extra])

    def assert_clean(self, *more: Any) -> None:
        assert_no_secret(self.text(), *(repr(m) for m in more), *(str(m) for m in more))


@pytest.fixture
def captured(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> Iterator[Captured]:
    """``set_verbosity(5)`` into a buffer, every logger at level 1 into caplog."""
    stream = io.StringIO()
    logger = cd_log.LOGGER
    saved = (logger.level, logger.propagate)
    cd_log.set_verbosity(5, stream=stream)
    logger.addHandler(caplog.handler)  # set_verbosity stops propagation to the root logger
    caplog.set_level(1)
    try:
        yield Captured(stream, caplog, capsys)
    finally:
        logger.removeHandler(caplog.handler)
        if cd_log._handler is not None:
            logger.removeHandler(cd_log._handler)
            cd_log._handler = None
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# -- a forwarding HTTP proxy ---------------------------------------------------------------------
_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def _forward(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.requestline)
        target = urlsplit(self.path)
        if not target.scheme or not target.hostname:  # not a proxy request
            self.send_error(400, "absolute URI required")
            return
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        try:
            conn.request(self.command, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except OSError as exc:
            self.send_error(502, str(exc))
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP and key.lower() != "content-length":
                self.send_header(key, value)
        length = resp.getheader("Content-Length")
        self.send_header("Content-Length", length if length is not None else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.lock = threading.Lock()
        self.requests: list[str] = []


class ForwardingProxy:
    """A plain HTTP forward proxy on 127.0.0.1 that records every request line it serves."""

    def __init__(self) -> None:
        self._server = _ProxyServer()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        with self._server.lock:
            return list(self._server.requests)

    def __enter__(self) -> ForwardingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    with ForwardingProxy() as p:
        yield p


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every proxy variable (urllib reads them at call time)."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"):
            monkeypatch.delenv(name)


logging.getLogger("pyftpdlib").setLevel(logging.WARNING)  # server chatter is not the client's
