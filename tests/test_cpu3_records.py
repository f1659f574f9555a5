"""The session's fold of its own journal lines (issue 19.4): a line this session's book
wrote is neither parsed nor dumped again, and a rival's line among them is still folded.
Counted, not timed: a saving lost fails here."""

from __future__ import annotations

import json
import os
from pathlib import Path

from chandra_download import record
from chandra_download.record import RecordBook, journal_path, load, record_path, record_session
from chandra_download.results import FileResult, ObsIdResult, Status

OBSID = 1843
RELS = [f"primary/f{i}_evt2.fits.gz" for i in range(4)]


def _files(out: Path) -> list[FileResult]:
    files = []
    for i, rel in enumerate(RELS):
        path = out / str(OBSID) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (10 + i))
        fr = FileResult(OBSID, rel, f"https://h/{rel}", path, "evt2", size=10 + i,
                        status=Status.DOWNLOADED)  # fmt: skip
        fr.sha256, fr.etag = f"{i:064x}", f'"{i}"'
        files.append(fr)
    return files


def test_the_fold_parses_and_dumps_no_line_its_book_wrote(tmp_path, monkeypatch):
    files, book = _files(tmp_path), RecordBook()
    for fr in files[:3]:
        book.journal(fr, os.stat(fr.path), True)
    rival = files[3]
    RecordBook().journal(rival, os.stat(rival.path), True)  # another process's line
    parsed: list[object] = []
    real_entry, real_dumps = record._entry, record._dumps
    monkeypatch.setattr(record, "_entry", lambda item: parsed.append(item) or real_entry(item))
    dumped: list[object] = []
    monkeypatch.setattr(record, "_dumps", lambda doc: dumped.append(doc) or real_dumps(doc))
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=files)], True, False, book)
    assert [item["relpath"] for item in parsed] == [rival.relpath]  # type: ignore[index]
    assert [doc["relpath"] for doc in dumped] == [rival.relpath]  # type: ignore[index]
    assert not journal_path(tmp_path, OBSID).exists()
    recs = load(tmp_path, OBSID)
    assert {r: (recs[r].size, recs[r].sha256, recs[r].etag) for r in RELS} == {
        fr.relpath: (fr.size, fr.sha256, fr.etag) for fr in files
    }
    doc = json.loads(record_path(tmp_path, OBSID).read_text())
    assert [f["relpath"] for f in doc["files"]] == RELS


def test_a_line_of_the_book_changed_on_disk_is_parsed_as_found(tmp_path):
    """Only the exact bytes the book wrote are taken from it: a line altered since (here
    its size, by hand) is read as the journal holds it."""
    files, book = _files(tmp_path), RecordBook()
    for fr in files:
        book.journal(fr, os.stat(fr.path), True)
    path = journal_path(tmp_path, OBSID)
    lines = path.read_bytes().splitlines()
    entry = json.loads(lines[0])
    entry["size"] = 999
    path.write_bytes(b"\n".join([json.dumps(entry).encode(), *lines[1:]]) + b"\n")
    record_session(tmp_path, [ObsIdResult(OBSID, found=True, files=files[1:])], True, False, book)
    assert load(tmp_path, OBSID)[RELS[0]].size == 999
