"""One retry policy (issue 18.3, 20.4): attempts, backoff, Retry-After and a deadline, for whole
files and ranged parts alike."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chandra_download import cli, download
from chandra_download.errors import TransientError
from chandra_download.results import Status
from chandra_download.retry import Interrupted, RetriesExhausted, RetryPolicy
from chandra_download.simulator import generate_archive
from chandra_download.simulator.faults import Fault
from chandra_download.simulator.http import ArchiveHTTPServer

OBSID = 1843
BIG = 3_000_000  # evt1: three ranged parts of ~1 MB with the split size below
SPLIT = dict(split_threshold=1_000_000, jobs=3, backoff=0.01, backoff_max=0.05, timeout=5.0)


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("retry-archive")
    return generate_archive(root, {OBSID: "acis"}, scale=0.1, sizes={"evt1": BIG})


@pytest.fixture
def server(big_root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(big_root) as srv:
        yield srv


# -- the policy itself ------------------------------------------------------------------------
def test_increment_counts_until_the_retries_are_spent() -> None:
    policy = RetryPolicy(2, backoff=0.0)
    assert policy.attempts == 1
    policy.increment(TransientError("drop"))
    policy.increment(TransientError("drop"))
    assert policy.attempts == 3
    with pytest.raises(RetriesExhausted, match="drop") as info:
        policy.increment(TransientError("drop"))
    assert info.value.attempts == 3 and str(info.value.cause) == "drop"
    policy.increment(ValueError("bad bytes"), extra=True)  # granted past the budget
    assert policy.attempts == 4


def test_a_policy_that_gave_up_is_not_retried_by_another() -> None:
    inner = RetryPolicy(0)
    with pytest.raises(RetriesExhausted) as info:
        inner.increment(TransientError("503"))
    outer = RetryPolicy(5)
    with pytest.raises(RetriesExhausted):
        outer.increment(info.value)
    assert outer.attempts == 1


def test_retry_after_wins_up_to_max_wait_and_more_is_refused_clearly() -> None:
    policy = RetryPolicy(5, backoff=0.01, backoff_max=0.02, max_wait=60.0)
    assert policy.increment(TransientError("429", retry_after=7.0)) == 7.0
    with pytest.raises(RetriesExhausted) as info:
        policy.increment(TransientError("HTTP 503", retry_after=100000.0))
    text = str(info.value)
    assert "100000 s" in text and "60 s" in text and text.startswith("HTTP 503")


def test_no_wait_ends_past_the_deadline() -> None:
    policy = RetryPolicy(5, backoff=0.01, max_wait=60.0, deadline=time.monotonic() + 2.0)
    assert policy.time_left() is not None and 0 < policy.time_left() <= 2.0
    assert policy.increment(TransientError("503", retry_after=1.0)) == 1.0
    with pytest.raises(RetriesExhausted, match="deadline"):
        policy.increment(TransientError("503", retry_after=30.0))


def test_parts_have_their_own_retries_and_count_in_the_file() -> None:
    heard: list[int] = []
    file = RetryPolicy(1, backoff=0.0, on_retry=lambda n, d, e: heard.append(n))
    a, b = file.for_part("part 0"), file.for_part("part 1")
    a.retry(TransientError("drop"))
    b.retry(TransientError("drop"))  # b's own budget: not spent by a's retry
    assert file.attempts == 3 and heard == [2, 3]
    with pytest.raises(RetriesExhausted):
        a.increment(TransientError("drop"))


def test_call_retries_transient_errors_only_and_stops_on_interrupt() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("drop")
        return "ok"

    assert RetryPolicy(5, backoff=0.0).call(flaky) == "ok" and len(calls) == 3
    stop = threading.Event()
    policy = RetryPolicy(5, backoff=10.0, backoff_max=10.0, stop=stop)
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(Interrupted):
        policy.call(lambda: (_ for _ in ()).throw(TransientError("drop")))
    assert time.monotonic() - t0 < 5.0  # the 5-10 s wait ended when the session stopped


# -- files --------------------------------------------------------------------------------
def test_a_split_file_counts_its_parts_retries(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path
) -> None:
    # Two drops of part GETs (the HEAD that sizes the file uses the fault once, harmlessly).
    server.faults.add(Fault("drop", "*evt1*", times=3, after_bytes=100_000))
    report = tmp_path / "report.json"
    args = ["1843", "evt1", "-m", server.base_url, "--outdir", str(tmp_path / "o")]
    opts = ["--split-size", "1M", "-j", "3", "--retries", "3", "--json", str(report), "-q"]
    assert cli.main([*args, *opts]) == 0
    assert server.stats.get_count("*evt1*") == 5  # three parts, two of them again
    (entry,) = json.loads(report.read_text())["obsids"][0]["files"]
    assert entry["status"] in ("downloaded", "resumed") and entry["attempts"] == 3


def test_split_file_attempts_in_the_api(
    server: ArchiveHTTPServer, big_root: Path, tmp_path: Path
) -> None:
    server.faults.add(Fault("drop", "*evt1*", times=2, after_bytes=100_000))  # HEAD, a GET
    results = download(OBSID, "evt1", mirror=server.base_url, outdir=tmp_path, **SPLIT)
    (fr,) = results.files
    assert fr.ok and fr.attempts == 2


def test_a_retry_after_beyond_the_session_budget_fails_at_once(
    server: ArchiveHTTPServer, tmp_path: Path
) -> None:
    server.faults.add(Fault("status", "*oif.fits", status=503, retry_after=100000, times=None))
    t0 = time.monotonic()
    results = download(
        OBSID, "oif", mirror=server.base_url, outdir=tmp_path, retries=5, timeout=5.0
    )
    elapsed = time.monotonic() - t0
    (fr,) = results.files
    assert fr.status is Status.FAILED and fr.attempts == 1
    assert "100000 s" in fr.reason and "longer than this session waits" in fr.reason
    assert server.stats.get_count("*oif.fits") == 1
    assert elapsed < 60  # not 300 s per retry
