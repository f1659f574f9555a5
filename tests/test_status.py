"""CatalogueStatus.why_missing: the observation catalogue says why an ObsId is not on the site
(not public yet, scheduled, canceled, no such ObsId), once per ObsId, and never raises."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import pytest

from chandra_download.config import SessionConfig
from chandra_download.simulator.catalogue import load_catalogue
from chandra_download.status import CatalogueStatus, describe_status


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def status(archive_services, fast) -> CatalogueStatus:
    return CatalogueStatus(SessionConfig(**fast), ocat_url=archive_services.urls["ocat"])


def asked(server) -> list[str]:
    return [q for s, q in server.requests if s == "ocat"]


def test_not_public_until_its_release_date(status, archive_root):
    release = load_catalogue(archive_root).observations[30001].public_avail
    assert release > dt.date.today().isoformat()
    assert status.why_missing(30001) == f"not public until {release} (status observed)"


@pytest.mark.parametrize(
    ("obsid", "why"),
    [
        (30002, "scheduled, not yet observed"),
        (30003, "not yet observed (status unobserved)"),
        (30004, "a target of opportunity that was never triggered (status untriggered)"),
        (30005, "canceled, never observed (status canceled)"),
        (99999, "no such ObsId"),
        (1843, "public since 2001-08-07 (status archived), but not on this site"),
    ],
)
def test_each_catalogue_status_has_its_phrase(status, obsid, why):
    assert status.why_missing(obsid) == why


def test_one_request_per_obsid_even_from_many_threads(status, archive_services):
    answers: list[str] = []
    threads = [
        threading.Thread(target=lambda: answers.append(status.why_missing(30002))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == ["scheduled, not yet observed"] * 8
    assert status.why_missing(99999) == "no such ObsId"
    assert status.why_missing(99999) == "no such ObsId"
    assert asked(archive_services) == [
        "/srservices/ocatDetails.do?obsid=30002&format=text",
        "/srservices/ocatDetails.do?obsid=99999&format=text",
    ]


def test_an_unreachable_catalogue_is_said_and_never_raises(fast):
    config = SessionConfig(**{**fast, "retries": 0})
    status = CatalogueStatus(config, ocat_url=f"http://127.0.0.1:{closed_port()}/srservices/")
    why = status.why_missing(30001)
    assert why.startswith("the observation catalogue could not be reached (")
    assert "Connection refused" in why


def test_a_failing_catalogue_is_asked_once_per_session(archive_services, fast):
    archive_services.fail("ocat", "unavailable")
    config = SessionConfig(**{**fast, "retries": 1})
    status = CatalogueStatus(config, ocat_url=archive_services.urls["ocat"])
    assert status.why_missing(30001) == "the observation catalogue could not be reached (HTTP 503)"
    assert status.why_missing(30002) == "the observation catalogue could not be reached (HTTP 503)"
    assert len(asked(archive_services)) == 2  # one attempt and one retry, for the first only


@pytest.mark.parametrize("mode", ["error-page", "garbage"])
def test_an_unreadable_answer_is_said(archive_services, status, mode):
    archive_services.fail("ocat", mode)
    why = status.why_missing(30001)
    assert why.startswith("the observation catalogue could not be reached (")
    assert "observation-catalogue table" in why


def test_the_catalogue_url_comes_from_the_environment(archive_services, monkeypatch, fast):
    monkeypatch.setenv("CHANDRA_OCAT_URL", archive_services.urls["ocat"])
    assert CatalogueStatus(SessionConfig(**fast)).why_missing(30002) == (
        "scheduled, not yet observed"
    )
    bad = CatalogueStatus(ocat_url="ftp://cda.harvard.edu/srservices/")
    assert bad.why_missing(1) == (
        "the observation catalogue could not be reached (the Chandra observation catalogue "
        "URL must be http(s): 'ftp://cda.harvard.edu/srservices/')"
    )
    assert (
        CatalogueStatus()
        .why_missing("not a number")
        .startswith(  # type: ignore[arg-type]
            "the observation catalogue could not be reached ("
        )
    )


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ({"STATUS": "observed", "PUBLIC_AVAIL": "2027-03-04"}, "not public until 2027-03-04"),
        ({"STATUS": "observed", "PUBLIC_AVAIL": "2027-03-04 00:00:00.0"}, "until 2027-03-04"),
        ({"STATUS": "observed", "PUBLIC_AVAIL": "Mar  4 2027 12:00AM"}, "until 2027-03-04"),
        ({"STATUS": "observed", "PUBLIC_AVAIL": "2026-01-01"}, "public since 2026-01-01"),
        ({"STATUS": "observed", "PUBLIC_AVAIL": ""}, "not public yet, no release date"),
        ({"STATUS": "Scheduled"}, "scheduled, not yet observed"),
        (
            {"STATUS": "archived", "PUBLIC_AVAIL": "2030-01-01"},
            "until 2030-01-01 (status archived)",
        ),
        ({"STATUS": "discarded"}, "not public (status discarded)"),
        ({}, "not public (status unknown)"),
    ],
)
def test_describe_status_reads_the_release_date(row, why):
    assert why in describe_status(row, today=dt.date(2026, 11, 25))


def test_download_says_why_a_missing_obsid_is_missing(archive_http, archive_services, fast):
    from chandra_download import download

    ocat = archive_services.urls["ocat"]
    r = download([30001, 30002], mirror=archive_http.base_url, ocat_url=ocat, **fast)
    assert [x.found for x in r] == [False, False]
    assert r[0].why_missing.startswith("not public until ")
    assert r[1].why_missing == "scheduled, not yet observed"
    quiet = download([30001], mirror=archive_http.base_url, ocat_url=ocat, status=False, **fast)
    assert quiet[0].why_missing is None
    assert len(asked(archive_services)) == 2  # once per missing ObsId, not when turned off


def test_the_command_prints_why_after_ciaos_line_and_in_json(
    archive_http, archive_services, tmp_path, monkeypatch, capsys
):
    import json

    from chandra_download.cli import main

    monkeypatch.setenv("CHANDRA_OCAT_URL", archive_services.urls["ocat"])
    report = tmp_path / "report.json"
    args = ["30002", "-m", archive_http.base_url, "--outdir", str(tmp_path), "--no-progress"]
    assert main([*args, "--json", str(report)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Skipping ObsId 30002 as it was not found on the mirror site."
    assert "scheduled, not yet observed" in lines[1]
    assert "scheduled, not yet observed" in json.dumps(json.loads(report.read_text()))
    assert main([*args, "--no-status"]) == 1
    assert "scheduled" not in capsys.readouterr().out


def test_a_refused_catalogue_is_said_within_seconds():
    # The session's default policy (5 retries, backoff from 0.5 s): a refused first contact
    # is not retried.
    status = CatalogueStatus(ocat_url=f"http://127.0.0.1:{closed_port()}/srservices/")
    start = time.monotonic()
    why = status.why_missing(30001)
    assert time.monotonic() - start < 3
    assert why.startswith("the observation catalogue could not be reached (")


def test_the_catalogue_has_its_own_short_time_budget():
    status = CatalogueStatus(SessionConfig(timeout=60.0, retries=5))
    assert status.config.timeout <= 10 and status.config.retries <= 1
    quick = CatalogueStatus(SessionConfig(timeout=2.0, retries=0))
    assert (quick.config.timeout, quick.config.retries) == (2.0, 0)  # never longer


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_a_catalogue_that_never_answers_costs_its_budget_not_the_sessions(silent_port, monkeypatch):
    monkeypatch.setattr("chandra_download.status.STATUS_TIMEOUT", 0.5, raising=False)
    config = SessionConfig(timeout=30.0, retries=3, backoff=0.01, backoff_max=0.05)
    status = CatalogueStatus(config, ocat_url=f"http://127.0.0.1:{silent_port}/srservices/")
    said: list[str] = []
    thread = threading.Thread(target=lambda: said.append(status.why_missing(30001)), daemon=True)
    thread.start()
    thread.join(8)  # the session's timeout alone would be 30 s
    assert said and said[0].startswith("the observation catalogue could not be reached (")
