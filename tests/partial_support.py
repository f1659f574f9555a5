"""Shared by the partial-file tests (issue 20.9): one jpg of ObsId 1843 (no content check,
so only the site's identity can tell an older copy) at a size of the test's choosing, a
same-size change of it at the archive, and a download of it."""

from __future__ import annotations

import os
from pathlib import Path

from chandra_download import download
from chandra_download.results import FileResult
from chandra_download.simulator import ArchiveHTTPServer, generate_archive, iter_files

JPG = "primary/acisf01843N005_full_img2.jpg"


def serve(tmp_path: Path, size: int) -> tuple[Path, ArchiveHTTPServer]:
    """The jpg's file in a fresh archive (``size`` bytes) and a server of it (not started)."""
    root = generate_archive(
        tmp_path / "archive", {1843: "acis"}, scale=0.05, sizes={"full_img": size}
    )
    return dict(iter_files(root, 1843))[JPG], ArchiveHTTPServer(root)


def change_head(src: Path) -> bytes:
    """The archive's copy changes its first 100 bytes (same size) and its date, a day on."""
    new = bytearray(src.read_bytes())
    new[:100] = bytes(100)
    src.write_bytes(bytes(new))
    st = src.stat()
    os.utime(src, (st.st_atime, st.st_mtime + 86400))
    return bytes(new)


def fetch(server: ArchiveHTTPServer, out: Path, **kw: object) -> FileResult:
    res = download(1843, ["full_img"], mirror=server.base_url, outdir=out, status=False, **kw)
    return next(f for f in res.files if f.relpath == JPG)
