"""Records over FTP (issue 16.2): the identity of a file fetched over FTP is the ``MLSD``
``modify`` fact, so a change in place at an FTP mirror that keeps the file's size is told by a
re-run and by ``--check`` ("changed at the archive since it was fetched"), as HTTP's ETag
and Last-Modified tell it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyftpdlib")

from chandra_download import cli, download
from chandra_download.record import load
from chandra_download.results import Status
from chandra_download.simulator import change_in_place, generate_archive
from chandra_download.simulator.ftp import ArchiveFTPServer

JPG = "primary/acisf01843N005_full_img2.jpg"
CHANGED = "changed at the archive since it was fetched"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, ArchiveFTPServer]]:
    root = generate_archive(tmp_path / "archive", {1843: "acis"}, scale=0.05)
    with ArchiveFTPServer(root) as server:
        yield root, server


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(server: ArchiveFTPServer, out: Path, types: list[str]):
    return download([1843], types, mirror=server.base_url, outdir=out, status=False)


@pytest.mark.parametrize("rel", [JPG, "oif.fits"])
def test_a_same_size_change_at_an_ftp_mirror_is_told(site, tmp_path, capsys, rel):
    root, server = site
    out = tmp_path / "out"
    types = ["full_img"] if rel == JPG else ["oif"]
    assert fetch(server, out, types).ok
    recorded = load(out, 1843)[rel]
    assert recorded.last_modified and recorded.last_modified.endswith("+00:00")
    old_size = (out / "1843" / rel).stat().st_size
    at_archive = change_in_place(root, 1843, rel)
    assert at_archive.stat().st_size == old_size and sha(at_archive) != recorded.sha256

    base = ["1843", *types, "--mirror", server.base_url, "--outdir", str(out), "--no-status"]
    capsys.readouterr()
    assert cli.main([*base, "--check"]) == 1
    assert f"changed  {rel}: {CHANGED}" in capsys.readouterr().out

    retr = server.stats.retr.copy()
    res = fetch(server, out, types)
    fr = next(f for f in res.files if f.relpath == rel)
    assert fr.ok and fr.status is Status.DOWNLOADED and fr.changed and CHANGED in fr.changed
    assert sum(server.stats.retr.values()) > sum(retr.values())  # fetched anew
    assert sha(out / "1843" / rel) == sha(at_archive)
    assert load(out, 1843)[rel].sha256 == sha(at_archive)
    assert f"({rel})" in capsys.readouterr().err  # said after the download
    assert cli.main([*base, "--check"]) == 0


def test_an_unchanged_ftp_file_is_left_alone(site, tmp_path):
    """The modify fact of a file not changed is the one recorded: a re-run fetches nothing."""
    root, server = site
    out = tmp_path / "out"
    assert fetch(server, out, ["full_img"]).ok
    retr = sum(server.stats.retr.values())
    again = fetch(server, out, ["full_img"])
    assert all(f.status is Status.PRESENT and not f.changed for f in again.files)
    assert sum(server.stats.retr.values()) == retr
