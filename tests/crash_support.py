"""Helpers of the crash, rivals and core-safety tests: the command in a child process, the
test archive, and the checks that an output tree is the archive's, byte for byte."""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chandra_download.simulator import generate_archive, iter_files
from chandra_download.simulator.ftp import ArchiveFTPServer
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.simulator.link import LinkModel
from chandra_download.simulator.s3 import ArchiveS3Server

OBSID = 1843
EVT1 = "secondary/acisf01843_000N005_evt1.fits.gz"  # 2 MB: split at SPLIT
EVT2 = "primary/acisf01843N005_evt2.fits.gz"  # 1.2 MB: split at SPLIT
OIF = "oif.fits"  # 17 kB FITS: never split
JPG = "primary/acisf01843N005_full_img2.jpg"  # no content check
SPLIT = "256K"  # --split-size that splits EVT1 and EVT2 (4 parts each with -j 4)
SIZES = {"evt1": 2_000_000, "evt2": 1_200_000}  # the rest at scale 1: about 4 MB in all

_buckets = itertools.count(1)  # moto keeps buckets per process: one name per server


def make_archive(root: Path) -> Path:
    """One ACIS ObsId of about 4 MB: two files large enough to split, 35 small ones."""
    return generate_archive(root, {OBSID: "acis"}, scale=1.0, sizes=SIZES)


def archive_fixture(name: str) -> Callable[..., Path]:
    """A module-scoped ``root`` fixture: :func:`make_archive` in a temporary directory named
    after ``name``, made once per test module. Use as ``root = archive_fixture("x-archive")``."""

    @pytest.fixture(scope="module")
    def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return make_archive(tmp_path_factory.mktemp(name))

    return root


def http_fixture() -> Callable[..., Iterator[ArchiveHTTPServer]]:
    """An ``http`` fixture: an HTTP server on the module's ``root`` archive, one per test
    (fresh faults and stats), stopped after. Use as ``http = http_fixture()``."""

    @pytest.fixture
    def http(root: Path) -> Iterator[ArchiveHTTPServer]:
        with ArchiveHTTPServer(root) as server:
            yield server

    return http


def archive_files(root: Path, obsid: int = OBSID) -> dict[str, Path]:
    """{path below the ObsId directory: file in the archive tree}."""
    return dict(iter_files(root, obsid))


def archive_bytes(root: Path, obsid: int = OBSID) -> int:
    return sum(p.stat().st_size for p in archive_files(root, obsid).values())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child run: ours (PYTHONPATH, NO_PROXY), no kill hook unless asked."""
    env = {k: v for k, v in os.environ.items() if k != "CHANDRA_DOWNLOAD_TEST_KILL"}
    return {**env, **(extra or {})}


def command(site: str | list[str], outdir: Path, *args: str, obsids: str = str(OBSID)) -> list[str]:
    """The command line of one run: ``site`` is a mirror URL or the options :func:`serve` gave."""
    site_args = ["--mirror", site] if isinstance(site, str) else list(site)
    return [
        sys.executable,
        "-m",
        "chandra_download",
        obsids,
        *site_args,
        "--outdir",
        str(outdir),
        "--no-progress",
        *args,
    ]


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 60):
    """Run a command to its end; the CompletedProcess with text output. A run still going
    after ``timeout`` fails the test with its threads' stacks (faulthandler, on SIGABRT)."""
    with subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**child_env(env), "PYTHONFAULTHANDLER": "1"},
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate()
            raise AssertionError(
                f"still running after {timeout:g} s: {' '.join(cmd)}\n{err[-6000:]}"
            ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def spawn(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a command with its output discarded (it is killed or waited for by the caller)."""
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(env)
    )


def disk_bytes(outdir: Path) -> int:
    """Bytes stored in every regular file below ``outdir``, our hidden state included: what
    runs have written (allocated blocks, so the holes of a split ``.part`` do not count)."""
    total = 0
    for p in Path(outdir).rglob("*"):
        try:
            st = p.lstat()
        except OSError:  # renamed or removed meanwhile
            continue
        if stat.S_ISREG(st.st_mode):
            total += st.st_blocks * 512
    return total


def kill_once_written(
    proc: subprocess.Popen, outdir: Path, at_least: int, timeout: float = 60
) -> bool:
    """SIGKILL ``proc`` as soon as :func:`disk_bytes` of ``outdir`` reaches ``at_least``
    (polled every few ms); True when it was still running then (a real kill), False when it
    ended first. A condition, not a clock: under load a run may take seconds before it
    writes its first byte."""
    end = time.monotonic() + timeout
    while proc.poll() is None:
        if disk_bytes(outdir) >= at_least or time.monotonic() > end:
            proc.kill()
            proc.wait(timeout=30)
            return True
        time.sleep(0.005)
    return False


def tree(outdir: Path) -> dict[str, Path]:
    """{path below outdir: path} of every file (and symlink) below ``outdir``."""
    return {
        p.relative_to(outdir).as_posix(): p
        for p in sorted(Path(outdir).rglob("*"))
        if (p.is_file() or p.is_symlink()) and ".chandra-download" not in p.parts
    }


def mismatches(root: Path, outdir: Path, obsid: int = OBSID) -> list[str]:
    """Everything that keeps ``<outdir>/<obsid>`` from being exactly the archive's ObsId:
    missing or different files, and anything else (``.part``, state, lock, temporary files)."""
    want = archive_files(root, obsid)
    got = tree(Path(outdir) / str(obsid))
    problems = [f"missing {rel}" for rel in sorted(set(want) - set(got))]
    problems += [f"left over {rel}" for rel in sorted(set(got) - set(want))]
    partial = Path(outdir) / ".chandra-download" / "partial" / str(obsid)
    problems += [f"left over {p.name} (ours)" for p in sorted(partial.rglob("*")) if p.is_file()]
    problems += [
        f"differs {rel}" for rel in sorted(set(want) & set(got)) if sha(got[rel]) != sha(want[rel])
    ]
    return problems


def outside_obsid(outdir: Path, obsid: int = OBSID) -> list[str]:
    """Files left in ``outdir`` outside the ObsId directory (there should be none)."""
    return [rel for rel in tree(outdir) if not rel.startswith(f"{obsid}/")]


def wait_for(predicate, timeout: float, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@contextmanager
def serve(protocol: str, root: Path, link: LinkModel | None = None) -> Iterator[list[str]]:
    """A simulator for ``protocol`` on ``root``; yields the command's site options
    (``--mirror URL`` and, for S3, ``--endpoint-url``). S3 has no throttled link."""
    if protocol == "http":
        with ArchiveHTTPServer(root, link=link) as http:
            yield ["--mirror", http.base_url]
    elif protocol == "ftp":
        with ArchiveFTPServer(root, link=link) as ftp:
            yield ["--mirror", ftp.base_url]
    else:
        with ArchiveS3Server(root, bucket=f"crash-{next(_buckets)}") as s3:
            yield ["--mirror", s3.base_url, "--endpoint-url", s3.endpoint_url]
