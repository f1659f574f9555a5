"""Less start-up per run (issue 19.4): what a download of ObsIds that all exist imports.
Counted in a fresh interpreter (a module imported is every such run's cost), not timed."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from chandra_download import progress, set_verbosity
from chandra_download.results import ObsIdResult
from chandra_download.simulator import generate_archive
from chandra_download.simulator.http import ArchiveHTTPServer

_RUN = """
import sys
from chandra_download.cli import main
code = main([sys.argv[1], "--mirror", sys.argv[2], "--outdir", sys.argv[3], "--quiet",
             "--no-progress"])
print(code, sorted(m for m in sys.argv[4:] if m in sys.modules))
"""
#: Modules of the catalogue's "why is this ObsId missing" (only asked when one is).
_CATALOGUE = ["chandra_download.status", "chandra_download.services", "xml.etree.ElementTree"]


def test_a_download_with_nothing_missing_does_not_import_the_catalogue(tmp_path: Path) -> None:
    root = generate_archive(tmp_path / "archive", {1843: "acis"}, scale=0.01)
    with ArchiveHTTPServer(root) as http:
        out = subprocess.run(
            [sys.executable, "-c", _RUN, "1843", http.base_url, str(tmp_path / "out"), *_CATALOGUE],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    assert out.stdout.split("\n")[0] == "0 []", out.stdout + out.stderr


_GC = """
import gc, sys
from chandra_download import cli
before = gc.get_threshold()
cli.main(["--version"])  # (as a library caller or a test calls it: its process's gc as it was)
print(gc.get_threshold() == before, gc.get_freeze_count() == 0)
cli.main = lambda: print(gc.get_threshold()[0], gc.get_freeze_count() > 1000) or 0
cli.run()
"""


def test_the_commands_own_process_collects_garbage_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", _GC], capture_output=True, text=True, timeout=60)
    lines = out.stdout.split("\n")
    assert out.returncode == 0 and lines[1:3] == ["True True", "10000 True"], (
        out.stdout + out.stderr
    )


def test_a_quiet_run_makes_no_obsid_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--quiet`` (verbosity 0): the per-ObsId table is not made only to be dropped (a
    row per file); at verbosity 1 it is made and shown."""
    made: list[int] = []
    monkeypatch.setattr(progress, "obsid_block", lambda r, *a: made.append(r.obsid) or ["row"])
    stream = io.StringIO()
    for level, obsid in ((0, 1843), (1, 1844)):
        set_verbosity(level, stream)
        progress.Reporter().obsid_done(ObsIdResult(obsid, True, "https://x/", []))
    assert made == [1844] and stream.getvalue() == "row\n"
