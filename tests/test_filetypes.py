"""File type names, descriptions, classification of archive names, and type selection."""

from __future__ import annotations

import pytest

from chandra_download.filetypes import DESCRIPTIONS, FILETYPES, Selection, classify, file_format

# Every example name of ARCHIVE.md (real archive names), with the type it must get.
ARCHIVE_EXAMPLES = [
    ("acisf02749N004_evt2.fits.gz", "evt2"),
    ("hrcf06298N006_evt2.fits.gz", "evt2"),
    ("acisf02749_000N004_fov1.fits.gz", "fov"),
    ("pcadf02749_000N001_asol1.fits.gz", "asol"),
    ("acisf02749_000N004_bpix1.fits.gz", "bpix"),
    ("hrcf06298_000N006_bpix1.fits.gz", "bpix"),
    ("acisf02749N004_cntr_img2.jpg", "cntr_img"),
    ("acisf02749N004_cntr_img2.fits.gz", "cntr_img"),
    ("acisf02749N004_full_img2.fits.gz", "full_img"),
    ("acisf02749N004_full_img2.jpg", "full_img"),
    ("acisf02749N004_pha2.fits.gz", "pha2"),
    ("acisf02749N004_Hm1_arf2.fits.gz", "arf"),
    ("acisf02749N004_Hm1_rmf2.fits.gz", "rmf"),
    ("hrcf06298_000N006_dtf1.fits.gz", "dtf"),
    ("hrcf06298_000N006_std_dtfstat1.fits.gz", "dtf"),  # known quirk of the CIAO tool
    ("orbitf136814700N001_eph1.fits.gz", "eph1"),
    ("lunarf136814700N001_eph1.fits.gz", "eph1"),
    ("solarf136814700N001_eph1.fits.gz", "eph1"),
    ("anglesf136814700N001_eph1.fits.gz", "eph1"),
    ("orbitf136814700N001_eph0.fits.gz", "eph0"),
    ("acisf02749_000N004_evt1a.fits.gz", "evt1a"),
    ("acisf02749_000N004_evt1.fits.gz", "evt1"),
    ("acisf02749_000N004_flt1.fits.gz", "flt"),
    ("hrcf06298_000N006_std_flt1.fits.gz", "flt"),
    ("acisf02749_000N004_msk1.fits.gz", "msk"),
    ("acisf02749_000N004_mtl1.fits.gz", "mtl"),
    ("acisf02749_000N004_stat1.fits.gz", "stat"),
    ("acisf136980412N004_0_bias0.fits.gz", "bias"),
    ("acisf136981522N004_pbk0.fits.gz", "pbk"),
    ("pcadf136814700N001_osol1.fits.gz", "osol"),
    ("pcadf136814700N001_aqual1.fits.gz", "aqual"),
    ("pcadf136814700N001_adat71.fits.gz", "adat"),
    ("pcadf06298_000N001_aoff1.fits.gz", "aoff"),
    ("pcadf136814700N001_sum2.fits.gz", "sum"),
    ("pcadf136814700N001_asp_plt1.png", "plt"),
    ("acisf01843N005_src2.fits.gz", "src2"),
    ("acisf01843N005_src_img2.jpg", "src_img"),
    ("acisf01843_000N005_soff1.fits.gz", "soff"),
    ("axaff02749N004_VV001_vv2.pdf.gz", "vv"),
    ("axaff02749N004_VV001_vv2.pdf", "vv"),
    ("axaff02749N004_VV001_vvref2.pdf.gz", "vvref"),
    ("oif.fits", "oif"),
    ("00README", "readme"),
    ("00readme", "readme"),
    ("00ReadMe", "readme"),
]

HELP_2013 = (
    "aoff aqual asol bias bpix cntr_img dtf eph1 evt1 evt2 flt fov full_img msk mtl oif osol "
    "pbk pha2 soff src2 stat vv"
).split()
CIAO_ADDITIONS = "adat arf eph0 evt1a plt readme rmf src_img sum vvref".split()


def test_known_types_are_the_documented_ones():
    assert set(FILETYPES) == set(HELP_2013) | set(CIAO_ADDITIONS)
    assert list(FILETYPES) == sorted(FILETYPES)
    assert all(DESCRIPTIONS[t].strip() for t in FILETYPES)


@pytest.mark.parametrize(("name", "ftype"), ARCHIVE_EXAMPLES)
def test_classify_archive_examples(name, ftype):
    assert classify(name) == ftype
    # Directories in front of the name never change the answer.
    assert classify(f"secondary/aspect/{name}") == ftype


def test_every_type_has_an_example():
    assert {t for _, t in ARCHIVE_EXAMPLES} == set(FILETYPES)


@pytest.mark.parametrize(
    "name",
    ["acisf01843_000N005_process.par", "README.txt", "oif.fits.gz", "x.fits", "evt2.fits"],
)
def test_untyped_names(name):
    assert classify(name) is None


def test_directory_names_are_not_used_for_the_type():
    assert classify("secondary_evt2/readme.txt") is None
    assert classify("primary/oif.fits") == "oif"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("acisf02749N004_evt2.fits.gz", "fits"),
        ("oif.fits", "fits"),
        ("acisf02749N004_cntr_img2.jpg", "jpg"),
        ("axaff02749N004_VV001_vv2.pdf.gz", "pdf"),
        ("00README", "text"),
        ("primary/x_process.par", "par"),
    ],
)
def test_file_format(name, fmt):
    assert file_format(name) == fmt


# --- selection ------------------------------------------------------------------------------


def test_no_types_accepts_everything_including_untyped():
    sel = Selection()
    assert all(sel.accepts(t) for t in FILETYPES)
    assert sel.accepts(None)
    assert sel.describe() == "all files"


def test_wanted_types_only_and_no_untyped():
    sel = Selection(["evt2", "ASOL "])
    assert {t for t in FILETYPES if sel.accepts(t)} == {"evt2", "asol"}
    assert not sel.accepts(None)


def test_comma_string_and_empty_items():
    assert Selection("evt2,,bpix, fov").wanted == {"evt2", "bpix", "fov"}
    # Empty is no longer "everything" (issue 17.3: an unset $TYPES in a script).
    for empty in ("", " , ", []):
        with pytest.raises(ValueError, match="empty"):
            Selection(empty)
        with pytest.raises(ValueError, match="empty"):
            Selection(None, empty)


def test_exclude_only_keeps_untyped():
    sel = Selection(None, "evt1,vvref")
    assert not sel.accepts("evt1") and not sel.accepts("vvref")
    assert sel.accepts("evt1a") and sel.accepts(None)


def test_type_in_both_lists_is_excluded_and_reported():
    sel = Selection("evt2,asol", ["evt2"])
    assert sel.conflicts == ["evt2"]
    assert not sel.accepts("evt2") and sel.accepts("asol")


@pytest.mark.parametrize(("wanted", "excluded"), [("evt2,evt3", None), (None, ["bogus"])])
def test_unknown_type_error_names_the_valid_types(wanted, excluded):
    with pytest.raises(ValueError) as info:
        Selection(wanted, excluded)
    msg = str(info.value)
    assert ("evt3" in msg) or ("bogus" in msg)
    assert all(t in msg for t in FILETYPES)
