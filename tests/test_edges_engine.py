"""The engine never hangs nor leaks on the unexpected (issue 20, last gaps): a bug raised in a
batch step fails that batch's files with one line each and the run ends; a Ctrl-C that comes
while the session starts its workers still lets every thread of the session go."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from chandra_download import Status, download
from chandra_download import engine as engine_mod
from chandra_download.results import ObsIdResult
from chandra_download.simulator import ArchiveHTTPServer, generate_archive

OBSID = 1843
OPTS = {"timeout": 10.0, "retries": 1, "backoff": 0.01, "backoff_max": 0.05, "jobs": 2}
HUNG = 90.0  # far beyond what the run takes, even on a loaded machine: only a hang gets here
LET_GO = 20.0  # for threads told to end (they end within a second or two)


def within(call: Callable[[], list[ObsIdResult]], seconds: float) -> list[ObsIdResult]:
    """``call()`` on a thread of its own; its result, or a failure if it never returns."""
    out: list[list[ObsIdResult]] = []
    t = threading.Thread(target=lambda: out.append(call()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"the session never ended ({seconds:.0f} s)"
    assert out, "the session raised instead of returning its results"
    return out[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return generate_archive(tmp_path / "archive", {OBSID: "acis"}, scale=0.05)


def test_a_bug_in_a_batch_step_fails_its_files_and_the_run_ends(
    root, tmp_path, monkeypatch, capsys
):
    real = engine_mod.Engine._learn_sizes
    broken: list[str] = []

    def learn_sizes(self, run, batch, index):
        if not broken:  # the first batch only
            broken.extend(fr.relpath for fr in batch)
            raise RuntimeError("a bug in a batch step")
        return real(self, run, batch, index)

    monkeypatch.setattr(engine_mod.Engine, "_learn_sizes", learn_sizes)
    with ArchiveHTTPServer(root) as server:
        res = within(
            lambda: download(
                OBSID, mirror=server.base_url, outdir=tmp_path / "out", status=False, **OPTS
            ),
            HUNG,
        )
    files = {f.relpath: f for f in res[0].files}
    assert broken and set(broken) < set(files)
    for rel in broken:
        assert files[rel].status is Status.FAILED, (rel, files[rel].status)
        assert files[rel].reason == "internal error: RuntimeError('a bug in a batch step')"
    assert all(f.ok for rel, f in files.items() if rel not in broken)
    assert "Traceback" not in capsys.readouterr().err


class _Breaking(threading.Thread):
    """A worker thread whose second start is interrupted by Ctrl-C."""

    made: list[threading.Thread] = []

    def start(self) -> None:
        _Breaking.made.append(self)
        if len(_Breaking.made) == 2:
            raise KeyboardInterrupt
        super().start()


def test_ctrl_c_while_the_workers_start_lets_every_thread_go(root, tmp_path, monkeypatch):
    _Breaking.made = []
    fake = SimpleNamespace(Thread=_Breaking, Event=threading.Event, Lock=threading.Lock)
    monkeypatch.setattr(engine_mod, "threading", fake)
    before = set(threading.enumerate())
    with ArchiveHTTPServer(root) as server:
        with pytest.raises(KeyboardInterrupt):
            download(OBSID, mirror=server.base_url, outdir=tmp_path / "out", status=False, **OPTS)
    assert len(_Breaking.made) == 2 and _Breaking.made[0].ident is not None  # one had started
    ours = [
        t
        for t in threading.enumerate()
        if t not in before and (t in _Breaking.made or t.name.startswith("finisher-"))
    ]
    for t in ours:
        t.join(LET_GO)
    assert not [t.name for t in ours if t.is_alive()], "threads of the session left running"
