"""Less start-up per run (issue 19.4): what a download of ObsIds that all exist imports.
Counted in a fresh interpreter (a module imported is every such run's cost), not timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
