"""Less CPU per file in the records (issue 19.4): a file's journal line costs no directory
made per file, and the session's fold takes a file journaled this session from its line
instead of recording it a second time. Counted, not timed: a saving lost fails here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from chandra_download import record
from chandra_download.record import RecordBook, journal_path, load, record_path, record_session
from chandra_download.results import FileResult, ObsIdResult, Status

OBSID = 1843
RELS = [f"primary/f{i}_evt2.fits.gz" for i in range(3)] + ["secondary/aspect/a_asol1.fits.gz"]


def _files(out: Path, status: Status = Status.DOWNLOADED) -> list[FileResult]:
    files = []
    for i, rel in enumerate(RELS):
        path = out / str(OBSID) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (10 + i))
        fr = FileResult(OBSID, rel, f"https://h/{rel}", path, "evt2", size=10 + i, status=status)
        fr.sha256, fr.etag = f"{i:064x}", f'"{i}"'
        files.append(fr)
    return files


def _journal_all(book: RecordBook, files: list[FileResult]) -> None:
    for fr in files:
        book.journal(fr, os.stat(fr.path), True)


def test_journal_lines_make_the_records_directory_once(tmp_path, monkeypatch):
    made: list[Path] = []
    real = Path.mkdir

    def counted(self: Path, *args: object, **kwargs: object) -> None:
        made.append(self)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", counted)
    files, book = _files(tmp_path), RecordBook()
    book.journal(files[0], os.stat(files[0].path), True)
    assert made  # the records directory, made for the first line
    made.clear()
    _journal_all(book, files[1:])
    assert made == []
    assert set(load(tmp_path, OBSID)) == set(RELS)


def test_a_journal_directory_removed_mid_session_is_made_again(tmp_path):
    files = _files(tmp_path)
    book = RecordBook()
    book.journal(files[0], os.stat(files[0].path), True)
    shutil.rmtree(journal_path(tmp_path, OBSID).parent)
    _journal_all(book, files[1:])
    assert set(load(tmp_path, OBSID)) == set(RELS[1:])


def test_the_fold_takes_this_sessions_journal_lines_as_they_are(tmp_path, monkeypatch):
    files = _files(tmp_path)
    _journal_all(RecordBook(), files)
    calls: list[str] = []
    real = record._record_of

    def counted(fr: FileResult, *args: object) -> record.FileRecord:
        calls.append(fr.relpath)
        return real(fr, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(record, "_record_of", counted)
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=files)], True, fsync=False)
    assert calls == []
    assert not journal_path(tmp_path, OBSID).exists()
    recs = load(tmp_path, OBSID)
    assert {r: (recs[r].size, recs[r].sha256, recs[r].etag) for r in RELS} == {
        fr.relpath: (fr.size, fr.sha256, fr.etag) for fr in files
    }


@pytest.mark.parametrize("touch", ["size", "sha256"])
def test_a_file_unlike_its_journal_line_is_recorded_anew(tmp_path, touch):
    files = _files(tmp_path)
    _journal_all(RecordBook(), files)
    fr = files[1]
    if touch == "size":
        fr.path.write_bytes(b"other bytes, more of them")
    else:
        fr.sha256 = "f" * 64  # fetched again after its line (a retry elsewhere)
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=files)], True, fsync=False)
    rec = load(tmp_path, OBSID)[fr.relpath]
    assert (rec.size, rec.sha256) == (fr.path.stat().st_size, fr.sha256)


def test_the_record_is_json_with_one_file_per_line(tmp_path):
    files = _files(tmp_path)
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=files)], True, fsync=False)
    text = record_path(tmp_path, OBSID).read_text()
    doc = json.loads(text)
    assert doc["schema"] == record.SCHEMA and doc["obsid"] == OBSID
    assert [f["relpath"] for f in doc["files"]] == sorted(RELS)
    lines = text.splitlines()
    assert len(lines) == len(RELS) + 2
    assert all(json.loads(line.rstrip(","))["relpath"] in RELS for line in lines[1:-1])


@pytest.mark.parametrize("relative", [False, True])
def test_the_record_of_an_obsid_is_loaded_once_per_session(tmp_path, monkeypatch, relative):
    files = _files(tmp_path)
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=files)], True, fsync=False)
    if relative:
        monkeypatch.chdir(tmp_path)
        for fr in files:
            fr.path = Path(str(OBSID), fr.relpath)
    loads: list[Path] = []
    real = record.load
    monkeypatch.setattr(
        record, "load", lambda outdir, obsid: loads.append(outdir) or real(outdir, obsid)
    )
    book = RecordBook()
    got = [book.get(fr) for fr in files for _ in range(3)]
    assert loads == [Path(".") if relative else tmp_path]
    assert [rec.relpath if rec else None for rec in got] == [
        fr.relpath for fr in files for _ in range(3)
    ]


def test_a_file_journaled_without_its_sha256_is_read_back_at_the_fold(tmp_path):
    import hashlib

    files = _files(tmp_path)
    for fr in files:
        fr.sha256 = None  # (no hash as it came: the fold reads a small file back)
    _journal_all(RecordBook(), files)
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=files)], True, fsync=False)
    recs = load(tmp_path, OBSID)
    assert {fr.relpath: recs[fr.relpath].sha256 for fr in files} == {
        fr.relpath: hashlib.sha256(fr.path.read_bytes()).hexdigest() for fr in files
    }


def test_the_sessions_fold_does_not_parse_again_a_record_the_run_loaded(tmp_path, monkeypatch):
    """A re-run's end: the records each ObsId's run loaded are not read and parsed again,
    and a present file whose entry is unchanged is kept as the same entry (no copy made)."""
    files = _files(tmp_path)
    book = RecordBook()
    _journal_all(book, files)
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=files)], True, False)
    before = record_path(tmp_path, OBSID).read_text()

    recorded = load(tmp_path, OBSID)
    present = _files(tmp_path, Status.PRESENT)  # (the same bytes written again...)
    for fr in present:
        os.utime(fr.path, ns=(0, recorded[fr.relpath].mtime_ns))  # (...and their mtime)
    book = RecordBook()
    entries = [book.get(fr) for fr in present]  # what the run's lookups load
    assert all(entries)
    parsed = []
    real = record._parse
    monkeypatch.setattr(record, "_parse", lambda text: parsed.append(1) or real(text))
    made = []
    real_replace = record.replace
    monkeypatch.setattr(record, "replace", lambda *a, **k: made.append(1) or real_replace(*a, **k))
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=present)], True, False, book)
    assert parsed == [] and made == []
    assert record_path(tmp_path, OBSID).read_text() == before
