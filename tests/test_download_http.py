"""End-to-end: the public API against the simulated archive over real HTTP(S) sockets."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import warnings
from pathlib import Path

import pytest
from statedir_support import ours

from chandra_download import (
    FILETYPES,
    Status,
    classify,
    download,
    download_chandra_obsids,
    set_verbosity,
)
from chandra_download.results import LocalState
from chandra_download.simulator import ArchiveHTTPServer, Fault
from chandra_download.sources import DEFAULT_SITE, choose_source

ALL = (1843, 2749, 6298)
EVT1 = "secondary/acisf01843_000N005_evt1.fits.gz"
EVT2 = "primary/acisf01843N005_evt2.fits.gz"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def landed(out: Path) -> set[str]:
    """Every file below ``out`` as ``<ObsId>/<relpath>``."""
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    }


def expected(source_files, obsids, keep=lambda t: True) -> dict[str, Path]:
    return {
        f"{o}/{rel}": path
        for o in obsids
        for rel, path in source_files(o).items()
        if keep(classify(rel))
    }


def assert_identical(out: Path, want: dict[str, Path]) -> None:
    assert landed(out) == set(want)
    for rel, src in want.items():
        assert sha(out / rel) == sha(src), rel


# --- whole ObsIds ---------------------------------------------------------------------------


def test_everything_lands_mirroring_subdirectories(archive_http, source_files, tmp_path, fast):
    out = tmp_path / "out"
    results = download(list(ALL), mirror=archive_http.base_url, outdir=out, **fast)
    assert results.ok and results.found == [True, True, True]
    want = expected(source_files, ALL)
    assert_identical(out, want)
    # Depth 2 and 3 directories exist as in the archive.
    assert (out / "2749/primary/responses").is_dir()
    assert (out / "1843/secondary/aspect").is_dir()
    assert (out / "6298/secondary/ephem").is_dir()
    # Per-file results: URL, local path, exact size, type, status.
    files = {f"{f.obsid}/{f.relpath}": f for f in results.files}
    assert set(files) == set(want)
    for rel, f in files.items():
        obsid, inner = rel.split("/", 1)
        assert f.url == f"{archive_http.base_url}byobsid/{int(obsid) % 10}/{rel}"
        assert f.path == out / rel
        assert f.size == want[rel].stat().st_size
        assert f.filetype == classify(inner)
        assert f.status is Status.DOWNLOADED
        assert f.bytes_transferred == f.size
    assert "All 3 ObsId(s) complete" in results.summary()


def test_ciao_function_returns_found_per_obsid_in_order(archive_http, tmp_path, fast):
    out = tmp_path / "o"
    got = download_chandra_obsids(
        ["6298", 99999, 1843], ["oif"], archive_http.base_url, outdir=out, **fast
    )
    assert got == [True, False, True]
    # The missing ObsId did not stop the others and left no directory behind.
    assert landed(out) == {"6298/oif.fits", "1843/oif.fits"}


def test_missing_obsid_is_false_and_not_ok(archive_http, tmp_path, fast):
    results = download([12345], mirror=archive_http.base_url, outdir=tmp_path, **fast)
    assert results.found == [False]
    assert not results.ok
    assert "12345" in results.summary() and "not found" in results.summary()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad", ["", "   ", "18a3", "-5", -5, "1843.0", "0x10", [1843, ""], [1843, "abc"], ["-1"]]
)
def test_invalid_obsids_raise_before_any_request(archive_http, tmp_path, bad):
    with pytest.raises(ValueError, match="ObsId"):
        download_chandra_obsids(bad, mirror=archive_http.base_url, outdir=tmp_path)
    assert sum(archive_http.stats.requests.values()) == 0
    assert archive_http.stats.connections_opened == 0


@pytest.mark.parametrize("kw", [{"filetypes": ["evt2", "nosuch"]}, {"exclude": "evt9"}])
def test_unknown_type_raises_naming_valid_types(archive_http, tmp_path, kw):
    with pytest.raises(ValueError) as info:
        download([1843], mirror=archive_http.base_url, outdir=tmp_path, **kw)
    msg = str(info.value)
    assert all(t in msg for t in ("evt2", "asol", "vvref", "dtf"))
    assert archive_http.stats.connections_opened == 0


# --- file types -----------------------------------------------------------------------------


@pytest.mark.parametrize("ftype", FILETYPES)
def test_each_type_selects_exactly_its_files(archive_http, source_files, tmp_path, fast, ftype):
    want = expected(source_files, ALL, lambda t: t == ftype)
    assert want, f"the default tree has no {ftype} file"
    out = tmp_path / "out"
    results = download(list(ALL), [ftype], archive_http.base_url, outdir=out, **fast)
    assert results.ok
    assert_identical(out, want)
    assert {f.filetype for f in results.files} == {ftype}


def test_type_quirks_end_to_end(archive_http, tmp_path, fast):
    out = tmp_path / "out"
    download(list(ALL), "eph1,dtf,evt1", archive_http.base_url, outdir=out, **fast)
    got = landed(out)
    ephem = {p for p in got if p.startswith("1843/") and p.endswith("_eph1.fits.gz")}
    assert {Path(p).name.split("f", 1)[0] for p in ephem} == {"orbit", "lunar", "solar", "angles"}
    assert "6298/secondary/hrcf06298_000N006_std_dtfstat1.fits.gz" in got  # typed dtf
    assert not any("evt1a" in p for p in got)  # evt1a is its own type


def test_untyped_files_only_when_no_types_asked(archive_http, tmp_path, fast):
    untyped = "1843/secondary/acisf01843_000N005_process.par"
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    download([1843], None, archive_http.base_url, outdir=a, **fast)
    download([1843], ["evt2"], archive_http.base_url, outdir=b, **fast)
    download([1843], None, archive_http.base_url, outdir=c, exclude=["evt1", "vvref"], **fast)
    assert untyped in landed(a)
    assert landed(b) == {f"1843/{EVT2}"}
    assert untyped in landed(c)
    assert not any(classify(p) in ("evt1", "vvref") for p in landed(c))
    assert len(landed(c)) == len(landed(a)) - 2


def test_type_both_requested_and_excluded_is_excluded_with_warning(
    archive_http, tmp_path, fast, caplog
):
    with pytest.warns(UserWarning, match="evt2"):
        results = download(
            [1843], ["evt2", "oif"], archive_http.base_url, outdir=tmp_path, exclude="evt2", **fast
        )
    assert landed(tmp_path) == {"1843/oif.fits"}
    assert results.ok
    assert any(r.levelno == logging.WARNING and "evt2" in r.getMessage() for r in caplog.records)


# --- sites ----------------------------------------------------------------------------------


def test_default_site_is_the_cda():
    source = choose_source(None)
    try:
        assert source.label == DEFAULT_SITE == "https://cxc.cfa.harvard.edu/cdaftp/"
    finally:
        source.close()


def test_env_mirror_used_and_argument_wins(archive_root, archive_http, tmp_path, fast, monkeypatch):
    monkeypatch.setenv("CDA_MIRROR_SITE", archive_http.base_url)
    r = download([1843], "oif", outdir=tmp_path / "env", **fast)
    assert r.found == [True] and r[0].site == archive_http.base_url
    assert archive_http.stats.get_count("byobsid/3/1843/oif.fits") == 1
    with ArchiveHTTPServer(archive_root, prefix="/other/") as other:
        archive_http.stats.reset()
        r = download([1843], "oif", other.base_url, outdir=tmp_path / "arg", **fast)
        assert r.found == [True] and r[0].site == other.base_url
        assert other.stats.get_count("byobsid/3/1843/oif.fits") == 1
    assert sum(archive_http.stats.requests.values()) == 0
    assert landed(tmp_path / "arg") == {"1843/oif.fits"}


# --- hostile listings -----------------------------------------------------------------------


def test_traversal_entries_refused_and_nothing_written_outside(archive_http, tmp_path, fast):
    archive_http.faults.add(Fault("traversal", "byobsid/3/1843/", times=None))
    archive_http.faults.add(Fault("traversal", "byobsid/3/1843/primary/", times=None))
    work = tmp_path / "work"
    out = work / "out"
    out.mkdir(parents=True)
    before = {p for p in Path("/tmp").glob("*evil*")} | {p for p in Path("/").glob("escape*")}
    results = download([1843], ["oif", "evt2"], archive_http.base_url, outdir=out, **fast)
    # Only the ObsId directory was written to, and exactly the real files arrived.
    assert {
        p.relative_to(work).as_posix()
        for p in work.rglob("*")
        if p.is_file() and ".chandra-download" not in p.parts
    } == {
        "out/1843/oif.fits",
        f"out/1843/{EVT2}",
    }
    after = {p for p in Path("/tmp").glob("*evil*")} | {p for p in Path("/").glob("escape*")}
    assert after == before
    r = results[0]
    assert r.found and not r.ok
    failed = [f for f in r.files if f.status is Status.FAILED]
    assert failed, "the hostile entries must be reported"
    names = " ".join(f"{f.relpath} {f.reason}" for f in failed)
    assert "evil.fits" in names and "passwd" in names
    assert all(f.reason for f in failed)
    assert any("Refusing" in (f.reason or "") for f in failed)
    assert {f.relpath for f in r.files if f.ok} == {"oif.fits", EVT2}


# --- existing local files -------------------------------------------------------------------


def test_rerun_transfers_nothing(archive_http, source_files, tmp_path, fast):
    first = download([1843], mirror=archive_http.base_url, outdir=tmp_path, **fast)
    data = sum(f.size for f in first.files)
    archive_http.stats.reset()
    again = download([1843], mirror=archive_http.base_url, outdir=tmp_path, **fast)
    assert again.ok
    assert {f.status for f in again.files} == {Status.PRESENT}
    assert sum(f.bytes_transferred for f in again.files) == 0
    # Listings and tiny status replies only: no file body went over the wire again.
    assert archive_http.stats.bytes_sent < data * 0.05
    assert_identical(tmp_path, expected(source_files, [1843]))


@pytest.mark.parametrize("where", ["target", "part"])
def test_smaller_local_file_is_resumed(archive_http, source_files, tmp_path, fast, where):
    src = source_files(1843)[EVT1]
    whole = src.read_bytes()
    dest = tmp_path / "1843" / EVT1
    dest.parent.mkdir(parents=True)
    keep = len(whole) // 3
    # CIAO leaves partial files at the final name; we leave ours in our hidden directory.
    (dest if where == "target" else ours(tmp_path, 1843, EVT1)).write_bytes(whole[:keep])
    results = download([1843], "evt1", archive_http.base_url, outdir=tmp_path, **fast)
    (f,) = results.files
    assert f.status is Status.RESUMED
    assert f.bytes_transferred == len(whole) - keep
    assert archive_http.stats.bytes_sent < len(whole) - keep + 50_000
    assert sha(dest) == sha(src)
    assert not ours(tmp_path, 1843, EVT1).exists()


@pytest.mark.parametrize("kind", ["ignore_range", "wrong_content_range"])
def test_server_not_honouring_range_means_fetch_from_zero(
    archive_http, source_files, tmp_path, fast, kind
):
    src = source_files(1843)[EVT1]
    whole = src.read_bytes()
    dest = tmp_path / "1843" / EVT1
    dest.parent.mkdir(parents=True)
    dest.write_bytes(whole[: len(whole) // 2])
    archive_http.faults.add(Fault(kind, "*_evt1.fits.gz", times=None))
    results = download([1843], "evt1", archive_http.base_url, outdir=tmp_path, **fast)
    (f,) = results.files
    assert f.ok, f.reason
    assert ("http", f"byobsid/3/1843/{EVT1}", kind) in archive_http.faults.fired
    assert dest.stat().st_size == len(whole)  # never appended to the partial copy
    assert sha(dest) == sha(src)


def test_larger_local_file_is_warned_about_and_left_alone(
    archive_http, source_files, tmp_path, fast, caplog
):
    src = source_files(1843)[EVT2]
    dest = tmp_path / "1843" / EVT2
    dest.parent.mkdir(parents=True)
    mine = src.read_bytes() + b"local additions"
    dest.write_bytes(mine)
    results = download([1843], "evt2", archive_http.base_url, outdir=tmp_path, **fast)
    (f,) = results.files
    assert f.status is Status.SKIPPED
    assert "larger" in f.reason
    assert dest.read_bytes() == mine
    assert not ours(tmp_path, 1843, EVT2).exists()
    assert any(r.levelno >= logging.WARNING and EVT2 in r.getMessage() for r in caplog.records)
    assert not results.ok and "larger" in results.summary()


# --- HTTPS ----------------------------------------------------------------------------------


def test_https_with_ca_bundle(archive_https, source_files, tmp_path, fast, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    r = download(
        [1843],
        "evt2,oif",
        archive_https.base_url,
        outdir=tmp_path,
        ca_bundle=archive_https.ca_file,
        **fast,
    )
    assert r.ok
    assert_identical(tmp_path, expected(source_files, [1843], lambda t: t in ("evt2", "oif")))


def test_https_with_ssl_cert_file(archive_https, tmp_path, fast, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", archive_https.ca_file)
    assert download_chandra_obsids(
        [1843], ["oif"], archive_https.base_url, outdir=tmp_path, **fast
    ) == [True]
    assert landed(tmp_path) == {"1843/oif.fits"}


def test_https_untrusted_certificate_is_refused(archive_https, tmp_path, fast, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    r = download([1843], mirror=archive_https.base_url, outdir=tmp_path, **fast)
    assert r.found == [False]
    assert "certificate" in (r[0].error or "").lower()
    assert "certificate" in r.summary().lower() or "could not be listed" in r.summary()
    assert list(tmp_path.iterdir()) == []


# --- output ---------------------------------------------------------------------------------


def test_library_is_silent_by_default(archive_http, tmp_path, fast, capsys):
    download_chandra_obsids([1843, 99999], ["oif"], archive_http.base_url, outdir=tmp_path, **fast)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_set_verbosity_prints_ciao_lines(archive_http, source_files, tmp_path, fast, capsys):
    set_verbosity(1)
    download_chandra_obsids([1843], None, archive_http.base_url, outdir=tmp_path, **fast)
    out = capsys.readouterr().out
    total = sum(p.stat().st_size for p in source_files(1843).values())
    assert f"Downloading files for ObsId 1843, total size is {round(total / 2**20)} Mb." in out
    rows = [line for line in out.splitlines() if line.startswith("  ") and "#" * 20 in line]
    assert len(rows) == len(source_files(1843))  # CIAO's table: one row per file
    set_verbosity(0)
    download_chandra_obsids([1843], None, archive_http.base_url, outdir=tmp_path, **fast)
    assert capsys.readouterr().out == ""


def test_standard_logging_captures_output(archive_http, tmp_path, fast, caplog, capsys):
    caplog.set_level(logging.INFO, logger="chandra_download")
    download_chandra_obsids([1843], ["evt2"], archive_http.base_url, outdir=tmp_path, **fast)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("chandra_download")]
    assert any(m.startswith("Downloading files for ObsId 1843, total size is") for m in messages)
    assert any("\n  evt2     fits " in m for m in messages)  # CIAO's row of the evt2 file
    assert capsys.readouterr().out == ""


# --- event loops ----------------------------------------------------------------------------


def test_sync_api_inside_a_running_event_loop(archive_http, tmp_path, fast):
    async def notebook_cell() -> list[bool]:
        assert asyncio.get_running_loop().is_running()
        return download_chandra_obsids(
            [1843, 4], ["oif"], archive_http.base_url, outdir=tmp_path, **fast
        )

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. a never-awaited coroutine
        assert asyncio.run(notebook_cell()) == [True, False]
    assert landed(tmp_path) == {"1843/oif.fits"}
    assert os.path.getsize(tmp_path / "1843/oif.fits") > 0


# --- list only ------------------------------------------------------------------------------


def test_list_only_writes_nothing_and_reports_sizes(
    archive_http, source_files, tmp_path, fast, snapshot
):
    files = source_files(1843)
    (tmp_path / "1843").mkdir()
    (tmp_path / "1843" / "oif.fits").write_bytes(files["oif.fits"].read_bytes())
    before = snapshot(tmp_path)
    archive_http.faults.add(Fault("status", "*_evt2.fits.gz", status=404, times=None))
    results = download(
        [1843, 99999],
        ["oif", "evt1", "evt2"],
        archive_http.base_url,
        outdir=tmp_path,
        list_only=True,
        **fast,
    )
    assert snapshot(tmp_path) == before
    assert results.found == [True, False]
    got = {f.relpath: f for f in results[0].files}
    assert got["oif.fits"].status is Status.PLANNED and got["oif.fits"].local is LocalState.COMPLETE
    assert got[EVT1].status is Status.PLANNED and got[EVT1].local is LocalState.MISSING
    assert got["oif.fits"].reason is None and got[EVT1].reason is None  # display apart
    assert got[EVT1].size == files[EVT1].stat().st_size  # exact, not the listing's rounding
    # A listed file the server then cannot give is a failure with its reason, not a crash.
    assert got[EVT2].status is Status.FAILED
    assert "404" in got[EVT2].reason and "internal error" not in got[EVT2].reason
    assert archive_http.stats.get_count("*.fits*", method="GET") == 0
