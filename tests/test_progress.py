"""The reporter's events: CIAO's blocks whole and in the order given, per-ObsId totals, and
live displays that tell the truth (bytes on disk count, never past 100 %, ends at 100 %,
one bar for a split file, retries shown)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from chandra_download import set_verbosity
from chandra_download.display import NotebookReporter, RichReporter, retry_text
from chandra_download.progress import Reporter, Tally
from chandra_download.results import FileResult, ObsIdResult, Status


def _file(obsid: int, rel: str, size: int) -> FileResult:
    return FileResult(obsid, rel, f"https://x/{obsid}/{rel}", Path(rel), "evt2", size)


def _obsid(obsid: int, *sizes: int) -> ObsIdResult:
    files = [_file(obsid, f"primary/f{i}_evt2.fits", s) for i, s in enumerate(sizes)]
    return ObsIdResult(obsid, True, "https://x/", files)


def _finish(rep: Reporter, fr: FileResult, status: Status = Status.DOWNLOADED) -> None:
    rep.file_started(fr)
    rep.file_bytes(fr, fr.size or 0)
    fr.status, fr.bytes_transferred, fr.elapsed = status, fr.size or 0, 0.5
    rep.file_done(fr)


@pytest.fixture
def out() -> io.StringIO:
    stream = io.StringIO()
    set_verbosity(1, stream)
    return stream


def test_blocks_come_whole_and_in_the_order_given(out):
    rep = Reporter()
    a, b, c = _obsid(3, 100, 200), _obsid(1, 300), ObsIdResult(2)
    rep.begin([3, 1, 2])
    for r in (b, c, a):  # listed out of order
        rep.obsid_listed(r)
    _finish(rep, b.files[0])
    rep.obsid_done(b)
    rep.obsid_done(c)
    assert out.getvalue() == ""  # ObsId 3, given first, is not done: nothing may come out
    _finish(rep, a.files[0])
    assert out.getvalue() == ""
    _finish(rep, a.files[1])
    rep.obsid_done(a)
    text = out.getvalue()
    starts = [text.index(s) for s in ("ObsId 3, total", "ObsId 1, total", "Skipping ObsId 2")]
    assert starts == sorted(starts)
    assert text.count("  Type     Format") == 2


def test_repeated_obsids_each_get_their_block(out):
    rep = Reporter()
    first, second = _obsid(5, 10), _obsid(5, 10)
    rep.begin([5, 5])
    rep.obsid_listed(second)
    rep.obsid_listed(first)
    for r in (second, first):
        _finish(rep, r.files[0])
        rep.obsid_done(r)
    assert out.getvalue().count("Downloading files for ObsId 5") == 2


def test_per_obsid_time_is_the_time_its_files_were_downloading(out, monkeypatch):
    """CIAO adds its files' download times (one at a time); files in parallel count once."""
    clock = iter([20.0, 50.0, 200.0])
    monkeypatch.setattr("chandra_download.progress.time.monotonic", lambda: next(clock))
    rep = Reporter()
    a = _obsid(7, 2048, 4096)
    rep.begin([7])
    rep.obsid_listed(a)
    for f, took in zip(a.files, (9.0, 35.0), strict=True):
        rep.file_started(f)
        f.status, f.bytes_transferred, f.elapsed = Status.DOWNLOADED, f.size, took
    rep.file_done(a.files[0])  # 11 to 20
    rep.file_done(a.files[1])  # 15 to 50: overlaps the first
    rep.obsid_done(a)
    text = out.getvalue()
    assert "Total download time for ObsId 7 = 39 s" in text  # 11 to 50, each second once
    assert "Total download size for ObsId 7 = 6 Kb" in text  # its own bytes


def test_interrupted_files_print_nothing_and_count(out):
    rep = Reporter()
    a = _obsid(9, 10, 20, 30)
    rep.begin([9])
    rep.obsid_listed(a)
    _finish(rep, a.files[0])
    for f in a.files[1:]:
        f.status, f.reason = Status.INTERRUPTED, "interrupted"
        rep.file_done(f)
    rep.obsid_done(a)
    assert out.getvalue() == ""
    assert rep.counts["downloaded"] == 1 and rep.counts["failed"] == 0
    assert rep.counts["queued"] == 3


def test_verbose_levels_each_add_something():
    seen = {}
    for level in range(6):
        stream = io.StringIO()
        set_verbosity(level, stream)
        rep = Reporter()
        a = _obsid(4, 100, 200)
        rep.begin([4])
        rep.obsid_listed(a)
        a.files[0].local_size = 50
        rep.file_retry(a.files[0], 2, 3.0, "connection reset")
        _finish(rep, a.files[0], Status.RESUMED)
        a.files[1].status = Status.PRESENT
        rep.file_done(a.files[1])
        rep.obsid_done(a)
        seen[level] = stream.getvalue()
    assert seen[0] == ""
    assert "Downloading files for ObsId 4" in seen[1] and "resumed" not in seen[1]
    assert "resumed" in seen[2] and "already complete" in seen[2] and "retry" not in seen[2]
    assert "retry 2 in 3 s: connection reset" in seen[3] and "from byte 50" in seen[3]
    assert "selected at" not in seen[3] and "primary/f1_evt2.fits  200 bytes" in seen[4]
    for lower, higher in ((1, 2), (2, 3), (3, 4)):
        assert len(seen[higher]) > len(seen[lower])


# -- the tally -------------------------------------------------------------------------------


def test_bytes_on_disk_count_from_the_start_and_the_total_ends_at_100():
    t = Tally()
    r = _obsid(1, 1000, 500)
    t.listed(r)
    big, small = r.files
    big.local_size = 400  # a resumed file
    t.started(big)
    assert t.overall() == (400, 1500)
    t.advanced(big, 600)
    big.status, big.size = Status.RESUMED, 1000
    t.finished(big)
    small.status = Status.PRESENT
    t.finished(small)  # a complete file counts whole, never started
    assert t.overall() == (1500, 1500)


def test_never_past_100_even_when_more_bytes_arrive_than_the_size():
    t = Tally()
    r = _obsid(1, 1000)
    t.listed(r)
    (f,) = r.files
    t.started(f)
    assert t.advanced(f, 900) == 900
    assert t.advanced(f, 900) == 1000  # a retried chunk: the file is not 180 % done
    done, total = t.overall()
    assert done == total == 1000


def test_a_retry_from_the_start_resets_the_file_not_the_others():
    t = Tally()
    r = _obsid(1, 1000, 1000)
    t.listed(r)
    a, b = r.files
    for f in r.files:
        t.started(f)
        t.advanced(f, 700)
    a.local_size = 0  # a failed check: fetched again from byte 0
    t.started(a)
    assert t.overall() == (700, 2000)


def test_failed_files_leave_the_total_and_the_exact_size_replaces_the_estimate():
    t = Tally()
    r = _obsid(1, 1000, 1000)
    t.listed(r)
    a, b = r.files
    b.size = 1200  # the listing's rounded size, corrected when the transfer starts
    t.started(b)
    assert t.overall() == (0, 2200)
    t.started(a)
    t.advanced(a, 300)
    a.status = Status.FAILED
    t.finished(a)
    assert t.overall() == (0, 1200)


def test_a_split_file_is_one_bar_fed_by_many_threads():
    t = Tally()
    r = _obsid(1, 8 * 1000 * 100)
    t.listed(r)
    (f,) = r.files
    t.started(f)  # once per file, however many parts

    def part() -> None:
        for _ in range(100):
            t.advanced(f, 1000)

    threads = [threading.Thread(target=part) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.files[id(f)] == [800_000, 800_000]
    assert t.overall() == (800_000, 800_000)


# -- the displays ----------------------------------------------------------------------------


def _rich() -> tuple[RichReporter, io.StringIO]:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    return RichReporter(console=console), buf


def test_rich_display_shows_one_bar_per_file_retries_and_ends_full():
    rep, _ = _rich()
    r = _obsid(1, 2 * 1024 * 1024, 1000)
    with rep:
        rep.begin([1])
        rep.obsid_listed(r)
        big, small = r.files
        big.local_size = 1024 * 1024
        rep.file_started(big)
        task = rep.progress.tasks[-1]
        assert task.completed == 1024 * 1024 and task.fields["sizes"] == "1.0 Mb/2.0 Mb"
        rep.file_started(big)  # a second call (another part): still one bar
        assert len(rep.progress.tasks) == 2
        rep.file_retry(big, 2, 3.2, "connection reset by peer")
        # The retry has its own columns (issue 17.7): the name stays short.
        assert task.description == "f0_evt2.fits" and task.fields["wait"][::2] == (2, "conn reset")
        rep.file_started(big)
        assert task.description == "f0_evt2.fits" and task.fields["wait"] is None
        rep.file_bytes(big, 1024 * 1024)
        overall = rep.progress.tasks[0]
        assert overall.completed == 2 * 1024 * 1024 and overall.total == 2 * 1024 * 1024 + 1000
        for f in r.files:
            f.status = Status.DOWNLOADED
            rep.file_done(f)
        assert len(rep.progress.tasks) == 1  # finished files leave the display
        assert overall.completed == overall.total


def test_retry_text_is_short():
    f = _file(1, "primary/acisf01843N005_evt2.fits.gz", 10)
    text = retry_text(f, 3, 12.4, "HTTP 503 " + "x" * 200)
    assert text.startswith("acisf01843N005_evt2.fits.gz: retry 3 in 12 s: HTTP 503")
    assert len(text) < 90


def test_notebook_display_renders_the_tally():
    rep = NotebookReporter()
    r = _obsid(1, 1000)
    rep.obsid_listed(r)
    (f,) = r.files
    f.local_size = 250
    rep.file_started(f)
    html = rep.render()
    assert 'value="250" max="1000"' in html and "f0_evt2.fits" in html
    rep.file_retry(f, 2, 1.0, "timed out <slow>")
    assert "retry 2 in 1 s: timed out &lt;slow&gt;" in rep.render()


def test_listing_retries_show_until_the_obsid_is_listed():
    rep, _ = _rich()
    with rep:
        rep.begin([1])
        rep.obsid_retry(1, 2, 4.0, "connection refused")
        note = rep.progress.tasks[-1]  # the retry in its own columns (issue 17.7)
        assert note.description == "ObsId 1 listing" and note.fields["wait"][::2] == (2, "refused")
        rep.obsid_listed(_obsid(1, 10))
        assert len(rep.progress.tasks) == 1  # only the total is left
    nb = NotebookReporter()
    nb.obsid_retry(7, 1, 0.4, "timed out")
    assert "ObsId 7 listing: retry 1 in 0 s: timed out" in nb.render()
