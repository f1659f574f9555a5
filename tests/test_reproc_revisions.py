"""A reprocessed ObsId: the simulator's reprocessing, superseded revisions in a download,
``--check``, ``--list`` and ``--prune-superseded`` (issue 16.1)."""

from __future__ import annotations

import subprocess
import sys

from chandra_download import cli, download
from chandra_download.revisions import find_superseded, processing_version, product_key
from chandra_download.simulator import (
    Fault,
    generate_archive,
    iter_files,
    reprocess,
)

pytest_plugins = ["reproc_support"]  # its fixture: site

EVT2_OLD = "primary/acisf01843N005_evt2.fits.gz"
EVT2_NEW = "primary/acisf01843N006_evt2.fits.gz"
EVT1_OLD = "secondary/acisf01843_000N005_evt1.fits.gz"


def test_reprocess_renames_versioned_files_and_rewrites_the_others(tmp_path):
    root = generate_archive(tmp_path / "a", {1843: "acis"}, scale=0.05)
    before = dict(iter_files(root, 1843))
    sizes = {rel: p.stat().st_size for rel, p in before.items()}
    mtimes = {rel: p.stat().st_mtime for rel, p in before.items()}
    content = {rel: p.read_bytes() for rel, p in before.items()}
    done = reprocess(root, 1843)
    after = dict(iter_files(root, 1843))
    assert (done.old_version, done.new_version) == (5, 6)
    assert EVT2_OLD in before and EVT2_OLD not in after and EVT2_NEW in after
    assert not any("N005" in rel for rel in after)
    for rel in ("oif.fits", "00README"):  # changed in place: new content and size
        assert rel in after and after[rel].stat().st_size != sizes[rel]
        assert after[rel].stat().st_mtime > mtimes[rel]
    asol = "primary/pcadf01843_000N001_asol1.fits.gz"  # its own processing: untouched
    assert after[asol].read_bytes() == content[asol]
    assert (EVT2_OLD, EVT2_NEW) in done.renamed
    generate_archive(root, {1843: "acis"}, scale=0.05)  # again: the reprocessing stays
    assert dict(iter_files(root, 1843)).keys() == after.keys()


def test_reprocess_from_the_simulator_command_line(tmp_path):
    root = generate_archive(tmp_path / "a", {1843: "acis"}, scale=0.05)
    cmd = [sys.executable, "-m", "chandra_download.simulator", "reprocess", "--root", str(root)]
    p = subprocess.run([*cmd, "1843"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "N005 -> N006" in p.stdout
    assert EVT2_NEW in dict(iter_files(root, 1843))
    p = subprocess.run([*cmd, "4242"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "4242" in p.stderr and "Traceback" not in p.stderr


def test_versions_and_products():
    assert processing_version(EVT2_OLD) == 5
    assert processing_version("oif.fits") is None
    assert product_key(EVT2_OLD) == product_key(EVT2_NEW) == "primary/acisf01843N###_evt2.fits.gz"
    found = find_superseded(
        1843, [EVT2_OLD, "oif.fits", "x/acisf01843N004_evt2.fits.gz"], [EVT2_NEW]
    )
    # only the same directory counts; names without a version never are
    assert [(s.relpath, s.new_relpath) for s in found] == [(EVT2_OLD, EVT2_NEW)]
    assert find_superseded(1843, [EVT2_NEW], [EVT2_OLD]) == []  # the archive's is older


def test_the_whole_story(site, tmp_path, capsys):
    """Download, reprocess, re-run, --check, --prune-superseded, --check clean."""
    root, server = site
    out = tmp_path / "out"
    base = ["1843", "--mirror", server.base_url, "--outdir", str(out), "--no-status"]
    assert cli.main(base) == 0
    reprocess(root, 1843)
    capsys.readouterr()

    assert cli.main(base) == 0  # the download's exit status is unchanged
    err = capsys.readouterr().err
    assert "superseded" in err and "N005 -> N006" in err and "--prune-superseded" in err
    assert (out / "1843" / EVT2_OLD).is_file() and (out / "1843" / EVT2_NEW).is_file()

    assert cli.main([*base, "--list"]) == 0
    listed = capsys.readouterr().out
    assert f"superseded {EVT2_OLD}" in listed

    assert cli.main([*base, "--check"]) == 1
    checked = capsys.readouterr()
    assert f"superseded {EVT2_OLD}" in checked.out and "--prune-superseded" in checked.out
    assert f"extra    {EVT2_OLD}" not in checked.out

    assert cli.main([*base, "--prune-superseded"]) == 0
    capsys.readouterr()
    moved = out / "superseded" / "1843"
    assert (moved / EVT2_OLD).is_file() and (moved / EVT1_OLD).is_file()
    assert not (out / "1843" / EVT2_OLD).exists()
    assert not any("N005" in p.name for p in (out / "1843").rglob("*"))

    assert cli.main([*base, "--check"]) == 0
    assert "superseded" not in capsys.readouterr().out


def test_prune_waits_for_the_new_revision(site, tmp_path):
    """A superseded file stays where it is while its new revision is not complete."""
    root, server = site
    out = tmp_path / "out"
    download([1843], ["evt2"], mirror=server.base_url, outdir=out, status=False)
    reprocess(root, 1843)
    server.faults.add(Fault("status", "*N006_evt2*", status=404))  # cannot be served now
    res = download(
        [1843], ["evt2"], mirror=server.base_url, outdir=out, status=False,
        prune_superseded=True, retries=0,
    )  # fmt: skip
    server.faults.clear()
    assert not res.ok
    assert (out / "1843" / EVT2_OLD).is_file()
    assert [s.relpath for s in res[0].superseded] == [EVT2_OLD]
    res = download(
        [1843], ["evt2"], mirror=server.base_url, outdir=out, status=False, prune_superseded=True
    )
    assert res.ok and res[0].superseded == []
    assert (out / "superseded" / "1843" / EVT2_OLD).is_file()
