"""Superseded revisions: local files the archive has since reprocessed under a new name.

The CXC reprocesses observations and the processing version is part of the file names
(``acisf01843N005_evt2.fits.gz`` becomes ``acisf01843N006_evt2.fits.gz``). A local file is
*superseded* when the archive now lists, for the same ObsId and directory, the same product
under a higher processing version, and no longer lists the local name. Left beside the new
revision, such files make CIAO's ``chandra_repro`` refuse the directory ("Multiple evt1 files
found"), so they are reported, and moved (never deleted) to
``<outdir>/superseded/<ObsId>/<relpath>`` on request (``prune_superseded=True``).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import VerificationError
from .results import FileResult, ObsIdResult, Status
from .verify import check_file

#: The processing version in a file name: ``N005`` followed by ``_``.
_VERSION = re.compile(r"N(\d{3})(?=_)")
#: Where superseded files are moved, below the output directory.
SUPERSEDED_DIR = "superseded"


def processing_version(relpath: str) -> int | None:
    """The processing version in a file's name (``N005`` -> 5), or None when it has none."""
    m = _VERSION.search(relpath.rsplit("/", 1)[-1])
    return int(m[1]) if m else None


def product_key(relpath: str) -> str | None:
    """The product a file is a revision of: its directory and name with the version masked
    (``primary/acisf01843N###_evt2.fits.gz``); None for a name without a version."""
    head, slash, name = relpath.rpartition("/")
    if _VERSION.search(name) is None:
        return None
    return head + slash + _VERSION.sub("N###", name, count=1)


@dataclass(frozen=True)
class Superseded:
    """One local file the archive has reprocessed: ``relpath`` is the local (old) name,
    ``new_relpath`` the name the archive lists now; both relative to ``<outdir>/<ObsId>/``."""

    obsid: int
    relpath: str
    old_version: int
    new_relpath: str
    new_version: int


def local_files(top: Path) -> list[str]:
    """Every file below ``top`` (``/``-separated, sorted), our own in-progress names aside
    (they are reported with the file they belong to)."""
    out: list[str] = []
    try:
        if not top.is_dir():
            return out
    except OSError:  # (a name too long...): the download tells it for its files
        return out
    root = os.fspath(top)
    for dirpath, _dirs, names in os.walk(root):  # (each dirpath is root joined with more)
        sub = dirpath[len(root) :].strip(os.sep).replace(os.sep, "/")
        out.extend(f"{sub}/{name}" if sub else name for name in names)  # (no Path per file)
    out.sort()
    return out


def own_base(rel: str) -> str:
    """The listed name a local file belongs to: itself. Our in-progress files live in our
    hidden directory (:mod:`chandra_download.statedir`), so a local ``x.part`` is the
    archive's own file, never ours."""
    return rel


def find_superseded(obsid: int, local: Iterable[str], listed: Iterable[str]) -> list[Superseded]:
    """The local files superseded by what the archive lists now.

    Parameters
    ----------
    obsid : int
        The ObsId.
    local : iterable of str
        Local files, relative to ``<outdir>/<ObsId>/``.
    listed : iterable of str
        What the archive lists for the ObsId (of the selected types), same form.

    Returns
    -------
    list of Superseded
        Sorted by local name; each names the highest revision the archive lists.
    """
    listed = set(listed)
    newest: dict[str, tuple[int, str]] = {}
    for rel in listed:
        key, version = product_key(rel), processing_version(rel)
        if key is not None and version is not None and version > newest.get(key, (-1, ""))[0]:
            newest[key] = (version, rel)
    out = []
    for rel in sorted(set(local) - listed):
        key, version = product_key(rel), processing_version(rel)
        if key is None or version is None or key not in newest:
            continue
        new_version, new_rel = newest[key]
        if new_version > version:
            out.append(Superseded(obsid, rel, version, new_rel, new_version))
    return out


def superseded_in(r: ObsIdResult, outdir: Path) -> list[Superseded]:
    """The superseded local files of one ObsId's result (its listed files of the selection)."""
    if not r.found:
        return []
    local = [rel for rel in local_files(outdir / str(r.obsid)) if own_base(rel) == rel]
    return find_superseded(r.obsid, local, (f.relpath for f in r.files))


def versions(items: list[Superseded]) -> str:
    """``N005 -> N006`` (or ``N004, N005 -> N006``) for a message."""
    old = ", ".join(f"N{v:03d}" for v in sorted({s.old_version for s in items}))
    new = ", ".join(f"N{v:03d}" for v in sorted({s.new_version for s in items}))
    return f"{old} -> {new}"


@dataclass
class Pruned:
    """What :func:`prune` did for one ObsId."""

    moved: list[Superseded]
    #: Files left in place, with why (the new revision not complete, a name taken...).
    kept: list[tuple[Superseded, str]]


def prune(r: ObsIdResult, outdir: Path, items: list[Superseded]) -> Pruned:
    """Move superseded files whose new revision is complete and verified to
    ``<outdir>/superseded/<ObsId>/<relpath>``; never delete nor overwrite anything."""
    by_rel = {f.relpath: f for f in r.files}
    done = Pruned([], [])
    for s in items:
        why = _not_ready(by_rel.get(s.new_relpath))
        if why is None:
            why = _move(outdir, s)
        if why is None:
            done.moved.append(s)
        else:
            done.kept.append((s, why))
    return done


def _not_ready(fr: FileResult | None) -> str | None:
    """Why a new revision does not yet allow moving the old one aside, or None."""
    if fr is None or not fr.ok:
        return "its new revision is not complete"
    if fr.status is Status.PRESENT and not fr.warning:
        try:  # complete before this run: verified now (a fresh download was, as it came)
            check_file(fr.path, fr.relpath)
        except VerificationError as exc:
            return f"its new revision fails its check ({exc.detail})"
        except OSError as exc:
            return f"its new revision cannot be read ({exc.strerror})"
    return None


def _move(outdir: Path, s: Superseded) -> str | None:
    """Move one superseded file aside, or say why not. Its new name is linked first and the
    old one dropped after, so a file already there is never replaced (a link does not
    overwrite) and a move a crash left halfway is finished by the next run; each directory
    below ``outdir`` is opened without following a symlink (one planted there is refused)."""
    source = outdir / str(s.obsid) / s.relpath
    target = outdir / SUPERSEDED_DIR / str(s.obsid) / s.relpath
    parts = [SUPERSEDED_DIR, str(s.obsid), *s.relpath.split("/")]
    dirs, name = parts[:-1], parts[-1]
    try:
        fd = _open_dirs(outdir, dirs)
    except _Refused as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot move it to {target}: {exc.strerror}"
    try:
        return _link_then_unlink(source, fd, name, target)
    finally:
        os.close(fd)


class _Refused(Exception):
    """A directory on the way to ``superseded/`` that is a symlink or not a directory."""


#: A link refused because the file system has none (or protects them): renamed instead.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}


def _open_dirs(top: Path, names: list[str]) -> int:
    """The directory ``top/names[0]/names[1]/...`` opened component by component, each made
    when missing and none followed if it is a symlink."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        for i, name in enumerate(names):
            try:
                os.mkdir(name, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                below = os.open(name, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    shown = top.joinpath(*names[: i + 1])
                    why = f"{shown} is a symlink or not a directory: not moved there"
                    raise _Refused(why) from None
                raise
            os.close(fd)
            fd = below
        return fd
    except BaseException:
        os.close(fd)
        raise


def _link_then_unlink(source: Path, fd: int, name: str, target: Path) -> str | None:
    try:
        os.link(source, name, dst_dir_fd=fd, follow_symlinks=False)
    except FileExistsError:
        if not _same_file(source, fd, name):
            return f"{target} exists already"
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            return f"cannot move it to {target}: {exc.strerror}"
        return _rename_unless_there(source, fd, name, target)
    try:
        os.unlink(source)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return f"linked to {target} but cannot remove it here: {exc.strerror}"
    return None


def _same_file(source: Path, fd: int, name: str) -> bool:
    """Whether ``name`` in ``fd`` is ``source`` itself (a move a crash left halfway)."""
    try:
        a, b = os.lstat(source), os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _rename_unless_there(source: Path, fd: int, name: str, target: Path) -> str | None:
    """Without hard links: a rename, when nothing is at the new name."""
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
        return f"{target} exists already"
    except FileNotFoundError:
        pass
    try:
        os.rename(source, name, dst_dir_fd=fd)
    except OSError as exc:
        return f"cannot move it to {target}: {exc.strerror}"
    return None


def settle_superseded(
    results: Iterable[ObsIdResult], outdir: Path, prune_them: bool, list_only: bool = False
) -> None:
    """After a download or ``--list``: set each ObsId's ``superseded`` files; after a
    download also move them aside when asked (``prune_them``), and say per ObsId what is
    left and what to run."""
    from .log import vlog

    for r in results:
        r.superseded = superseded_in(r, outdir)
        if not r.superseded or list_only:
            continue
        if prune_them:
            done = prune(r, outdir, r.superseded)
            r.superseded = [s for s, _why in done.kept]
            if done.moved:
                where = outdir / SUPERSEDED_DIR / str(r.obsid)
                vlog(
                    1,
                    "ObsId %s: moved %d superseded file(s) (%s) to %s/",
                    r.obsid,
                    len(done.moved),
                    versions(done.moved),
                    where,
                )
            for s, why in done.kept:
                vlog(0, "ObsId %s: superseded %s left in place: %s", r.obsid, s.relpath, why)
            continue
        vlog(
            0,
            "ObsId %s: %d local file(s) superseded by the archive's reprocessing (%s) are "
            "still in %s/ (CIAO's chandra_repro refuses a directory holding two revisions); "
            "run the same command with --prune-superseded (prune_superseded=True) to move "
            "them to %s/",
            r.obsid,
            len(r.superseded),
            versions(r.superseded),
            outdir / str(r.obsid),
            outdir / SUPERSEDED_DIR / str(r.obsid),
        )


def superseded_lines(results: Iterable[ObsIdResult]) -> list[str]:
    """``--list``: one line per superseded local file."""
    return [
        f"{s.obsid:>6}  superseded {s.relpath} (N{s.old_version:03d} -> N{s.new_version:03d}: "
        f"{s.new_relpath})"
        for r in results
        for s in getattr(r, "superseded", [])
    ]
