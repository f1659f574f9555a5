"""Where our temporaries of a file live (``<outdir>/.chandra-download/partial/<ObsId>/``)."""

from __future__ import annotations

from pathlib import Path

from chandra_download.statedir import Spot


def ours(outdir: Path, obsid: object, rel: str, kind: str = "part") -> Path:
    """The ``part``, ``state`` or ``state_tmp`` path of ``rel``; its directory is made."""
    spot = Spot(outdir, str(obsid), rel)
    spot.partial_dir.mkdir(parents=True, exist_ok=True)
    return {"part": spot.part, "state": spot.state, "state_tmp": spot.state_tmp}[kind]


def state_text(rel: str, text: str) -> str:
    """A state file's JSON text (``{"size": ..., "parts": ...}``) with its owner's relpath."""
    import json

    data = json.loads(text)
    return json.dumps({"relpath": rel, **data})
