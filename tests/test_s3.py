"""S3Source against a real moto S3 server on loopback (ArchiveS3Server)."""

from __future__ import annotations

import dataclasses
import random
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from s3_support import (
    EVT2,
    MANY,
    PREFIX,
    BrokenStream,
    auth_headers,
    build_tree,
    by_rel,
    clean_aws_env,
    client_error,
    read_all,
    write_tree,
)

from chandra_download.config import SessionConfig
from chandra_download.errors import (
    AuthError,
    FileMissing,
    ObsIdNotFound,
    RangeNotSatisfiable,
    SiteUnreachable,
    SourceError,
    TransientError,
    UnsafeEntry,
)
from chandra_download.simulator.faults import Fault, FaultPlan
from chandra_download.simulator.s3 import ArchiveS3Server
from chandra_download.sources import choose_source
from chandra_download.sources.s3 import S3Body, S3Source, parse_s3_url


@pytest.fixture(scope="module")
def tree() -> dict[str, bytes]:
    return build_tree()


@pytest.fixture(scope="module")
def server(tree: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    small = {rel: data for rel, data in tree.items() if "/2749/" not in rel}
    root = write_tree(tmp_path_factory.mktemp("archive"), small)
    with ArchiveS3Server(root, prefix=PREFIX) as srv:
        for key, data in tree.items():
            if "/2749/" in key:
                srv.put(PREFIX + key, data)
        # A "directory marker" and an unsafe key (backslash) in another ObsId.
        srv.put(PREFIX + "byobsid/3/1843/primary/", b"")
        srv.put(PREFIX + "byobsid/7/7777/oif.fits", b"x")
        srv.put(PREFIX + "byobsid/7/7777/..\\evil", b"x")
        yield srv


@pytest.fixture(autouse=True)
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere: requests must work unsigned."""
    clean_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def source(server: Any) -> Iterator[S3Source]:
    src = S3Source(server.base_url, SessionConfig(endpoint_url=server.endpoint_url, timeout=10))
    yield src
    src.close()


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://nasa-heasarc/chandra/data") == ("nasa-heasarc", "chandra/data/")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")


def test_choose_source_builds_s3(server: Any) -> None:
    cfg = SessionConfig(endpoint_url=server.endpoint_url)
    with choose_source(server.base_url, cfg) as src:
        assert isinstance(src, S3Source)
        assert src.exact_sizes


def test_listing_exact_sizes_and_anonymous(source: S3Source, tree: dict[str, bytes]) -> None:
    seen = auth_headers(source)
    files = by_rel(source.list_obsid(1843))
    expected = {k.removeprefix("byobsid/3/1843/"): v for k, v in tree.items() if "/1843/" in k}
    assert set(files) == set(expected)  # the "primary/" marker key is skipped
    for rel, f in files.items():
        assert f.size == len(expected[rel])
        assert f.url == f"s3://nasa-heasarc/{PREFIX}byobsid/3/1843/{rel}"
    assert seen and all(h is None for h in seen), "requests must be unsigned"


def test_listing_paginates(source: S3Source) -> None:
    files = source.list_obsid(2749)
    assert len(files) == MANY
    assert {f.relpath for f in files} == {f"secondary/f{i:04d}.fits" for i in range(MANY)}
    assert all(f.size == int(f.relpath[-9:-5]) % 7 for f in files)


def test_listing_is_bounded(source: S3Source, monkeypatch: pytest.MonkeyPatch) -> None:
    from chandra_download.sources import s3

    monkeypatch.setattr(s3, "MAX_KEYS", 2)
    with pytest.raises(SourceError, match="more than 2 objects"):
        source.list_obsid(1843)


def test_prefix_does_not_match_longer_obsid(source: S3Source) -> None:
    assert [f.relpath for f in source.list_obsid(184)] == ["oif.fits"]
    with pytest.raises(ObsIdNotFound):
        source.list_obsid(18)  # byobsid/8/18/ is a prefix of nothing


def test_missing_obsid(source: S3Source) -> None:
    with pytest.raises(ObsIdNotFound, match="12345"):
        source.list_obsid(12345)


def test_unsafe_key_refused(source: S3Source) -> None:
    with pytest.raises(UnsafeEntry):
        source.list_obsid(7777)


def test_open_whole_and_ranged(source: S3Source, tree: dict[str, bytes]) -> None:
    data = tree[f"byobsid/3/1843/{EVT2}"]
    f = by_rel(source.list_obsid(1843))[EVT2]
    assert read_all(source, f) == (0, len(data), data)
    for offset in (1, 123_457, len(data) - 1):
        assert read_all(source, f, offset) == (offset, len(data), data[offset:])


def test_empty_file(source: S3Source) -> None:
    f = by_rel(source.list_obsid(1843))["secondary/aspect/pcadf01843_000N001_osol1.fits.gz"]
    assert f.size == 0
    assert read_all(source, f) == (0, 0, b"")


@pytest.mark.parametrize("known_size", [True, False])
def test_offset_at_end(source: S3Source, known_size: bool) -> None:
    f = by_rel(source.list_obsid(1843))["oif.fits"]
    if not known_size:  # make the server answer 416 InvalidRange
        f = dataclasses.replace(f, size=None)
    for offset in (2880, 5000):
        with pytest.raises(RangeNotSatisfiable) as info:
            source.open(f, offset)
        assert info.value.total in ((2880,) if known_size else (2880, None))


def test_missing_key(source: S3Source) -> None:
    f = by_rel(source.list_obsid(1843))["oif.fits"]
    gone = dataclasses.replace(f, url=f.url + ".gone")
    with pytest.raises(FileMissing):
        source.open(gone)


def test_missing_bucket(server: Any) -> None:
    cfg = SessionConfig(endpoint_url=server.endpoint_url)
    with S3Source("s3://no-such-chandra-bucket/chandra/data/", cfg) as src:
        with pytest.raises(SourceError, match="no-such-chandra-bucket") as info:
            src.list_obsid(1843)
    assert type(info.value) is SourceError


def test_profile_signs_requests(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile chandra-test]\nregion = us-east-1\n"
        "aws_access_key_id = AKIDCHANDRATEST\naws_secret_access_key = secret\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    cfg = SessionConfig(endpoint_url=server.endpoint_url, profile="chandra-test")
    with S3Source(server.base_url, cfg) as src:
        seen = auth_headers(src)
        assert [f.relpath for f in src.list_obsid(184)] == ["oif.fits"]
    assert seen and all(h and "Credential=AKIDCHANDRATEST/" in h for h in seen)


def test_unknown_profile(server: Any) -> None:
    cfg = SessionConfig(endpoint_url=server.endpoint_url, profile="no-such-profile")
    with pytest.raises(AuthError, match="no-such-profile"):
        S3Source(server.base_url, cfg)


def test_concurrent_opens(source: S3Source, tree: dict[str, bytes]) -> None:
    data = tree[f"byobsid/3/1843/{EVT2}"]
    f = by_rel(source.list_obsid(1843))[EVT2]
    offsets = [random.Random(i).randrange(len(data)) for i in range(32)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda off: read_all(source, f, off), offsets))
    for off, (start, total, got) in zip(offsets, results, strict=True):
        assert (start, total) == (off, len(data))
        assert got == data[off:]


def test_refused_on_first_contact_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = SessionConfig(endpoint_url=f"http://127.0.0.1:{port}", timeout=2, retries=0)
    with S3Source("s3://nasa-heasarc/chandra/data/", cfg) as src:
        with pytest.raises(SiteUnreachable, match="cannot reach"):
            src.list_obsid(1843)


def test_refused_after_the_site_answered_is_transient(fault_server: Any) -> None:
    """Once the endpoint has answered, a refused connection keeps the retry policy."""
    from chandra_download.simulator.proxy import FaultProxy

    plan = FaultPlan()
    proxy = FaultProxy(
        fault_server.moto_endpoint_url, plan, fault_server.bucket, fault_server.prefix
    ).start()
    cfg = SessionConfig(endpoint_url=proxy.url, timeout=2, retries=0)
    with S3Source(fault_server.base_url, cfg) as src:
        assert src.list_obsid(1843)
        plan.add(Fault("drop", "byobsid/3/1843/"))  # ends the pooled keep-alive connection
        proxy.stop()
        with pytest.raises(TransientError):
            src.list_obsid(1843)
        with pytest.raises(TransientError, match="127.0.0.1") as info:
            src.list_obsid(1843)  # a new connection, refused
        assert not isinstance(info.value, SiteUnreachable)


# ---------------------------------------------------------------- error mapping, no server
@pytest.fixture(scope="module")
def offline() -> Iterator[S3Source]:
    """A source that is never connected: for the error mapping."""
    with S3Source("s3://nasa-heasarc/chandra/data/", SessionConfig()) as src:
        yield src


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("AccessDenied", 403, AuthError),
        ("InvalidAccessKeyId", 403, AuthError),
        ("SignatureDoesNotMatch", 403, AuthError),
        ("403", 403, AuthError),
        ("SlowDown", 503, TransientError),
        ("InternalError", 500, TransientError),
        ("RequestTimeout", 400, TransientError),
        ("NoSuchKey", 404, FileMissing),
        ("404", 404, FileMissing),
        ("InvalidRange", 416, RangeNotSatisfiable),
        ("NoSuchBucket", 404, SourceError),
    ],
)
def test_error_mapping(offline: S3Source, code: str, status: int, kind: type[Exception]) -> None:
    err = offline._map_error(client_error(code, status), "s3://nasa-heasarc/x")
    assert type(err) is kind
    if kind is AuthError:
        assert "unsigned" in str(err) and "--aws-profile" in str(err)
    if code == "NoSuchBucket":
        assert "nasa-heasarc" in str(err)


def test_slowdown_retry_after(offline: S3Source) -> None:
    err = offline._map_error(client_error("SlowDown", 503, {"retry-after": "3"}), "x")
    assert isinstance(err, TransientError) and err.retry_after == 3.0


def test_body_stream_errors_and_ignored_range() -> None:
    resp = {"Body": BrokenStream(), "ContentLength": 10}
    body = S3Body(resp, 5, "s3://b/k")
    assert (body.start, body.total) == (0, 10)  # no Content-Range: the range was ignored
    with pytest.raises(TransientError):
        body.read(4)
    body.close()
    ranged = S3Body({"Body": BrokenStream(), "ContentRange": "bytes 5-9/10"}, 5, "s3://b/k")
    assert (ranged.start, ranged.total) == (5, 10)


def test_generated_archive_empty_prefix(tmp_path: Path) -> None:
    tree_mod = pytest.importorskip("chandra_download.simulator.tree")
    root = tree_mod.generate_archive(tmp_path / "archive", scale=0.05)
    with ArchiveS3Server(root, bucket="generated-archive", prefix="") as srv:
        assert srv.base_url == "s3://generated-archive/"
        cfg = SessionConfig(endpoint_url=srv.endpoint_url)
        with choose_source(srv.base_url, cfg) as src:
            for obsid in (1843, 2749, 6298):
                local = dict(tree_mod.iter_files(root, obsid))
                files = by_rel(src.list_obsid(obsid))
                assert {rel: f.size for rel, f in files.items()} == {
                    rel: p.stat().st_size for rel, p in local.items()
                }
            rel, path = max(local.items(), key=lambda item: item[1].stat().st_size)
            assert read_all(src, files[rel])[2] == path.read_bytes()


# ---------------------------------------------------------------- injected faults (proxy)
@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    small = {k: v for k, v in build_tree().items() if "/1843/" in k}
    root = write_tree(tmp_path_factory.mktemp("faulty"), small)
    with ArchiveS3Server(root, bucket="faulty-archive", faults=FaultPlan()) as srv:
        yield srv


@pytest.fixture
def faulty(fault_server: Any) -> Iterator[tuple[S3Source, FaultPlan]]:
    """A source with no botocore retries behind the proxy, and its (emptied) fault plan."""
    fault_server.faults.clear()
    cfg = SessionConfig(endpoint_url=fault_server.endpoint_url, retries=0, timeout=1)
    with S3Source(fault_server.base_url, cfg) as src:
        yield src, fault_server.faults
    fault_server.faults.clear()


def test_fault_slowdown(faulty: tuple[S3Source, FaultPlan]) -> None:
    src, plan = faulty
    plan.add(Fault("status", "byobsid/3/1843/", status=503, retry_after=2))
    with pytest.raises(TransientError) as info:
        src.list_obsid(1843)
    assert info.value.retry_after == 2.0
    plan.add(Fault("status", "*evt2*", status=503, times=None))
    f = by_rel(src.list_obsid(1843))[EVT2]
    with pytest.raises(TransientError, match="SlowDown"):
        src.open(f)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault("drop", "*evt2*", after_bytes=100_000), TransientError),
        (Fault("truncate", "*evt2*", after_bytes=100_000), TransientError),
        (Fault("stall", "*evt2*", after_bytes=100_000, seconds=2.5), TransientError),
        (Fault("drop", "*evt2*"), TransientError),
        (Fault("status", "*evt2*", status=403), AuthError),
        (Fault("status", "*evt2*", status=404), FileMissing),
    ],
    ids=["drop-mid-body", "truncate", "stall", "drop-at-once", "403", "404"],
)
def test_fault_then_resume(
    faulty: tuple[S3Source, FaultPlan], tree: dict[str, bytes], fault: Fault, error: type
) -> None:
    src, plan = faulty
    data = tree[f"byobsid/3/1843/{EVT2}"]
    f = by_rel(src.list_obsid(1843))[EVT2]
    plan.add(dataclasses.replace(fault))
    got = bytearray()
    with pytest.raises(error):
        with src.open(f) as body:
            while chunk := body.read(8192):
                got += chunk
    assert len(got) <= 100_000 and data.startswith(bytes(got))
    assert read_all(src, f, len(got)) == (len(got), len(data), data[len(got) :])


def test_fault_ranges_and_traversal(faulty: tuple[S3Source, FaultPlan], tree: dict) -> None:
    src, plan = faulty
    data = tree[f"byobsid/3/1843/{EVT2}"]
    f = by_rel(src.list_obsid(1843))[EVT2]
    plan.add(Fault("ignore_range", "*evt2*"))
    assert read_all(src, f, 1000) == (0, len(data), data)
    plan.add(Fault("wrong_content_range", "*evt2*"))
    with pytest.raises(TransientError, match="does not start at the requested byte 1000"):
        src.open(f, 1000)  # a 206 for other bytes than asked: none of it is used
    plan.add(Fault("traversal", "byobsid/3/1843/"))
    with pytest.raises(UnsafeEntry):
        src.list_obsid(1843)
    assert [kind for _, _, kind in plan.fired][-3:] == [
        "ignore_range",
        "wrong_content_range",
        "traversal",
    ]


@pytest.mark.parametrize("how", ["SSL_CERT_FILE", "ca_bundle", "neither"])
def test_tls_trusts_ssl_cert_file_and_ca_bundle(
    archive_https: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """An HTTPS endpoint signed by a private CA: trusted through $SSL_CERT_FILE or ca_bundle,
    as the HTTP and FTP sources do; refused otherwise. (The endpoint is the HTTPS archive
    simulator, not an S3 store: past TLS, any S3 error will do.)"""
    endpoint = archive_https.base_url.split("/cdaftp/")[0]
    if how == "SSL_CERT_FILE":
        monkeypatch.setenv("SSL_CERT_FILE", archive_https.ca_file)
    cfg = SessionConfig(
        endpoint_url=endpoint,
        timeout=5,
        retries=0,
        ca_bundle=archive_https.ca_file if how == "ca_bundle" else None,
    )
    with S3Source("s3://bucket/chandra/data/", cfg) as src:
        with pytest.raises(SourceError) as info:
            src.list_obsid(1843)
    tls_failed = "TLS" in str(info.value) or "SSL" in str(info.value)
    assert tls_failed is (how == "neither"), info.value
