"""Our own name space: every temporary and state file lives under ``<outdir>/.chandra-download/``.

The archive's names all live under ``<outdir>/<ObsId>/``, so nothing a listing holds can
collide with ours (a listed ``e.fits.gz.part`` is just another archive file). In progress::

    <outdir>/.chandra-download/partial/<ObsId>/<K>.part        the bytes so far
    <outdir>/.chandra-download/partial/<ObsId>/<K>.parts       a split download's state
    <outdir>/.chandra-download/partial/<ObsId>/<K>.parts.tmp   its temporary while saved
    <outdir>/.chandra-download/records/<ObsId>.json            what was fetched (reproc)

``K`` is the sha256 of the file's path within its ObsId: fixed length, so an archive name of
255 bytes still has room, and no sub-directories mirror the archive's. The state file records
the path it belongs to; one found for another path is discarded with its ``.part``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import FileResult

STATE_DIR = ".chandra-download"
PARTIAL = "partial"
RECORDS = "records"
PART_SUFFIX = ".part"
STATE_SUFFIX = ".parts"
TMP_SUFFIX = ".tmp"


def root(outdir: Path) -> Path:
    """The hidden directory of ours in an output directory."""
    return outdir / STATE_DIR


def records_dir(outdir: Path) -> Path:
    """Where the records of what was fetched live (one ``<ObsId>.json`` each)."""
    return root(outdir) / RECORDS


def key(relpath: str) -> str:
    """The fixed-length name stem of a file's temporaries: sha256 hex of its path."""
    return hashlib.sha256(os.fsencode(relpath)).hexdigest()


@lru_cache(maxsize=64)
def _path(text: str) -> Path:
    """An output directory's Path, made once (every file of a run has the same)."""
    return Path(text)


@dataclass(frozen=True)
class Spot:
    """Where one archive file and its temporaries live.

    Parameters
    ----------
    outdir : Path
        The output directory.
    obsid : str
        The ObsId's directory name below it.
    relpath : str
        The file's path within the ObsId, ``/``-separated.

    Its names and paths are worked out once each (a file asks for them a dozen times).
    """

    outdir: Path
    obsid: str
    relpath: str

    @classmethod
    def of(cls, fr: FileResult) -> Spot:
        """The spot of a file result (its path is ``<outdir>/<ObsId>/<relpath>``)."""
        path, tail = str(fr.path), os.sep + fr.relpath.replace("/", os.sep)
        if path.endswith(tail):  # as the engine builds it: cut as text (pathlib's parents cost)
            outdir, obsid = os.path.split(path[: -len(tail)])
            spot = cls(_path(outdir), obsid, fr.relpath)
            spot.__dict__["target"] = fr.path  # (its cached target: the same path, made)
            return spot
        top = fr.path.parents[len(fr.relpath.split("/")) - 1]
        return cls(top.parent, top.name, fr.relpath)

    @cached_property
    def top(self) -> Path:
        """The ObsId's directory."""
        return self.outdir / self.obsid

    @cached_property
    def target(self) -> Path:
        return self.top / self.relpath

    @cached_property
    def name(self) -> str:
        """The final name within its directory."""
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def target_dirs(self) -> list[str]:
        """Directory names from the output directory down to the target's directory."""
        return [self.obsid, *self.relpath.split("/")[:-1]]

    @property
    def partial_dirs(self) -> list[str]:
        """Directory names from the output directory down to the temporaries' directory."""
        return [STATE_DIR, PARTIAL, self.obsid]

    @cached_property
    def partial_dir(self) -> Path:
        return self.outdir.joinpath(*self.partial_dirs)

    @cached_property
    def part_name(self) -> str:
        return key(self.relpath) + PART_SUFFIX

    @cached_property
    def state_name(self) -> str:
        return key(self.relpath) + STATE_SUFFIX

    @cached_property
    def state_tmp_name(self) -> str:
        return self.state_name + TMP_SUFFIX

    @cached_property
    def part(self) -> Path:
        return self.partial_dir / self.part_name

    @cached_property
    def state(self) -> Path:
        return self.partial_dir / self.state_name

    @cached_property
    def state_tmp(self) -> Path:
        return self.partial_dir / self.state_tmp_name
