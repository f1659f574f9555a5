"""``--check``: compare a local tree with the archive and the checksums, writing nothing."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import VerificationError
from .filetypes import Selection, classify
from .output import local_state, missing_block
from .progress import Reporter
from .record import KEPT, FileRecord, RecordBook, changed_at_archive, sha256_file
from .results import FileResult, LocalState, ObsIdResult, Results
from .revisions import Superseded, local_files, own_base
from .statedir import Spot
from .verify import check_file


@dataclass
class ObsIdAudit:
    """State of one ObsId's local copy. Paths are relative to ``<outdir>/<ObsId>/``."""

    obsid: int
    found: bool
    error: str | None = None
    complete: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    #: Complete files whose bytes fail a content check: local damage, or the archive's own
    #: copy (kept as served); ``--repair`` tells them apart by fetching again.
    failing: list[tuple[str, str]] = field(default_factory=list)
    #: Anything else wrong: refused listing entries, local files larger than the archive's.
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    #: Files the archive changed under the same name since they were fetched (the record
    #: of what was fetched tells), with what changed.
    changed: list[tuple[str, str]] = field(default_factory=list)
    #: Complete files that fail a check but were kept as served (the record says so, and
    #: their sha256 is the one then kept): reported, not failing.
    kept: list[tuple[str, str]] = field(default_factory=list)
    #: Local files the archive has reprocessed under a higher processing version.
    superseded: list[Superseded] = field(default_factory=list)
    #: Listed files of the selected types (0: "No files found for ObsId N!").
    selected: int = 0

    @property
    def ok(self) -> bool:
        """Found, and nothing missing, partial, failing, corrupt or superseded (extra files
        are only reported)."""
        return self.found and not (
            self.error
            or self.missing
            or self.partial
            or self.failing
            or self.corrupt
            or self.superseded
            or self.changed
        )


@dataclass
class AuditReport:
    """One :class:`ObsIdAudit` per ObsId, in order."""

    obsids: list[ObsIdAudit]
    #: The listing the audit compared against (sizes, sites, URLs), for reports.
    listing: Results | None = None
    #: Whether the site was a mirror (CIAO's "mirror site" in the skip line).
    mirror: bool = False

    @property
    def ok(self) -> bool:
        """Every ObsId complete, and some ObsId has a file of the selected types (the
        download's rule: a selection that matches nothing anywhere fetched nothing)."""
        return all(a.ok for a in self.obsids) and not self.nothing_selected

    @property
    def nothing_selected(self) -> bool:
        """No ObsId found has any file of the selected types (and some ObsId was found)."""
        found = [a for a in self.obsids if a.found]
        return bool(found) and not any(a.selected for a in found)

    def summary(self) -> str:
        """One line: which ObsIds are not complete, or that all are."""
        bad = [a for a in self.obsids if not a.ok]
        if not bad and self.nothing_selected:
            ids = ", ".join(str(a.obsid) for a in self.obsids if a.found)
            return f"incomplete: no files of the selected types: ObsId {ids}."
        if not bad:
            return f"All {len(self.obsids)} ObsId(s) complete and intact."
        parts = []
        for a in bad:
            if not a.found:
                parts.append(f"ObsId {a.obsid}: {a.error or 'not found'}")
            else:
                parts.append(
                    f"ObsId {a.obsid}: {len(a.missing)} missing, {len(a.partial)} partial, "
                    f"{len(a.failing)} failing a check, {len(a.corrupt)} unusable"
                    + (f", {len(a.superseded)} superseded" if a.superseded else "")
                    + (f", {len(a.changed)} changed at the archive" if a.changed else "")
                )
        return "incomplete: " + "; ".join(parts) + "."


def check(
    obsids: Iterable[int | str] | int | str,
    filetypes: str | Iterable[str] | None = None,
    mirror: str | list[str] | None = None,
    username: str | None = None,
    userpass: str | None = None,
    *,
    exclude: str | Iterable[str] | None = None,
    outdir: str | os.PathLike[str] = ".",
    checksums: bool = True,
    **options: Any,
) -> AuditReport:
    """Audit local ObsId trees against the archive without downloading anything.

    Parameters
    ----------
    obsids, filetypes, mirror, username, userpass, exclude, outdir
        As for :func:`chandra_download.download`.
    checksums : bool, default True
        Also verify gzip CRCs and FITS checksums of complete files.
    **options
        ``SessionConfig`` fields (``jobs=``, ``timeout=``...).

    Returns
    -------
    AuditReport
        Per ObsId: complete, missing, partial, corrupt (with the reason) and extra files.
    """
    from .api import download

    selection = Selection(filetypes, exclude)
    quiet = _Quiet()
    listing: Results = download(
        obsids,
        filetypes,  # only the selected files are asked about (issue 20.7)
        mirror,
        username,
        userpass,
        exclude=exclude,
        outdir=outdir,
        list_only=True,
        reporter=quiet,
        # Every size and identity asked of the site: no record vouches for a file here (a
        # download may skip the HEAD of a recorded file; the audit is what tells a change).
        **{**options, "repair": True},
    )
    audits = [_audit(r, selection, Path(outdir), checksums) for r in listing]
    return AuditReport(audits, listing, quiet.mirror)


def _audit(r: ObsIdResult, selection: Selection, outdir: Path, checksums: bool) -> ObsIdAudit:
    """One ObsId's audit: each listed file's local state, then the files not listed."""
    audit = ObsIdAudit(r.obsid, r.found, r.error)
    if not r.found:
        return audit
    records = RecordBook()
    for f in r.files:
        _classify(audit, f, selection, checksums, records)
    audit.superseded = list(r.superseded)
    old = {s.relpath for s in audit.superseded}
    known = {f.relpath for f in r.files}
    # Local archive files of types not selected are outside the question (not listed here).
    audit.extra = [
        rel
        for rel in local_files(outdir / str(r.obsid))
        if own_base(rel) not in known | old and _asked_about(own_base(rel), selection)
    ]
    return audit


def _asked_about(relpath: str, selection: Selection) -> bool:
    """Whether a local file is within the check's question: of a selected type, or of no
    archive type at all (a stray file is extra whatever the selection)."""
    ftype = classify(relpath)
    return ftype is None or selection.accepts(ftype)


def _classify(
    audit: ObsIdAudit, f: FileResult, selection: Selection, checksums: bool, records: RecordBook
) -> None:
    """Add one listed file to the audit list its local copy belongs in (if selected)."""
    if f.status.value == "failed":  # unsafe listing entries
        audit.corrupt.append((f.relpath, f.reason or "refused"))
        return
    if not selection.accepts(f.filetype):
        return
    audit.selected += 1
    state = local_state(f)
    rec = records.get(f)
    changed = changed_at_archive(rec, f.size, f.last_modified, f.etag)
    if changed is not None:  # not "larger local file", nor partial: an older copy
        audit.changed.append((f.relpath, changed))
    elif state is LocalState.MISSING:
        (audit.partial if _has_part(f) else audit.missing).append(f.relpath)
    elif state is LocalState.PARTIAL:
        audit.partial.append(f.relpath)
    elif state is LocalState.COMPLETE:
        try:
            if checksums:
                check_file(f.path, f.relpath)
            audit.complete.append(f.relpath)
        except VerificationError as exc:
            if _kept_as_served(rec, f):
                audit.complete.append(f.relpath)
                audit.kept.append((f.relpath, exc.detail))
            else:
                audit.failing.append((f.relpath, exc.detail))
    else:
        audit.corrupt.append((f.relpath, f.reason or "larger than the archive's copy"))


def _kept_as_served(rec: FileRecord | None, f: FileResult) -> bool:
    """Whether the record says this very copy was kept as served (the archive's own bytes,
    confirmed by fetching them twice): same sha256 as then."""
    if rec is None or rec.checked != KEPT or rec.sha256 is None:
        return False
    try:
        return sha256_file(f.path) == rec.sha256
    except OSError:
        return False


class _Quiet(Reporter):
    """The audit prints its own report, not the listing's blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.silence()


def _has_part(f: FileResult) -> bool:
    """Whether our hidden directory holds bytes of the file in progress."""
    try:
        return Spot.of(f).part.lstat().st_size > 0
    except OSError:
        return False


def print_report(report: AuditReport, verbose: int = 1) -> None:
    """Print the audit: one summary line per ObsId, then each problem (and each good file at
    verbose 2 or more)."""
    listed = {id(a): r for a, r in zip(report.obsids, report.listing or [], strict=False)}
    for a in report.obsids:
        r = listed.get(id(a))
        if not a.found:
            lines = missing_block(r, report.mirror) if r is not None else []
            print("\n".join(line for line in lines if line) or f"ObsId {a.obsid}: not found")
            continue
        if not a.selected and a.ok:
            print(f"No files found for ObsId {a.obsid}!")
            continue
        state = "OK" if a.ok else "INCOMPLETE"
        print(
            f"ObsId {a.obsid}: {state}: {len(a.complete)} complete, {len(a.missing)} missing, "
            f"{len(a.partial)} partial, {len(a.failing)} failing a check, "
            f"{len(a.corrupt)} unusable, {len(a.extra)} extra"
            + (f", {len(a.superseded)} superseded" if a.superseded else "")
            + (f", {len(a.changed)} changed at the archive" if a.changed else "")
        )
        if verbose >= 1:
            for rel in a.missing:
                print(f"  missing  {rel}")
            for rel in a.partial:
                print(f"  partial  {rel}")
            for rel, why in a.failing:
                print(f"  fails    {rel}: {why}")
            for rel, why in a.corrupt:
                print(f"  unusable {rel}: {why}")
            for rel, why in a.changed:
                print(f"  changed  {rel}: {why}")
            for rel, why in a.kept:
                print(f"  kept     {rel}: kept as served, the archive's copy ({why})")
            for rel in a.extra:
                print(f"  extra    {rel}")
            for sup in a.superseded:
                print(
                    f"  superseded {sup.relpath}: reprocessed as {sup.new_relpath} "
                    f"(N{sup.old_version:03d} -> N{sup.new_version:03d})"
                )
        if verbose >= 2:
            for rel in a.complete:
                print(f"  ok       {rel}")
    hint = what_to_run(report)
    if hint:
        print(hint)


def what_to_run(report: AuditReport) -> str | None:
    """The line ``--check`` ends with: what to run to make the local copy whole."""
    audits = [a for a in report.obsids if a.found]
    fetch = any(a.missing or a.partial or a.changed for a in audits)
    failing = any(a.failing for a in audits)
    prune = (
        " Add --prune-superseded to move superseded revisions to <outdir>/superseded/<ObsId>/ "
        "once their new revision is complete (nothing is deleted)."
        if any(a.superseded for a in audits)
        else ""
    )
    if failing:
        return (
            "To fix: run the same command without --check, adding --repair: it fetches what is "
            "missing, and fetches files failing their check again (one is kept, with a "
            "warning, when the archive's own copy is the same)." + prune
        )
    if any(a.changed for a in audits):
        return (
            "To fix: run the same command without --check, adding --repair: it asks the site "
            "about every file, fetches what is missing and the archive's new copies of what "
            "changed." + prune
        )
    if fetch or prune:
        return "To fix: run the same command without --check; it fetches what is missing." + prune
    return None
