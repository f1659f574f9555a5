"""CIAO's console formats (ARCHIVE.md, "CIAO's command line and output, exactly"): sizes,
times, the per-ObsId block and our --list table, compared line for line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chandra_download.output import (
    TABLE_HEADER,
    TABLE_RULE,
    ciao_format,
    ciao_size,
    ciao_time,
    file_row,
    list_table,
    obsid_block,
)
from chandra_download.results import FileResult, LocalState, ObsIdResult, Status

KB, MB, GB = 1024, 1024**2, 1024**3


def fr(rel: str, ftype: str | None, size: int, status: Status, **kw: object) -> FileResult:
    return FileResult(1843, rel, f"https://x/{rel}", Path(rel), ftype, size, status, **kw)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "< 1 Kb"),
        (1023, "< 1 Kb"),
        (1024, "1 Kb"),
        (27 * KB + 1000, "28 Kb"),  # 27.98 rounds up
        (MB - 1, "1024 Kb"),
        (MB, "1 Mb"),
        (79 * MB + MB - 1, "80 Mb"),  # rounded half up, as CIAO's int(x + 0.5)
        (GB, "1.0 Gb"),
        (int(2.26 * GB), "2.3 Gb"),
    ],
)
def test_sizes_in_ciaos_units(n, text):
    assert ciao_size(n) == text


@pytest.mark.parametrize(
    ("secs", "text"),
    [
        (0.0, "< 1 s"),
        (0.99, "< 1 s"),
        (1.0, "1 s"),
        (58.4, "58 s"),
        (72.4, "1 m 12 s"),
        (3599, "59 m 59 s"),
        (3600 + 125, "1 h 2 m"),
        (86400 + 3 * 3600, "1 day 3 h"),
        (2 * 86400 + 60, "2 days"),  # a zero part is left out
    ],
)
def test_times_in_ciaos_units(secs, text):
    assert ciao_time(secs) == text


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("acisf01843N005_evt2.fits.gz", "fits"),
        ("acisf01843N005_cntr_img2.jpg", "jpg"),
        ("axaff01843N005_VV001_vv2.pdf.gz", "pdf"),
        ("00README", "ascii"),
        ("acisf01843_000N005_process.par", ""),
    ],
)
def test_format_column(name, fmt):
    assert ciao_format(f"primary/{name}") == fmt


def _example() -> ObsIdResult:
    files = [
        fr("oif.fits", "oif", 27 * KB + 10, Status.PRESENT, local_size=27 * KB + 10),
        fr(
            "secondary/acisf01843_000N005_evt1.fits.gz",
            "evt1",
            57 * MB + 5,
            Status.DOWNLOADED,
            bytes_transferred=57 * MB + 5,
            elapsed=9.4,
        ),
        fr(
            "primary/acisf01843N005_evt2.fits.gz",
            "evt2",
            22 * MB,
            Status.RESUMED,
            bytes_transferred=12 * MB,
            elapsed=2.0,
        ),
    ]
    return ObsIdResult(1843, True, "https://x/", files)


def test_golden_block():
    """The whole block for one ObsId, exactly as CIAO prints it."""
    rate1 = (57 * MB + 5) / 9.4 / 1024
    assert obsid_block(_example(), elapsed=72.4) == [
        "Downloading files for ObsId 1843, total size is 79 Mb.",
        "",
        "  Type     Format      Size  0........H.........1  Download Time Average Rate",
        "  " + "-" * 75,
        f"  evt1     fits       57 Mb  ####################            9 s  {rate1:.1f} kb/s",
        "  evt2     fits       22 Mb  ####################            2 s  6144.0 kb/s",
        "  oif      fits       27 Kb    already downloaded",
        "",
        "      Total download size for ObsId 1843 = 79 Mb",  # the resumed file counts whole
        "      Total download time for ObsId 1843 = 1 m 12 s",
        "",
    ]
    assert TABLE_HEADER.startswith("  Type     Format      Size  0") and len(TABLE_RULE) == 77


def test_no_totals_for_one_file_or_nothing_moved():
    one = ObsIdResult(1843, True, "s", [_example().files[1]])
    assert not any("Total download" in line for line in obsid_block(one, 1.0))
    present = ObsIdResult(1843, True, "s", [_example().files[0]] * 2)
    assert not any("Total download" in line for line in obsid_block(present, 1.0))
    assert obsid_block(present, 1.0)[-1] == ""  # the block still ends with a blank line


def test_rows_fit_in_80_columns_whatever_the_rate():
    for elapsed in (1e-6, 0.001, 1.0, 5e5):
        f = fr(
            "primary/acisf01843N005_full_img2.fits.gz",
            "full_img",
            3 * GB,
            Status.DOWNLOADED,
            bytes_transferred=3 * GB,
            elapsed=elapsed,
        )
        (row,) = file_row(f)
        assert len(row) < 80, row
        assert row.endswith("b/s")


def test_missing_obsid_lines():
    r = ObsIdResult(99999)
    assert obsid_block(r, 0) == ["Skipping ObsId 99999 as it was not found on the archive site."]
    assert obsid_block(r, 0, mirror=True) == [
        "Skipping ObsId 99999 as it was not found on the mirror site."
    ]
    r.why_missing = "not public until 2027-03-04 (status observed)"
    lines = obsid_block(r, 0)
    assert lines[0].startswith("Skipping ObsId 99999 as it was not found")
    assert lines[1].strip() == "ObsId 99999: not public until 2027-03-04 (status observed)"


def test_no_files_found():
    assert obsid_block(ObsIdResult(1843, True, "s", []), 0) == ["No files found for ObsId 1843!"]


def test_failed_larger_and_warned_files_say_so_under_their_row():
    bad = fr("primary/a_evt2.fits.gz", "evt2", MB, Status.FAILED, reason="HTTP 404")
    assert file_row(bad)[1].strip() == "HTTP 404" and "FAILED" in file_row(bad)[0]
    larger = fr("primary/a_evt2.fits.gz", "evt2", 100, Status.SKIPPED, local_size=150)
    assert file_row(larger)[1] == (
        "Archive size is less than disk size for 1843/primary/a_evt2.fits.gz - 100 vs 150 bytes."
    )
    kept = fr(
        "oif.fits",
        "oif",
        KB,
        Status.DOWNLOADED,
        bytes_transferred=KB,
        elapsed=1.0,
        warning="kept as served: DATASUM mismatch",
    )
    assert file_row(kept)[1] == "    warning: kept as served: DATASUM mismatch"


def test_interrupted_files_have_no_rows():
    r = _example()
    r.files.append(
        fr("primary/x_fov1.fits.gz", "fov", KB, Status.INTERRUPTED, reason="interrupted; kept")
    )
    assert not any("FAILED" in line or "interrupted" in line for line in obsid_block(r, 1.0))


def test_list_table_sorted_exact_and_typed_state():
    files = [
        fr("secondary/b_evt1.fits.gz", "evt1", 5000, Status.PLANNED, local_size=1000),
        fr("oif.fits", "oif", 2000, Status.PLANNED, local_size=2000, local=LocalState.COMPLETE),
        fr("primary/a_evt2.fits.gz", "evt2", 3000, Status.PLANNED),
    ]
    # The typed state wins over a misleading reason text.
    files[2].local, files[2].reason = LocalState.MISSING, "present"
    lines = list_table([ObsIdResult(1843, True, "s", files), ObsIdResult(99999)])
    rows = [line.split() for line in lines[1:4]]
    assert [r[-1] for r in rows] == [
        "oif.fits",
        "primary/a_evt2.fits.gz",
        "secondary/b_evt1.fits.gz",
    ]
    assert rows[0][:5] == ["1843", "oif", "2000", "2000", "complete"]
    assert rows[1][:5] == ["1843", "evt2", "3000", "0", "missing"]
    assert rows[2][:5] == ["1843", "evt1", "5000", "1000", "partial"]
    assert "99999" in lines[4] and "not found" in lines[4]
    assert lines[-1] == (
        "Total: 3 file(s) in 1 of 2 ObsId(s), 10000 bytes (10 Kb); to fetch: 7000 bytes (7 Kb)."
    )


# -- QA defects (issue 9 follow-up) ------------------------------------------------------------


def test_total_download_size_counts_each_file_at_most_once():
    """A file fetched twice (corrupt, then again) moved more bytes than it holds; the
    ObsId's download size is what its files hold, as CIAO's."""
    refetched = fr(
        "oif.fits", "oif", 20 * KB, Status.DOWNLOADED, bytes_transferred=37 * KB, elapsed=1.0
    )
    other = fr(
        "primary/a_fov1.fits.gz", "fov", 8 * KB, Status.DOWNLOADED, bytes_transferred=8 * KB,
        elapsed=1.0,
    )  # fmt: skip
    lines = obsid_block(ObsIdResult(1843, True, "s", [refetched, other]), 2.0)
    assert "      Total download size for ObsId 1843 = 28 Kb" in lines


@pytest.mark.parametrize("rate_kb", [999_999.94, 1_000_737.0, 98_765_432.1])
def test_fast_rates_keep_one_decimal_within_79_columns(rate_kb):
    f = fr(
        "primary/acisf01843N005_full_img2.fits.gz", "full_img", 3 * GB, Status.DOWNLOADED,
        bytes_transferred=int(rate_kb * 1024 * 2.5), elapsed=2.5,
    )  # fmt: skip
    (row,) = file_row(f)
    assert len(row) <= 79, row
    rate = f.bytes_transferred / f.elapsed / KB
    assert row.endswith(f" {rate:.1f} kb/s"), row
    assert " 3 s " in row  # 2.5 s, rounded half up


def test_ordinary_rows_keep_ciaos_time_column():
    f = fr("oif.fits", "oif", 27 * KB, Status.DOWNLOADED, bytes_transferred=27 * KB, elapsed=2.0)
    (row,) = file_row(f)
    assert row == f"  oif      fits       27 Kb  {'#' * 20}  {'2 s':>13s}  13.5 kb/s"


def test_failure_sub_line_drops_the_path_and_wraps_at_79():
    url = "http://127.0.0.1:40000/byobsid/3/1843/primary/acisf01843N005_evt2.fits.gz"
    for prefix in ("primary/acisf01843N005_evt2.fits.gz: ", "acisf01843N005_evt2.fits.gz: "):
        bad = fr(
            "primary/acisf01843N005_evt2.fits.gz", "evt2", MB, Status.FAILED,
            reason=f"{prefix}server answered HTTP 500 at {url} (gave up after 3 attempts)",
        )  # fmt: skip
        row, *sub = file_row(bad)
        assert "FAILED" in row
        assert all(len(line) <= 79 for line in sub), sub
        assert sub[0].startswith("    server answered HTTP 500")
        assert all(line.startswith("      ") for line in sub[1:]) and len(sub) > 1
        assert " ".join(line.strip() for line in sub) == (
            f"server answered HTTP 500 at {url} (gave up after 3 attempts)"
        )


def test_missing_obsid_after_a_failed_fallback_site_is_not_found():
    """A site said not found and another failed: not found, the failure as detail (the
    engine records the failures in ``site_failures``)."""
    r = ObsIdResult(99999)
    r.site_failures = ["http://127.0.0.1:9/: cannot reach 127.0.0.1:9"]
    lines = obsid_block(r, 0, mirror=True)
    assert lines[0] == "Skipping ObsId 99999 as it was not found on the mirror site."
    assert "cannot reach 127.0.0.1:9" in " ".join(line.strip() for line in lines[1:])
    assert all(len(line) <= 79 for line in lines)
