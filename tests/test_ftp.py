"""FTPSource against real pyftpdlib servers (ArchiveFTPServer) on 127.0.0.1."""

from __future__ import annotations

import os
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("pyftpdlib")

from chandra_download.config import SessionConfig
from chandra_download.credentials import Credentials
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
from chandra_download.simulator.ftp import ArchiveFTPServer
from chandra_download.sources import choose_source
from chandra_download.sources.ftp import FTPSource
from chandra_download.sources.ftp_parse import Entry, parse_ls, parse_mlsd

PASSWORD = "s3cr3t-P4ss"
FILES = {
    "oif.fits": 2880,
    "00README": 123,
    "primary/acisf01843N003_evt2.fits.gz": 300_000,
    "primary/acisf01843_000N003_fov1.fits.gz": 4000,
    "secondary/acisf01843_000N003_evt1.fits.gz": 2_500_000,
    "secondary/aspect/pcadf01843_000N001_asol1.fits.gz": 7777,
    "secondary/aspect/name with space.fits": 17,
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ftproot")
    obsdir = root / "byobsid" / "3" / "1843"
    rng = __import__("random").Random(1843)
    for rel, size in FILES.items():
        path = obsdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    (root / "byobsid" / "9" / "2749").mkdir(parents=True)
    (root / "byobsid" / "9" / "2749" / "oif.fits").write_bytes(b"x" * 10)
    return root


def content(root: Path, rel: str) -> bytes:
    return (root / "byobsid" / "3" / "1843" / rel).read_bytes()


@pytest.fixture
def server(archive: Path):
    with ArchiveFTPServer(archive, users={"alice": PASSWORD}, faults=FaultPlan()) as srv:
        yield srv


def make_source(srv: ArchiveFTPServer, creds: Credentials | None = None, **cfg) -> FTPSource:
    cfg.setdefault("timeout", 5.0)
    return FTPSource(srv.base_url, SessionConfig(**cfg), creds)


def read_all(body) -> bytes:
    out = bytearray()
    while chunk := body.read(65536):
        out += chunk
    return bytes(out)


def test_mlsd_and_list_give_identical_exact_listings(archive: Path) -> None:
    listings = []
    for mlsd in (True, False):
        with ArchiveFTPServer(archive, mlsd=mlsd) as srv, make_source(srv) as src:
            files = src.list_obsid(1843)
            assert src._mlsd is mlsd
            listings.append(sorted((f.relpath, f.size) for f in files))
            for f in files:
                assert f.url.startswith(srv.base_url + "byobsid/3/1843/")
    assert listings[0] == listings[1] == sorted(FILES.items())


def test_listing_and_logins_via_choose_source(server: ArchiveFTPServer) -> None:
    url = server.base_url.replace("ftp://", f"ftp://alice:{PASSWORD}@")
    with choose_source(url, SessionConfig(timeout=5, use_netrc=False)) as src:
        assert isinstance(src, FTPSource)
        files = src.list_obsid(1843)
        assert PASSWORD not in src.label
        assert all(PASSWORD not in f.url for f in files)
    with make_source(server) as anon:  # anonymous
        assert {f.relpath for f in anon.list_obsid(2749)} == {"oif.fits"}
    assert server.stats.logins == 2


def test_wrong_password_is_auth_error_without_password(server: ArchiveFTPServer) -> None:
    with make_source(server, Credentials("alice", PASSWORD + "x")) as src:
        with pytest.raises(AuthError) as info:
            src.list_obsid(1843)
    msg = str(info.value)
    assert "login refused for user alice at 127.0.0.1" in msg
    assert PASSWORD not in msg and "not found" not in msg.lower()
    assert not isinstance(info.value, ObsIdNotFound)


def test_anonymous_refused_is_auth_error(archive: Path) -> None:
    with ArchiveFTPServer(archive, anonymous=False, users={"alice": PASSWORD}) as srv:
        with make_source(srv) as src, pytest.raises(AuthError, match="user anonymous"):
            src.list_obsid(1843)


def test_missing_obsid(server: ArchiveFTPServer) -> None:
    with make_source(server) as src:
        with pytest.raises(ObsIdNotFound, match="1844"):
            src.list_obsid(1844)
        assert src.list_obsid(1843)  # the connection is still fine afterwards
        assert src.logins == 1


@pytest.mark.parametrize("rest", [True, False])
def test_open_at_zero_and_offset(archive: Path, rest: bool) -> None:
    with ArchiveFTPServer(archive, rest=rest) as srv, make_source(srv) as src:
        files = {f.relpath: f for f in src.list_obsid(1843)}
        f = files["primary/acisf01843N003_evt2.fits.gz"]
        expected = content(archive, f.relpath)
        with src.open(f) as body:
            assert (body.start, body.total) == (0, len(expected))
            assert read_all(body) == expected
        with src.open(f, 123_456) as body:
            assert body.start == (123_456 if rest else 0)
            assert read_all(body) == expected[body.start :]
        assert src.logins == 1


def test_offset_at_end_is_range_not_satisfiable(server: ArchiveFTPServer) -> None:
    with make_source(server) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath == "00README")
        with pytest.raises(RangeNotSatisfiable) as info:
            src.open(f, f.size)
        assert info.value.total == f.size


def test_pool_reuse_from_threads(server: ArchiveFTPServer, archive: Path) -> None:
    jobs = 3
    with make_source(server, jobs=jobs) as src:
        files = [f for f in src.list_obsid(1843) if f.size < 500_000] * 8

        def fetch(f):
            with src.open(f) as body:
                assert read_all(body) == content(archive, f.relpath)
            assert src.idle_count() <= jobs

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(fetch, files))
        assert src.logins < len(files) / 2
        assert src.logins <= 7  # at most one per thread, plus the listing
        assert src.idle_count() <= jobs
    assert sum(server.stats.retr.values()) == len(files)


def test_early_close_aborts_and_keeps_connection(server: ArchiveFTPServer) -> None:
    with make_source(server) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath.endswith("evt1.fits.gz"))
        body = src.open(f)
        assert len(body.read(1000)) > 0
        body.close()
        body.close()  # idempotent
        assert src.idle_count() == 1
        with src.open(f, 10) as body:
            assert read_all(body) == content(Path(server.root), f.relpath)[10:]
        assert src.logins == 1


def test_close_closes_everything(server: ArchiveFTPServer) -> None:
    src = make_source(server, jobs=2)
    files = src.list_obsid(1843)
    bodies = [src.open(f) for f in files[:4]]
    for b in bodies:
        read_all(b)
        b.close()
    assert src.idle_count() == 2
    src.close()
    assert src.idle_count() == 0
    deadline = time.monotonic() + 3
    while server.stats.connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stats.connections == 0
    with pytest.raises(SourceError, match="closed"):
        src.open(files[0])


def test_stale_pooled_connection_is_replaced(archive: Path) -> None:
    with ArchiveFTPServer(archive, idle_timeout=0.5) as srv, make_source(srv) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath == "oif.fits")
        time.sleep(1.2)  # the server drops the idle connection with a 421
        with src.open(f) as body:
            assert read_all(body) == content(archive, "oif.fits")
        assert src.logins == 2


def test_drop_fault_raises_transient_from_read(server: ArchiveFTPServer) -> None:
    server.faults.add(Fault("drop", "*evt2*", after_bytes=100_000))
    with make_source(server) as src:
        f = next(f for f in src.list_obsid(1843) if "evt2" in f.relpath)
        body = src.open(f)
        with pytest.raises(TransientError):
            read_all(body)
        body.close()
        with src.open(f) as body:  # the fault was used up; the connection is reusable
            assert read_all(body) == content(Path(server.root), f.relpath)
        assert src.logins == 1


def test_truncate_and_corrupt_faults(server: ArchiveFTPServer) -> None:
    expected = content(Path(server.root), "oif.fits")
    with make_source(server) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath == "oif.fits")
        server.faults.add(Fault("truncate", "oif.fits"))
        with src.open(f) as body, pytest.raises(TransientError, match="ended early"):
            read_all(body)
        server.faults.add(Fault("corrupt", "oif.fits", after_bytes=5))
        with src.open(f) as body:
            data = read_all(body)
        assert len(data) == len(expected) and data != expected and data[:5] == expected[:5]


def test_corrupt_fault_same_or_varied_damage(server: ArchiveFTPServer) -> None:
    expected = content(Path(server.root), "oif.fits")
    with make_source(server) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath == "oif.fits")
        for vary, distinct in ((False, 1), (True, 3)):
            server.faults.add(Fault("corrupt", "oif.fits", times=3, vary=vary))
            got = set()
            for _ in range(3):
                with src.open(f) as body:
                    got.add(read_all(body))
            assert len(got) == distinct and expected not in got


@pytest.mark.parametrize(
    ("status", "error"), [(450, TransientError), (421, TransientError), (550, FileMissing)]
)
def test_status_faults(server: ArchiveFTPServer, status: int, error: type) -> None:
    with make_source(server) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath == "oif.fits")
        # a 421 on a pooled connection is taken for a stale one and retried once on a new one
        server.faults.add(
            Fault("status", "oif.fits", status=status, times=2 if status == 421 else 1)
        )
        with pytest.raises(error) as info:
            src.open(f)
        assert not isinstance(info.value, FileMissing) or status == 550
        assert str(status) in str(info.value)
        with src.open(f) as body:
            assert read_all(body) == content(Path(server.root), "oif.fits")


@pytest.mark.parametrize("mlsd", [True, False])
def test_traversal_entries_refused(archive: Path, mlsd: bool) -> None:
    plan = FaultPlan([Fault("traversal", "byobsid/3/1843/primary/", entries=("../evil",))])
    with ArchiveFTPServer(archive, mlsd=mlsd, faults=plan) as srv, make_source(srv) as src:
        with pytest.raises(UnsafeEntry, match="evil"):
            src.list_obsid(1843)


@pytest.mark.parametrize("name", ["../x", "a/b", "bad\x01name", "..", "/etc/passwd"])
def test_unsafe_names(server: ArchiveFTPServer, monkeypatch, name: str) -> None:
    with make_source(server) as src:
        monkeypatch.setattr(src, "_entries", lambda conn, path: [Entry(name, "file", 1)])
        with pytest.raises(UnsafeEntry):
            src.list_obsid(1843)


def test_parsers() -> None:
    assert parse_mlsd("type=file;size=42;modify=20200101000000; a b.fits") == (
        "a b.fits",
        "file",
        42,
        "2020-01-01T00:00:00+00:00",
    )
    assert parse_mlsd("type=file;modify=20200101000000.25; x")[3] == "2020-01-01T00:00:00.25+00:00"
    assert parse_mlsd("Type=DIR;modify=1; primary") == ("primary", "dir", None, None)
    assert parse_mlsd("type=file;modify=20201399000000; x")[3] is None  # not a date
    assert parse_mlsd("type=cdir; .")[1] == "cdir"
    ls = "-rw-r--r--   1 ftp      ftp       2500000 Mar 07  2019 evt1 x.fits.gz"
    assert parse_ls(ls)[:3] == ("evt1 x.fits.gz", "file", 2500000)
    assert parse_ls("drwxr-xr-x 2 0 0 4096 Jan  1 12:00 aspect")[:3] == ("aspect", "dir", None)
    assert parse_ls("-rw-r--r-- 1 owner 77 Jan 10 09:15 nogroup")[:3] == ("nogroup", "file", 77)
    assert parse_ls("lrwxrwxrwx 1 a b 9 Jan 1 2020 l -> target")[:2] == ("l", "link")
    assert parse_ls("total 12") is None


def test_ftps_with_trusted_ca(archive: Path) -> None:
    pytest.importorskip("OpenSSL")  # pyftpdlib's FTPS server needs pyOpenSSL
    with ArchiveFTPServer(archive, tls=True, users={"alice": PASSWORD}) as srv:
        assert srv.base_url.startswith("ftps://") and srv.ca_file
        creds = Credentials("alice", PASSWORD)
        with make_source(srv, creds, ca_bundle=srv.ca_file) as src:
            f = next(f for f in src.list_obsid(1843) if "evt2" in f.relpath)
            with src.open(f, 1000) as body:
                assert read_all(body) == content(archive, f.relpath)[1000:]
        # An untrusted certificate is a permanent SourceError (not a TransientError).
        with make_source(srv, creds) as src, pytest.raises(SourceError) as info:
            src.list_obsid(1843)
        assert not isinstance(info.value, TransientError)
        assert "certificate" in str(info.value) and PASSWORD not in str(info.value)
        assert isinstance(info.value.__context__, ssl.SSLError) or info.value.__context__ is None
        with make_source(srv, creds, insecure=True) as src:
            assert len(src.list_obsid(1843)) == len(FILES)


def test_refused_on_first_contact_is_unreachable_then_transient(archive: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = FTPSource(f"ftp://127.0.0.1:{port}/", SessionConfig(timeout=2), None)
    with pytest.raises(SiteUnreachable, match=f"cannot reach 127.0.0.1:{port}"):
        src.list_obsid(1843)
    with ArchiveFTPServer(archive) as srv:  # once the site has answered...
        src = make_source(srv)
        assert src.list_obsid(1843)
    with src, pytest.raises(TransientError) as info:
        src.list_obsid(1843)  # (the server is gone now)
    assert not isinstance(info.value, SiteUnreachable)  # ...a refusal keeps the retries


def test_server_stats_peak_connections(server: ArchiveFTPServer) -> None:
    barrier = threading.Barrier(3)
    with make_source(server, jobs=3) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath == "oif.fits")

        def hold():
            with src.open(f) as body:
                barrier.wait(5)
                read_all(body)

        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda _: hold(), range(3)))
    assert server.stats.peak_connections == 3
    assert os.path.isdir(server.root)


def test_stall_fault_times_out_as_transient(server: ArchiveFTPServer) -> None:
    server.faults.add(Fault("stall", "oif.fits", after_bytes=1000, seconds=5))
    with make_source(server, timeout=0.5) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath == "oif.fits")
        body = src.open(f)
        with pytest.raises(TransientError, match="broke at byte 1000"):
            read_all(body)
        body.close()
        assert src.idle_count() == 0  # a broken connection is never pooled


def test_link_model_paces_transfers(archive: Path) -> None:
    from chandra_download.simulator.link import LinkModel

    link = LinkModel(latency=0.01, conn_bandwidth=2_000_000)
    with ArchiveFTPServer(archive, link=link) as srv, make_source(srv) as src:
        f = next(f for f in src.list_obsid(1843) if "evt2" in f.relpath)
        t0 = time.monotonic()
        with src.open(f) as body:
            assert read_all(body) == content(archive, f.relpath)
        assert time.monotonic() - t0 >= 0.1  # 300 kB at 2 MB/s


def test_size_command_when_listing_gave_none(server: ArchiveFTPServer) -> None:
    from dataclasses import replace

    with make_source(server) as src:
        f = next(f for f in src.list_obsid(1843) if f.relpath == "00README")
        g = replace(f, size=None)
        assert src.size(g) == f.size == 123
        with src.open(g, 100) as body:
            assert (
                body.total == 123 and read_all(body) == content(Path(server.root), "00README")[100:]
            )
        with pytest.raises(FileMissing):
            src.size(replace(g, url=g.url + "-gone"))


def test_huge_listing_is_refused_and_the_connection_dropped(
    server: ArchiveFTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chandra_download.sources import ftp_walk

    with make_source(server) as src:
        monkeypatch.setattr(ftp_walk, "MAX_LISTING_BYTES", 200)
        with pytest.raises(SourceError, match="larger than") as info:
            src.list_obsid(1843)
        assert not isinstance(info.value, TransientError)
        assert src.idle_count() == 0  # mid-transfer: never pooled
        monkeypatch.undo()
        assert len(src.list_obsid(1843)) == len(FILES)
