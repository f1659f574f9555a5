"""Named moments at which a test can have this process killed (crash-consistency tests).

``CHANDRA_DOWNLOAD_TEST_KILL=point[:glob]`` makes the process SIGKILL itself the first time it
reaches ``point`` for a file whose name matches ``glob`` (fnmatch, default ``*``). Points:
``part-written`` (every byte of a whole-file download written, before verify and rename),
``parts-done`` (every part of a split file written and its state saved, before the rename),
``renamed`` (just after the move into place, before the state file is removed).
Unset, a check costs one dictionary look-up.

``CHANDRA_DOWNLOAD_TEST_DELAY=point:seconds`` makes :func:`delay` sleep that long each time it
reaches ``point``: ``finishing`` (the finisher, before each batch's fsyncs), so tests can kill
or interrupt a run while verified files wait to be finished.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import time

_SPEC = os.environ.get("CHANDRA_DOWNLOAD_TEST_KILL", "")
_DELAY = os.environ.get("CHANDRA_DOWNLOAD_TEST_DELAY", "")


def crashpoint(point: str, name: str) -> None:
    """SIGKILL this process when the environment asks for ``point`` on file ``name``."""
    if not _SPEC:
        return
    want, _, glob = _SPEC.partition(":")
    if want == point and fnmatch.fnmatchcase(name, glob or "*"):
        os.kill(os.getpid(), signal.SIGKILL)


def delay(point: str) -> None:
    """Sleep as long as the environment asks for at ``point`` (tests only)."""
    if not _DELAY:
        return
    want, _, seconds = _DELAY.partition(":")
    if want == point:
        time.sleep(float(seconds or 0))
