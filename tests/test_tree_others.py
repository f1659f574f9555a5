"""Another user's partial file, as that user's neighbour would meet it (issue 20.9).

The issue's case: a run by one user over a tree it may write, where a partial file at a
final name belongs to another user and is read-only. Renaming it needs only the directory's
write permission, so it used to be moved to ``.part`` and the run then failed on it. Here a
real run as ``nobody`` meets a partial file of root's: it is left as it is, with one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import OBSID, archive_files, archive_fixture, child_env, command, http_fixture

from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.statedir import Spot

root = archive_fixture("tree-others-archive")
http = http_fixture()

NOBODY = 65534
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to run as another user and to own a file as root"
)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory outside root's private temporary tree, which ``nobody`` can reach."""
    top = Path(tempfile.mkdtemp(prefix="chandra-others-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def _as_nobody() -> list[str]:
    """The command prefix of a run as ``nobody`` (setpriv: it also reaches the venv's python)."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run as another user")
    return ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", "--"]


def _owned_by_nobody(out: Path, rel: str) -> None:
    """The output tree down to ``rel``'s directory, made and owned by ``nobody``."""
    path = out
    for part in [str(OBSID), *rel.split("/")[:-1]]:
        path.mkdir(exist_ok=True)
        os.chown(path, NOBODY, NOBODY)
        path = path / part
    path.mkdir(exist_ok=True)
    os.chown(path, NOBODY, NOBODY)


def test_a_read_only_partial_file_of_another_user_is_left_alone_and_said(
    http: ArchiveHTTPServer, root: Path, shared: Path
) -> None:
    files = archive_files(root)
    rel = next(r for r, p in sorted(files.items()) if "/" in r and p.stat().st_size > 2000)
    want = files[rel].read_bytes()
    out = shared / "out"
    _owned_by_nobody(out, rel)
    final = out / str(OBSID) / rel
    final.write_bytes(want[: len(want) // 2])  # root's, as CIAO's tool would leave it
    final.chmod(0o444)
    before = final.stat()
    done = subprocess.run(
        _as_nobody() + command(http.base_url, out),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    said = [line for line in output.splitlines() if "belongs to another user (uid 0)" in line]
    assert said and "left alone" in output, output
    after = final.stat()
    assert (after.st_ino, after.st_uid, after.st_mode) == (before.st_ino, 0, before.st_mode)
    assert final.read_bytes() == want[: len(want) // 2]
    assert not Spot(out, str(OBSID), rel).part.exists()  # never moved to a .part of ours
    for other, path in files.items():  # the rest of the run is not held up by it
        if other != rel:
            assert (out / str(OBSID) / other).read_bytes() == path.read_bytes(), other
