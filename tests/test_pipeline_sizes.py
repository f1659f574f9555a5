"""Pipelined answers are told apart by their sizes (issue 19.1): an HTTP answer does not
say which request it answers, so two files whose listed sizes could pass for each other's
never share a pipeline. Against a server exchanging two answers (neither given twice), the
only disorder that sizes alone can reveal."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
from pathlib import Path

from chandra_download import download
from chandra_download.results import FileResult
from chandra_download.simulator import ArchiveHTTPServer, Fault, generate_archive, iter_files
from chandra_download.simulator.listing_html import apache_size
from chandra_download.sources.pipeline import gzip_name, split_batches

OBSID = 1843
OPTS = {"timeout": 10.0, "retries": 2, "backoff": 0.01, "backoff_max": 0.05}
FALLBACK = "requests go one at a time from now on"


def _assert_intact(results, out: Path, source_files) -> None:
    assert results.ok, [(f.relpath, f.reason) for f in results[0].files if f.reason]
    for rel, src in source_files(OBSID).items():
        got = (out / str(OBSID) / rel).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(src.read_bytes()).digest(), rel


def _alike(source_files) -> list[str]:
    """The gzip files of the ObsId's most common listed size."""
    sizes = {rel: apache_size(p.stat().st_size) for rel, p in source_files(OBSID).items()}
    common = max(set(sizes.values()), key=list(sizes.values()).count)
    return [rel for rel, size in sizes.items() if size == common and rel.endswith(".gz")]


def _exchanged_run(root: Path, out: Path, caplog, files: list[str]) -> tuple[object, int]:
    """A download from a server exchanging the answers of pipelined requests for ``files``
    with the answers of the requests behind them."""
    with ArchiveHTTPServer(root) as server:
        for rel in files:
            server.faults.add(Fault("pipeline_exchange", rel, times=None))
        with caplog.at_level(logging.DEBUG, logger="chandra_download"):
            results = download(OBSID, mirror=server.base_url, outdir=out, jobs=1, **OPTS)
        return results, server.stats.pipelined


def test_the_archive_has_many_small_files_of_one_listed_size(source_files):
    """What makes the tests below bite: sizes alone cannot tell these files' answers apart."""
    assert len(_alike(source_files)) >= 16  # two whole pipelines of them


def test_exchanged_gzip_answers_are_told_by_their_names(
    archive_root, source_files, tmp_path, caplog
):
    """Answers exchanged in pairs (none given twice) between gzip files of one listed size,
    which sizes cannot tell apart: each body passes its gzip and FITS checks. The gzip header's file name
    tells; every file holds its own bytes (on the code before: exchanged on disk, exit 0)."""
    results, pipelined = _exchanged_run(archive_root, tmp_path, caplog, _alike(source_files))
    assert pipelined > 0  # the site was pipelined: the fault had its chance
    _assert_intact(results, tmp_path, source_files)
    said = [r.getMessage() for r in caplog.records if FALLBACK in r.getMessage()]
    assert len(said) == 1, said


def _unname_gzip_files(root: Path, source_files) -> None:
    """The archive's gzip files again, their headers naming no file (as some gzips write)."""
    for src in source_files(OBSID).values():
        if src.name.endswith(".gz"):
            data = gzip.decompress(src.read_bytes())
            src.write_bytes(gzip.compress(data, mtime=0))
            assert gzip_name(src.read_bytes()) is None


def test_exchanged_answers_of_unnamed_gzip_files_are_told_by_sizes(tmp_path, caplog):
    """Gzip files that do not name themselves: once one such answer is seen, batches hold
    only files whose listed sizes differ, and an exchange shows by a size."""
    root = generate_archive(tmp_path / "archive", {OBSID: "acis"})  # its own: changed here

    def source_files(obsid: int) -> dict[str, Path]:
        return dict(iter_files(root, obsid))

    _unname_gzip_files(root, source_files)
    out = tmp_path / "out"
    results, pipelined = _exchanged_run(root, out, caplog, _alike(source_files))
    assert pipelined > 0
    _assert_intact(results, out, source_files)


def test_gzip_name_reads_the_header():
    named = gzip.compress(b"x")  # no name
    assert gzip_name(named) is None
    buf = io.BytesIO()
    with gzip.GzipFile("acisf01843N005_evt2.fits", "wb", fileobj=buf, mtime=0) as gz:
        gz.write(b"x")
    assert gzip_name(buf.getvalue()) == "acisf01843N005_evt2.fits"
    assert gzip_name(b"not gzip at all") is None
    assert gzip_name(buf.getvalue()[:15]) is None  # a name cut short


def _fr(rel: str, size: int) -> FileResult:
    return FileResult(OBSID, rel, f"http://x/{rel}", None, "evt2", size=size)  # type: ignore[arg-type]


def test_no_two_files_of_a_batch_have_overlapping_size_windows():
    """Files of sizes 100..139 whose windows are size//10*10 .. +9: a batch never holds two of
    one decade, all files are kept, in batches of at most the depth."""
    files = [_fr(f"f{i}", 100 + i) for i in range(40)]
    window = {fr.relpath: (fr.size // 10 * 10, fr.size // 10 * 10 + 9) for fr in files}
    singles, batches = split_batches(files, 8, lambda fr: window[fr.relpath])
    got = sorted(fr.relpath for fr in singles + [f for b in batches for f in b])
    assert got == sorted(fr.relpath for fr in files)
    assert batches and all(2 <= len(b) <= 4 for b in batches)  # 4 decades: 4 at most
    for b in batches:
        decades = [window[fr.relpath][0] for fr in b]
        assert len(set(decades)) == len(decades), decades


def test_without_windows_batches_fill_to_the_depth():
    files = [_fr(f"f{i}", 100) for i in range(16)]
    singles, batches = split_batches(files, 8)
    assert not singles and [len(b) for b in batches] == [8, 8]
