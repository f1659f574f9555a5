"""Helpers for the fault-injection and integrity tests: end-state checks against the simulator.

Every test in ``test_faults.py`` and ``test_integrity.py`` ends by comparing the output tree with
the simulator's tree byte for byte (sha256), checking that nothing was written outside
``<outdir>/<ObsId>/`` and that each file has the expected :class:`Status`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from signal_support import sigint_as_default

from chandra_download.results import FileResult, Results, Status
from chandra_download.simulator import FaultPlan, iter_files

#: Small delays so that retries cost milliseconds; small chunks so that a broken transfer
#: keeps what it received (a resume then has something to resume from).
FAST = {"backoff": 0.01, "backoff_max": 0.05, "timeout": 2, "chunk_size": 16384}

OBSID = 1843
EVT2 = "primary/acisf01843N005_evt2.fits.gz"  # ~400 kB .fits.gz
EVT1 = "secondary/acisf01843_000N005_evt1.fits.gz"  # ~1 MB .fits.gz
OIF = "oif.fits"  # plain FITS with CHECKSUM/DATASUM
README = "00README"  # plain text: no content check applies


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_files(root: Path, obsid: int = OBSID) -> dict[str, Path]:
    """relpath -> file in the simulator tree."""
    return dict(iter_files(root, obsid))


def source_size(root: Path, relpath: str, obsid: int = OBSID) -> int:
    return source_files(root, obsid)[relpath].stat().st_size


def by_rel(results: Results) -> dict[str, FileResult]:
    return {f.relpath: f for f in results.files}


def local_files(top: Path) -> dict[str, Path]:
    """relpath -> file under an output ObsId directory (``.part`` files included)."""
    return {
        p.relative_to(top).as_posix(): p
        for p in top.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    }


def part_files(top: Path) -> list[str]:
    """``.part`` files beside the targets, and every temporary of ours (in our hidden
    directory, ``<outdir>/.chandra-download/partial/<ObsId>/``)."""
    beside = [rel for rel in local_files(top) if rel.endswith(".part")]
    partial = top.parent / ".chandra-download" / "partial" / top.name
    ours = [f"(ours) {p.name}" for p in partial.rglob("*") if p.is_file()]
    return sorted(beside + ours)


def assert_identical(root: Path, outdir: Path, obsid: int, relpaths: Iterable[str]) -> None:
    """Each named file is at its final name and byte-identical to the simulator's."""
    src = source_files(root, obsid)
    top = outdir / str(obsid)
    for rel in relpaths:
        got = top / rel
        assert got.is_file(), f"{rel} missing at its final name"
        assert sha256(got) == sha256(src[rel]), f"{rel} differs from the archive's"


def assert_complete(
    results: Results,
    root: Path,
    outdir: Path,
    obsid: int = OBSID,
    statuses: dict[str, Status] | None = None,
    default: Iterable[Status] = (Status.DOWNLOADED,),
) -> None:
    """The whole ObsId is on disk, identical, with no leftovers, and statuses are as expected.

    ``statuses`` names the expected status of particular files; every other file must have one
    of ``default``.
    """
    src = source_files(root, obsid)
    top = outdir / str(obsid)
    assert results.ok, results.errors
    files = {f.relpath: f for f in results.files if f.obsid == obsid}
    assert sorted(files) == sorted(src)
    assert_identical(root, outdir, obsid, src)
    assert sorted(local_files(top)) == sorted(src), "leftover or extra files in the output"
    expected = statuses or {}
    for rel, fr in files.items():
        if rel in expected:
            assert fr.status is expected[rel], (rel, fr.status, fr.reason)
        else:
            assert fr.status in tuple(default), (rel, fr.status, fr.reason)
        assert fr.path == top / rel


def snapshot(*dirs: Path) -> dict[str, tuple[int, int]]:
    """Every file below some directories with (size, mtime_ns), to spot stray writes."""
    out: dict[str, tuple[int, int]] = {}
    for d in dirs:
        for dirpath, _dirnames, filenames in os.walk(d):
            for name in filenames:
                p = os.path.join(dirpath, name)
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    continue
                out[p] = (st.st_size, st.st_mtime_ns)
    return out


def files_outside(base: Path, allowed: Path) -> list[Path]:
    """Files below ``base`` that are not below ``allowed``."""
    return [
        p
        for p in base.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts and allowed not in p.parents
    ]


def run_api(code: str, *args: str) -> subprocess.Popen:
    """Start ``python -c code args...`` in a fresh interpreter (for multi-process tests)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_default,  # SIGINT tests: Ctrl-C even if the run ignores it
    )


@pytest.fixture(scope="module", name="s3_server")
def s3_server_fixture(archive_root: Path) -> Iterator[tuple[Any, FaultPlan]]:
    """An S3 server (moto behind the fault proxy) holding ``archive_root``, and its plan."""
    from chandra_download.simulator.s3 import ArchiveS3Server

    plan = FaultPlan()
    with ArchiveS3Server(archive_root, bucket="fault-suite", faults=plan) as server:
        yield server, plan


@pytest.fixture(name="s3")
def s3_fixture(
    s3_server: tuple[Any, FaultPlan], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Any, FaultPlan]]:
    """``s3_server`` with an empty plan and no AWS settings from the environment."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    s3_server[1].clear()
    yield s3_server
    s3_server[1].clear()
