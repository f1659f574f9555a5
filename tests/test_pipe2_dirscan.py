"""The listing-time symlink check of an ObsId's files in one pass (dirscan.unsafe_targets,
issue 19.3): the same answers as plan.unsafe_target file by file, with each directory looked
at once instead of about ten lstat calls per file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chandra_download import download
from chandra_download.dirscan import scan_targets, unsafe_targets
from chandra_download.plan import unsafe_target
from chandra_download.simulator import ArchiveHTTPServer
from chandra_download.statedir import Spot

RELPATHS = [
    "a.fits",
    "b.fits",
    "primary/c.fits",
    "primary/d.fits",
    "secondary/e.fits",
    "secondary/aspect/f.fits",
    "secondary/aspect/g.fits",
    "linked/h.fits",
    "filedir/i.fits",
    "fifo.fits",
    "dirname.fits",
    "lnk.fits",
    "parted.fits",
    "stated.fits",
    "tmpdir.fits",
    "missing/deep/j.fits",
    "n" * 250 + ".fits",
]


def _tree(tmp_path: Path) -> Path:
    """An ObsId directory with every kind of name the check must refuse or let be."""
    top = tmp_path / "out" / "1843"
    (top / "primary").mkdir(parents=True)
    (top / "secondary" / "aspect").mkdir(parents=True)
    for rel in ("a.fits", "primary/c.fits", "secondary/aspect/f.fits"):
        (top / rel).write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (top / "linked").symlink_to(elsewhere)
    (top / "filedir").write_bytes(b"a file where a directory is listed")
    os.mkfifo(top / "fifo.fits")
    (top / "dirname.fits").mkdir()
    (top / "lnk.fits").symlink_to(elsewhere / "target")
    for rel, which in (("parted.fits", "part"), ("stated.fits", "state")):
        spot = Spot(top.parent, top.name, rel)
        getattr(spot, which).parent.mkdir(parents=True, exist_ok=True)
        getattr(spot, which).symlink_to(elsewhere / rel)
    spot = Spot(top.parent, top.name, "tmpdir.fits")
    spot.state_tmp.mkdir(parents=True)
    return top


def test_the_same_answers_as_unsafe_target(tmp_path):
    top = _tree(tmp_path)
    want = {rel: unsafe_target(top, top / rel) for rel in RELPATHS}
    assert unsafe_targets(top, RELPATHS) == want
    refused = {rel for rel, why in want.items() if why}
    assert refused == {
        "linked/h.fits",
        "fifo.fits",
        "dirname.fits",
        "lnk.fits",
        "parted.fits",
        "stated.fits",
        "tmpdir.fits",
    }


def test_a_symlinked_hidden_directory_is_refused_alike(tmp_path):
    top = _tree(tmp_path)
    hidden = top.parent / ".chandra-download"
    elsewhere = tmp_path / "hidden-elsewhere"
    hidden.rename(elsewhere)
    hidden.symlink_to(elsewhere)
    want = {rel: unsafe_target(top, top / rel) for rel in RELPATHS}
    assert unsafe_targets(top, RELPATHS) == want
    assert all(".chandra-download is a symlink" in (want[r] or "") for r in ("a.fits", "b.fits"))


def test_each_directory_is_looked_at_once(tmp_path, monkeypatch):
    top = tmp_path / "out" / "1843"
    names = [f"d{i % 3}/f{i}.fits" for i in range(60)]
    for rel in names:
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(b"x")
    Spot(top.parent, top.name, names[0]).partial_dir.mkdir(parents=True)
    calls = {"lstat": 0, "scandir": 0}
    real_lstat, real_scandir = os.lstat, os.scandir

    def lstat(path, *args, **kwargs):
        calls["lstat"] += 1
        return real_lstat(path, *args, **kwargs)

    def scandir(path):
        calls["scandir"] += 1
        return real_scandir(path)

    monkeypatch.setattr(os, "lstat", lstat)
    monkeypatch.setattr(os, "scandir", scandir)
    assert set(unsafe_targets(top, names).values()) == {None}
    # 1843, d0..d2, .chandra-download, partial, 1843: 7 directories; 4 of them read.
    assert calls == {"lstat": 7, "scandir": 4}


@pytest.mark.parametrize("broken", [PermissionError(13, "denied"), OSError(5, "I/O error")])
def test_an_error_in_the_pass_is_said_per_file(archive_root, tmp_path, monkeypatch, broken):
    """A directory the pass cannot read: each file is then looked at on its own, and the
    error is said for the file it concerns, as before the pass."""
    import chandra_download.dirscan as dirscan

    def refuse(*args, **kwargs):
        raise broken

    monkeypatch.setattr(dirscan, "scan_targets", refuse)
    monkeypatch.setattr("chandra_download.engine.scan_targets", refuse)
    with ArchiveHTTPServer(archive_root) as server:
        results = download(1843, mirror=server.base_url, outdir=tmp_path, jobs=2, timeout=10.0)
    assert results.ok  # (the per-file check had nothing to refuse)


def test_the_pass_tells_the_files_with_nothing_of_ours(tmp_path):
    top = _tree(tmp_path)
    Spot(top.parent, top.name, "b.fits").part.write_bytes(b"half")
    Spot(top.parent, top.name, "primary/d.fits").state.write_bytes(b"{}")
    scan = scan_targets(top, RELPATHS)
    assert scan.problems["b.fits"] is None and scan.problems["primary/d.fits"] is None
    refused = {rel for rel, why in scan.problems.items() if why}
    unusual = {"filedir/i.fits"}  # (judged by unsafe_target: not known to be bare)
    assert scan.bare == set(RELPATHS) - refused - unusual - {"b.fits", "primary/d.fits"}
