"""The Python API as CIAO users call it: the 2013 signature, CIAO's ``excludes=`` keyword,
a refused login raised (not "not in the archive"), and the caller's settings left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from chandra_download import (
    AuthError,
    SessionConfig,
    classify,
    download,
    download_chandra_obsids,
)
from chandra_download.simulator.fixtures import FTP_PASSWORD, FTP_USER


def landed(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    }


def test_2013_signature_with_username_and_userpass(archive_ftp, tmp_path, fast, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = download_chandra_obsids(
        [1843, "99999"], ["oif"], archive_ftp.base_url, FTP_USER, FTP_PASSWORD, **fast
    )
    assert found == [True, False]
    assert landed(tmp_path) == {"1843/oif.fits"}


def test_refused_login_raises_from_ciaos_function(archive_ftp, tmp_path, fast):
    with pytest.raises(AuthError) as info:
        download_chandra_obsids(
            [1843], ["oif"], archive_ftp.base_url, FTP_USER, "wrong", outdir=tmp_path, **fast
        )
    assert "wrong" not in str(info.value)
    # The richer function reports it per ObsId, as before.
    results = download(
        [1843], ["oif"], archive_ftp.base_url, FTP_USER, "wrong", outdir=tmp_path, **fast
    )
    assert results.found == [False] and results[0].error
    assert not any(tmp_path.iterdir())


def test_a_site_that_cannot_be_used_raises_rather_than_saying_not_found(tmp_path, fast):
    import socket

    from chandra_download import SourceError

    with socket.socket() as dead:  # bound, never listening: every connection is refused
        dead.bind(("127.0.0.1", 0))
        mirror = f"http://127.0.0.1:{dead.getsockname()[1]}/cdaftp/"
        with pytest.raises(SourceError, match="ObsId 1843 could not be listed"):
            download_chandra_obsids([1843], ["oif"], mirror, outdir=tmp_path, **fast)


def test_ciaos_excludes_keyword(archive_http, source_files, tmp_path, fast):
    found = download_chandra_obsids(
        [1843], None, archive_http.base_url, excludes=["evt1", "vvref"], outdir=tmp_path, **fast
    )
    assert found == [True]
    want = {f"1843/{r}" for r in source_files(1843) if classify(r) not in ("evt1", "vvref")}
    assert landed(tmp_path) == want


def test_exclude_alias_and_not_both(archive_http, tmp_path, fast):
    r = download(1843, "oif,evt2", archive_http.base_url, exclude="evt2", outdir=tmp_path, **fast)
    assert [f.filetype for f in r.files] == ["oif"]
    with pytest.raises(TypeError, match="excludes"):
        download(1843, None, archive_http.base_url, exclude="x", excludes="y", outdir=tmp_path)


def test_callers_config_is_not_changed(archive_http, tmp_path, fast):
    cfg = SessionConfig(jobs=3)
    before = repr(cfg)
    download(1843, "oif", archive_http.base_url, outdir=tmp_path, config=cfg, jobs=1, **fast)
    assert repr(cfg) == before
    with pytest.raises(TypeError, match="nosuch"):
        download(1843, "oif", archive_http.base_url, outdir=tmp_path, nosuch=1)


def test_library_prints_nothing_by_default(archive_http, tmp_path, fast, capsys):
    download_chandra_obsids([1843, 99999], ["oif"], archive_http.base_url, outdir=tmp_path, **fast)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
