"""Decide per file from local state: present, larger, finish, resume (whole or in parts), fetch.

:func:`look` reads what is on disk (never following symlinks), :func:`decide` turns that and
the archive's exact size into a :class:`Decision`. The transfer calls both twice: once to
skip what is done without taking a lock, and again under the lock, because another process
may have finished or advanced the file meanwhile.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .errors import LocalError
from .results import LocalState
from .split import PartsState, load_state
from .statedir import Spot
from .tree import Dirs, lstat_at


class Action(Enum):
    FETCH = "fetch"  # nothing usable on disk: from byte 0
    RESUME = "resume"  # a contiguous .part: on from its end
    ADOPT = "adopt"  # a shorter file at the final name (CIAO's leftover): resume it via .part
    PARTS = "parts"  # a split download's .part and state: on with the parts not done
    FINISH = "finish"  # a .part of full size: verify it and move it into place
    PRESENT = "present"  # complete already
    LARGER = "larger"  # the local file is bigger than the archive's: warn, leave it alone


#: What each decision says about the local copy (``--list``, ``--check``).
LOCAL_STATE = {
    Action.FETCH: LocalState.MISSING,
    Action.RESUME: LocalState.PARTIAL,
    Action.ADOPT: LocalState.PARTIAL,
    Action.PARTS: LocalState.PARTIAL,
    Action.FINISH: LocalState.PARTIAL,
    Action.PRESENT: LocalState.COMPLETE,
    Action.LARGER: LocalState.LARGER,
}


@dataclass(frozen=True)
class OnDisk:
    """Sizes of the final file and of its ``.part`` (None: absent), and the split state."""

    final: int | None
    part: int | None
    state: PartsState | None = None  # when a usable state file is there
    state_problem: str | None = None  # why a state file that is there cannot be used
    state_file: bool = False

    @property
    def empty(self) -> bool:
        return self.final is None and not self.part and not self.state_file

    @property
    def leftovers(self) -> bool:
        """Our temporary files beside a final file."""
        return self.part is not None or self.state_file


@dataclass(frozen=True)
class Decision:
    action: Action
    offset: int = 0  # bytes on disk the action starts from
    note: str | None = None  # why something on disk is discarded, for the log

    @property
    def local(self) -> LocalState:
        return LOCAL_STATE[self.action]


def _size(dir_fd: int, name: str, path: Path) -> int | None:
    """Size of a regular file in an open directory; None when absent. A symlink or anything
    else is refused."""
    return _regular_size(lstat_at(dir_fd, name, path), path)


def _regular_size(st: os.stat_result | None, path: Path) -> int | None:
    if st is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise LocalError(f"refusing to write {path}: it is {kind}", path)
    return st.st_size


def look(spot: Spot, dirs: Dirs, part: os.stat_result | None = None) -> OnDisk:
    """What is on disk for a file: its final file, and its ``.part`` and split state in our
    hidden directory (:mod:`chandra_download.statedir`), each looked at through the open
    directories ``dirs`` (:mod:`chandra_download.tree`), never through a symlink. ``part``:
    the status of the .part the caller holds open and locked (the file at its name)."""
    state, problem = load_state(spot.state, spot.relpath, dir_fd=dirs.partial_fd)
    return OnDisk(
        _size(dirs.target_fd, spot.name, spot.target),
        _size(dirs.partial_fd, spot.part_name, spot.part)
        if part is None
        else _regular_size(part, spot.part),
        state,
        problem,
        state is not None or problem is not None,
    )


def needs_size(disk: OnDisk) -> bool:
    """True when deciding needs the archive's exact size (anything is on disk)."""
    return not disk.empty


def decide(disk: OnDisk, size: int | None) -> Decision:
    """The action for a file; ``size`` is the archive's exact size (None only when
    :func:`needs_size` is False, i.e. nothing is on disk)."""
    if disk.final is not None:
        assert size is not None
        if disk.final == size:
            return Decision(Action.PRESENT, size)
        if disk.final > size:
            return Decision(Action.LARGER, disk.final)
        return Decision(Action.ADOPT, disk.final)
    if disk.state_file:
        return _decide_parts(disk, size)
    if disk.part and size is not None:
        if disk.part == size:
            return Decision(Action.FINISH, size)
        if disk.part < size:
            return Decision(Action.RESUME, disk.part)
        return Decision(Action.FETCH, note=f"a .part of {disk.part} bytes, more than the file")
    return Decision(Action.FETCH)


def _decide_parts(disk: OnDisk, size: int | None) -> Decision:
    state = disk.state
    if state is None:
        return Decision(Action.FETCH, note=f"its saved state is unusable: {disk.state_problem}")
    if size is None or state.size != size:
        return Decision(Action.FETCH, note="its saved state is for another version of the file")
    if (disk.part or 0) < state.furthest or (disk.part or 0) > size:
        return Decision(Action.FETCH, note="its .part does not hold what its state claims")
    return Decision(Action.PARTS, sum(p.done for p in state.parts))


def unsafe_target(top: Path, path: Path) -> str | None:
    """Why writing ``path`` would go through a symlink or onto something not a file, or None.

    Every existing directory from the ObsId's directory ``top`` down to the file's, and every
    name we write (the file; in our hidden directory, its ``.part``, the state file and its
    temporary, and the directories down to them), is looked at without following links: no
    symlink is written through, even one that stays inside the tree. Other OSErrors (a name
    too long...) are the caller's to report.
    """
    spot = Spot(top.parent, top.name, path.relative_to(top).as_posix())
    for dirs in (spot.target_dirs, spot.partial_dirs):
        directory = top.parent
        for part in dirs:
            directory = directory / part
            try:
                mode = os.lstat(directory).st_mode
            except FileNotFoundError:
                break  # the rest is ours to create
            if stat.S_ISLNK(mode):
                return f"refusing to write {path}: {directory} is a symlink"
    optional = (spot.state, spot.state_tmp)
    for name in (path, spot.part, *optional):
        try:
            mode = os.lstat(name).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG and name in optional:
                continue  # too long to exist: such a file is fetched whole, without state
            raise
        if stat.S_ISLNK(mode):
            return f"refusing to write {name}: it is a symlink"
        if not stat.S_ISREG(mode):
            return f"refusing to write {name}: it is not a regular file"
    return None
