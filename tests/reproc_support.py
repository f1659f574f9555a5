"""Shared by the reprocessing tests (issue 16): a fresh small archive of ObsId 1843 served
over HTTP, where a test may change or reprocess it; paths into it; the sha256 of a file.

Fixtures are imported by the test modules (``from reproc_support import site``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from chandra_download.simulator import ArchiveHTTPServer, generate_archive


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, ArchiveHTTPServer]]:
    """A fresh small archive of ObsId 1843 of the test's own (it may change it) and its server."""
    root = generate_archive(tmp_path / "archive", {1843: "acis"}, scale=0.05)
    with ArchiveHTTPServer(root) as server:
        yield root, server


def at_archive(root: Path, rel: str) -> Path:
    """Where ObsId 1843's file ``rel`` is in the archive at ``root``."""
    return root / "byobsid" / "3" / "1843" / rel


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
