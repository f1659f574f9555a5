"""Every kind of mirror, end to end through ``download()`` against real servers on 127.0.0.1.

Each site kind (FTP with MLSD, FTP with LIST only, FTPS, S3, a local directory as a path and as
a ``file://`` URL, HTTP with basic auth) gets the same checks: a byte-identical download,
type selection, resume of a truncated file, exact sizes, a missing ObsId, and no password in
any output. Mirror lists, named sites and proxies follow.
"""

# Fixtures come from mirror_support by import, so their parameter names shadow them.
# ruff: noqa: F811

from __future__ import annotations

import ftplib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mirror_support import (  # noqa: F401 - fixtures
    MANY,
    MANY_OBSID,
    PASSWORD,
    PASSWORD_URL,
    USER,
    WRONG_PASSWORD,
    Captured,
    anon_aws,
    assert_identical,
    captured,
    ftp_old,
    ftp_server,
    ftps_server,
    http_auth,
    many_root,
    no_netrc,
    no_proxy_env,
    partial_root,
    proxy,
    s3_server,
)

from chandra_download import Status, download, download_chandra_obsids
from chandra_download.simulator.faults import Fault
from chandra_download.simulator.ftp import ArchiveFTPServer
from chandra_download.simulator.s3 import ArchiveS3Server
from chandra_download.simulator.tree import generate_archive, iter_files

FAST = dict(jobs=4, retries=1, backoff=0.01, backoff_max=0.05, timeout=20)
CREDS = dict(username=USER, userpass=PASSWORD)
KINDS = ["ftp", "ftp-userinfo", "ftp-list", "ftps", "s3", "local", "file-url", "http-auth",
         "http-userinfo"]  # fmt: skip


@dataclass
class Site:
    kind: str
    mirror: str
    options: dict[str, Any]
    root: Path

    def get(self, obsids: Any, filetypes: Any = None, **kw: Any):
        return download(obsids, filetypes, self.mirror, **{**FAST, **self.options, **kw})


@pytest.fixture(params=KINDS)
def site(request: pytest.FixtureRequest, archive_root: Path, no_netrc: None) -> Site:
    kind: str = request.param
    fx = request.getfixturevalue
    if kind == "ftp":  # anonymous by default
        return Site(kind, fx("ftp_server").base_url, {}, archive_root)
    if kind == "ftp-userinfo":  # percent-decoded: %40 is the "@" of the password
        url = f"ftp://{USER}:{PASSWORD_URL}@127.0.0.1:{fx('ftp_server').port}/"
        return Site(kind, url, {}, archive_root)
    if kind == "ftp-list":  # no MLSD, no anonymous login
        return Site(kind, fx("ftp_old").base_url, dict(CREDS), archive_root)
    if kind == "ftps":
        srv = fx("ftps_server")
        return Site(kind, srv.base_url, {**CREDS, "ca_bundle": srv.ca_file}, archive_root)
    if kind == "s3":
        fx("anon_aws")
        srv = fx("s3_server")
        return Site(kind, srv.base_url, {"endpoint_url": srv.endpoint_url}, archive_root)
    if kind == "local":
        return Site(kind, str(archive_root), {}, archive_root)
    if kind == "file-url":
        return Site(kind, archive_root.as_uri(), {}, archive_root)
    srv = fx("http_auth")
    if kind == "http-auth":
        return Site(kind, srv.base_url, dict(CREDS), archive_root)
    url = srv.base_url.replace("http://", f"http://{USER}:{PASSWORD_URL}@")
    return Site(kind, url, {}, archive_root)


# -- the same checks for every kind of site -------------------------------------------------------
def test_full_download_is_identical(site: Site, tmp_path: Path, captured: Captured) -> None:
    results = site.get([1843], outdir=tmp_path)
    r = results[0]
    assert r.found and r.ok and r.error is None, results.errors
    sizes = {rel: p.stat().st_size for rel, p in iter_files(site.root, 1843)}
    assert {f.relpath for f in r.files} == set(sizes)
    for f in r.files:
        assert f.status is Status.DOWNLOADED, (f.relpath, f.reason)
        assert f.site == r.site and f.size == sizes[f.relpath]
        assert PASSWORD not in f.url and PASSWORD_URL not in f.url
    assert_identical(tmp_path, site.root, 1843)
    assert "evt2" in captured.stream.getvalue()  # the verbose-5 log was really captured
    captured.assert_clean(results, results.errors, results.summary())


def test_selection_and_resume(site: Site, tmp_path: Path, captured: Captured) -> None:
    results = site.get([2749], ["evt2", "asol", "arf"], outdir=tmp_path)
    files = results[0].files
    assert {f.filetype for f in files} == {"evt2", "asol", "arf"}
    assert len([f for f in files if f.filetype == "arf"]) == 4
    chosen = {f.relpath for f in files}
    assert_identical(tmp_path, site.root, 2749, chosen)

    evt2 = next(f for f in files if f.filetype == "evt2")
    asol = next(f for f in files if f.filetype == "asol")
    size, keep = evt2.size, evt2.size // 3
    with open(evt2.path, "r+b") as fh:
        fh.truncate(keep)
    asol.path.unlink()
    again = site.get([2749], ["evt2", "asol", "arf"], outdir=tmp_path)
    status = {f.relpath: f for f in again[0].files}
    assert status[evt2.relpath].status is Status.RESUMED
    assert status[evt2.relpath].bytes_transferred == size - keep  # only the missing tail
    assert status[asol.relpath].status is Status.DOWNLOADED
    assert {f.status for f in again[0].files if f.filetype == "arf"} == {Status.PRESENT}
    assert_identical(tmp_path, site.root, 2749, chosen)
    captured.assert_clean(results, again)


def test_list_only_gives_exact_sizes(site: Site, tmp_path: Path, captured: Captured) -> None:
    results = site.get([6298], list_only=True, outdir=tmp_path)
    sizes = {rel: p.stat().st_size for rel, p in iter_files(site.root, 6298)}
    assert {f.relpath: f.size for f in results[0].files} == sizes
    assert not (tmp_path / "6298").exists()
    captured.assert_clean(results)


def test_missing_obsid_is_not_found(site: Site, tmp_path: Path, captured: Captured) -> None:
    results = site.get([1843, 99999], ["oif"], outdir=tmp_path)
    assert results.found == [True, False]
    assert results[1].error is None and results[1].files == []
    assert "not found: ObsId 99999" in results.summary()
    assert download_chandra_obsids([99998], ["oif"], site.mirror, outdir=tmp_path,
                                   **{**FAST, **site.options}) == [False]  # fmt: skip
    captured.assert_clean(results)


# -- kind-specific ------------------------------------------------------------------------------
def test_ftp_is_passive(ftp_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def active(*a: object, **k: object) -> None:
        raise AssertionError("active-mode FTP (PORT/EPRT) used")

    monkeypatch.setattr(ftplib.FTP, "makeport", active)
    results = download([1843], ["evt2", "oif"], ftp_server.base_url, outdir=tmp_path, **FAST)
    assert results.ok, results.errors


def test_s3_paged_listing(many_root: Path, anon_aws: None, tmp_path: Path) -> None:
    with ArchiveS3Server(many_root, bucket="mirrors-many-pages", prefix="") as srv:
        results = download([MANY_OBSID], None, srv.base_url, outdir=tmp_path,
                           endpoint_url=srv.endpoint_url, **{**FAST, "jobs": 8})  # fmt: skip
    assert len(results[0].files) > MANY and results.ok, results.errors[:5]
    assert_identical(tmp_path, many_root, MANY_OBSID)


def test_s3_profile(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").write_text("[profile archive]\nregion = us-east-1\n")
    (tmp_path / "credentials").write_text(
        "[archive]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = Sekrit-Key-991\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    opts = dict(endpoint_url=s3_server.endpoint_url, outdir=tmp_path / "out", **FAST)
    results = download([1843], ["evt2"], s3_server.base_url, profile="archive", **opts)
    assert results.ok and len(results[0].files) == 1, results.errors
    with pytest.raises(Exception, match="nonexistent") as info:
        download([1843], ["evt2"], s3_server.base_url, profile="nonexistent", **opts)
    assert "Sekrit-Key-991" not in str(info.value)


def test_file_url_is_percent_decoded(tmp_path: Path) -> None:
    root = generate_archive(tmp_path / "my mirror #1", {1843: "acis"}, scale=0.05)
    assert "%20" in root.as_uri() and "%23" in root.as_uri()
    results = download([1843], ["oif", "evt2"], root.as_uri(), outdir=tmp_path / "out", **FAST)
    assert results.ok and len(results[0].files) == 2, results.errors
    assert_identical(tmp_path / "out", root, 1843, {f.relpath for f in results[0].files})


def test_ftps_verifies_the_certificate(ftps_server, tmp_path: Path, no_netrc: None) -> None:
    # Without the simulator's CA the server's certificate cannot be trusted.
    results = download([1843], ["oif"], ftps_server.base_url, USER, PASSWORD,
                       outdir=tmp_path, **FAST)  # fmt: skip
    assert results.found == [False] and "certificate" in (results[0].error or "")
    assert not (tmp_path / "1843").exists()


# -- mirror lists -------------------------------------------------------------------------------
def test_obsid_missing_on_first_mirror_comes_from_second(
    partial_root: Path, ftp_server, archive_root: Path, tmp_path: Path, captured: Captured
) -> None:
    mirrors = [str(partial_root), ftp_server.base_url]
    results = download([1843, 2749], ["evt2", "oif"], mirrors, outdir=tmp_path, **FAST)
    assert results.found == [True, True] and results.ok, results.errors
    first, second = results
    assert first.site == str(partial_root) and second.site.startswith("ftp://127.0.0.1")
    assert {f.site for f in first.files} == {first.site}
    assert {f.site for f in second.files} == {second.site}
    for r in results:
        assert_identical(tmp_path, archive_root, r.obsid, {f.relpath for f in r.files})
    captured.assert_clean(results)


@pytest.mark.parametrize("first_kind", ["http", "ftp"])
def test_file_failing_on_first_mirror_comes_from_next(
    first_kind: str, archive_root: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    fault = Fault("status", "*evt2*", times=None, status=404)
    first = request.getfixturevalue("archive_http" if first_kind == "http" else "ftp_server")
    first.faults.add(fault)
    try:
        results = download([1843], ["evt2", "asol"], [first.base_url, str(archive_root)],
                           outdir=tmp_path, **FAST)  # fmt: skip
    finally:
        first.faults.clear()
    r = results[0]
    assert r.site == first.base_url.rstrip("/") + "/" and results.ok, results.errors
    evt2 = next(f for f in r.files if f.filetype == "evt2")
    asol = next(f for f in r.files if f.filetype == "asol")
    assert evt2.site == str(archive_root) and evt2.status is Status.DOWNLOADED
    assert asol.site == r.site
    assert_identical(tmp_path, archive_root, 1843, {evt2.relpath, asol.relpath})


def test_mirror_refusing_login_falls_through_to_next(
    ftp_old, archive_root: Path, tmp_path: Path, no_netrc: None, captured: Captured
) -> None:
    wrong = f"ftp://{USER}:{WRONG_PASSWORD.replace('@', '%40')}@127.0.0.1:{ftp_old.port}/"
    results = download([1843], ["oif"], [wrong, str(archive_root)], outdir=tmp_path, **FAST)
    assert results.ok and results[0].site == str(archive_root), results.errors
    captured.assert_clean(results)


def test_single_mirror_has_no_fallback(
    partial_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDA_MIRROR_SITE", "http://127.0.0.1:9/refused/")
    results = download([2749], None, str(partial_root), outdir=tmp_path, **FAST)
    assert results.found == [False] and results[0].error is None  # the default was not tried
    assert not (tmp_path / "2749").exists()


# -- proxies ------------------------------------------------------------------------------------
def test_http_proxy_is_used(
    archive_http, proxy, no_proxy_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    results = download([1843], ["evt2", "oif"], archive_http.base_url, outdir=tmp_path, **FAST)
    assert results.ok, results.errors
    assert_identical(tmp_path, archive_http.root, 1843, {f.relpath for f in results[0].files})
    listing = f"GET {archive_http.base_url}byobsid/3/1843/ HTTP/1.1"
    assert listing in proxy.requests
    assert any("_evt2.fits.gz" in line for line in proxy.requests)

    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    before = len(proxy.requests)
    again = download([6298], ["oif"], archive_http.base_url, outdir=tmp_path, **FAST)
    assert again.ok and len(proxy.requests) == before


def test_named_sites_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    from chandra_download.sources import NAMED_SITES, choose_source, expand_mirror
    from chandra_download.sources.http import HTTPSource
    from chandra_download.sources.s3 import S3Source

    monkeypatch.delenv("CDA_MIRROR_SITE", raising=False)
    assert expand_mirror("cda") == expand_mirror(None) == "https://cxc.cfa.harvard.edu/cdaftp/"
    assert expand_mirror("HEASARC") == "https://heasarc.gsfc.nasa.gov/FTP/chandra/data/"
    assert expand_mirror(" aws ") == NAMED_SITES["aws"] == "s3://nasa-heasarc/chandra/data/"
    monkeypatch.setenv("CDA_MIRROR_SITE", "heasarc")
    assert expand_mirror(None) == NAMED_SITES["heasarc"]
    assert expand_mirror("cda") == NAMED_SITES["cda"]  # the option wins over the variable
    with choose_source("aws") as s3:
        assert isinstance(s3, S3Source) and (s3.bucket, s3.prefix) == (
            "nasa-heasarc",
            "chandra/data/",
        )
        assert s3.unsigned
    with choose_source("heasarc") as web:
        assert isinstance(web, HTTPSource) and web.base == NAMED_SITES["heasarc"]
    with choose_source(None) as default:
        assert default.base == NAMED_SITES["heasarc"]
    monkeypatch.delenv("CDA_MIRROR_SITE")
    with choose_source(None) as default:
        assert default.base == "https://cxc.cfa.harvard.edu/cdaftp/"


def test_ftp_mirror_below_a_path(tmp_path: Path, no_netrc: None) -> None:
    served = tmp_path / "srv"
    root = generate_archive(served / "pub" / "chandra data", {1843: "acis"}, scale=0.05)
    with ArchiveFTPServer(served, users={USER: PASSWORD}, anonymous=False) as srv:
        url = f"ftp://{USER}:{PASSWORD_URL}@127.0.0.1:{srv.port}/pub/chandra%20data/"
        results = download([1843, 2749], ["oif", "evt2"], url, outdir=tmp_path / "o", **FAST)
    assert results.found == [True, False] and results[0].ok, results.errors
    assert results[0].site == f"ftp://127.0.0.1:{srv.port}/pub/chandra%20data/"
    assert_identical(tmp_path / "o", root, 1843, {f.relpath for f in results[0].files})


def test_cli_mirror_list(partial_root: Path, ftp_server, archive_root: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    cmd = [
        sys.executable,
        "-m",
        "chandra_download",
        "1843,2749",
        "evt2,oif",
        "--outdir",
        str(tmp_path),
        "--mirror",
        str(partial_root),
        "--mirror",
        ftp_server.base_url,
    ]
    listed = subprocess.run([*cmd, "--list"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "2749" in listed.stdout and not (tmp_path / "1843").exists()
    run = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True, env=env,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    for obsid in (1843, 2749):
        rels = {rel for rel, _ in iter_files(archive_root, obsid) if "evt2" in rel or "oif" in rel}
        assert_identical(tmp_path, archive_root, obsid, rels)
    missing = subprocess.run([*cmd[:3], "9999", *cmd[4:]], capture_output=True, text=True,
                             env=env, timeout=120)  # fmt: skip
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_local_mirror_copies_never_links_or_moves(archive_root: Path, tmp_path: Path) -> None:
    from chandra_download.simulator import iter_files

    source = dict(iter_files(archive_root, 1843))
    results = download(1843, mirror=str(archive_root), outdir=tmp_path, retries=0)
    assert results.ok, results.summary()
    for rel, src in source.items():
        out = tmp_path / "1843" / rel
        assert src.is_file()  # still there: not moved
        assert not out.is_symlink() and out.stat().st_nlink == 1
        assert out.stat().st_ino != src.stat().st_ino
        assert out.read_bytes() == src.read_bytes()
