"""The listing-time symlink check of every file of one ObsId at once (issue 19.3).

:func:`~chandra_download.plan.unsafe_target` looks at each name a file's download would write
with one ``lstat`` each: its directories, the file, its ``.part``, state file and the state's
temporary, about ten calls per file, most of them the same directories again. A re-run with
nothing to do spends a good part of its time there. :func:`unsafe_targets` gives the same
answers for all the files of an ObsId with each directory looked at once: the directories on
the way by one ``lstat`` each, the directories holding files read once (``os.scandir``: the
entries' types come with the names, no call per file). Anything unusual (a directory in the
way that is a file, a name too long, a type the scan does not tell) is left to
``unsafe_target`` itself, so the answers are its answers.

This check is advisory (the tree may change after it): ``FileJob._still_safe`` repeats it
just before the first write.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .plan import unsafe_target
from .statedir import PART_SUFFIX, STATE_SUFFIX, TMP_SUFFIX, Spot, key

#: The longest file name the scan answers for (longer: ``unsafe_target`` says what is wrong).
_NAME_MAX = 255


class _Absent(Exception):
    """A directory on the way does not exist: what is below it is ours to create."""


#: A chain with a directory missing (see :meth:`_Scan.chain`).
_ABSENT = object()


class _Unusual(Exception):
    """Something the scan does not judge: ``unsafe_target`` does."""


class _Scan:
    """What one pass learnt of the directories of an ObsId's files."""

    def __init__(self) -> None:
        self._kinds: dict[str, str] = {}  # directory path -> "dir", "link" or "missing"
        self._entries: dict[str, dict[str, os.DirEntry[str]]] = {}
        # Directory names -> their path, or why there is none (each chain walked once).
        self._chains: dict[tuple[str, ...], str | int | object] = {}  # int: a _Link's depth

    def kind(self, path: str) -> str:
        if path not in self._kinds:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self._kinds[path] = "missing"
            else:
                if stat.S_ISLNK(st.st_mode):
                    self._kinds[path] = "link"
                elif stat.S_ISDIR(st.st_mode):
                    self._kinds[path] = "dir"
                else:
                    raise _Unusual()
        return self._kinds[path]

    def chain(self, outdir: str, names: list[str]) -> str:
        """The directory ``outdir/names...``, each step looked at without following links;
        raises _Absent when one is missing, _Link when one is a symlink."""
        known = self._chains.get(key := tuple(names))
        if known is None:
            try:
                known = self._walk(outdir, names)
            except _Absent:
                known = _ABSENT
            except _Link as link:
                known = link.depth
            self._chains[key] = known
        if isinstance(known, int):
            raise _Link(known)
        if not isinstance(known, str):  # (_ABSENT)
            raise _Absent()
        return known

    def _walk(self, outdir: str, names: list[str]) -> str:
        path = outdir
        for depth, name in enumerate(names, 1):
            path = os.path.join(path, name)
            kind = self.kind(path)
            if kind == "missing":
                raise _Absent()
            if kind == "link":
                raise _Link(depth)
        return path

    def entries(self, directory: str) -> dict[str, os.DirEntry[str]]:
        if directory not in self._entries:
            try:
                with os.scandir(directory) as it:
                    self._entries[directory] = {e.name: e for e in it}
            except OSError as exc:
                raise _Unusual() from exc
        return self._entries[directory]


class _Link(Exception):
    """A directory on the way is a symlink: the ``depth``-th."""

    def __init__(self, depth: int) -> None:
        super().__init__(depth)
        self.depth = depth


@dataclass
class TargetScan:
    """What one pass over an ObsId's files found: ``problems`` (by relpath, as
    ``unsafe_target`` says them) and ``bare``, the files with nothing of ours on disk (no
    ``.part``, state file or temporary) when looked at."""

    problems: dict[str, str | None] = field(default_factory=dict)
    bare: set[str] = field(default_factory=set)


def unsafe_targets(top: Path, relpaths: Iterable[str]) -> dict[str, str | None]:
    """:func:`~chandra_download.plan.unsafe_target` of each file ``top/relpath`` (``top``
    the ObsId's directory), by relpath; OSErrors other than a missing name raise as there."""
    return scan_targets(top, relpaths).problems


def scan_targets(top: Path, relpaths: Iterable[str]) -> TargetScan:
    """The problems of :func:`unsafe_targets`, and which files have nothing of ours."""
    scan = _Scan()
    out = TargetScan()
    outdir = str(top.parent)
    for relpath in relpaths:
        try:
            spot = Spot(top.parent, top.name, relpath)
            out.problems[relpath], bare = _problem(scan, spot, outdir)
        except _Unusual:
            out.problems[relpath], bare = unsafe_target(top, top / relpath), False
        if bare:
            out.bare.add(relpath)
    return out


def _problem(scan: _Scan, spot: Spot, outdir: str) -> tuple[str | None, bool]:
    """(Why writing the file is refused or None, whether nothing of ours is there);
    ``outdir``: ``spot.outdir`` as text."""
    folders: list[str | None] = []
    for dirs in (spot.target_dirs, spot.partial_dirs):
        try:
            folders.append(scan.chain(outdir, dirs))
        except _Absent:
            folders.append(None)  # nothing below exists: nothing there to refuse
        except _Link as link:
            directory = spot.outdir.joinpath(*dirs[: link.depth])
            return f"refusing to write {spot.target}: {directory} is a symlink", False
    target_dir, partial_dir = folders
    named: list[tuple[str | None, str, str]] = [(target_dir, spot.name, "")]
    if partial_dir is not None:
        stem = key(spot.relpath)
        named += [
            (partial_dir, stem + PART_SUFFIX, "part"),
            (partial_dir, stem + STATE_SUFFIX, "state"),
            (partial_dir, stem + STATE_SUFFIX + TMP_SUFFIX, "state_tmp"),
        ]
    bare = True
    for folder, name, which in named:
        if folder is None:
            continue
        if len(name) > _NAME_MAX // 4 and len(os.fsencode(name)) > _NAME_MAX:
            raise _Unusual()  # (4 bytes at most per character: a shorter name fits)
        entry = scan.entries(folder).get(name)
        if entry is None:
            continue
        bare = bare and not which  # (the file itself may be there; a temporary may not)
        try:
            if entry.is_symlink():
                return f"refusing to write {_shown(spot, which)}: it is a symlink", False
            if not entry.is_file(follow_symlinks=False):
                why = "it is not a regular file"
                return f"refusing to write {_shown(spot, which)}: {why}", False
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                continue  # gone since the scan
            raise _Unusual() from exc
    return None, bare


def _shown(spot: Spot, which: str) -> Path:
    """The name refused, as ``unsafe_target`` says it."""
    return getattr(spot, which) if which else spot.target
