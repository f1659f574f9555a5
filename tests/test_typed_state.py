"""State is typed, never text read back (issue 18.4): an interrupted file has its own status,
``--list``'s local state is apart from ``reason``, and a listing's exceptions survive typed
(a refused login is an ``AuthError`` CIAO's function can raise again)."""

from __future__ import annotations

import threading
from pathlib import Path

from chandra_download import AuthError, SessionConfig, Status, download
from chandra_download.engine import Engine
from chandra_download.errors import Interrupted
from chandra_download.filetypes import Selection
from chandra_download.progress import Reporter
from chandra_download.report import results_report
from chandra_download.results import FileResult, ObsIdResult, Results
from chandra_download.simulator.fixtures import FTP_PASSWORD, FTP_USER
from chandra_download.sources import choose_source


class _StopAtFirstBytes(Reporter):
    """Stops the session (as Ctrl-C does) once the first bytes of a file arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.stop: threading.Event | None = None

    def file_bytes(self, fr: FileResult, n: int) -> None:
        assert self.stop is not None
        self.stop.set()


def test_an_interrupted_file_has_its_own_status_not_a_failure(archive_http, tmp_path: Path):
    cfg = SessionConfig(jobs=1, retries=0, timeout=5.0, split_threshold=0)
    reporter = _StopAtFirstBytes()
    source = choose_source(archive_http.base_url, cfg)
    try:
        engine = Engine([source], cfg, reporter)
        reporter.stop = engine.stop
        items = engine.run([1843], Selection(None, None), tmp_path)
    finally:
        source.close()
    results = Results(items)
    r = results[0]
    stopped = [f for f in r.files if f.status is Status.INTERRUPTED]
    assert stopped, [f.status for f in r.files]
    assert not any(f.status is Status.FAILED for f in r.files)
    assert r.failures == [] and r.interrupted and not r.ok and not results.ok
    assert "interrupted" in results.summary() and "failed" not in results.summary()
    report = results_report(results)
    statuses = {f["status"] for f in report["obsids"][0]["files"]}
    assert "interrupted" in statuses and "failed" not in statuses


def test_an_obsid_whose_listing_was_interrupted_says_so_typed():
    r = ObsIdResult(1843, error="interrupted", causes=[Interrupted()])
    assert r.interrupted and not r.ok
    assert not ObsIdResult(1843, error="interrupted").interrupted  # the text means nothing


def test_a_refused_login_survives_typed_in_the_results(archive_ftp, tmp_path, fast):
    results = download(
        [1843], ["oif"], archive_ftp.base_url, FTP_USER, "wrong", outdir=tmp_path, **fast
    )
    r = results[0]
    assert not r.found and r.error
    assert len(r.causes) == 1 and isinstance(r.causes[0], AuthError)
    assert results.refused == r.causes
    assert "wrong" not in str(r.causes[0])


def test_a_good_login_carries_no_causes(archive_ftp, tmp_path, fast):
    results = download(
        [1843], ["oif"], archive_ftp.base_url, FTP_USER, FTP_PASSWORD, outdir=tmp_path, **fast
    )
    assert results.ok and results[0].causes == [] and results.refused == []


def test_a_larger_local_file_is_never_a_deliberate_skip():
    # Nothing sets a "not selected" skip: unselected files are not in the results at all, so
    # every SKIPPED file (a local file larger than the archive's) counts against ok.
    fr = FileResult(1843, "oif.fits", "u", Path("oif.fits"), "oif", size=5)
    fr.status, fr.reason = Status.SKIPPED, "not selected"
    results = Results([ObsIdResult(1843, True, "s", [fr])])
    assert not results.ok and results.errors == ["ObsId 1843: oif.fits: not selected"]
