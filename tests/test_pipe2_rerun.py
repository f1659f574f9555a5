"""A nothing-to-do re-run costs its listings only (issue 19.3): files its batches saw complete
and vouched for are settled present without a job or a request; anything else still goes
through its job (a damaged copy is fetched again, a copy changed at the archive too)."""

from __future__ import annotations

import hashlib
import os

from chandra_download import Status, download
from chandra_download import engine as engine_mod
from chandra_download.simulator import ArchiveHTTPServer
from chandra_download.statedir import Spot

OBSID = 1843
OPTS = {"timeout": 10.0, "retries": 2, "backoff": 0.01, "backoff_max": 0.05, "jobs": 2}


def _counting_jobs(monkeypatch) -> list[str]:
    made: list[str] = []
    real = engine_mod.FileJob

    def job(ctx, source, remote, fr):
        made.append(fr.relpath)
        return real(ctx, source, remote, fr)

    monkeypatch.setattr(engine_mod, "FileJob", job)
    return made


def _file_requests(server: ArchiveHTTPServer) -> dict:
    return {k: n for k, n in server.stats.requests.items() if not k[1].endswith("/")}


def test_a_rerun_with_nothing_to_do_makes_no_job_and_no_file_request(
    archive_root, source_files, tmp_path, monkeypatch
):
    with ArchiveHTTPServer(archive_root) as server:
        assert download(OBSID, mirror=server.base_url, outdir=tmp_path, **OPTS).ok
        made = _counting_jobs(monkeypatch)
        server.stats.reset()
        again = download(OBSID, mirror=server.base_url, outdir=tmp_path, **OPTS)
    small = {f.relpath for f in again[0].files if (f.size or 0) < 256 << 10}
    assert {f.status for f in again[0].files} == {Status.PRESENT}
    assert not small & set(made)  # the small files (in batches) made no job at all
    assert not _file_requests(server)  # no HEAD, no GET: the listings only
    for f in again[0].files:
        assert f.size == source_files(OBSID)[f.relpath].stat().st_size
        assert f.local_size == f.size


def test_a_copy_nothing_vouches_for_still_goes_through_its_job(
    archive_root, source_files, tmp_path, monkeypatch
):
    """Same size, other bytes, touched since the record: neither the record nor its check
    vouches for it, so its job asks the site (a HEAD) and decides as ever."""
    with ArchiveHTTPServer(archive_root) as server:
        assert download(OBSID, mirror=server.base_url, outdir=tmp_path, **OPTS).ok
        rel = next(r for r in sorted(source_files(OBSID)) if r.endswith(".fits.gz"))
        path = tmp_path / str(OBSID) / rel
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(1, 1))
        made = _counting_jobs(monkeypatch)
        server.stats.reset()
        again = download(OBSID, mirror=server.base_url, outdir=tmp_path, **OPTS)
    by = {f.relpath: f for f in again[0].files}
    assert by[rel].status is Status.PRESENT  # (same size: only --repair fetches it anew)
    assert rel in made
    heads = {p for (m, p), n in _file_requests(server).items() if m == "HEAD"}
    assert [h for h in heads if h.endswith(rel)] and len(heads) == 1
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(bytes(data)).digest()


def test_a_rerun_looks_at_the_final_file_alone_when_nothing_of_ours_is_there(
    archive_root, source_files, tmp_path, monkeypatch
):
    """The listing's pass over the ObsId saw no .part or state file: each file's batch
    looks at its final file only (no look() for .part and state file per file); a file with
    a .part left beside it is still looked at whole, and its leftover dealt with."""
    with ArchiveHTTPServer(archive_root) as server:
        assert download(OBSID, mirror=server.base_url, outdir=tmp_path, **OPTS).ok
        looked: list[str] = []
        real = engine_mod.look

        def look(spot, *dirs):
            looked.append(spot.relpath)
            return real(spot, *dirs)

        monkeypatch.setattr(engine_mod, "look", look)
        again = download(OBSID, mirror=server.base_url, outdir=tmp_path, **OPTS)
        assert {f.status for f in again[0].files} == {Status.PRESENT}
        assert looked == []
        small = min(source_files(OBSID), key=lambda r: source_files(OBSID)[r].stat().st_size)
        spot = Spot(tmp_path, str(OBSID), small)
        spot.part.write_bytes(b"left by an older run")
        third = download(OBSID, mirror=server.base_url, outdir=tmp_path, **OPTS)
    assert looked == [small]
    assert {f.status for f in third[0].files} == {Status.PRESENT}
    assert not spot.part.exists()  # (its job cleaned it up)
