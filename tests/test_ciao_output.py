"""CIAO's strings exactly (issue 17.1): the size and time formats of ciao-contrib's
``stringify_size``/``stringify_dt`` (ARCHIVE.md, "CIAO's command line and output, exactly"),
and what the totals lines of a block add up."""

from __future__ import annotations

from pathlib import Path

import pytest

from chandra_download.output import busy_time, ciao_size, ciao_time, obsid_block
from chandra_download.progress import Reporter
from chandra_download.results import FileResult, ObsIdResult, Status

KB, MB, GB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (0, "< 1 Kb"),
        (1023, "< 1 Kb"),
        (1024, "1 Kb"),
        (1025, "1 Kb"),
        (1535, "1 Kb"),
        (1536, "2 Kb"),  # a half goes up
        (17_280, "17 Kb"),  # 16.875: we printed 16 Kb
        (54_232, "53 Kb"),
        (MB - 1, "1024 Kb"),  # CIAO's quirk: below a MiB is Kb, rounded
        (MB, "1 Mb"),
        (4_545_833, "4 Mb"),
        (4_801_118, "5 Mb"),  # 4.58: we printed 4 Mb
        (int(2.5 * MB), "3 Mb"),
        (GB - 1, "1024 Mb"),
        (GB, "1.0 Gb"),
        (45_458_330_000, "42.3 Gb"),
    ],
)
def test_sizes_are_rounded_half_up(nbytes, text):
    assert ciao_size(nbytes) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "< 1 s"),
        (0.2, "< 1 s"),
        (0.999, "< 1 s"),
        (1.0, "1 s"),
        (1.49, "1 s"),
        (1.5, "2 s"),
        (9.6, "10 s"),  # rounded half up, not truncated
        (59.6, "60 s"),  # as CIAO: the seconds are rounded after the minutes are taken
        (60, "1 m"),  # a zero part is left out
        (62.3, "1 m 2 s"),
        (72.4, "1 m 12 s"),
        (2402.24, "40 m 2 s"),
        (3599, "59 m 59 s"),
        (3600, "1 h"),
        (3720, "1 h 2 m"),
        (3600 + 59, "1 h"),  # with hours, the seconds are not shown
        (86400, "1 day"),
        (86400 + 3 * 3600, "1 day 3 h"),
        (2 * 86400, "2 days"),
        (2 * 86400 + 59 * 60, "2 days"),
        (3 * 86400 + 5 * 3600 + 7, "3 days 5 h"),
    ],
)
def test_times_leave_out_zero_parts_and_round_seconds(seconds, text):
    assert ciao_time(seconds) == text


def _file(rel: str, size: int, status: Status, **kw: object) -> FileResult:
    return FileResult(1843, rel, f"https://x/{rel}", Path(rel), "evt2", size, status, **kw)


def test_totals_add_the_files_fetched_in_this_run_only():
    """CIAO adds, per file downloaded, the length of the file written (a resumed file whole)
    and its download time; a file already complete adds (0, 0)."""
    files = [
        _file("a_evt2.fits", 4_801_118, Status.DOWNLOADED, bytes_transferred=4_801_118,
              elapsed=9.6),
        _file("b_evt2.fits", 17_280, Status.RESUMED, bytes_transferred=280, local_size=17_000,
              elapsed=0.4),
        _file("c_evt2.fits", 50 * MB, Status.PRESENT, local_size=50 * MB),
        _file("d_evt2.fits", 3 * MB, Status.FAILED, bytes_transferred=MB, reason="HTTP 503"),
    ]  # fmt: skip
    lines = obsid_block(ObsIdResult(1843, True, "s", files), elapsed=60.0)
    assert lines[0] == "Downloading files for ObsId 1843, total size is 58 Mb."
    # 4,801,118 + 17,280 bytes = 4.6 MiB: 5 Mb (the present and the failed files add nothing)
    assert "      Total download size for ObsId 1843 = 5 Mb" in lines
    assert "      Total download time for ObsId 1843 = 1 m" in lines
    assert f"  evt2     fits        5 Mb  {'#' * 20}  {'10 s':>13s}  488.4 kb/s" in lines


def test_no_totals_when_every_file_was_already_complete():
    files = [_file(f"{c}_evt2.fits", MB, Status.PRESENT, local_size=MB) for c in "ab"]
    lines = obsid_block(ObsIdResult(1843, True, "s", files), elapsed=0.0)
    assert not any("Total download" in line for line in lines)


@pytest.mark.parametrize(
    ("spans", "seconds"),
    [
        ([], 0.0),
        ([(0.0, 9.6)], 9.6),
        ([(0.0, 5.0), (5.0, 7.0), (10.0, 12.0)], 9.0),  # one at a time: the sum, as CIAO
        ([(0.0, 10.0), (2.0, 4.0), (3.0, 12.0)], 12.0),  # in parallel: each second once
    ],
)
def test_download_time_is_the_time_files_were_downloading(spans, seconds):
    assert busy_time(spans) == pytest.approx(seconds)


def test_the_block_counts_no_time_for_files_already_present(caplog):
    """The time line comes from the files fetched, not from the present files' checks."""
    reporter = Reporter()
    fetched = _file("a_evt2.fits", 2 * MB, Status.PLANNED)
    present = _file("b_evt2.fits", MB, Status.PLANNED)
    r = ObsIdResult(1843, True, "s", [fetched, present])
    reporter.begin([1843])
    reporter.obsid_listed(r)
    reporter.file_started(fetched)
    fetched.status, fetched.bytes_transferred, fetched.elapsed = Status.DOWNLOADED, 2 * MB, 62.3
    reporter.file_done(fetched)
    present.status, present.local_size = Status.PRESENT, MB
    reporter.file_done(present)
    with caplog.at_level(20, logger="chandra_download"):
        reporter.obsid_done(r)
    text = caplog.text
    assert "Total download size for ObsId 1843 = 2 Mb" in text
    assert "Total download time for ObsId 1843 = 1 m 2 s" in text
