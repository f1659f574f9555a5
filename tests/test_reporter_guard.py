"""A caller's reporter that raises never stops a session: the first failure is one line, the
files all settle, the run ends (a raise from ``file_done`` once left it waiting for good)."""

from __future__ import annotations

import threading

import pytest

from chandra_download import download
from chandra_download.progress import Reporter, guarded


class _Broken(Reporter):
    """A user's reporter with a bug in one event."""

    def __init__(self, event: str) -> None:
        super().__init__()
        self.event, self.calls = event, 0

    def file_done(self, fr):
        self.calls += 1
        if self.event == "file_done":
            raise RuntimeError("a bug in the caller's reporter")

    def file_bytes(self, fr, n):
        if self.event == "file_bytes":
            raise ValueError("another bug")


@pytest.mark.parametrize("event", ["file_done", "file_bytes"])
def test_a_reporter_that_raises_does_not_stop_the_session(event, archive_http, tmp_path, caplog):
    rep = _Broken(event)
    ended: list = []
    run = threading.Thread(
        target=lambda: ended.append(
            download([1843], ["evt2", "oif"], mirror=archive_http.base_url,
                     outdir=tmp_path, reporter=rep, status=False, retries=0)
        ),
        daemon=True,
    )  # fmt: skip
    run.start()
    run.join(60)
    assert ended, "the session did not end"
    (res,) = ended
    assert res.ok and res.files and all(f.ok for f in res.files)
    assert rep.calls == len(res.files)
    said = [r.getMessage() for r in caplog.records if "progress reporter failed" in r.getMessage()]
    assert len(said) == 1 and event in said[0]


def test_our_reporters_are_not_wrapped():
    rep = Reporter()
    assert guarded(rep) is rep
