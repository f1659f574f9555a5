"""What a download did, per file and per ObsId: the objects the API returns."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AuthError, Interrupted

if TYPE_CHECKING:
    from .revisions import Superseded


class Status(str, Enum):
    """Outcome of one file."""

    DOWNLOADED = "downloaded"
    RESUMED = "resumed"
    PRESENT = "already present"
    SKIPPED = "skipped"
    FAILED = "failed"
    #: The session stopped first (Ctrl-C, SIGTERM): not a failure, any partial data is kept.
    INTERRUPTED = "interrupted"
    PLANNED = "planned"  # --list / dry run: nothing was written

    def __str__(self) -> str:
        return self.value


class LocalState(str, Enum):
    """What is on disk for one file before anything is fetched (``--list``, ``--check``)."""

    MISSING = "missing"  # nothing usable
    PARTIAL = "partial"  # a shorter copy (ours at .part, or CIAO's at the final name)
    COMPLETE = "complete"  # the archive's size at the final name
    LARGER = "larger"  # the local file is bigger than the archive's: left alone

    def __str__(self) -> str:
        return self.value


@dataclass
class FileResult:
    """One archive file: where it is, where it went and what happened.

    ``url`` never holds a password. ``reason`` says why a file was skipped, failed or was
    interrupted (text for people: nothing reads it back). ``local`` is the state found on
    disk (typed: ``--list`` and ``--check`` show it); ``warning`` is set when a file was kept
    although it fails a content check identically on two fetches (the archive's own copy,
    e.g. ``kept as served: ...``).
    """

    obsid: int
    relpath: str
    url: str
    path: Path
    filetype: str | None
    size: int | None = None
    status: Status = Status.PLANNED
    reason: str | None = None
    site: str | None = None
    local_size: int = 0
    bytes_transferred: int = 0
    elapsed: float = 0.0
    attempts: int = 0
    local: LocalState | None = None
    warning: str | None = None
    #: The site's ``Last-Modified`` and ``ETag`` of the file, where it stated them.
    last_modified: str | None = None
    etag: str | None = None
    #: The date the site's HTML listing shows for the file (text, compared only with itself).
    listed_date: str | None = None
    #: Set when the local copy was an older one than the archive's (its record says so):
    #: ``changed at the archive since it was fetched (...)``; the new copy is fetched.
    changed: str | None = None
    #: The sha256 (hex) of the file's bytes, computed as they were written (or when a
    #: present file was checked); None when nothing read the bytes this run.
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        """True when the file is complete on disk (or was deliberately skipped)."""
        return self.status in (Status.DOWNLOADED, Status.RESUMED, Status.PRESENT)


@dataclass
class ObsIdResult:
    """One ObsId: was it found, on which site, and its files."""

    obsid: int
    found: bool = False
    site: str | None = None
    files: list[FileResult] = field(default_factory=list)
    #: Why the ObsId could not be listed (one line for people); None when it was, or when
    #: it is simply not there. ``causes`` holds the exceptions themselves.
    error: str | None = None
    #: Why a missing ObsId is missing, from the observation catalogue (``not public until
    #: 2027-03-04 (status observed)``, ``no such ObsId``...); None when not asked.
    why_missing: str | None = None
    #: Bytes of the ObsId's files that the type selection leaves out (``--list`` shows them).
    unselected_bytes: int = 0
    #: Sites of a fallback list that could not be asked, when another one said "not found".
    site_failures: list[str] = field(default_factory=list)
    #: The exceptions met while locating the ObsId, in order (the last one behind ``error``
    #: when it is set): typed, so e.g. a refused login (``AuthError``) can be raised again.
    causes: list[BaseException] = field(default_factory=list)
    #: Local files the archive has reprocessed under a higher processing version
    #: (:class:`chandra_download.revisions.Superseded`), left in place.
    superseded: list[Superseded] = field(default_factory=list)

    def __repr__(self) -> str:  # its files counted, not listed: notebooks show it whole
        from .output import obsid_repr

        return obsid_repr(self)

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def failures(self) -> list[FileResult]:
        """The files that failed (not those interrupted: see :attr:`interrupted`)."""
        return [f for f in self.files if f.status is Status.FAILED]

    @property
    def interrupted(self) -> bool:
        """The session stopped before this ObsId was listed or its files were all settled."""
        return any(isinstance(c, Interrupted) for c in self.causes) or any(
            f.status is Status.INTERRUPTED for f in self.files
        )

    @property
    def ok(self) -> bool:
        """Found, and every selected file complete (larger-local files count as not ok)."""
        return self.found and self.error is None and all(f.ok for f in self.files)


def _which(files: list[FileResult], most: int = 3) -> str:
    """``1843/primary/x.fits.gz, ...``: the first few files, for one-line summaries."""
    shown = ", ".join(f"{f.obsid}/{f.relpath}" for f in files[:most])
    return shown + (f" and {len(files) - most} more" if len(files) > most else "")


class Results(list[ObsIdResult]):
    """A list of :class:`ObsIdResult` in the order the ObsIds were given.

    Attributes
    ----------
    errors : list of str
        One line per ObsId not found or failing and per file that failed.
    """

    def __init__(
        self, items: Iterable[ObsIdResult] = (), rerun: Callable[[], Results] | None = None
    ) -> None:
        super().__init__(items)
        self._rerun = rerun

    def __repr__(self) -> str:  # short: a notebook showed 54 KB of text for 3 ObsIds
        from .output import results_repr

        return results_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter's table: one row per ObsId."""
        from .output import results_html

        return results_html(self)

    @property
    def refused(self) -> list[AuthError]:
        """Logins a site refused while locating the ObsIds, for CIAO's function to raise."""
        return [c for r in self for c in r.causes if isinstance(c, AuthError)]

    @property
    def files(self) -> list[FileResult]:
        """Every file of every ObsId, in order."""
        return [f for r in self for f in r.files]

    @property
    def found(self) -> list[bool]:
        """One bool per ObsId: found in the archive (CIAO's return value)."""
        return [r.found for r in self]

    @property
    def ok(self) -> bool:
        """True when every ObsId was found and every selected file is complete."""
        return all(r.ok for r in self)

    @property
    def errors(self) -> list[str]:
        out = []
        for r in self:
            if r.error:
                out.append(f"ObsId {r.obsid}: {r.error}")
            for f in r.files:
                if f.status in (Status.FAILED, Status.SKIPPED, Status.INTERRUPTED):
                    out.append(f"ObsId {r.obsid}: {f.relpath}: {f.reason or f.status}")
        return out

    def summary(self) -> str:
        """One line saying what was not found or failed, or that all is well."""
        missing = [
            f"{r.obsid} ({r.why_missing})" if r.why_missing else str(r.obsid)
            for r in self
            if not r.found and not r.error
        ]
        broken: dict[str, list[str]] = {}
        for r in self:
            if r.error:  # (found, yet unusable: a file and a directory of one name)
                broken.setdefault(r.error, []).append(str(r.obsid))
        failed = [f for f in self.files if f.status is Status.FAILED]
        stopped = [f for f in self.files if f.status is Status.INTERRUPTED]
        larger = [f for f in self.files if f.status is Status.SKIPPED]
        parts = []
        empty = [str(r.obsid) for r in self if r.found and not r.files and not r.error]
        if missing:
            parts.append(f"not found: ObsId {', '.join(missing)}")
        if empty:
            parts.append(f"no files of the selected types: ObsId {', '.join(empty)}")
        for error, ids in broken.items():
            parts.append(f"could not be listed: ObsId {', '.join(ids)} ({error})")
        if failed:
            parts.append(f"{len(failed)} file(s) failed ({_which(failed)})")
        if stopped:
            parts.append(f"{len(stopped)} file(s) interrupted, partial data kept for resume")
        if larger:
            parts.append(
                f"{len(larger)} local file(s) larger than the archive's, left alone "
                f"({_which(larger)})"
            )
        if not parts:
            return f"All {len(self)} ObsId(s) complete."
        return "; ".join(parts) + "."

    def write_manifest(self, path: str | os.PathLike[str]) -> None:
        """Write a manifest of these results (:mod:`chandra_download.manifest`): per file its
        size, sha256, processing version, the site's Last-Modified/ETag, what was checked."""
        from .manifest import write_results

        write_results(self, path)

    def retry(self) -> Results:
        """Run the same download again; complete files are skipped, the rest is fetched."""
        if self._rerun is None:
            raise RuntimeError("These results cannot be retried")
        return self._rerun()
