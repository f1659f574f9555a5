"""File systems without locks: ``flock`` and ``fcntl`` fail (ENOLCK), lock files take over.

The kernel's locks are made to fail for the whole process by the test switch
``CHANDRA_DOWNLOAD_TEST_LOCKS_FAIL`` and, in one test, by a preload shim built here with gcc
(the errno path of a real lock-less file system, with no switch in play).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from crash_support import (
    SPLIT,
    archive_bytes,
    archive_fixture,
    command,
    mismatches,
    run,
    spawn,
    wait_for,
)

from chandra_download import disk, locks
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.simulator.link import LinkModel

root = archive_fixture("locks-archive")
NOLOCKS = {"CHANDRA_DOWNLOAD_TEST_LOCKS_FAIL": "ENOLCK"}


@pytest.fixture
def no_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANDRA_DOWNLOAD_TEST_LOCKS_FAIL", "ENOLCK")


def lock_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.lock*") if p.is_file())


def write_lock(path: Path, **holder: object) -> None:
    me = locks.Holder.me()
    fields = {**me.__dict__, "token": "t0", **holder}
    path.write_text(json.dumps(fields))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- the lock file itself -----------------------------------------------------------------------
def test_the_lock_file_names_its_holder_and_goes_with_the_lock(no_locks, tmp_path):
    part = tmp_path / "f.part"
    fd = disk.acquire(part)
    lock = tmp_path / "f.part.lock"
    holder = json.loads(lock.read_text())
    assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
    assert holder["start"] == locks.Holder.me().start and holder["token"]
    os.write(fd, b"data")
    disk.release(fd)
    assert not lock.exists()
    assert part.read_bytes() == b"data"


def test_a_live_holder_is_waited_for(no_locks, tmp_path):
    part = tmp_path / "f.part"
    fd = disk.acquire(part)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(disk.acquire(part)))
    waiter.start()
    time.sleep(1.0)
    assert got == []  # a holder that runs is never taken over
    disk.release(fd)
    waiter.join(10)
    assert len(got) == 1
    disk.release(got[0])


def test_a_dead_holder_on_this_host_is_taken_over_at_once(no_locks, tmp_path, monkeypatch):
    monkeypatch.setenv("CHANDRA_DOWNLOAD_LOCK_STALE", "600")  # so only the dead pid can tell
    part = tmp_path / "f.part"
    write_lock(tmp_path / "f.part.lock", pid=dead_pid())
    t0 = time.monotonic()
    fd = disk.acquire(part)
    assert time.monotonic() - t0 < 60
    assert json.loads((tmp_path / "f.part.lock").read_text())["pid"] == os.getpid()
    disk.release(fd)
    assert lock_files(tmp_path) == []  # no break or aside file is left


class _Killed(BaseException):
    """A SIGKILL at one point of the code: nothing after it runs, no handler sees it."""


def test_a_run_killed_while_creating_a_lock_file_does_not_hold_up_the_next(
    no_locks, tmp_path, monkeypatch
):
    """Killed between creating the lock file and writing its holder (CI saw it: the empty
    lock file named no holder, and the next run waited out the stale time)."""
    monkeypatch.setenv("CHANDRA_DOWNLOAD_LOCK_STALE", "600")
    real_write = os.write

    def killed(fd: int, data: bytes) -> int:
        raise _Killed()

    monkeypatch.setattr(locks.os, "write", killed)
    with pytest.raises(_Killed):
        disk.acquire(tmp_path / "f.part")
    monkeypatch.setattr(locks.os, "write", real_write)
    assert (tmp_path / "f.part.lock").read_bytes() == b""  # what such a kill leaves
    got: list[int] = []
    taker = threading.Thread(target=lambda: got.append(disk.acquire(tmp_path / "f.part")))
    taker.daemon = True  # (before the fix it waits 600 s)
    taker.start()
    taker.join(locks.NAMELESS + 10)
    assert len(got) == 1
    disk.release(got[0])
    assert lock_files(tmp_path) == []


def test_a_reused_pid_is_not_its_holder(no_locks, tmp_path, monkeypatch):
    """Our own pid, with another start time: the holder was an earlier process."""
    monkeypatch.setenv("CHANDRA_DOWNLOAD_LOCK_STALE", "600")
    write_lock(tmp_path / "f.part.lock", pid=os.getpid(), start="1")
    fd = disk.acquire(tmp_path / "f.part")
    disk.release(fd)


def test_another_hosts_holder_is_taken_over_once_stale(no_locks, tmp_path, monkeypatch):
    monkeypatch.setenv("CHANDRA_DOWNLOAD_LOCK_STALE", "1.5")
    write_lock(tmp_path / "f.part.lock", host="elsewhere.example", pid=1)
    t0 = time.monotonic()
    fd = disk.acquire(tmp_path / "f.part")
    waited = time.monotonic() - t0
    disk.release(fd)
    assert waited >= 1.4  # not before it went unrenewed for the stale time


def test_an_old_lock_file_of_another_host_goes_at_once(no_locks, tmp_path, monkeypatch):
    monkeypatch.setenv("CHANDRA_DOWNLOAD_LOCK_STALE", "30")
    lock = tmp_path / "f.part.lock"
    write_lock(lock, host="elsewhere.example", pid=1)
    old = time.time() - 3600
    os.utime(lock, (old, old))
    t0 = time.monotonic()
    disk.release(disk.acquire(tmp_path / "f.part"))
    assert time.monotonic() - t0 < 25  # well before the 30 s of watching


def test_a_held_lock_file_is_renewed(no_locks, tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT", 0.1)
    fd = disk.acquire(tmp_path / "f.part")
    lock = tmp_path / "f.part.lock"
    old = time.time() - 100
    os.utime(lock, (old, old))
    try:
        assert wait_for(lambda: time.time() - lock.stat().st_mtime < 50, timeout=10)
    finally:
        disk.release(fd)


def test_a_holder_whose_lock_was_taken_over_writes_no_more(no_locks, tmp_path, monkeypatch):
    """A holder stopped past the stale time finds another's lock file at the name: its
    later writes must not land in the .part the new holder writes."""
    monkeypatch.setattr(locks, "HEARTBEAT", 0.1)
    part = tmp_path / "f.part"
    fd = disk.acquire(part)
    lock = tmp_path / "f.part.lock"
    lock.unlink()
    write_lock(lock, host="elsewhere.example", token="new")
    ino = os.fstat(fd).st_ino
    assert wait_for(lambda: os.fstat(fd).st_ino != ino, timeout=10)  # revoked by the heartbeat
    with pytest.raises(OSError):
        os.pwrite(fd, b"late", 0)
    disk.release(fd)
    assert json.loads(lock.read_text())["token"] == "new"  # the new holder's stays
    assert part.read_bytes() == b""


def test_flock_is_used_where_it_works(tmp_path, caplog):
    fd = disk.acquire(tmp_path / "f.part")
    disk.release(fd)
    assert lock_files(tmp_path) == []
    assert "lock files" not in caplog.text


# -- whole runs on a file system without locks ---------------------------------------------------
def test_one_run_completes_and_says_once_which_lock(root, tmp_path):
    out = tmp_path / "out"
    with ArchiveHTTPServer(root) as server:
        done = run(command(server.base_url, out, "-j", "4", "--split-size", SPLIT), NOLOCKS)
    assert done.returncode == 0, done.stderr
    assert mismatches(root, out) == []
    said = (done.stdout + done.stderr).count("using lock files")
    assert said == 1, done.stdout + done.stderr
    assert lock_files(out) == []


def test_three_rivals_fetch_at_most_a_quarter_more(root, tmp_path):
    out = tmp_path / "out"
    link = LinkModel(latency=0.01, total_bandwidth=3_000_000)  # ~1.5 s alone: they overlap
    with ArchiveHTTPServer(root, link=link) as server:
        cmd = command(server.base_url, out, "-j", "4", "--split-size", SPLIT)
        procs = [spawn(cmd, NOLOCKS) for _ in range(3)]
        codes = [p.wait(timeout=120) for p in procs]
        files = sum(n for (m, p), n in server.stats.requests.items() if not p.endswith("/"))
        served = server.stats.bytes_sent
    assert codes == [0, 0, 0]
    assert mismatches(root, out) == []
    assert lock_files(out) == []
    with ArchiveHTTPServer(root) as alone:  # the listings' bytes, which each run fetches
        assert run(command(alone.base_url, tmp_path / "alone"), NOLOCKS).returncode == 0
        listings = alone.stats.bytes_sent - archive_bytes(root)
    assert files > 0
    assert served <= 1.25 * archive_bytes(root) + 3 * listings, served / archive_bytes(root)


def test_a_killed_run_does_not_hold_up_the_next(root, tmp_path):
    """SIGKILLed while holding lock files; the next run (stale time 10 minutes, so only the
    dead holder can free them) completes at once."""
    out = tmp_path / "out"
    env = {**NOLOCKS, "CHANDRA_DOWNLOAD_LOCK_STALE": "600"}
    with ArchiveHTTPServer(root, link=LinkModel(total_bandwidth=400_000)) as server:
        cmd = command(server.base_url, out, "-j", "4", "--split-size", SPLIT)
        proc = spawn(cmd, env)
        try:
            assert wait_for(lambda: len(lock_files(out)) >= 2, timeout=60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        assert lock_files(out)  # left behind by the killed run
        server.link = LinkModel()
        t0 = time.monotonic()
        done = run(cmd, env, timeout=120)
        took = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert mismatches(root, out) == []
    assert lock_files(out) == []
    assert took < 60, took  # far less than the 600 s a stale judgment would need


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
int flock(int fd, int op) { (void)fd; (void)op; errno = ENOLCK; return -1; }
static int locking(int cmd) {
    return cmd == F_SETLK || cmd == F_SETLKW || cmd == F_GETLK
        || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW || cmd == F_OFD_GETLK;
}
static int pass(const char *name, int fd, int cmd, void *arg) {
    int (*real)(int, int, ...) = (int (*)(int, int, ...))dlsym(RTLD_NEXT, name);
    return real(fd, cmd, arg);
}
int fcntl(int fd, int cmd, ...) {
    va_list ap; va_start(ap, cmd); void *arg = va_arg(ap, void *); va_end(ap);
    if (locking(cmd)) { errno = ENOLCK; return -1; }
    return pass("fcntl", fd, cmd, arg);
}
int fcntl64(int fd, int cmd, ...) {
    va_list ap; va_start(ap, cmd); void *arg = va_arg(ap, void *); va_end(ap);
    if (locking(cmd)) { errno = ENOLCK; return -1; }
    return pass("fcntl64", fd, cmd, arg);
}
"""


@pytest.mark.skipif(
    shutil.which("gcc") is None or not sys.platform.startswith("linux"),
    reason="the preload shim needs gcc on Linux (the switch covers the rest)",
)
def test_real_enolck_from_the_c_library(root, tmp_path):
    src, lib = tmp_path / "nolock.c", tmp_path / "nolock.so"
    src.write_text(SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", lib, src, "-ldl"], check=True)
    probe = "import fcntl, os; fcntl.flock(os.open('/dev/null', 0), fcntl.LOCK_EX)"
    refused = run([sys.executable, "-c", probe], {"LD_PRELOAD": str(lib)})
    assert "No locks available" in refused.stderr  # the shim works: flock really fails
    out = tmp_path / "out"
    with ArchiveHTTPServer(root) as server:
        cmd = command(server.base_url, out, "-j", "4", "--split-size", SPLIT)
        done = run(cmd, {"LD_PRELOAD": str(lib)})
    assert done.returncode == 0, done.stderr
    assert mismatches(root, out) == []
    assert (done.stdout + done.stderr).count("using lock files") == 1


def test_a_lock_file_goes_in_the_open_directory_given(no_locks, tmp_path):
    """With ``dir_fd`` the .part and its lock file are named relative to that directory,
    whatever the path's own directory (here one that does not exist)."""
    (tmp_path / "d").mkdir()
    dfd = os.open(tmp_path / "d", os.O_RDONLY)
    try:
        fd = disk.acquire(tmp_path / "elsewhere" / "f.part", dir_fd=dfd)
        assert (tmp_path / "d" / "f.part.lock").is_file()
        assert (tmp_path / "d" / "f.part").is_file()
        disk.release(fd)
        assert not (tmp_path / "d" / "f.part.lock").exists()
    finally:
        os.close(dfd)
