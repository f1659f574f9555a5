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
archive_ftp
    A started :class:`~chandra_download.simulator.ftp.ArchiveFTPServer` on ``archive_root``
    (function-scoped), for anonymous logins and the account ``FTP_USER`` / ``FTP_PASSWORD``.
archive_services
    A started :class:`~chandra_download.simulator.services.ArchiveServicesServer` answering
    the search services (footprint, catalogue, CADC, Sesame) from ``archive_root``'s
    metadata (function-scoped). Point clients at it with ``monkeypatch`` and ``.env()``.
archive_s3
    A started :class:`~chandra_download.simulator.s3.ArchiveS3Server` holding ``archive_root``
    (function-scoped) in a bucket of its own. Use ``mirror=archive_s3.base_url`` with
    ``endpoint_url=archive_s3.endpoint_url``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .ftp import ArchiveFTPServer
    from .http import ArchiveHTTPServer
    from .s3 import ArchiveS3Server
    from .services import ArchiveServicesServer

#: The non-anonymous account of ``archive_ftp``.
FTP_USER, FTP_PASSWORD = "chandra", "x-ray"

# moto keeps buckets per process, and two live servers may not share a bucket name.
_s3_buckets = itertools.count(1)


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


@pytest.fixture
def archive_ftp(archive_root: Path) -> Iterator[ArchiveFTPServer]:
    """An FTP archive server on 127.0.0.1, stopped after the test.

    Yields
    ------
    ArchiveFTPServer
        Serving ``archive_root`` as ``/`` (``base_url`` is ``ftp://127.0.0.1:PORT/``) to
        anonymous logins and to the user ``FTP_USER`` with password ``FTP_PASSWORD``;
        ``.faults`` is an empty :class:`~chandra_download.simulator.faults.FaultPlan`.
    """
    from .faults import FaultPlan
    from .ftp import ArchiveFTPServer

    users = {FTP_USER: FTP_PASSWORD}
    with ArchiveFTPServer(archive_root, users=users, faults=FaultPlan()) as server:
        yield server


@pytest.fixture
def archive_s3(archive_root: Path) -> Iterator[ArchiveS3Server]:
    """An S3 archive server (moto) on 127.0.0.1, stopped after the test.

    Yields
    ------
    ArchiveS3Server
        Holding ``archive_root`` below ``chandra/data/`` in a public bucket named
        ``chandra-sim-<n>`` (unique per fixture instance). Clients need ``base_url`` as the
        mirror and ``endpoint_url``; ``.client`` is a signed client for adding objects.
    """
    from .s3 import ArchiveS3Server

    with ArchiveS3Server(archive_root, bucket=f"chandra-sim-{next(_s3_buckets)}") as server:
        yield server


@pytest.fixture
def archive_services(archive_root: Path) -> Iterator[ArchiveServicesServer]:
    """The archive's search services on 127.0.0.1, stopped after the test.

    Yields
    ------
    ArchiveServicesServer
        ``.urls`` (per service), ``.env()`` (the ``CHANDRA_*_URL`` variables), ``.fail()`` and
        ``.requests`` for tests.
    """
    from .services import ArchiveServicesServer

    with ArchiveServicesServer(archive_root) as server:
        yield server
