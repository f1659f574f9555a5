"""The simulated archive's observation metadata: what the search services serve.

``generate_archive`` keeps one :class:`Observation` per generated ObsId (position, instrument,
grating, exposure, target, PI, dates, status ``archived``) in ``<root>/.simulator/
catalogue.json``, plus ObsIds that have no directory because they are not public: observed
with a release date in the future, scheduled, unobserved, untriggered or canceled. It also
keeps the target names the simulated resolvers know.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "CATALOGUE_FILE",
    "M87",
    "Observation",
    "load_catalogue",
    "not_public_observations",
    "observation_for",
    "update_catalogue",
]

CATALOGUE_FILE = Path(".simulator") / "catalogue.json"
M87 = (187.70593, 12.39112)  # ICRS degrees: the simulated sky is centred here

#: Instrument and grating of each simulator kind, unless given.
_KIND_SETUP = {
    "acis": ("ACIS-I", "NONE"),
    "acis-grating": ("ACIS-S", "HETG"),
    "hrc": ("HRC-I", "NONE"),
}


@dataclass
class Observation:
    """One observation of the simulated catalogue (dates as ``YYYY-MM-DD[ HH:MM:SS]``)."""

    obsid: int
    status: str = "archived"
    instrument: str = "ACIS-S"
    grating: str = "NONE"
    exposure: float = 10.0  # ks
    ra: float = M87[0]
    dec: float = M87[1]
    target: str = "M87"
    pi: str = "Smith"
    obs_date: str | None = "2001-01-01 00:00:00"
    public_avail: str | None = "2002-01-01"
    footprint_pieces: int = 2  # rows per ObsId in the footprint service's answer
    field_radius: float = 0.5  # arcmin: the footprint is a circle of this radius

    @property
    def public(self) -> bool:
        """Released: served by the footprint search and present in ``byobsid/``."""
        if self.status not in ("archived", "observed") or not self.public_avail:
            return False
        return self.public_avail[:10] <= dt.date.today().isoformat()


def _offset(ra: float, dec: float, dra_arcmin: float, ddec_arcmin: float) -> tuple[float, float]:
    cos = max(math.cos(math.radians(dec)), 1e-6)
    return round(ra + dra_arcmin / 60 / cos, 6), round(dec + ddec_arcmin / 60, 6)


# The default tree's ObsIds: within a few arcmin of M87, one per instrument/grating kind.
_DEFAULTS: dict[int, dict[str, object]] = {
    1843: dict(
        exposure=40.2, target="M87", pi="Harris", obs_date="2000-07-29 20:44:31",
        public_avail="2001-08-07", offset=(0.1, 0.3), footprint_pieces=3,
    ),
    2749: dict(
        exposure=25.1, target="M87 JET", pi="van der Berg", obs_date="2002-07-05 11:12:05",
        public_avail="2003-07-17", offset=(-0.5, -0.4),
    ),
    6298: dict(
        exposure=12.5, target="M87", pi="García", obs_date="2005-11-10 03:02:01",
        public_avail="2006-11-21", offset=(2.0, 1.5),
    ),
}  # fmt: skip


def observation_for(obsid: int, kind: str, **overrides: object) -> Observation:
    """Metadata of a generated ObsId: the defaults above, else derived from ObsId and kind."""
    instrument, grating = _KIND_SETUP[kind]
    spec: dict[str, Any] = {"instrument": instrument, "grating": grating}
    spec.update(
        _DEFAULTS.get(obsid)
        or dict(
            exposure=round(5 + (obsid % 47) * 1.3, 1),
            obs_date=(dt.date(2000, 1, 1) + dt.timedelta(days=obsid % 7000)).isoformat()
            + " 12:00:00",
            public_avail=(dt.date(2001, 1, 1) + dt.timedelta(days=obsid % 7000)).isoformat(),
            offset=((obsid % 5) * 0.2, (obsid % 7) * 0.3),
        )
    )
    spec.update(overrides)
    dra, ddec = spec.pop("offset", (0.0, 0.0))
    if "ra" not in spec and "dec" not in spec:
        spec["ra"], spec["dec"] = _offset(*M87, dra, ddec)
    return Observation(obsid=obsid, **spec)


def not_public_observations(today: dt.date | None = None) -> list[Observation]:
    """ObsIds with no directory: one per catalogue status that is not (yet) public."""
    today = today or dt.date.today()
    later = (today + dt.timedelta(days=400)).isoformat()
    near = _offset(*M87, 0.2, 0.1)
    common: dict[str, Any] = dict(ra=near[0], dec=near[1], target="M87", pi="Lee")
    return [
        Observation(30001, "observed", "ACIS-S", "NONE", 30.0, obs_date=f"{today} 01:00:00",
                    public_avail=later, **common),
        Observation(30002, "scheduled", "ACIS-I", "NONE", 20.0, obs_date=None,
                    public_avail=None, **common),
        Observation(30003, "unobserved", "HRC-S", "LETG", 50.0, obs_date=None,
                    public_avail=None, **common),
        Observation(30004, "untriggered", "ACIS-S", "HETG", 15.0, obs_date=None,
                    public_avail=None, **common),
        Observation(30005, "canceled", "HRC-I", "NONE", 10.0, obs_date=None,
                    public_avail=None, **common),
    ]  # fmt: skip


#: Names each simulated resolver knows ("both", "cadc" or "sesame"), and their positions.
DEFAULT_TARGETS: dict[str, dict[str, object]] = {
    "M87": {"ra": M87[0], "dec": M87[1], "known_by": "both"},
    "NGC 4486": {"ra": M87[0], "dec": M87[1], "known_by": "both"},
    "Virgo A": {"ra": M87[0], "dec": M87[1], "known_by": "sesame"},
    "Empty Field": {"ra": 10.0, "dec": -60.0, "known_by": "both"},
}


@dataclass
class Catalogue:
    """Everything the simulated services serve: observations by ObsId, and target names."""

    observations: dict[int, Observation] = field(default_factory=dict)
    targets: dict[str, dict[str, object]] = field(default_factory=dict)

    def find_target(self, name: str, resolver: str) -> tuple[float, float] | None:
        """Position of a target name as ``resolver`` (``cadc``/``sesame``) would give it."""
        key = "".join(name.split()).lower()
        for known, info in self.targets.items():
            if "".join(known.split()).lower() == key and info["known_by"] in ("both", resolver):
                return float(info["ra"]), float(info["dec"])  # type: ignore[arg-type]
        return None


def load_catalogue(root: Path | str) -> Catalogue:
    """The catalogue kept in ``<root>/.simulator/catalogue.json`` (empty when absent)."""
    try:
        data = json.loads((Path(root) / CATALOGUE_FILE).read_text())
    except (OSError, ValueError):
        return Catalogue(targets=dict(DEFAULT_TARGETS))
    obs = {int(o["obsid"]): Observation(**o) for o in data.get("observations", [])}
    return Catalogue(obs, data.get("targets") or dict(DEFAULT_TARGETS))


def update_catalogue(
    root: Path | str,
    kinds: Mapping[int, str],
    overrides: Mapping[int, Mapping[str, object]] | None = None,
    extra: Iterable[Observation] | None = None,
) -> Catalogue:
    """Record the metadata of generated ObsIds (and the not-public ones) in the catalogue.

    Parameters
    ----------
    root : path
        The archive root.
    kinds : mapping of int to str
        The ObsIds just generated and their kinds.
    overrides : mapping of int to mapping, optional
        Per ObsId, :class:`Observation` fields to set (``instrument``, ``grating``, ``ra``...).
    extra : iterable of Observation, optional
        ObsIds with no directory; default :func:`not_public_observations`.
    """
    cat = load_catalogue(root)
    for o in not_public_observations() if extra is None else extra:
        if o.obsid not in kinds:
            cat.observations[o.obsid] = replace(o)
    for obsid, kind in kinds.items():
        cat.observations[obsid] = observation_for(
            obsid, kind, **dict((overrides or {}).get(obsid, {}))
        )
    path = Path(root) / CATALOGUE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "observations": [asdict(o) for _, o in sorted(cat.observations.items())],
        "targets": cat.targets,
    }
    path.write_text(json.dumps(data, indent=1))
    return cat
