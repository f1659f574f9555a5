"""``--json``: a machine-readable report of a download, a listing or a check.

Every URL is shown with its password masked; nothing else in the report can hold one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from ._version import __version__
from .credentials import mask_url
from .output import local_state, to_fetch
from .results import FileResult, ObsIdResult, Results

SCHEMA = 1


def _masked(url: str | None) -> str | None:
    return None if url is None else mask_url(url)


def file_entry(fr: FileResult, status: str | None = None) -> dict[str, Any]:
    """One file: where it is, what it is, what happened to it."""
    return {
        "obsid": fr.obsid,
        "path": fr.relpath,
        "type": fr.filetype,
        "size": fr.size,
        "status": status or fr.status.value,
        "reason": fr.reason,
        "warning": fr.warning,
        "local": local_state(fr).value,
        "local_size": fr.local_size,
        "to_fetch": to_fetch(fr),
        "bytes_transferred": fr.bytes_transferred,
        "elapsed": round(fr.elapsed, 3),
        "attempts": fr.attempts,
        "site": _masked(fr.site),
        "url": _masked(fr.url),
    }


def obsid_entry(r: ObsIdResult) -> dict[str, Any]:
    """One ObsId: found or not and why, and its files."""
    return {
        "obsid": r.obsid,
        "found": r.found,
        "ok": r.ok,
        "site": _masked(r.site),
        "error": r.error,
        "why_missing": r.why_missing,
        # Other sites of a fallback list that failed while one said "not found".
        "site_failures": list(getattr(r, "site_failures", None) or []),
        "files": [file_entry(f) for f in sorted(r.files, key=lambda f: f.relpath)],
    }


def results_report(results: Results, mode: str = "download") -> dict[str, Any]:
    """The report of a download (``mode="download"``) or a listing (``"list"``)."""
    ok = results.ok if mode == "download" else all(r.found and not r.failures for r in results)
    ok = ok and any(r.files for r in results)  # the command's exit rule: nothing selected is 1
    return {
        "schema": SCHEMA,
        "tool": "chandra-download",
        "version": __version__,
        "mode": mode,
        "ok": ok,
        "summary": results.summary(),
        "obsids": [obsid_entry(r) for r in results],
    }


def audit_report(audit: Any) -> dict[str, Any]:
    """The report of ``--check``: each file's audit state (complete, missing, partial, corrupt,
    extra) with the listing's size, site and URL."""
    obsids = []
    listing = {r.obsid: r for r in (audit.listing or [])}
    for a in audit.obsids:
        r = listing.get(a.obsid)
        files = {f.relpath: f for f in (r.files if r else [])}
        entries = []
        states: Iterable[tuple[str, str, str | None]] = [
            *((rel, "complete", None) for rel in a.complete),
            *((rel, "missing", None) for rel in a.missing),
            *((rel, "partial", None) for rel in a.partial),
            *((rel, "failing check", why) for rel, why in a.failing),
            *((rel, "corrupt", why) for rel, why in a.corrupt),
        ]
        for rel, state, why in sorted(states):
            entry: dict[str, Any] = file_entry(files[rel], state) if rel in files else {"path": rel}
            entry.update(status=state, reason=why)
            entries.append(entry)
        entries.extend({"obsid": a.obsid, "path": rel, "status": "extra"} for rel in a.extra)
        obsids.append(
            {
                "obsid": a.obsid,
                "found": a.found,
                "ok": a.ok,
                "site": _masked(r.site) if r else None,
                "error": a.error,
                "why_missing": r.why_missing if r else None,
                "files": entries,
            }
        )
    return {
        "schema": SCHEMA,
        "tool": "chandra-download",
        "version": __version__,
        "mode": "check",
        "ok": audit.ok,
        "summary": audit.summary(),
        "obsids": obsids,
    }


def write(data: dict[str, Any], dest: str) -> None:
    """Write the report as JSON to a file, or to standard output for ``-``."""
    text = json.dumps(data, indent=2) + "\n"
    if dest == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(dest, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise ValueError(f"cannot write the JSON report to {dest}: {exc.strerror}") from None
