"""Less CPU per file in its paths (issue 19.4): a file's spot works each name out once, and
the free-space check looks at no file on disk while every selected byte fits. Counted, not
timed: a saving lost fails here."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from chandra_download import download, engine, set_verbosity, statedir
from chandra_download.results import FileResult
from chandra_download.simulator import generate_archive
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.statedir import Spot

OBSID = 1843
FAST = {"retries": 0, "progress": False, "status": False}


@pytest.mark.parametrize(
    ("path", "rel"),
    [("/w/out/1843/primary/a.fits", "primary/a.fits"), ("/1843/b", "b"), ("1843/x/y", "x/y"),
     ("out/1843/x", "x"), ("/w/out/1843/./odd", "odd"), ("/w/1843/a//b", "a/b")],
)  # fmt: skip
def test_a_spot_of_a_file_is_its_path_cut_at_the_obsid(path: str, rel: str) -> None:
    fr = FileResult(OBSID, rel, "u", Path(path), None)
    top = fr.path.parents[len(rel.split("/")) - 1]
    spot = Spot.of(fr)
    assert spot == Spot(top.parent, top.name, rel)
    assert spot.target == fr.path and spot.top == top


def test_a_spot_hashes_its_path_once_per_name(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = statedir.key
    monkeypatch.setattr(statedir, "key", lambda rel: calls.append(rel) or real(rel))
    spot = Spot(Path("/out"), "1843", "primary/a.fits")
    for _ in range(5):
        names = (spot.part, spot.state, spot.state_tmp, spot.part_name, spot.state_name)
    assert len(calls) == 2  # the .part's name and the state's
    assert names[0] == Path("/out/.chandra-download/partial/1843") / (real(spot.relpath) + ".part")
    assert names[2].name == names[4] + ".tmp"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_archive(tmp_path_factory.mktemp("paths"), {OBSID: "acis"}, scale=0.02)


@pytest.mark.parametrize("free", [10**15, 1000])
def test_files_on_disk_are_looked_at_for_space_only_when_it_may_not_fit(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int
) -> None:
    looked: list[str] = []
    real = engine._on_disk
    monkeypatch.setattr(engine, "_on_disk", lambda fr: looked.append(fr.relpath) or real(fr))
    monkeypatch.setattr(engine, "_free_space", lambda outdir: free)
    log = io.StringIO()
    set_verbosity(0, log)
    with ArchiveHTTPServer(root) as http:
        res = download(OBSID, mirror=http.base_url, outdir=tmp_path, **FAST)
    assert res.ok
    files = [f.relpath for r in res for f in r.files]
    if free > 1000:
        assert looked == [] and "bytes free" not in log.getvalue()
    else:
        assert sorted(looked) == sorted(files) and "1000 bytes free" in log.getvalue()


@pytest.mark.parametrize("relative", [False, True])
def test_local_files_are_the_relpaths_below_the_obsid(tmp_path, monkeypatch, relative):
    from chandra_download.revisions import local_files

    rels = ["oif.fits", "primary/a_evt2.fits.gz", "secondary/aspect/b c.fits", "x/y/z/w", "é/ü"]
    for rel in rels:
        (tmp_path / "1843" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "1843" / rel).write_bytes(b"x")
    top = tmp_path / "1843"
    if relative:
        monkeypatch.chdir(tmp_path)
        top = Path("1843")
    assert local_files(top) == sorted(rels)
    assert local_files(tmp_path / "none") == []


@pytest.mark.parametrize("removed", ["target", "partial"])
def test_a_directory_removed_mid_run_is_made_again(root, tmp_path, monkeypatch, removed):
    # Directories are made once per run: one removed after the first file is done must be
    # made again for the files after it (one at a time, so none is in flight meanwhile).
    import shutil

    from chandra_download import record

    out, moved = tmp_path / "out", tmp_path / "moved"
    real = record.RecordBook.journal

    def journal(self, fr, st, verify):
        real(self, fr, st, verify)
        if not moved.exists():
            if removed == "target":
                (out / str(OBSID)).rename(moved)  # the ObsId's whole tree, files kept
            else:
                shutil.rmtree(out / ".chandra-download" / "partial" / str(OBSID))
                moved.mkdir()

    monkeypatch.setattr(record.RecordBook, "journal", journal)
    with ArchiveHTTPServer(root) as http:
        res = download(OBSID, mirror=http.base_url, outdir=out, jobs=1, pipeline_depth=1,
                       fsync=False, **FAST)  # fmt: skip
    assert res.ok, [(f.relpath, f.reason) for r in res for f in r.files if not f.ok]
    files = [f.relpath for r in res for f in r.files]
    here = [rel for rel in files if (out / str(OBSID) / rel).is_file()]
    there = [rel for rel in files if (moved / rel).is_file()]
    assert sorted(here + there) == sorted(files) and len(here) > 1
