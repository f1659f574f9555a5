"""A pipeline's files handed to the finisher together (issue 19.4): taken inside
``Finisher.gathered()`` they queue at the block's end as one batch (one fsync per
directory, one wake-up); ``flush_gathered()`` queues them at once (before a retry waits on
the network); a block that raises still queues what it gathered."""

from __future__ import annotations

import threading

import pytest
from finisher_support import LoggedJob

from chandra_download.finisher import Finisher


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    log: list[tuple[str, int]] = []
    monkeypatch.setattr("chandra_download.finisher.fsync_at", lambda d: log.append(("dir", d)))
    return log


def test_files_taken_while_gathered_are_one_batch(log: list[tuple[str, int]]) -> None:
    finisher = Finisher(depth=2, threads=2)
    with finisher.gathered():
        for n in range(5):  # (more than depth: the block never waits for room)
            finisher.take(LoggedJob(3, log, n))  # type: ignore[arg-type]
        assert log == []  # nothing queued before the block's end
    assert finisher.close(10) == []
    assert log == [*(("move", n) for n in range(5)), ("dir", 3), *(("done", n) for n in range(5))]


def test_flush_queues_what_was_gathered_and_gathering_goes_on(
    log: list[tuple[str, int]],
) -> None:
    finisher = Finisher(depth=8, threads=1)
    done = threading.Event()
    first = LoggedJob(3, log, 0)
    first.finished_off = lambda: (log.append(("done", 0)), done.set())  # type: ignore[method-assign]
    with finisher.gathered():
        finisher.take(first)  # type: ignore[arg-type]
        finisher.flush_gathered()
        assert done.wait(10)  # finished while the block still runs
        finisher.take(LoggedJob(3, log, 1))  # type: ignore[arg-type]
        assert ("move", 1) not in log
    assert finisher.close(10) == []
    assert log == [("move", 0), ("dir", 3), ("done", 0), ("move", 1), ("dir", 3), ("done", 1)]


def test_a_block_that_raises_still_queues_its_files(log: list[tuple[str, int]]) -> None:
    finisher = Finisher(depth=2, threads=1)
    with pytest.raises(KeyboardInterrupt), finisher.gathered():
        finisher.take(LoggedJob(3, log, 0))  # type: ignore[arg-type]
        raise KeyboardInterrupt
    assert finisher.close(10) == []
    assert log == [("move", 0), ("dir", 3), ("done", 0)]
