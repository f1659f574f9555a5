"""Decide per file what to do from local state: skip, resume or fetch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .sources.base import RemoteFile

PART_SUFFIX = ".part"


class Action(Enum):
    FETCH = "fetch"  # nothing usable on disk
    RESUME = "resume"  # a shorter copy exists (ours at .part, or CIAO's at the final name)
    PRESENT = "present"  # complete already
    LARGER = "larger"  # the local file is bigger than the archive's: warn, leave it alone
    PROBE = "probe"  # size unknown (HTTP): the transfer's first response decides


@dataclass
class FilePlan:
    """What to do with one remote file and where its bytes go."""

    remote: RemoteFile
    target: Path
    action: Action
    offset: int = 0  # bytes already on disk to resume from
    partial_at_target: bool = False  # a shorter file sits at the final name (CIAO's leftovers)

    @property
    def part(self) -> Path:
        return part_path(self.target)


def part_path(target: Path) -> Path:
    """Temporary name beside the target; moved into place only when complete and verified."""
    return target.with_name(target.name + PART_SUFFIX)


def _size(path: Path) -> int | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size


def plan_file(remote: RemoteFile, target: Path) -> FilePlan:
    """Look at the target and its ``.part`` file and decide, using the exact size when known."""
    final = _size(target)
    if final is not None:
        if remote.size is None:
            return FilePlan(remote, target, Action.PROBE, final, partial_at_target=True)
        return FilePlan(remote, target, *_compare(final, remote.size), partial_at_target=True)
    part = _size(part_path(target)) or 0
    if remote.size is None:
        return FilePlan(remote, target, Action.PROBE, part)
    if part > remote.size:
        return FilePlan(remote, target, Action.FETCH, 0)  # stale .part of another version
    if part == 0:
        return FilePlan(remote, target, Action.FETCH, 0)
    return FilePlan(remote, target, Action.RESUME, part)


def _compare(local: int, remote: int) -> tuple[Action, int]:
    if local == remote:
        return Action.PRESENT, local
    if local > remote:
        return Action.LARGER, local
    return Action.RESUME, local


def resolve(local: int, total: int) -> Action:
    """Action once the archive's size is known (after a probe)."""
    return _compare(local, total)[0] if local else Action.FETCH
