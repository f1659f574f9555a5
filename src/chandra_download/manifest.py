"""Manifests: exactly which bytes a download holds, in a JSON file one can fetch again.

A manifest (``--manifest FILE``, ``download(manifest=...)``, :meth:`Results.write_manifest`)
holds a schema version, the tool's version, the UTC time, the sites (credentials masked) and
the selection, and per file: ObsId, relative path, type, size, sha256, processing version,
the site's ``Last-Modified``/``ETag`` where it gave them, what was checked and the URL
(masked). :func:`read_table` reads one back as an astropy Table. ``--frozen FILE``
(:mod:`chandra_download.frozen`) fetches exactly those files again, each verified by sha256.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._version import __version__
from .credentials import mask_url
from .errors import ChandraDownloadError
from .filetypes import Selection
from .output import local_state
from .record import FileRecord, has_content_check, load, sha256_file
from .results import FileResult, LocalState, ObsIdResult
from .revisions import processing_version
from .sources.base import check_relpath

SCHEMA_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A manifest that cannot be used: one line naming the file and the problem."""


@dataclass(frozen=True)
class ManifestFile:
    """One file of a manifest (``relpath`` below ``<outdir>/<ObsId>/``)."""

    obsid: int
    relpath: str
    type: str | None
    size: int | None
    sha256: str | None
    version: int | None
    last_modified: str | None
    etag: str | None
    checked: str | None
    url: str | None


@dataclass(frozen=True)
class Manifest:
    """A manifest read back: its header fields and its files, in order."""

    schema: int
    tool_version: str
    created: str
    sites: list[str]
    selection: dict[str, Any]
    files: list[ManifestFile]

    @property
    def obsids(self) -> list[int]:
        """The ObsIds of its files, in first-seen order."""
        return list(dict.fromkeys(f.obsid for f in self.files))


# -- writing ----------------------------------------------------------------------------------
def _outdir_of(fr: FileResult) -> Path:
    return fr.path.parents[len(fr.relpath.split("/"))]


def _entry(fr: FileResult, rec: FileRecord | None, verify: bool) -> ManifestFile:
    """One file's entry: the record's sha256 when it still describes the local file; a
    complete local file not recorded is read; files not local have none."""
    digest = checked = None
    here = rec is not None and rec.describes(fr.path)
    if here or local_state(fr) is LocalState.COMPLETE or fr.ok:
        recorded = rec.sha256 if rec is not None and here else None
        digest = recorded or _read_sha256(fr)  # a large file is recorded without one
        if rec is not None and here:
            checked = rec.checked
        elif digest is not None and verify and has_content_check(fr.relpath):
            checked = "verified"
    return ManifestFile(
        fr.obsid,
        fr.relpath,
        fr.filetype,
        fr.size,
        digest,
        processing_version(fr.relpath),
        fr.last_modified or (rec.last_modified if rec else None),
        fr.etag or (rec.etag if rec else None),
        checked,
        mask_url(fr.url) if fr.url else None,
    )


def _read_sha256(fr: FileResult) -> str | None:
    try:
        return sha256_file(fr.path)
    except OSError:
        return None


def manifest_of(
    results: Iterable[ObsIdResult],
    *,
    sites: Sequence[str | None] = (),
    selection: dict[str, Any] | None = None,
    verify: bool = True,
    types: Selection | None = None,
) -> dict[str, Any]:
    """The manifest document (a JSON-ready dict) of a session's results (of the ``types``
    selected, when given: ``--check`` lists every file)."""
    results = list(results)
    files = []
    for r in results:
        records: dict[str, FileRecord] | None = None
        for fr in r.files:
            if fr.status.value == "failed" and fr.path.name == str(fr.obsid):
                continue  # a refused listing entry: no file
            if types is not None and not types.accepts(fr.filetype):
                continue
            if records is None:  # once per ObsId
                records = load(_outdir_of(fr), r.obsid)
            files.append(_entry(fr, records.get(fr.relpath), verify))
    used = [s for s in sites if s] or sorted({r.site for r in results if r.site})
    return {
        "schema": SCHEMA_VERSION,
        "tool": "chandra-download",
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sites": [mask_url(s) for s in used],
        "selection": selection or {"obsids": [r.obsid for r in results]},
        "files": [asdict(f) for f in files],
    }


def write(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Write a manifest atomically (a temporary file beside it, then a rename)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(
    results: Iterable[ObsIdResult],
    path: str | os.PathLike[str],
    *,
    sites: Sequence[str | None] = (),
    selection: dict[str, Any] | None = None,
    verify: bool = True,
    types: Selection | None = None,
) -> None:
    """Write the manifest of a session's results to ``path``."""
    doc = manifest_of(results, sites=sites, selection=selection, verify=verify, types=types)
    write(path, doc)


# -- reading ----------------------------------------------------------------------------------
def read(path: str | os.PathLike[str]) -> Manifest:
    """Read and check a manifest.

    Raises
    ------
    ManifestError
        Not JSON, another schema version, a path leaving its ObsId directory, a sha256 that
        is not 64 hex digits...: one line naming the file and the problem.
    """
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{name} is not a manifest: not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{name} is not a manifest: not JSON ({exc})") from None
    if not isinstance(doc, dict) or "schema" not in doc or "files" not in doc:
        raise ManifestError(f"{name} is not a manifest: no schema version or file list")
    if doc["schema"] != SCHEMA_VERSION:
        raise ManifestError(
            f"{name}: manifest schema version {doc['schema']!r}; this version reads "
            f"{SCHEMA_VERSION}"
        )
    if not isinstance(doc["files"], list):
        raise ManifestError(f"{name}: 'files' is not a list")
    files = [_file(name, i, item) for i, item in enumerate(doc["files"])]
    return Manifest(
        SCHEMA_VERSION,
        str(doc.get("tool_version", "")),
        str(doc.get("created", "")),
        [str(s) for s in doc.get("sites") or []],
        dict(doc.get("selection") or {}),
        files,
    )


def _file(name: str, i: int, item: object) -> ManifestFile:
    """One entry, checked: every problem names the file and the entry."""
    where = f"{name}: file {i + 1}"
    if not isinstance(item, dict):
        raise ManifestError(f"{where} is not an object")
    obsid, relpath, sha, size = (item.get(k) for k in ("obsid", "relpath", "sha256", "size"))
    if not isinstance(obsid, int) or isinstance(obsid, bool) or not 0 < obsid < 10**6:
        raise ManifestError(f"{where}: not an ObsId: {obsid!r}")
    if not isinstance(relpath, str):
        raise ManifestError(f"{where}: no relative path")
    try:
        check_relpath(relpath)
    except ChandraDownloadError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
        raise ManifestError(f"{where} ({relpath}): sha256 is not 64 hex digits: {sha!r}")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ManifestError(f"{where} ({relpath}): not a size: {size!r}")
    text = {k: item.get(k) for k in ("type", "last_modified", "etag", "checked", "url")}
    for key, value in text.items():
        if value is not None and not isinstance(value, str):
            raise ManifestError(f"{where} ({relpath}): {key} is not text")
    version = item.get("version")
    return ManifestFile(
        obsid,
        relpath,
        text["type"],
        size,
        sha,
        version if isinstance(version, int) else None,
        text["last_modified"],
        text["etag"],
        text["checked"],
        text["url"],
    )


def read_table(path: str | os.PathLike[str]) -> Any:
    """A manifest's files as an astropy Table (one row per file; the header in ``meta``)."""
    from astropy.table import Table

    m = read(path)
    names = list(ManifestFile.__dataclass_fields__)
    meta = {
        "schema": m.schema,
        "tool_version": m.tool_version,
        "created": m.created,
        "sites": m.sites,
        "selection": m.selection,
    }
    ints = {"obsid", "size", "version"}  # -1 for "not given"; text columns ""
    columns = {
        n: [
            (-1 if v is None else v) if n in ints else (v or "")
            for v in (getattr(f, n) for f in m.files)
        ]
        for n in names
    }
    if not m.files:
        return Table(names=names, meta=meta)
    return Table(columns, meta=meta)
