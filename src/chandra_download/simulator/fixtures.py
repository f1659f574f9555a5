"""pytest plugin (entry point ``pytest11``): fixtures serving a simulated Chandra archive.

Loaded by every pytest run where chandra-download is installed, so it imports nothing heavy
at module level; the simulator modules load when a fixture is first used.

Fixtures
--------
archive_root
    Session-scoped: a default tree (``DEFAULT_OBSIDS``) generated in a temporary directory.
archive_http
    A started :class:`~chandra_download.simulator.http.ArchiveHTTPServer` on ``archive_root``
    (function-scoped: fresh faults and stats per test). Use ``archive_http.base_url``.
archive_https
    The same over HTTPS; trust ``archive_https.ca_file``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .http import ArchiveHTTPServer


@pytest.fixture(scope="session")
def archive_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a generated default archive tree (holds ``byobsid/``)."""
    from .tree import generate_archive

    return generate_archive(tmp_path_factory.mktemp("chandra-archive"))


@pytest.fixture
def archive_http(archive_root: Path) -> Iterator[ArchiveHTTPServer]:
    """An HTTP archive server on 127.0.0.1, stopped after the test."""
    from .http import ArchiveHTTPServer

    with ArchiveHTTPServer(archive_root) as server:
        yield server


@pytest.fixture
def archive_https(archive_root: Path) -> Iterator[ArchiveHTTPServer]:
    """An HTTPS archive server on 127.0.0.1 (CA in ``.ca_file``), stopped after the test."""
    from .http import ArchiveHTTPServer

    with ArchiveHTTPServer(archive_root, tls=True) as server:
        yield server
