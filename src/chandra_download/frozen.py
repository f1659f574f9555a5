"""Exact reproduction: fetch exactly a manifest's files, or audit local files against it.

``download_chandra_obsid --frozen FILE`` (:func:`reproduce`) fetches exactly the files a
manifest lists into the same relative paths. Each is fetched into a staging tree,
``<outdir>/.chandra-download/frozen/`` (ours, resumable), and put in place only when its
sha256 is the manifest's: a file the archive changed or no longer lists fails, named with what
changed, and the local tree keeps whatever it had. Files already in place with the manifest's
sha256 are not fetched. ``--check --frozen FILE`` (:func:`audit`) compares local files with
the manifest by sha256 and needs no site at all: it catches damage to files with no check of
their own (jpg, pdf, text).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SessionConfig
from .errors import LocalError
from .filetypes import Selection, classify
from .manifest import Manifest, ManifestFile
from .plan import unsafe_target
from .record import RECORDS, RecordBook, load, record_session, sha256_file
from .results import FileResult, ObsIdResult, Results, Status
from .sources.base import ListingPage, PageRef, RemoteFile, Source, WrappedSource

#: The staging tree, below the output directory (ours: beside the archive's ``<ObsId>/``).
STAGING = RECORDS.parent / "frozen"


def _same(path: Path, want: ManifestFile, outdir: Path) -> bool:
    """Whether the local file holds the manifest's bytes (the record spares a re-read)."""
    if want.sha256 is None:
        return False
    rec = load(outdir, want.obsid).get(want.relpath)
    if rec is not None and rec.sha256 is not None and rec.describes(path):
        return rec.sha256 == want.sha256
    try:
        return sha256_file(path) == want.sha256
    except OSError:
        return False


class _Only(WrappedSource):
    """A source that lists only a manifest's files of each ObsId."""

    def __init__(self, inner: Source, wanted: dict[int, set[str]]) -> None:
        super().__init__(inner)
        self._wanted = wanted

    def list_obsid(self, obsid: int) -> list[RemoteFile]:  # noqa: D102
        keep = self._wanted.get(obsid, set())
        return [f for f in self.inner.list_obsid(obsid) if f.relpath in keep]

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:  # noqa: D102
        return self._only(obsid, self.inner.list_page(obsid, ref))

    def list_pages(self, pages: list[tuple[int, PageRef]]) -> list[ListingPage | Exception | None]:
        """The inner source's pipelined pages, each filtered as by ``list_page``."""
        got = self.inner.list_pages(pages)
        return [
            self._only(obsid, page) if isinstance(page, ListingPage) else page
            for (obsid, _), page in zip(pages, got, strict=False)
        ]

    def _only(self, obsid: int, page: ListingPage) -> ListingPage:
        keep = self._wanted.get(obsid, set())
        return ListingPage([f for f in page.files if f.relpath in keep], page.more, page.nbytes)


def reproduce(
    manifest: Manifest,
    mirror: str | Sequence[str] | None = None,
    username: str | None = None,
    userpass: str | None = None,
    *,
    outdir: str | os.PathLike[str] = ".",
    obsids: Iterable[int] | None = None,
    reporter: Any = None,
    config: SessionConfig | None = None,
    **options: Any,
) -> Results:
    """Fetch exactly the manifest's files (of ``obsids``, default all) into ``outdir``.

    Returns
    -------
    Results
        Per ObsId and manifest file: ``already present`` (the manifest's bytes were there),
        ``downloaded`` (fetched and verified), or ``failed`` naming what changed at the
        archive or that it is gone; a failed file is never put in place.
    """
    from .api import _mirrors, _sources, session_config
    from .engine import Engine
    from .progress import Reporter

    out = Path(outdir)
    keep = set(obsids) if obsids is not None else None
    files = [f for f in manifest.files if keep is None or f.obsid in keep]
    cfg = session_config(config, dict(options))
    done, todo = _present(files, out)
    wanted: dict[int, set[str]] = {}
    for f in todo:
        wanted.setdefault(f.obsid, set()).add(f.relpath)
    staged: list[ObsIdResult] = []
    if wanted:
        with _sources(_mirrors(mirror), cfg, username, userpass) as sources:
            engine = Engine([_Only(s, wanted) for s in sources], cfg, reporter or Reporter())
            engine.ctx.records = RecordBook(journal=False)  # (staging: recorded once placed)
            staged = engine.run(list(wanted), Selection(None, None), out / STAGING)
    results = _settle(files, done, staged, out)
    record_session(out, results, cfg.verify_checksums, cfg.fsync)
    return Results(results)


def _present(
    files: list[ManifestFile], out: Path
) -> tuple[dict[tuple[int, str], FileResult], list[ManifestFile]]:
    """The manifest's files already in place with its bytes, and the others."""
    done: dict[tuple[int, str], FileResult] = {}
    todo = []
    for f in files:
        path = out / str(f.obsid) / f.relpath
        if _same(path, f, out):
            fr = _result(f, path)
            fr.status, fr.local_size = Status.PRESENT, f.size or 0
            done[(f.obsid, f.relpath)] = fr
        else:
            todo.append(f)
    return done, todo


def _result(f: ManifestFile, path: Path) -> FileResult:
    return FileResult(
        f.obsid, f.relpath, f.url or "", path, f.type or classify(f.relpath), size=f.size
    )


def _settle(
    files: list[ManifestFile],
    done: dict[tuple[int, str], FileResult],
    staged: list[ObsIdResult],
    out: Path,
) -> list[ObsIdResult]:
    """Per ObsId, in the manifest's order: each staged file checked against its sha256 and
    put in place, or failed; files the archive no longer lists failed."""
    fetched = {(fr.obsid, fr.relpath): fr for r in staged for fr in r.files}
    listed = {r.obsid: r for r in staged}
    by_obsid: dict[int, ObsIdResult] = {}
    for f in files:
        r = by_obsid.setdefault(f.obsid, ObsIdResult(f.obsid, found=True))
        key = (f.obsid, f.relpath)
        if key in done:
            r.files.append(done[key])
            continue
        fr = fetched.get(key)
        if fr is None:
            r.files.append(_gone(f, out, listed.get(f.obsid)))
            continue
        _put_in_place(fr, f, out)
        r.files.append(fr)
    return list(by_obsid.values())


def _gone(f: ManifestFile, out: Path, listing: ObsIdResult | None) -> FileResult:
    fr = _result(f, out / str(f.obsid) / f.relpath)
    fr.status = Status.FAILED
    if listing is None or not listing.found:
        why = listing.error if listing is not None and listing.error else "ObsId not found"
        fr.reason = f"not fetched: {why} at the site"
    else:
        fr.reason = "gone from the archive: the site no longer lists it"
    return fr


def _put_in_place(fr: FileResult, want: ManifestFile, out: Path) -> None:
    """A staged file with the manifest's sha256 moves to its final name; one with other
    bytes fails, saying what changed, and is removed from the staging tree."""
    final = out / str(want.obsid) / want.relpath
    if not fr.ok:
        fr.path = final
        return
    staged = fr.path
    digest = fr.sha256 or sha256_file(staged)
    if want.sha256 is not None and digest != want.sha256:
        size = staged.stat().st_size
        staged.unlink(missing_ok=True)
        fr.status, fr.path = Status.FAILED, final
        sizes = f"{want.size} -> {size} bytes" if want.size != size else f"same size, {size} bytes"
        fr.reason = (
            f"changed at the archive since the manifest was written ({sizes}; sha256 "
            f"{want.sha256[:12] if want.sha256 else 'none'}... -> {digest[:12]}...); "
            "not put in place"
        )
        return
    fr.path = final
    problem = _move_into_place(staged, final, out / str(want.obsid))
    if problem is not None:  # the verified copy stays staged: the next run takes it from there
        fr.status, fr.reason = Status.FAILED, problem
        return
    if want.sha256 is None:
        fr.warning = "the manifest has no sha256 for it: not verified"


def _move_into_place(staged: Path, final: Path, top: Path) -> str | None:
    """Move a verified staged file to its final name; why not (one line), or None."""
    problem = unsafe_target(top, final)  # no symlink in the way is written through
    if problem is not None:
        return problem
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        problem = unsafe_target(top, final)
        if problem is None:
            os.replace(staged, final)
    except OSError as exc:  # a read-only directory, a file where a directory should be...
        return str(LocalError.from_os(exc, final))
    return problem


# -- --check --frozen ---------------------------------------------------------------------------
@dataclass
class FrozenAudit:
    """Local files against a manifest, by sha256: ``ok`` when all match."""

    matching: list[ManifestFile] = field(default_factory=list)
    #: Files present but without a sha256 in the manifest (written by --list before they
    #: were fetched): nothing to compare with.
    unchecked: list[ManifestFile] = field(default_factory=list)
    missing: list[ManifestFile] = field(default_factory=list)
    #: Files there but not readable (permissions, not a regular file), with why.
    unreadable: list[tuple[ManifestFile, str]] = field(default_factory=list)
    #: Files whose bytes differ from the manifest's, with the local sha256 and size.
    differing: list[tuple[ManifestFile, str, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unreadable or self.differing)

    def lines(self, verbose: int = 1) -> list[str]:
        """The report: one line per problem (per good file from verbose 2), then a total."""
        out = [f"  missing  {f.obsid}/{f.relpath}" for f in self.missing]
        out += [f"  unreadable {f.obsid}/{f.relpath}: {why}" for f, why in self.unreadable]
        for f, digest, size in self.differing:
            what = f"{f.size} -> {size} bytes" if f.size != size else f"same size, {size} bytes"
            out.append(
                f"  differs  {f.obsid}/{f.relpath}: not the manifest's bytes ({what}; sha256 "
                f"{(f.sha256 or '')[:12]}... -> {digest[:12]}...)"
            )
        out += [f"  no sha256 {f.obsid}/{f.relpath}: not in the manifest" for f in self.unchecked]
        if verbose >= 2:
            out += [f"  ok       {f.obsid}/{f.relpath}" for f in self.matching]
        n = len(self.matching) + len(self.missing) + len(self.differing) + len(self.unchecked)
        n += len(self.unreadable)
        state = "OK" if self.ok else "DIFFERENT"
        unreadable = f", {len(self.unreadable)} unreadable" if self.unreadable else ""
        out.append(
            f"Manifest: {state}: {len(self.matching)} of {n} file(s) match by sha256, "
            f"{len(self.missing)} missing{unreadable}, {len(self.differing)} differ"
        )
        return out


def audit(manifest: Manifest, outdir: str | os.PathLike[str] = ".") -> FrozenAudit:
    """Compare the local files with the manifest by sha256 (every file is read)."""
    out = Path(outdir)
    report = FrozenAudit()
    for f in manifest.files:
        path = out / str(f.obsid) / f.relpath
        try:
            digest, size = sha256_file(path), path.stat().st_size
        except FileNotFoundError:
            report.missing.append(f)
            continue
        except OSError as exc:  # there, but not a regular file we may read
            report.unreadable.append((f, exc.strerror or type(exc).__name__))
            continue
        if f.sha256 is None:
            report.unchecked.append(f)
        elif digest == f.sha256:
            report.matching.append(f)
        else:
            report.differing.append((f, digest, size))
    return report
