"""Records of what was fetched: one JSON file per ObsId, always kept.

``<outdir>/.chandra-download/records/<ObsId>.json`` holds, per file: its size, sha256,
processing version, the site's ``Last-Modified``/``ETag`` where it gave them, what was checked
(``verified``, ``kept as served``, ``no content check``) and the local file's mtime when it was
recorded. With it a re-run and ``--check`` tell a file the archive changed under the same name
("changed at the archive since it was fetched") from an interrupted download or local damage,
and ``--check`` remembers a file kept as served.

Each file is also recorded the moment it is done (durable under its final name): one JSON
line appended to ``<ObsId>.journal`` beside the record (``O_APPEND``, no fsync: the data's
own fsync is what matters, and a line lost with the page cache only costs a read-back), so a
run killed with SIGKILL leaves a record of every file it finished. :func:`load` reads the
journal after the record (a torn last line is ignored); the session's end folds it into the
record and removes it.

The hidden directory is ours: the archive's names all live under ``<outdir>/<ObsId>/``, so no
listed name can collide with a record. Records are written by temp file and rename, and
merged by re-reading just before each write, so rival processes on a file system without
locks each add their files; a damaged record is dropped with a message (it is only memory:
the data files are untouched) and rebuilt by the next run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from .log import vlog
from .results import FileResult, Status
from .revisions import processing_version
from .statedir import Spot
from .verify import is_fits_name

#: Below the output directory: ours, beside the archive's ``<ObsId>/`` trees.
RECORDS = Path(".chandra-download") / "records"
SCHEMA = 1

#: Files up to this size whose sha256 the transfer did not give are read back for the record;
#: larger ones are recorded without (a manifest computes it when asked): a read-back of a
#: 2 GB file costs a sixth of its download on a fast link.
READ_BACK_LIMIT = 16 * 2**20

VERIFIED = "verified"
KEPT = "kept as served"
NO_CHECK = "no content check"


@dataclass(frozen=True)
class FileRecord:
    """What was fetched for one file (``relpath`` below ``<outdir>/<ObsId>/``)."""

    relpath: str
    size: int
    sha256: str | None
    version: int | None
    last_modified: str | None
    etag: str | None
    checked: str
    url: str | None
    #: The local file's mtime (ns) when recorded: a later one means it was touched since.
    mtime_ns: int
    #: When it was recorded (UTC, ISO 8601).
    recorded: str
    #: The date the site's HTML listing showed for it then (absent from older records).
    listed_date: str | None = None

    def describes(self, path: Path) -> bool:
        """Whether the local file at ``path`` is still the one recorded (size and mtime)."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


def record_path(outdir: Path, obsid: int) -> Path:
    """Where one ObsId's record lives."""
    return Path(outdir) / RECORDS / f"{obsid}.json"


def journal_path(outdir: Path, obsid: int) -> Path:
    """Where one ObsId's journal lives: the files recorded as they were done."""
    return Path(outdir) / RECORDS / f"{obsid}.journal"


def load(outdir: Path, obsid: int) -> dict[str, FileRecord]:
    """One ObsId's record by relpath, with its journal's lines over it (they are newer);
    empty when there is none. A damaged record is said once and treated as none (the next
    write replaces it)."""
    recs = _load_record(outdir, obsid)
    recs.update(_read_journal(journal_path(outdir, obsid))[0])
    return recs


def _load_record(outdir: Path, obsid: int) -> dict[str, FileRecord]:
    path = record_path(outdir, obsid)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return {}  # the output directory's own problem, told by its files
        vlog(0, "cannot read the record %s (%s); ignoring it", path, exc.strerror)
        return {}
    try:
        return _parse(text)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        vlog(0, "the record %s is damaged (%s); it is discarded and rebuilt", path, exc)
        return {}


def _parse(text: str) -> dict[str, FileRecord]:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError("not a record of this version")
    out = {}
    for item in data["files"]:
        rec = _entry(item)
        out[rec.relpath] = rec
    return out


_FIELDS = tuple(f.name for f in fields(FileRecord))
_NAMES = frozenset(_FIELDS)
_REQUIRED = frozenset(f.name for f in fields(FileRecord) if f.default is MISSING)


def _as_dict(rec: FileRecord) -> dict[str, object]:
    """An entry as JSON's dict: its fields are plain values (``dataclasses.asdict``'s deep
    copy cost more than the rest of a small file's journal line)."""
    return {name: getattr(rec, name) for name in _FIELDS}


#: One encoder for every entry (``json.dumps`` with arguments makes one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _dumps(doc: object) -> str:
    """Compact JSON by the C encoder (``indent`` would take the pure-Python one)."""
    return _ENCODER.encode(doc)


def _entry(item: object) -> FileRecord:
    """One file's entry of a record or journal line; ValueError when it is not one."""
    if not isinstance(item, dict) or not _REQUIRED <= item.keys():
        raise ValueError("an entry lacks fields")
    rec = FileRecord(**{k: item[k] for k in _NAMES if k in item})
    if not isinstance(rec.relpath, str) or not isinstance(rec.size, int):
        raise ValueError("an entry has wrong types")
    if not isinstance(rec.mtime_ns, int):
        raise ValueError("an entry has wrong types")
    return rec


#: A journal larger than this is not read (it is only memory: the next run re-records).
MAX_JOURNAL = 64 * 2**20


def _read_journal(
    path: Path, known: Mapping[bytes, FileRecord] | None = None
) -> tuple[dict[str, FileRecord], tuple[int, int] | None]:
    """A journal's entries (later lines win; lines that are not entries, such as a line torn
    by a crash, are skipped) and the (inode, size) it was read at; None when there is none.
    ``known``: lines this process wrote, with their entries (not parsed again)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}, None  # none (or unreadable: only memory, re-recorded by the next run)
    try:
        st = os.fstat(fd)
        data = b"" if st.st_size > MAX_JOURNAL else os.read(fd, st.st_size)
    except OSError:
        return {}, None
    finally:
        os.close(fd)
    out: dict[str, FileRecord] = {}
    for line in data.split(b"\n"):
        rec = known.get(line) if known else None
        if rec is None:
            try:
                rec = _entry(json.loads(line))
            except (ValueError, TypeError, KeyError):
                continue  # a torn or foreign line: the file is re-recorded when next seen
        out[rec.relpath] = rec
    return out, (st.st_ino, len(data))


def _forget_journal(path: Path, seen: tuple[int, int] | None) -> None:
    """Remove a journal folded into the record, unless lines were added since it was read
    (a rival's: they stay for the next fold)."""
    if seen is None:
        return
    try:
        st = os.lstat(path)
        if (st.st_ino, st.st_size) == seen:
            os.unlink(path)
    except OSError:
        pass  # gone already, or kept: folding it again is harmless


def update(
    outdir: Path,
    obsid: int,
    changes: Mapping[str, FileRecord | None],
    fsync: bool = True,
    texts: Mapping[int, tuple[FileRecord, str]] | None = None,
) -> None:
    """Merge ``changes`` (None: forget the file) into the ObsId's record on disk: re-read,
    merge, write to a temporary file and rename over (atomic; no lock needed). ``texts``:
    entries' JSON already made (a journal line), by ``id`` of the entry."""
    if not changes:
        return
    path = record_path(outdir, obsid)
    current = _load_record(outdir, obsid)
    for rel, rec in changes.items():
        if rec is None:
            current.pop(rel, None)
        else:
            current[rel] = rec
    # One file per line, for people (json.dump's indent would take the slow encoder).
    files = ",\n".join(_text(current[r], texts) for r in sorted(current))
    text = f'{{"schema": {SCHEMA}, "obsid": {obsid}, "files": [\n{files}\n]}}\n'
    import tempfile  # (here: the command's start-up stays short)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{obsid}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _text(rec: FileRecord, texts: Mapping[int, tuple[FileRecord, str]] | None) -> str:
    """An entry's compact JSON: the journal line it was written as, when it was."""
    made = texts.get(id(rec)) if texts else None
    return made[1] if made is not None and made[0] is rec else _dumps(_as_dict(rec))


def has_content_check(relpath: str) -> bool:
    """Whether the file's bytes carry a check of their own (gzip CRC, FITS checksums)."""
    return relpath.lower().endswith(".gz") or is_fits_name(relpath)


def what_was_checked(fr: FileResult, verify: bool) -> str:
    if (fr.warning or "").startswith(KEPT):
        return KEPT
    return VERIFIED if verify and has_content_check(fr.relpath) else NO_CHECK


def sha256_file(path: Path) -> str:
    """A file's sha256, read back (when the transfer did not compute it as it came)."""
    from .context import sha256_of

    # O_NONBLOCK: a FIFO planted at the name must not hang the open (no-op for files).
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return sha256_of(fd)
    finally:
        os.close(fd)


def entry_for(fr: FileResult, verify: bool, old: FileRecord | None) -> FileRecord | None:
    """The record of a complete file after a session; None when there is nothing to record.

    A file already present and still the one recorded keeps its entry (no re-read); one
    fetched now takes the transfer's sha256 when it gave one, else it is read back once when
    small (``READ_BACK_LIMIT``) or kept as served.
    """
    if not fr.ok:
        return None
    if fr.status is Status.PRESENT and old is not None and old.describes(fr.path):
        # Present after the site was asked (its date had moved, its identity had not): the
        # listing's new date is the one to compare with next time.
        if not fr.listed_date or fr.listed_date == old.listed_date:
            return old  # (the same entry: a re-run of 2,220 files made as many copies)
        return replace(old, listed_date=fr.listed_date)
    try:
        st = os.lstat(fr.path)
        digest = fr.sha256
        if digest is None and (
            st.st_size <= READ_BACK_LIMIT or what_was_checked(fr, verify) == KEPT
        ):
            digest = sha256_file(fr.path)
    except OSError:
        return None
    return _record_of(fr, verify, st, digest)


def _record_of(fr: FileResult, verify: bool, st: os.stat_result, digest: str | None) -> FileRecord:
    from datetime import datetime, timezone

    return FileRecord(
        relpath=fr.relpath,
        size=st.st_size,
        sha256=digest,
        version=processing_version(fr.relpath),
        last_modified=fr.last_modified,
        etag=fr.etag,
        checked=what_was_checked(fr, verify),
        url=fr.url,
        mtime_ns=st.st_mtime_ns,
        recorded=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        listed_date=fr.listed_date,
    )


def record_session(
    outdir: Path,
    results: Iterable,
    verify: bool,
    fsync: bool = True,
    book: RecordBook | None = None,
) -> None:
    """After a download: record every complete file of every ObsId (merged into what is on
    disk); a record that cannot be written is said, never fatal. ``book``: the session's
    records, whose ObsIds loaded during the run are not parsed again (the merge that writes
    re-reads the record in any case)."""
    for r in results:
        if not r.found or not any(fr.ok for fr in r.files):
            continue  # nothing to record (and a tree we cannot write is told by its files)
        journal = journal_path(outdir, r.obsid)
        journaled, seen = _read_journal(journal, book.lines if book is not None else None)
        loaded = book.loaded(r.files[0]) if book is not None else None
        old = {**(_load_record(outdir, r.obsid) if loaded is None else loaded), **journaled}
        changes: dict[str, FileRecord | None] = dict(journaled)  # folded into the record
        for fr in r.files:
            if _journaled_now(fr, journaled.get(fr.relpath)):
                continue  # its journal line is its entry (in ``changes`` already)
            rec = entry_for(fr, verify, old.get(fr.relpath))
            if rec is not None and rec != old.get(fr.relpath):
                changes[fr.relpath] = rec
        try:
            forget_partials(outdir, r.obsid, [fr.relpath for fr in r.files if fr.ok])
            update(outdir, r.obsid, changes, fsync, book.texts if book is not None else None)
            _forget_journal(journal, seen)
        except OSError as exc:
            # A full disk is told by the files it stopped; the record is rebuilt next time.
            level = 2 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 0
            vlog(level, "cannot write the record of ObsId %s: %s", r.obsid, exc.strerror or exc)


def _journaled_now(fr: FileResult, line: FileRecord | None) -> bool:
    """Whether ``fr``'s file, fetched this session, has a journal line still describing it:
    the line is what :func:`entry_for` would write again (but for its time)."""
    fetched = fr.status in (Status.DOWNLOADED, Status.RESUMED) and fr.sha256 is not None
    return fetched and line is not None and line.sha256 == fr.sha256 and line.describes(fr.path)


def changed_at_archive(
    rec: FileRecord | None, size: int | None, last_modified: str | None, etag: str | None
) -> str | None:
    """Why the archive's copy is no longer the one recorded, or None (same, or unknown).

    Only the site's own statements count: a size it gives exactly, and an ``ETag`` or
    ``Last-Modified`` when both the record and the site have one.
    """
    if rec is None:
        return None
    if size is not None and size != rec.size:
        return f"changed at the archive since it was fetched ({rec.size} -> {size} bytes)"
    if etag and rec.etag and etag != rec.etag:
        return f"changed at the archive since it was fetched (ETag {rec.etag} -> {etag})"
    if last_modified and rec.last_modified and last_modified != rec.last_modified:
        return (
            "changed at the archive since it was fetched "
            f"(Last-Modified {rec.last_modified} -> {last_modified})"
        )
    return None


class RecordBook:
    """A session's view of the records: loaded once per ObsId, shared by the workers; and
    the writer of each file's journal line as it is done.

    Parameters
    ----------
    journal : bool
        Whether files done are journaled (False for a tree that is not an output directory,
        such as the staging area of ``--frozen``).
    """

    def __init__(self, journal: bool = True) -> None:
        self._cache: dict[tuple[str, int], dict[str, FileRecord]] = {}  # by (outdir, ObsId)
        self._lock = threading.Lock()
        self.journaling = journal
        self._journals: dict[tuple[str, int], str] = {}  # made once per (outdir, ObsId)
        #: Each journal line written (without its newline) and its entry, and the entry's
        #: JSON by its ``id``: the session's fold parses and dumps none of them again.
        self.lines: dict[bytes, FileRecord] = {}
        self.texts: dict[int, tuple[FileRecord, str]] = {}

    def journal(self, fr: FileResult, st: os.stat_result, verify: bool) -> None:
        """Record ``fr``'s file now: it is done, durable under its final name, and ``st`` is
        its status (``fstat`` of the open file). One line appended with ``O_APPEND`` (whole
        lines from rival processes interleave, never mix); never fails a download."""
        if not self.journaling:
            return
        path = self._journal_of(fr)
        rec = _record_of(fr, verify, st, fr.sha256)
        line = _dumps(_as_dict(rec))
        data = line.encode("utf-8")
        try:
            self._append(path, data + b"\n")
        except OSError as exc:
            vlog(2, "%s: cannot journal it (%s); it is recorded at the end", fr.relpath, exc)
            return
        self.lines[data] = rec  # (each a single store: safe from the finisher's threads)
        self.texts[id(rec)] = (rec, line)

    def _journal_of(self, fr: FileResult) -> str:
        """The journal of ``fr``'s ObsId, its directory made once per session (a string
        from the file's path: pathlib's ``parents`` per file cost more than the write)."""
        key = (outdir := _outdir_text(fr), fr.obsid)
        path = self._journals.get(key)
        if path is None:
            journal = journal_path(Path(outdir), fr.obsid)
            journal.parent.mkdir(parents=True, exist_ok=True)
            path = self._journals[key] = str(journal)
        return path

    def _append(self, path: str, data: bytes) -> None:
        # Opened per line, not kept: a fold by a rival removes the journal, and lines
        # written to the removed file would be lost.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:  # its directory was removed since: made again
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, data)  # one write: a line is whole or (killed mid-way) torn, skipped
        finally:
            os.close(fd)

    def get(self, fr: FileResult) -> FileRecord | None:
        """The record of ``fr``'s file, when there is one and it still describes the local
        file (one touched since is not ours to judge by the record)."""
        key = (_outdir_text(fr), fr.obsid)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = load(Path(key[0]), fr.obsid)
            rec = self._cache[key].get(fr.relpath)
        return rec if rec is not None and rec.describes(fr.path) else None

    def loaded(self, fr: FileResult) -> dict[str, FileRecord] | None:
        """The record of ``fr``'s ObsId as this session loaded it (None: not loaded)."""
        with self._lock:
            return self._cache.get((_outdir_text(fr), fr.obsid))

    def changed(self, fr: FileResult, size: int | None) -> str | None:
        """Why the local copy of ``fr`` is an older copy than the archive's, or None."""
        return changed_at_archive(self.get(fr), size, fr.last_modified, fr.etag)


def _outdir_text(fr: FileResult) -> str:
    """The output directory of ``fr``'s file, as text (the spot cuts its path as text)."""
    return str(Spot.of(fr).outdir)


def say_changed(results: Iterable) -> None:
    """After a download: per ObsId, the files whose older local copy was replaced by the
    archive's new one (or could not be), on standard error."""
    for r in results:
        changed = [f for f in r.files if f.changed]
        if not changed:
            continue
        names = ", ".join(f.relpath for f in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        done = sum(1 for f in changed if f.ok)
        vlog(
            0,
            "ObsId %s: %d file(s) changed at the archive since they were fetched (%s%s); "
            "%d new copy(ies) fetched in their place%s",
            r.obsid,
            len(changed),
            names,
            more,
            done,
            "" if done == len(changed) else "; the others keep their old copy",
        )


# -- partial files: whose bytes they hold -------------------------------------------------------
#: Partial files at least this large note the site's identity when their bytes begin, so a
#: resume onto bytes of another copy is refused. Smaller ones are noted only when a run stops
#: leaving them (rare: a note per small file would cost every download a write); one without
#: a note and without a content check is fetched again from byte 0 (transfer.py).
PARTIAL_NOTE_LIMIT = 1 << 20


def _partials_path(outdir: Path, obsid: int) -> Path:
    return Path(outdir) / RECORDS / f"{obsid}.partials.json"


def _outdir(target: Path, relpath: str) -> Path:
    return target.parents[len(relpath.split("/"))]


def _load_partials(path: Path) -> dict[str, dict[str, str | None]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none, or damaged: only resumes lose their guard, nothing else
    return data if isinstance(data, dict) else {}


#: One writer at a time of a session's partial notes: the file is read, merged and replaced
#: whole, so two files of one ObsId starting at once would each drop the other's note.
_NOTES_LOCK = threading.Lock()


def note_partial(fr: FileResult, identity: tuple[str | None, str | None]) -> None:
    """Remember the site's ``(Last-Modified, ETag)`` of the bytes a partial file begins with
    (merged by re-reading; temp file and rename). Never fails a download."""
    if not any(identity):
        return
    path = _partials_path(_outdir(fr.path, fr.relpath), fr.obsid)
    try:
        with _NOTES_LOCK:
            notes = _load_partials(path)
            notes[fr.relpath] = {"last_modified": identity[0], "etag": identity[1]}
            _write_json(path, notes)
    except OSError as exc:
        vlog(2, "%s: cannot note whose bytes its partial file holds: %s", fr.relpath, exc)


def _partial_note(fr: FileResult) -> dict[str, str | None] | None:
    path = _partials_path(_outdir(fr.path, fr.relpath), fr.obsid)
    note = _load_partials(path).get(fr.relpath) if path.exists() else None
    return note if isinstance(note, dict) else None


def partial_noted(fr: FileResult) -> bool:
    """Whether a note says whose copy a partial file's bytes are (see :func:`note_partial`)."""
    return _partial_note(fr) is not None


def partial_changed(fr: FileResult) -> str | None:
    """Why a partial file's bytes are of another copy than the site's now (its note and
    ``fr.last_modified``/``fr.etag`` differ), or None (same, or not known)."""
    note = _partial_note(fr)
    if note is None:
        return None
    etag, modified = note.get("etag"), note.get("last_modified")
    if (etag and fr.etag and etag != fr.etag) or (
        modified and fr.last_modified and modified != fr.last_modified
    ):
        return "changed at the archive since its partial download began"
    return None


#: How much earlier than the site's ``Last-Modified`` a partial file's last write must be to
#: be taken for bytes of an older copy: clocks of the site and of this machine differ a little.
MODIFIED_SLACK = 60.0

#: The most a date stated without a zone (an Apache listing's, in the server's local time)
#: can be ahead of UTC: UTC+14.
_EARLIEST_ZONE = timedelta(hours=14)

_MLSD_TIME = re.compile(r"(\d{14})(?:\.(\d{1,6}))?")


def modified_epoch(text: str | None) -> float | None:
    """The earliest POSIX time a site's statement of when a file last changed can mean, or
    None when there is none or it cannot be read (the site's text is never trusted further).

    Read: an HTTP date (RFC 7231, and the RFC 850 and asctime forms; the local source's
    ``formatdate``), ISO 8601 (S3's ``LastModified``, FTP's ``modify`` as the FTP source keeps
    it), an FTP ``MLSD``/``MDTM`` time-val (``YYYYMMDDHHMMSS[.sss]``, UTC), an Apache listing
    date (``2019-06-13 07:42``, ``13-Jun-2019 07:42``). A time is taken at the start of the
    second or minute it states, and a date stated without a zone at UTC+14, so that a file is
    never taken for older than the site's copy when it may not be.
    """
    if not text or len(text) > 64:
        return None
    when = _parse_modified(text.strip())
    if when is None:
        return None
    try:
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc) - _EARLIEST_ZONE
        return when.timestamp()
    except (OverflowError, ValueError):
        return None


def _parse_modified(text: str) -> datetime | None:
    """The date and time a ``Last-Modified``-like text states; naive when it states no zone."""
    m = _MLSD_TIME.fullmatch(text)
    try:
        if m is not None:
            when = datetime.strptime(m[1], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
            return when + timedelta(microseconds=int(m[2].ljust(6, "0"))) if m[2] else when
        if text[:1].isdigit() and "-" in text[:5]:  # ISO 8601, or an Apache listing date
            return datetime.fromisoformat(text) if text[4:5] == "-" else _apache_old(text)
        return _http_date(text)
    except (ValueError, OverflowError, TypeError, IndexError):
        return None


def _apache_old(text: str) -> datetime:
    """An older Apache listing's ``13-Jun-2019 07:42`` (English month names, no zone)."""
    day, month, rest = text.split("-", 2)
    number = _MONTHS.index(month.lower()) + 1
    return datetime.strptime(f"{day}-{number}-{rest}", "%d-%m-%Y %H:%M")


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _http_date(text: str) -> datetime:
    """An HTTP date: GMT by definition (RFC 7231), also when it is written as ``-0000``."""
    when = parsedate_to_datetime(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def forget_partials(outdir: Path, obsid: int, relpaths: Iterable[str]) -> None:
    """Drop the notes of files now complete."""
    path = _partials_path(outdir, obsid)
    done = set(relpaths)
    with _NOTES_LOCK:
        if not path.exists():
            return
        notes = _load_partials(path)
        kept = {k: v for k, v in notes.items() if k not in done}
        if kept == notes:
            return
        try:
            if kept:
                _write_json(path, kept)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass  # stale notes only guard resumes of files already complete


def _write_json(path: Path, doc: object) -> None:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
