"""Fault injection: transient failures are retried and resumed, permanent ones are isolated.

Each test runs ``download()`` against a real simulator server (HTTP, FTP or S3) with faults
switched on, then checks the end state: every file byte-identical to the simulator's tree,
nothing left over, and the right status and reason per file.
"""

from __future__ import annotations

import errno
import gc
import os
import sys
import time
import warnings
from pathlib import Path

import pytest
from fault_support import (
    EVT1,
    EVT2,
    FAST,
    OBSID,
    OIF,
    assert_complete,
    assert_identical,
    by_rel,
    part_files,
    s3_fixture,  # noqa: F401 - pytest fixture
    s3_server_fixture,  # noqa: F401 - pytest fixture
    source_size,
)
from statedir_support import ours

from chandra_download import download, stream
from chandra_download.results import Status
from chandra_download.simulator import ArchiveHTTPServer, Fault, FaultPlan

# -- HTTP: transient faults are retried and resumed --------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault("drop", EVT2, after_bytes=200_000),  # connection reset mid-body
        Fault("truncate", EVT2, after_bytes=150_000),  # clean close, short body
        Fault("stall", EVT2, after_bytes=100_000, seconds=5),  # silence longer than the timeout
    ],
    ids=lambda f: f.kind,
)
def test_broken_transfer_resumes(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path, fault: Fault
) -> None:
    archive_http.faults.add(fault)
    # A reset destroys what the kernel holds unread, and a pipelined answer waits unread
    # behind the ones before it: the bytes sent before a reset are kept, to resume from,
    # when the file is fetched on a request of its own.
    one_at_a_time = {"pipeline_depth": 1} if fault.kind == "drop" else {}
    t0 = time.monotonic()
    results = download(
        OBSID,
        mirror=archive_http.base_url,
        outdir=tmp_path,
        **{**FAST, "timeout": 1, **one_at_a_time},
    )
    elapsed = time.monotonic() - t0
    assert_complete(results, archive_root, tmp_path, statuses={EVT2: Status.RESUMED})
    fr = by_rel(results)[EVT2]
    assert fr.attempts == 2
    # Resumed from what was on disk: exactly the file's size crossed the wire, not size + prefix.
    assert fr.bytes_transferred == source_size(archive_root, EVT2)
    assert archive_http.stats.get_count(f"*{EVT2}") == 2
    assert [kind for _, _, kind in archive_http.faults.fired] == [fault.kind]
    if fault.kind == "stall":
        assert elapsed < fault.seconds  # the timeout fired; we did not wait the stall out


def test_drop_keeps_received_bytes_with_default_chunk_size(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    """Bytes that arrived before a reset are kept even when far less than one read chunk (1 MiB
    by default) came: else a link that drops every few hundred kB would never finish a file."""
    archive_http.faults.add(Fault("drop", EVT1, after_bytes=600_000))
    fast = {k: v for k, v in FAST.items() if k != "chunk_size"}
    results = download(OBSID, "evt1", mirror=archive_http.base_url, outdir=tmp_path, **fast)
    fr = by_rel(results)[EVT1]
    assert fr.status is Status.RESUMED and fr.attempts == 2
    assert fr.bytes_transferred == source_size(archive_root, EVT1)
    assert_identical(archive_root, tmp_path, OBSID, [EVT1])


def test_retry_after_is_honoured(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    archive_http.faults.add(Fault("status", EVT2, status=429, retry_after=1))
    t0 = time.monotonic()
    results = download(OBSID, "evt2", mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    elapsed = time.monotonic() - t0
    fr = by_rel(results)[EVT2]
    assert fr.status is Status.DOWNLOADED and fr.attempts == 2
    assert_identical(archive_root, tmp_path, OBSID, [EVT2])
    assert elapsed >= 0.9  # backoff is 0.01 s: only Retry-After explains the wait
    assert archive_http.stats.get_count(f"*{EVT2}") == 2


def test_5xx_bursts_on_files_and_listings(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    plan = archive_http.faults
    plan.add(Fault("status", "byobsid/3/1843/", status=503, times=2))  # the ObsId listing
    plan.add(Fault("status", "primary/", status=502, times=1))  # a sub-directory listing
    for status in (503, 500, 504):
        plan.add(Fault("status", EVT2, status=status))
    plan.add(Fault("status", "*.fits.gz", status=503, times=6))  # spread over other files
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, retries=5, **FAST)
    assert_complete(results, archive_root, tmp_path)
    assert by_rel(results)[EVT2].attempts >= 4
    assert len(plan) == 0  # every fault fired, and the run still completed
    # Two refusals and one good top page; the failed primary/ page is retried on its own.
    assert archive_http.stats.get_count("byobsid/3/1843/") == 3
    assert archive_http.stats.get_count("byobsid/3/1843/primary/") == 2


def test_permanent_failure_is_isolated_and_rerun_fetches_only_it(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    plan = archive_http.faults
    plan.add(Fault("status", EVT2, status=503, times=None))
    plan.add(Fault("status", OIF, status=404, times=None))  # permanent: not retried
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, retries=2, **FAST)
    files = by_rel(results)
    evt2, oif = files[EVT2], files[OIF]
    assert evt2.status is Status.FAILED and evt2.attempts == 3
    assert "503" in evt2.reason and "3 attempts" in evt2.reason
    assert oif.status is Status.FAILED and oif.attempts == 1 and "404" in oif.reason
    assert archive_http.stats.get_count(f"*{EVT2}") == 3
    assert archive_http.stats.get_count(f"*{OIF}") == 1
    top = tmp_path / str(OBSID)
    assert not (top / EVT2).exists() and not (top / OIF).exists()
    others = [rel for rel in files if rel not in (EVT2, OIF)]
    assert all(files[rel].status is Status.DOWNLOADED for rel in others)
    assert_identical(archive_root, tmp_path, OBSID, others)
    assert not results.ok
    errors = "\n".join(results.errors)
    assert EVT2 in errors and "HTTP 503" in errors and OIF in errors and "HTTP 404" in errors
    assert "2 file(s) failed" in results.summary()

    plan.clear()
    archive_http.stats.reset()
    again = results.retry()
    assert_complete(
        again,
        archive_root,
        tmp_path,
        statuses={EVT2: Status.DOWNLOADED, OIF: Status.DOWNLOADED},
        default=[Status.PRESENT],
    )
    # HTTP listings give rounded sizes, so present files may get a HEAD; no body is re-sent.
    stats = archive_http.stats.requests.items()
    fetched = {p for (m, p), _ in stats if m == "GET" and not p.endswith("/")}
    assert fetched == {f"byobsid/3/1843/{EVT2}", f"byobsid/3/1843/{OIF}"}


# -- FTP --------------------------------------------------------------------------------------


def test_ftp_4xx_replies_and_drops_are_retried(archive_root: Path, tmp_path: Path) -> None:
    from chandra_download.simulator.ftp import ArchiveFTPServer

    plan = FaultPlan(
        [
            Fault("status", EVT2, status=450, times=2),
            Fault("status", EVT2, status=451),
            Fault("status", OIF, status=421),  # also closes the control connection
            Fault("drop", EVT1, after_bytes=300_000),
            Fault("truncate", "*fov1*"),
        ]
    )
    with ArchiveFTPServer(archive_root, faults=plan) as ftp:
        results = download(OBSID, mirror=ftp.base_url, outdir=tmp_path, **FAST)
        retr = dict(ftp.stats.retr)
    assert_complete(
        results,
        archive_root,
        tmp_path,
        statuses={EVT1: Status.RESUMED},
        default=[Status.DOWNLOADED, Status.RESUMED],
    )
    files = by_rel(results)
    assert files[EVT2].attempts == 4
    assert files[EVT1].bytes_transferred == source_size(archive_root, EVT1)
    assert retr[f"byobsid/3/1843/{EVT1}"] == 2
    assert len(plan) == 0


def test_ftp_permanent_failure_is_isolated(archive_root: Path, tmp_path: Path) -> None:
    from chandra_download.simulator.ftp import ArchiveFTPServer

    plan = FaultPlan([Fault("status", EVT2, status=450, times=None)])
    with ArchiveFTPServer(archive_root, faults=plan) as ftp:
        results = download(OBSID, mirror=ftp.base_url, outdir=tmp_path, retries=1, **FAST)
        assert ftp.stats.retr[f"byobsid/3/1843/{EVT2}"] == 2
        evt2 = by_rel(results)[EVT2]
        assert evt2.status is Status.FAILED and evt2.attempts == 2 and "450" in evt2.reason
        assert any(EVT2 in line and "450" in line for line in results.errors)
        others = [f.relpath for f in results.files if f.relpath != EVT2]
        assert all(by_rel(results)[rel].status is Status.DOWNLOADED for rel in others)
        assert_identical(archive_root, tmp_path, OBSID, others)
        plan.clear()
        again = download(OBSID, mirror=ftp.base_url, outdir=tmp_path, **FAST)
    assert_complete(
        again, archive_root, tmp_path, statuses={EVT2: Status.DOWNLOADED}, default=[Status.PRESENT]
    )


# -- S3 ---------------------------------------------------------------------------------------


def test_s3_slowdown_and_drop(s3, archive_root: Path, tmp_path: Path) -> None:
    server, plan = s3
    plan.add(Fault("status", EVT2, status=503, times=3))  # SlowDown, more than botocore absorbs
    plan.add(Fault("drop", EVT1, after_bytes=300_000))
    plan.add(Fault("status", "byobsid/3/1843/", status=503, times=2))
    out = tmp_path / "out"
    results = download(
        OBSID, mirror=server.base_url, endpoint_url=server.endpoint_url, outdir=out, **FAST
    )
    assert_complete(results, archive_root, out, statuses={EVT1: Status.RESUMED})
    assert by_rel(results)[EVT1].bytes_transferred == source_size(archive_root, EVT1)
    assert [k for _, p, k in plan.fired if p.endswith(EVT2)] == ["status"] * 3
    assert len(plan) == 0


def test_s3_permanent_slowdown_is_isolated(s3, archive_root: Path, tmp_path: Path) -> None:
    server, plan = s3
    plan.add(Fault("status", EVT2, status=503, times=None))
    out = tmp_path / "out"
    results = download(
        OBSID,
        mirror=server.base_url,
        endpoint_url=server.endpoint_url,
        outdir=out,
        retries=1,
        **FAST,
    )
    evt2 = by_rel(results)[EVT2]
    assert evt2.status is Status.FAILED and "SlowDown" in evt2.reason
    assert not (out / str(OBSID) / EVT2).exists()
    others = [f.relpath for f in results.files if f.relpath != EVT2]
    assert_identical(archive_root, out, OBSID, others)
    assert results.summary().startswith("1 file(s) failed")


# -- resources --------------------------------------------------------------------------------


class _FullDisk:
    """Stands in for the ``os`` module inside stream.py: writes fail with ENOSPC past a budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.full = False

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.full or self.budget <= 0:
            self.full = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.pwrite(fd, data[: self.budget], offset)
        self.budget -= n
        return n


def test_full_disk_keeps_part_and_resumes(
    archive_http: ArchiveHTTPServer,
    archive_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    disk = _FullDisk(300_000)
    monkeypatch.setattr(stream, "os", disk)
    # jobs=1: files go largest first, so evt1 is the one the disk fills up on.
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, jobs=1, **FAST)
    evt1 = by_rel(results)[EVT1]
    assert evt1.status is Status.FAILED and evt1.attempts == 1  # not retried: it would not help
    assert "no space left on device" in evt1.reason.lower()
    part = ours(tmp_path, OBSID, EVT1)
    assert str(part.parent) in evt1.reason  # says where: which disk is full
    assert part.stat().st_size == 300_000
    assert not (tmp_path / str(OBSID) / EVT1).exists()
    assert any("no space left" in line.lower() for line in results.errors)
    monkeypatch.undo()

    again = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, jobs=1, **FAST)
    assert_complete(
        again,
        archive_root,
        tmp_path,
        statuses={EVT1: Status.RESUMED},
        default=[Status.DOWNLOADED, Status.PRESENT],
    )
    assert by_rel(again)[EVT1].bytes_transferred == source_size(archive_root, EVT1) - 300_000


def test_no_resource_warnings(archive_root: Path, tmp_path: Path) -> None:
    from chandra_download.simulator.ftp import ArchiveFTPServer

    faults = [
        Fault("drop", EVT1, after_bytes=300_000),
        Fault("stall", EVT2, after_bytes=50_000, seconds=3),
        Fault("truncate", "*fov1*"),
        Fault("status", OIF, status=503),
        Fault("corrupt", "*asol1*"),
    ]
    unraisable: list[object] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with ArchiveHTTPServer(archive_root, faults=FaultPlan(faults)) as http:
                r1 = download(
                    OBSID, mirror=http.base_url, outdir=tmp_path / "h", **{**FAST, "timeout": 1}
                )
            with ArchiveFTPServer(archive_root, faults=FaultPlan(faults)) as ftp:
                r2 = download(
                    OBSID, mirror=ftp.base_url, outdir=tmp_path / "f", **{**FAST, "timeout": 1}
                )
            del http, ftp
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
    ok = [Status.DOWNLOADED, Status.RESUMED]
    assert_complete(r1, archive_root, tmp_path / "h", default=ok)
    assert_complete(r2, archive_root, tmp_path / "f", default=ok)
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
    assert unraisable == []
    assert part_files(tmp_path / "h" / str(OBSID)) == []
