"""The live bars during a retry (issue 17.7), rendered by rich on an 80-column console: the
file's name never pushes the bar, sizes, rate or time left off the line; the reason shows
(``HTTP 503``, not the file's path); the countdown counts down."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from chandra_download import display
from chandra_download.display import RichReporter, short_reason
from chandra_download.results import FileResult, ObsIdResult

MB = 1024**2
LONG = "secondary/acisf01843_000N005_evt1_a_very_long_name_indeed.fits.gz"


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: now[0])
    return now


def _screen(rep: RichReporter) -> list[str]:
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, force_terminal=True, width=80, color_system=None).print(
        rep.progress.get_renderable()
    )
    return out.getvalue().splitlines()


def test_a_retrying_file_keeps_its_columns_and_says_why(clock):
    rep = RichReporter()
    f = FileResult(1843, LONG, "u", Path("x"), "evt1", 57 * MB)
    rep.begin([1843])
    rep.obsid_listed(ObsIdResult(1843, True, "s", [f]))
    rep.file_started(f)
    rep.file_bytes(f, 20 * MB)
    reason = f"{LONG}: server answered HTTP 503 at http://127.0.0.1:40000/{LONG} (attempt 1)"
    rep.file_retry(f, 2, 5.0, reason)
    rep.obsid_retry(2749, 3, 8.0, "https://127.0.0.1:4/byobsid/9/2749/: timed out after 60 s")
    first = _screen(rep)
    assert all(len(line) <= 80 for line in first), first
    row = next(line for line in first if line.startswith("acisf01843_000N005"))
    assert "…" in row  # the name is cut, not the rest
    assert "20.0 Mb/57.0 Mb" in row and "HTTP 503" in row and "retry 2 in 5 s" in row
    assert "secondary/" not in row and "━" in row
    listing = next(line for line in first if line.startswith("ObsId 2749 listing"))
    assert "timed out" in listing and "retry 3 in 8 s" in listing
    clock[0] += 2.2
    later = _screen(rep)
    assert any("retry 2 in 3 s" in line for line in later), later  # it counts down
    assert any("retry 3 in 6 s" in line for line in later), later


@pytest.mark.parametrize(
    ("reason", "short"),
    [
        (f"{LONG}: server answered HTTP 503 at http://x/", "HTTP 503"),
        ("the read timed out after 60 s", "timed out"),
        ("Connection reset by peer", "conn reset"),
        ("something else entirely happened", "something e…"),
    ],
)
def test_short_reasons(reason, short):
    f = FileResult(1843, LONG, "u", Path("x"), "evt1", 1)
    assert short_reason(f, reason) == short


def test_a_site_that_does_not_answer_has_a_line_saying_what_is_waited_for(clock):
    """17.5: once a request is 2 s old the engine says so (``site_wait``); the live display
    shows the site, what is asked and for how long, and drops the line once it answers."""
    rep = RichReporter()
    rep.begin([1843])
    rep.site_wait("archive.example.org", 2.4, "listing ObsId 1843", False)
    first = _screen(rep)
    assert all(len(line) <= 80 for line in first), first
    row = next(line for line in first if line.startswith("waiting: archive.exam"))
    assert "2 s quiet" in row and "listing" in row
    rep.site_wait("archive.example.org", 14.0, "listing ObsId 1843", True)
    assert any("14 s quiet" in line for line in _screen(rep))
    rep.site_wait("archive.example.org", 0.0, None, True)
    assert not any(line.startswith("waiting:") for line in _screen(rep))


def test_the_notebook_says_what_a_quiet_site_is_waited_for():
    from chandra_download.display import NotebookReporter

    rep = NotebookReporter()
    rep.site_wait("archive.example.org", 3.0, "primary/x.fits.gz", True)
    html = rep.render()
    assert "archive.example.org" in html and "one request at a time" in html
    assert "no answer for 3 s" in html
    rep.site_wait("archive.example.org", 0.0, None, True)
    assert "archive.example.org" not in rep.render()
