"""ObsId validation (API) and the command line's ObsId argument (lists, ranges, @files)."""

from __future__ import annotations

import pytest

from chandra_download.obsids import MAX_RANGE, parse_obsid_args, validate_obsid, validate_obsids


@pytest.mark.parametrize(
    ("value", "want"), [(1843, 1843), ("1843", 1843), (" 2749\n", 2749), ("00042", 42), (1, 1)]
)
def test_valid_obsids(value, want):
    assert validate_obsid(value) == want


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        "abc",
        "18a3",
        "-5",
        -5,
        0,
        "0",
        "1843.0",
        1843.0,
        "1e3",
        "+12",
        None,
        True,
        b"1843",
    ],
)
def test_invalid_obsids(value):
    with pytest.raises(ValueError, match="ObsId"):
        validate_obsid(value)


def test_validate_list_keeps_order_and_duplicates():
    assert validate_obsids(["6298", 1843, 6298]) == [6298, 1843, 6298]
    assert validate_obsids(1843) == [1843]
    assert validate_obsids("1843") == [1843]
    assert validate_obsids(iter([1, 2])) == [1, 2]


def test_validate_list_rejects_any_bad_member():
    with pytest.raises(ValueError, match="'x'"):
        validate_obsids([1843, "x", 6298])


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1843", [1843]),
        ("1842,1843", [1842, 1843]),
        (" 1842 , 1843 ,", [1842, 1843]),
        ("1842-1845", [1842, 1843, 1844, 1845]),
        ("7-7", [7]),
        ("5,1-3,2", [5, 1, 2, 3]),  # duplicates dropped, first occurrence kept
    ],
)
def test_parse_obsid_args(text, want):
    assert parse_obsid_args(text) == want


@pytest.mark.parametrize(
    "text", ["", ",", "abc", "1843,x", "5-3", "0-4", "-4", "1-2-3", f"1-{MAX_RANGE + 1}"]
)
def test_parse_obsid_args_errors(text):
    with pytest.raises(ValueError):
        parse_obsid_args(text)


def test_at_file_lists(tmp_path):
    lst = tmp_path / "obsids.txt"
    lst.write_text("# my sample\n1843, 2749\n6298  # HRC\n\n100-102\n1843\n")
    assert parse_obsid_args(f"@{lst}") == [1843, 2749, 6298, 100, 101, 102]
    assert parse_obsid_args(f"7,@{lst},8")[:3] == [7, 1843, 2749]
    assert parse_obsid_args(f"7,@{lst},8")[-1] == 8


def test_at_file_errors(tmp_path):
    with pytest.raises(ValueError, match="Cannot read ObsId list"):
        parse_obsid_args(f"@{tmp_path / 'missing.txt'}")
    bad = tmp_path / "bad.txt"
    bad.write_text("1843\nnot-an-obsid\n")
    with pytest.raises(ValueError, match="not-an-obsid"):
        parse_obsid_args(f"@{bad}")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="No ObsIds"):
        parse_obsid_args(f"@{empty}")


def test_numpy_integers_and_table_columns_are_obsids() -> None:
    import numpy as np
    from astropy.table import Table

    assert validate_obsid(np.int64(1843)) == 1843 and type(validate_obsid(np.int32(7))) is int
    assert validate_obsids(np.int64(5)) == [5]
    assert validate_obsids(Table({"obsid": [1843, 2749]})["obsid"]) == [1843, 2749]
    with pytest.raises(ValueError):
        validate_obsid(np.bool_(True))
    with pytest.raises(ValueError):
        validate_obsid(np.int64(0))
