"""Credentials end to end: URL userinfo, username/userpass, netrc, refusals, and no leaks.

The password is distinctive and contains an "@" (``%40`` in URLs); every test that handles it
checks the package log at verbose 5, every logger's records, stdout/stderr, exception messages
and ``repr`` of the results for it.
"""

# Fixtures come from mirror_support by import, so their parameter names shadow them.
# ruff: noqa: F811

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mirror_support import (  # noqa: F401 - fixtures
    PASSWORD,
    PASSWORD_URL,
    USER,
    WRONG_PASSWORD,
    Captured,
    assert_identical,
    assert_no_secret,
    captured,
    ftp_old,
    ftp_server,
    ftps_server,
    http_auth,
    no_netrc,
)

from chandra_download import download

FAST = dict(jobs=2, retries=1, backoff=0.01, backoff_max=0.05, timeout=20)
WRONG_URL = WRONG_PASSWORD.replace("@", "%40")


def _server(request: pytest.FixtureRequest, kind: str):
    name = {"ftp": "ftp_old", "ftps": "ftps_server", "http": "http_auth"}[kind]
    return request.getfixturevalue(name)


def _with_userinfo(base_url: str, password: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{scheme}://{USER}:{password}@{rest}"


def _options(srv) -> dict:
    return {**FAST, "ca_bundle": srv.ca_file} if getattr(srv, "ca_file", None) else dict(FAST)


# -- the right password, either way ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ftp", "ftps", "http"])
def test_both_forms_and_same_value_twice(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, no_netrc: None, captured: Captured
) -> None:
    srv = _server(request, kind)
    opts = dict(_options(srv), outdir=tmp_path)
    url = _with_userinfo(srv.base_url, PASSWORD_URL)
    a = download([1843], ["evt2"], srv.base_url, USER, PASSWORD, **opts)
    b = download([1843], ["oif"], url, **opts)
    c = download([1843], ["asol"], url, USER, PASSWORD, **opts)  # same value twice is fine
    for results in (a, b, c):
        assert results.ok and len(results[0].files) == 1, results.errors
        captured.assert_clean(results, results.errors, results.summary())
    rels = {f.relpath for r in (a, b, c) for f in r[0].files}
    assert_identical(tmp_path, srv.root if kind == "http" else Path(srv.root), 1843, rels)


@pytest.mark.parametrize("kind", ["ftp", "http"])
def test_conflicting_credentials_are_an_error(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, no_netrc: None, captured: Captured
) -> None:
    srv = _server(request, kind)
    url = _with_userinfo(srv.base_url, PASSWORD_URL)
    with pytest.raises(ValueError, match="password") as bad_pw:
        download([1843], ["oif"], url, userpass=WRONG_PASSWORD, outdir=tmp_path, **FAST)
    with pytest.raises(ValueError, match="user name") as bad_user:
        download([1843], ["oif"], url, "someone-else", outdir=tmp_path, **FAST)
    assert not (tmp_path / "1843").exists()
    captured.assert_clean(str(bad_pw.value), str(bad_user.value))


# -- refusals ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["options", "userinfo", "none"])
@pytest.mark.parametrize("kind", ["ftp", "ftps", "http"])
def test_refused_login_is_a_clear_error(
    kind: str,
    form: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    no_netrc: None,
    captured: Captured,
) -> None:
    srv = _server(request, kind)
    mirror, creds = srv.base_url, {}
    if form == "options":
        creds = dict(username=USER, userpass=WRONG_PASSWORD)
    elif form == "userinfo":
        mirror = _with_userinfo(srv.base_url, WRONG_URL)
    results = download([1843], None, mirror, outdir=tmp_path, **_options(srv), **creds)
    r = results[0]
    assert results.found == [False] and r.files == []
    assert r.error and "refused" in r.error, r.error
    assert "not found" not in r.error and "not found" not in results.summary()
    assert not results.ok and not (tmp_path / "1843").exists()
    captured.assert_clean(results, results.errors, results.summary())


def test_bad_mirror_message_masks_password(tmp_path: Path, captured: Captured) -> None:
    with pytest.raises(ValueError) as info:
        download([1843], None, f"gopher://{USER}:{PASSWORD_URL}@127.0.0.1/x/", outdir=tmp_path)
    assert "gopher" in str(info.value)
    captured.assert_clean(str(info.value))


# -- netrc --------------------------------------------------------------------------------------------
def _netrc(path: Path, password: str) -> Path:
    path.write_text(f"machine 127.0.0.1\n  login {USER}\n  password {password}\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("kind", ["ftp", "http"])
def test_netrc_env_supplies_credentials(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    captured: Captured,
) -> None:
    srv = _server(request, kind)
    monkeypatch.setenv("NETRC", str(_netrc(tmp_path / "netrc", PASSWORD)))
    results = download([1843], ["evt2"], srv.base_url, outdir=tmp_path / "a", **FAST)
    assert results.ok and len(results[0].files) == 1, results.errors
    # Turned off, the same server refuses the anonymous attempt.
    off = download([1843], ["evt2"], srv.base_url, outdir=tmp_path / "b", use_netrc=False, **FAST)
    assert off.found == [False] and "refused" in (off[0].error or "")
    # Given credentials win over netrc's (which are wrong here).
    _netrc(tmp_path / "netrc", WRONG_PASSWORD)
    ok = download([1843], ["oif"], srv.base_url, USER, PASSWORD, outdir=tmp_path / "c", **FAST)
    assert ok.ok, ok.errors
    captured.assert_clean(results, off, ok, off.errors)


@pytest.mark.parametrize("kind", ["ftp", "http"])
def test_home_netrc_supplies_credentials(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = _server(request, kind)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    _netrc(tmp_path / ".netrc", PASSWORD)
    results = download([1843], ["oif"], srv.base_url, outdir=tmp_path / "out", **FAST)
    assert results.ok, results.errors


# -- the command line -----------------------------------------------------------------------------
def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HOME=str(home), NETRC=str(home / "no-netrc"), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "chandra_download", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_cli_never_prints_the_password(ftp_old, http_auth, tmp_path: Path) -> None:
    ftp_url = _with_userinfo(ftp_old.base_url, PASSWORD_URL)
    runs = {
        "ftp-list": _cli("1843", "evt2,oif", "--mirror", ftp_url, "--list", "--verbose", "5",
                         "--outdir", str(tmp_path), home=tmp_path),
        "ftp": _cli("1843", "evt2", "--mirror", ftp_url, "--verbose", "5", "--no-progress",
                    "--outdir", str(tmp_path), home=tmp_path),
        "http": _cli("1843", "oif", "--mirror", http_auth.base_url, "--username", USER,
                     "--userpass", PASSWORD, "--verbose", "5", "--outdir", str(tmp_path), home=tmp_path),
        "wrong": _cli("1843", "--mirror", ftp_old.base_url, "--username", USER, "--userpass",
                      WRONG_PASSWORD, "--verbose", "5", "--outdir", str(tmp_path / "w"), home=tmp_path),
    }  # fmt: skip
    for name, run in runs.items():
        assert_no_secret(run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, (name, run.stderr)
    for name in ("ftp-list", "ftp", "http"):
        assert runs[name].returncode == 0, (name, runs[name].stdout, runs[name].stderr)
    assert "evt2" in runs["ftp-list"].stdout and "oif" in runs["ftp-list"].stdout
    assert (
        runs["wrong"].returncode == 1 and "refused" in runs["wrong"].stdout + runs["wrong"].stderr
    )
    assert_identical(tmp_path, Path(ftp_old.root), 1843, {
        f.relative_to(tmp_path / "1843").as_posix() for f in (tmp_path / "1843").rglob("*")
        if f.is_file() and ".chandra-download" not in f.parts
    })  # fmt: skip
    assert len(list((tmp_path / "1843").rglob("*.fits*"))) == 2  # evt2 (ftp) + oif (http)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("s3://AKID:s3cr3t@bucket/chandra/data/", "s3://AKID:***@bucket/chandra/data/"),
        ("https://alice:p@s3cr3t@host:8443/cdaftp/", "https://alice:***@host:8443/cdaftp/"),
        ("ftps://alice:p%40s3cr3t@host/pub/", "ftps://alice:***@host/pub/"),
        ("ftp://alice:s3cr3t@host", "ftp://alice:***@host"),
        ("http://alice@host/cdaftp/", "http://alice@host/cdaftp/"),  # no password: as is
        ("https://host/a@b/c", "https://host/a@b/c"),  # '@' in the path is no userinfo
        (
            "see ftp://a:s3cr3t@h/x and https://b:p@s3cr3t@h/y.",
            "see ftp://a:***@h/x and https://b:***@h/y.",
        ),
        # Any number of slashes after the scheme (the malformed-mirror message shows these).
        ("ftp:/u:s3cr3t@h/", "ftp:/u:***@h/"),
        ("http:/u:s3cr3t@h/x/", "http:/u:***@h/x/"),
        ("s3:/KEY:s3cr3t@b/x/", "s3:/KEY:***@b/x/"),
        ("ftps:/u:s3cr3t@h/", "ftps:/u:***@h/"),
        ("ftp:u:s3cr3t@h/", "ftp:u:***@h/"),
        ("https:///u:s3cr3t@h/", "https:///u:***@h/"),
        # Raw "@", ":" and "/" in the password: everything up to the last "@".
        ("ftp://u:pa@s3cr3t:w/d%@host:21/", "ftp://u:***@host:21/"),
        ("ftp://u:s3/cr:3t@host/", "ftp://u:***@host/"),
        ("'ftp:/u:s3c@r3t/x@h/' failed", "'ftp:/u:***@h/' failed"),
        ("ftp://me@uni.edu:s3cr3t@host/", "ftp://me@uni.edu:***@host/"),  # '@' in the user
    ],
)
def test_mask_url_every_form(url: str, masked: str) -> None:
    from chandra_download.credentials import mask_url

    assert mask_url(url) == masked
    assert "s3cr3t" not in mask_url(url)
    assert "cr" not in mask_url(url).replace("s3://", "")  # no piece of it either


@pytest.mark.parametrize(
    "url",
    [
        "ftp:/u:s3cr3t@h/",
        "http:/u:s3cr3t@h/",
        "s3:/KEY:s3cr3t@b/x/",
        "ftps:/u:s3cr3t@h/",
        "ftp:u:s3cr3t@h/",
        "ftp://u:pa@ss:w/d%s3cr3t@host:port/",
        "https://u:s3:cr/3t@host:99999/",
        "gopher:/u:s3cr3t@h/",
    ],
)
def test_malformed_mirror_messages_mask_the_password(url: str, tmp_path: Path) -> None:
    from chandra_download.config import SessionConfig
    from chandra_download.sources import choose_source

    with pytest.raises(ValueError) as info:
        choose_source(url, SessionConfig()).close()
    assert "mirror" in str(info.value).lower() or "unsupported" in str(info.value).lower()
    for secret in ("s3cr3t", "cr/3t", "pa@ss", "ss:w", "d%"):
        assert secret not in str(info.value), info.value
    with pytest.raises(ValueError) as info:
        download([1843], None, url, outdir=tmp_path)
    assert "s3cr3t" not in str(info.value) and "cr/3t" not in str(info.value), info.value
