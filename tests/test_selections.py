"""Named selections (repro, level2, images) wherever a type list is accepted: the file sets
they pick from each kind of simulated ObsId, with exclusions, and the bytes they save."""

from __future__ import annotations

import pytest

from chandra_download import download
from chandra_download.filetypes import (
    DESCRIPTIONS,
    SELECTIONS,
    Selection,
    classify,
    named_selections,
)
from chandra_download.simulator import iter_files

# 1843 is ACIS imaging, 2749 ACIS with a grating, 6298 HRC (the default simulated archive).
REPRO = {
    1843: [
        "primary/acisf01843N005_evt2.fits.gz",
        "primary/acisf01843_000N005_bpix1.fits.gz",
        "primary/acisf01843_000N005_fov1.fits.gz",
        "primary/pcadf01843_000N001_asol1.fits.gz",
        "secondary/acisf01843_000N005_evt1.fits.gz",
        "secondary/acisf01843_000N005_flt1.fits.gz",
        "secondary/acisf01843_000N005_msk1.fits.gz",
        "secondary/acisf01843_000N005_mtl1.fits.gz",
        "secondary/acisf01843_000N005_stat1.fits.gz",
        "secondary/acisf142935000N005_0_bias0.fits.gz",
        "secondary/acisf142935000N005_1_bias0.fits.gz",
        "secondary/acisf142936110N005_pbk0.fits.gz",
        # every eph1 file (chandra_repro reads the orbit one and a moving target's), and the
        # OBC aspect it uses when an observation has no asol (issue 17.6)
        "primary/orbitf142935000N001_eph1.fits.gz",
        "secondary/ephem/anglesf142935000N001_eph1.fits.gz",
        "secondary/ephem/lunarf142935000N001_eph1.fits.gz",
        "secondary/ephem/solarf142935000N001_eph1.fits.gz",
        "secondary/aspect/pcadf142935000N001_osol1.fits.gz",
        "secondary/aspect/pcadf142936021N001_osol1.fits.gz",
    ],
    6298: [
        "primary/hrcf06298N006_evt2.fits.gz",
        "primary/hrcf06298_000N006_dtf1.fits.gz",
        "primary/hrcf06298_000N006_fov1.fits.gz",
        "primary/pcadf06298_000N001_asol1.fits.gz",
        "secondary/hrcf06298_000N006_bpix1.fits.gz",
        "secondary/hrcf06298_000N006_evt1.fits.gz",
        "secondary/hrcf06298_000N006_evt1.log",  # "_evt1" in the name: typed evt1, as CIAO does
        "secondary/hrcf06298_000N006_msk1.fits.gz",
        "secondary/hrcf06298_000N006_mtl1.fits.gz",
        "secondary/hrcf06298_000N006_std_dtfstat1.fits.gz",
        "secondary/hrcf06298_000N006_std_flt1.fits.gz",
        "primary/orbitf343410000N001_eph1.fits.gz",
        "secondary/ephem/anglesf343410000N001_eph1.fits.gz",
        "secondary/ephem/lunarf343410000N001_eph1.fits.gz",
        "secondary/ephem/solarf343410000N001_eph1.fits.gz",
        "secondary/aspect/pcadf343410000N001_osol1.fits.gz",
        "secondary/aspect/pcadf343411021N001_osol1.fits.gz",
    ],
}
LEVEL2_2749 = [
    "primary/acisf02749N004_evt2.fits.gz",
    "primary/acisf02749N004_pha2.fits.gz",
    "primary/acisf02749_000N004_bpix1.fits.gz",
    "primary/acisf02749_000N004_fov1.fits.gz",
    "primary/orbitf183705000N001_eph1.fits.gz",
    "primary/pcadf02749_000N001_asol1.fits.gz",
    *[f"primary/responses/acisf02749N004_{a}_{t}2.fits.gz" for a in ("Hm1", "Hp1", "Mm1", "Mp1")
      for t in ("arf", "rmf")],
    "secondary/acisf02749_000N004_msk1.fits.gz",
    "secondary/ephem/anglesf183705000N001_eph1.fits.gz",
    "secondary/ephem/lunarf183705000N001_eph1.fits.gz",
    "secondary/ephem/solarf183705000N001_eph1.fits.gz",
]  # fmt: skip
IMAGES_1843 = [
    "primary/acisf01843N005_cntr_img2.fits.gz",
    "primary/acisf01843N005_cntr_img2.jpg",
    "primary/acisf01843N005_full_img2.fits.gz",
    "primary/acisf01843N005_full_img2.jpg",
    "primary/acisf01843N005_src_img2.jpg",
]


def picked(archive_root, obsid: int, filetypes, exclude=None) -> list[str]:
    sel = Selection(filetypes, exclude)
    return sorted(rel for rel, _ in iter_files(archive_root, obsid) if sel.accepts(classify(rel)))


@pytest.mark.parametrize("obsid", sorted(REPRO))
def test_repro_picks_what_chandra_repro_reads(archive_root, obsid):
    assert picked(archive_root, obsid, "repro") == sorted(REPRO[obsid])


def test_repro_keeps_a_moving_targets_ephemeris():
    """chandra_repro runs sso_freeze with a non-orbit eph1 file in primary/ (a solar system
    target); without it the correction is silently skipped (issue 17.6)."""
    sso = "primary/acisf03412_000N002_eph1.fits.gz"
    assert classify(sso) == "eph1" and Selection("repro").accepts("eph1")
    assert Selection("repro").accepts(classify("secondary/aspect/pcadf1_osol1.fits.gz"))


def test_level2_picks_grating_spectra_responses_and_ephemeris(archive_root):
    assert picked(archive_root, 2749, ["level2"]) == sorted(LEVEL2_2749)


def test_images_and_a_selection_mixed_with_types_and_exclusions(archive_root):
    assert picked(archive_root, 1843, "images") == IMAGES_1843
    assert picked(archive_root, 1843, "images,oif", "src_img") == ["oif.fits", *IMAGES_1843[:4]]
    everything = {rel for rel, _ in iter_files(archive_root, 1843)}
    assert set(picked(archive_root, 1843, None, "images")) == everything - set(IMAGES_1843)
    assert not Selection("level2", "eph1").conflicts  # a selection minus a type is fine
    assert Selection("evt2,level2", "evt2").conflicts == ["evt2"]


def test_selections_work_through_download(archive_http, archive_root, tmp_path):
    results = download([6298], "repro", mirror=archive_http.base_url, outdir=tmp_path)
    assert results.ok
    top = tmp_path / "6298"
    landed = sorted(
        p.relative_to(top).as_posix()
        for p in top.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    )
    assert landed == sorted(REPRO[6298])


def test_bytes_saved_is_the_size_of_what_is_left_out(archive_root):
    files = [(rel, path.stat().st_size) for rel, path in iter_files(archive_root, 2749)]
    sel = Selection("level2")
    kept = sum(size for rel, size in files if rel in LEVEL2_2749)
    assert sel.bytes_saved(files) == sum(size for _, size in files) - kept > 0
    assert Selection().bytes_saved(files) == 0
    assert Selection("images").bytes_saved([("x_evt2.fits", None), ("y_cntr_img2.jpg", 7)]) == 0


def test_the_listing_helper_and_unknown_names():
    listed = named_selections()
    assert [name for name, _, _ in listed] == ["repro", "level2", "images"]
    for name, description, types in listed:
        assert description and set(types) <= set(DESCRIPTIONS) and types == SELECTIONS[name]
    with pytest.raises(ValueError, match="'repo'.*selections repro, level2, images"):
        Selection("repo")


def test_dash_t_lists_the_named_selections_with_their_types(capsys):
    from chandra_download.cli import main

    assert main(["-t"]) == 0
    out = capsys.readouterr().out
    for name, _description, types in named_selections():
        line = next(x for x in out.splitlines() if x.split()[:1] == [name])
        assert line.strip().startswith(name)
        assert ",".join(types) in out.replace("\n           ", "")


def test_list_shows_the_bytes_the_selection_leaves_out(archive_http, archive_root, capsys):
    from chandra_download.cli import main

    files = dict(iter_files(archive_root, 1843))
    left_out = sum(p.stat().st_size for rel, p in files.items() if not rel.endswith("evt2.fits.gz"))
    assert main(["1843", "evt2", "-m", archive_http.base_url, "--list", "--no-status"]) == 0
    total = capsys.readouterr().out.splitlines()[-1]
    # HTML listings round sizes: the figure is the listing's, within its rounding.
    shown = total.split("left out by the selection: ")[1].rstrip(".")
    number, unit = shown.split()
    scale = {"Kb": 2**10, "Mb": 2**20, "Gb": 2**30}[unit]
    assert abs(float(number) * scale - left_out) <= 0.1 * left_out + scale
