"""Edges of the core found by an adversarial review: symlinks planted in the tree (also after
the listing), things that are not files at our names, state files no JSON reader survives,
hard links, and archive names too long for a state file beside them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from signal_support import sigint_as_default
from statedir_support import ours

from chandra_download import download
from chandra_download.progress import Reporter
from chandra_download.results import Status
from chandra_download.simulator import ArchiveHTTPServer, generate_archive, iter_files

OBSID = 1843
FAST = dict(retries=1, backoff=0.01, timeout=5.0, status=False)
LONG = "L" * 255  # the longest name a file system takes: our temporaries are named apart


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = generate_archive(tmp_path_factory.mktemp("edges"), {OBSID: "acis"}, scale=0.05)
    (out / f"byobsid/3/{OBSID}" / LONG).write_bytes(os.urandom(40_000))
    return out


@pytest.fixture
def http(root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(root) as server:
        yield server


def _archive(root: Path) -> dict[str, bytes]:
    return {rel: p.read_bytes() for rel, p in iter_files(root, OBSID)}


def test_an_obsid_directory_that_is_a_symlink_is_not_written_through(
    http: ArchiveHTTPServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / str(OBSID)).symlink_to(outside)
    results = download(OBSID, "oif", http.base_url, outdir=tmp_path / "out", **FAST)
    (fr,) = results.files
    assert fr.status is Status.FAILED and "symlink" in fr.reason, fr.reason
    assert list(outside.iterdir()) == []


def test_a_symlinked_directory_planted_after_the_listing_is_not_written_through(
    http: ArchiveHTTPServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"

    class Planter(Reporter):
        def obsid_listed(self, r) -> None:  # between the listing and the first write
            (out / str(OBSID) / "secondary").mkdir(parents=True, exist_ok=True)
            (out / str(OBSID) / "secondary" / "aspect").symlink_to(outside)

    results = download(OBSID, mirror=http.base_url, outdir=out, reporter=Planter(), **FAST)
    aspect = [f for f in results.files if f.relpath.startswith("secondary/aspect/")]
    assert aspect and all(f.status is Status.FAILED for f in aspect)
    assert all("symlink" in f.reason for f in aspect), [f.reason for f in aspect]
    assert list(outside.iterdir()) == []
    others = [f for f in results.files if not f.relpath.startswith("secondary/aspect/")]
    assert all(f.ok for f in others)


def _part_with_state(out: Path, rel: str, data: bytes) -> Path:
    ours(out, OBSID, rel).write_bytes(data[: len(data) // 2])
    return ours(out, OBSID, rel, "state")


@pytest.mark.parametrize(
    "content",
    [
        '{"size": Infinity, "parts": [[0, 10, 0]]}',
        '{"size": 100, "parts": [[0, 1e400, 0]]}',
        "[" * 200_000 + "]" * 200_000,
    ],
    ids=["infinity", "huge-float", "deep"],
)
def test_state_files_no_json_reader_survives_are_discarded(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, content: str
) -> None:
    rel = "oif.fits"
    _part_with_state(tmp_path, rel, _archive(root)[rel]).write_text(content)
    results = download(OBSID, "oif", http.base_url, outdir=tmp_path, **FAST)
    (fr,) = results.files
    assert fr.ok, fr.reason
    assert (tmp_path / str(OBSID) / rel).read_bytes() == _archive(root)[rel]
    assert sorted(p.name for p in (tmp_path / str(OBSID)).iterdir()) == [rel]


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_something_not_a_file_at_the_state_name_is_refused_without_hanging(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, kind: str
) -> None:
    rel = "oif.fits"
    state = _part_with_state(tmp_path, rel, _archive(root)[rel])
    os.mkfifo(state) if kind == "fifo" else state.mkdir()
    results = download(OBSID, "oif", http.base_url, outdir=tmp_path, **FAST)
    (fr,) = results.files
    assert fr.status is Status.FAILED and "not a regular file" in fr.reason, fr.reason
    assert "internal error" not in fr.reason


def test_a_hard_link_planted_at_the_part_name_is_not_written_through(
    http: ArchiveHTTPServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.dat"
    outside.write_bytes(b"precious" * 1000)
    os.link(outside, ours(tmp_path / "out", OBSID, "oif.fits"))
    results = download(OBSID, "oif", http.base_url, outdir=tmp_path / "out", **FAST)
    (fr,) = results.files
    # (20.2) Our name for it is dropped and the file fetched into a .part of our own.
    assert fr.status is Status.DOWNLOADED, fr.reason
    assert outside.read_bytes() == b"precious" * 1000
    assert outside.stat().st_nlink == 1


@pytest.mark.parametrize("split", [0, 16_384], ids=["whole", "split-size"])
def test_a_255_byte_name_downloads_whole_or_split(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, split: int
) -> None:
    results = download(
        OBSID, mirror=http.base_url, outdir=tmp_path, split_threshold=split, jobs=4, **FAST
    )
    fr = next(f for f in results.files if f.relpath == LONG)
    assert fr.ok, fr.reason
    assert (tmp_path / str(OBSID) / LONG).read_bytes() == _archive(root)[LONG]


def test_ctrl_c_ends_the_command_at_once_while_a_listing_still_trickles(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop, trickling = threading.Event(), threading.Event()

    def trickle() -> None:  # an honest Content-Length, then a byte every 0.2 s
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9999\r\n\r\n"
            )
            trickling.set()
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"<")
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    mirror = f"http://127.0.0.1:{server.getsockname()[1]}/cdaftp/"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chandra_download", str(OBSID), "-m", mirror, "--outdir",
         str(tmp_path), "--no-status", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=sigint_as_default,
    )  # fmt: skip
    # On a condition, not a clock: under load the child may take seconds to ask.
    assert trickling.wait(60), "the listing was never asked for"
    time.sleep(0.3)  # a byte or two of the trickle: the listing is under way
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    try:
        _out, err = proc.communicate(timeout=10)
    finally:
        stop.set()
        proc.kill()
        server.close()
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130 and "Keyboard interrupt" in err, err


def test_the_free_space_warning_counts_only_what_is_still_to_fetch(
    http: ArchiveHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from chandra_download import engine, set_verbosity

    assert download(OBSID, mirror=http.base_url, outdir=tmp_path / "full", **FAST).ok
    monkeypatch.setattr(engine, "_free_space", lambda outdir: 50_000)
    log = io.StringIO()
    set_verbosity(0, log)
    download(OBSID, mirror=http.base_url, outdir=tmp_path / "full", **FAST)
    assert "bytes free" not in log.getvalue()  # everything is there: nothing more is needed
    download(OBSID, mirror=http.base_url, outdir=tmp_path / "empty", jobs=1, **FAST)
    assert "more bytes" in log.getvalue() and "bytes free" in log.getvalue()
