"""Data reaches the disk before a name or a state file vouches for it (``fsync``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chandra_download import download
from chandra_download.simulator import generate_archive, iter_files
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.statedir import Spot

OBSID = 1843
FAST = dict(retries=0, timeout=5.0, backoff=0.01)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("durable-archive")
    return generate_archive(out, {OBSID: "acis"}, scale=0.1, sizes={"evt1": 3_000_000})


@pytest.fixture
def server(root: Path) -> Iterator[ArchiveHTTPServer]:
    with ArchiveHTTPServer(root) as srv:
        yield srv


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str]]:
    """Every fsync/fdatasync (with the path of its descriptor) and rename under tmp_path."""
    seen: list[tuple[str, str]] = []
    real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "replace", "rename")}

    def syncer(name: str):
        def sync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if path.startswith(str(tmp_path)):
                seen.append((name, path))
            real[name](fd)

        return sync

    def full(name: os.PathLike | str, dir_fd: int | None) -> str:
        return str(name) if dir_fd is None else f"{os.readlink(f'/proc/self/fd/{dir_fd}')}/{name}"

    def renamer(kind: str):
        def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None) -> None:  # type: ignore[no-untyped-def]
            real[kind](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            whole = (full(src, src_dir_fd), full(dst, dst_dir_fd))
            if whole[1].startswith(str(tmp_path)):
                seen.append(("replace", f"{whole[0]} -> {whole[1]}"))

        return rename

    monkeypatch.setattr(os, "fsync", syncer("fsync"))
    monkeypatch.setattr(os, "fdatasync", syncer("fdatasync"))
    monkeypatch.setattr(os, "replace", renamer("replace"))
    monkeypatch.setattr(os, "rename", renamer("rename"))
    return seen


def _finals(root: Path, out: Path) -> list[Path]:
    return [out / str(OBSID) / rel for rel, _ in iter_files(root, OBSID)]


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name descriptors")
def test_each_file_is_flushed_before_its_rename_and_its_directory_after(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path, events: list[tuple[str, str]]
) -> None:
    out = tmp_path / "out"
    assert download(OBSID, mirror=server.base_url, outdir=out, split_threshold=0, **FAST).ok
    for final in _finals(root, out):
        part = str(Spot(out, str(OBSID), final.relative_to(out / str(OBSID)).as_posix()).part)
        rename = events.index(("replace", f"{part} -> {final}"))
        assert ("fsync", part) in events[:rename], final.name
        assert ("fsync", str(final.parent)) in events[rename:], final.name


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name descriptors")
def test_split_state_is_saved_only_after_the_data_it_claims(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path, events: list[tuple[str, str]]
) -> None:
    out = tmp_path / "out"
    opts = dict(split_threshold=1_000_000, jobs=4, **FAST)
    assert download(OBSID, mirror=server.base_url, outdir=out, **opts).ok
    (big,) = [f for f in _finals(root, out) if f.name.endswith("evt1.fits.gz")]
    spot = Spot(out, str(OBSID), big.relative_to(out / str(OBSID)).as_posix())
    part, state = str(spot.part), str(spot.state)
    saves = [i for i, e in enumerate(events) if e == ("replace", f"{state}.tmp -> {state}")]
    assert len(saves) >= 5  # the plan, then at least once for each of the four parts
    previous = 0
    for i in saves:
        assert ("fdatasync", part) in events[previous:i]
        assert ("fsync", f"{state}.tmp") in events[previous:i]
        previous = i


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name descriptors")
def test_no_fsync_when_turned_off(
    server: ArchiveHTTPServer, root: Path, tmp_path: Path, events: list[tuple[str, str]]
) -> None:
    out = tmp_path / "out"
    opts = dict(split_threshold=1_000_000, jobs=4, fsync=False, **FAST)
    assert download(OBSID, mirror=server.base_url, outdir=out, **opts).ok
    assert [e for e in events if e[0] != "replace"] == []
    assert sum(e[0] == "replace" for e in events) >= len(_finals(root, out))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name descriptors")
@pytest.mark.parametrize("flag", [[], ["--no-fsync"]], ids=["default", "no-fsync"])
def test_command_line_flushes_unless_told_not_to(
    server: ArchiveHTTPServer, tmp_path: Path, events: list[tuple[str, str]], flag: list[str]
) -> None:
    from chandra_download.cli import main

    out = tmp_path / "out"
    args = [str(OBSID), "evt1", "--mirror", server.base_url, "--outdir", str(out), "-q"]
    assert main([*args, "--no-progress", "--split-size", "0", *flag]) == 0
    synced = [path for kind, path in events if kind == "fsync" and path.endswith(".part")]
    assert len(synced) == (0 if flag else 1)


@pytest.mark.parametrize(("code", "passes"), [("EINVAL", True), ("ENOTSUP", True), ("EIO", False)])
def test_file_systems_without_fsync_still_work_but_lost_writes_fail(
    server: ArchiveHTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    passes: bool,
) -> None:
    import errno

    def refuse(fd: int) -> None:
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(os, "fsync", refuse)
    monkeypatch.setattr(os, "fdatasync", refuse)
    results = download(OBSID, "evt1", mirror=server.base_url, outdir=tmp_path, **FAST)
    (fr,) = results[0].files
    final = tmp_path / str(OBSID) / fr.relpath
    assert results.ok is passes and final.exists() is passes, fr.reason
    if not passes:
        assert "Input/output error" in (fr.reason or "")
