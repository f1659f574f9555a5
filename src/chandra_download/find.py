"""Find public Chandra observations around a position, a target name or an ObsId.

The Python side of ``find_chandra_obsid``: :func:`find_chandra_obsids` resolves what it is
given to a position (an ObsId through the observation catalogue, a name through the CADC
resolver and then CDS Sesame, as CIAO does; or RA and Dec, decimal or sexagesimal), asks the
footprint service for the public observations within ``radius`` arcmin, filters gratings
(the service cannot) and returns one row per ObsId, the first the service gave.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import SessionConfig, configured
from .errors import ChandraDownloadError
from .log import vlog
from .services import (
    ServiceClient,
    ServiceError,
    cadc_url,
    footprint_query,
    ocat_details_url,
    parse_cadc,
    parse_footprints,
    parse_ocat,
    parse_sesame,
    service_url,
    sesame_url,
)

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = [
    "GRATINGS",
    "INSTRUMENTS",
    "NameNotResolved",
    "ResolversFailed",
    "Services",
    "find_chandra_obsids",
    "is_obsid",
    "parse_position",
    "resolve_name",
]

#: CIAO's ``instrument`` values and the footprint service's ``INST`` list for each.
INSTRUMENTS: dict[str, list[str] | None] = {
    "all": None,
    "acis": ["ACIS-I", "ACIS-S"],
    "hrc": ["HRC-I", "HRC-S"],
    "acisi": ["ACIS-I"],
    "aciss": ["ACIS-S"],
    "hrci": ["HRC-I"],
    "hrcs": ["HRC-S"],
}
#: CIAO's ``grating`` values and the ``Grating`` values each keeps.
GRATINGS: dict[str, set[str] | None] = {
    "all": None,
    "none": {"NONE"},
    "letg": {"LETG"},
    "hetg": {"HETG"},
    "any": {"LETG", "HETG"},
}
COLUMNS: tuple[str, ...] = ("obsid", "instrument", "grating", "exposure", "ra", "dec")
COLUMNS += ("separation", "target", "obsdate", "pi")
_OBSID = re.compile(r"^\d{1,5}$")


class NameNotResolved(ChandraDownloadError, ValueError):
    """No name resolver knows the target name."""


class ResolversFailed(ServiceError):
    """Every name resolver failed; the message has one part per resolver, in the order asked."""

    def __init__(self, name: str, errors: list[ServiceError]) -> None:
        ChandraDownloadError.__init__(
            self, f"could not resolve {name!r}: " + "; ".join(e.brief for e in errors)
        )
        self.service = errors[-1].service
        self.url = errors[-1].url
        self.problem = "; ".join(e.brief for e in errors)
        self.errors = errors

    @property
    def brief(self) -> str:
        """The whole message (it already names each resolver)."""
        return str(self)


@dataclass
class Services:
    """The search services' base URLs (keyword, else environment, else the real ones) and one
    HTTP client for all of them."""

    config: SessionConfig = field(default_factory=SessionConfig)
    footprint_url: str | None = None
    ocat_url: str | None = None
    cadc_url: str | None = None
    sesame_url: str | None = None

    def __post_init__(self) -> None:
        self.footprint_url = service_url("footprint", self.footprint_url)
        self.ocat_url = service_url("ocat", self.ocat_url)
        self.cadc_url = service_url("cadc", self.cadc_url)
        self.sesame_url = service_url("sesame", self.sesame_url)
        self.client = ServiceClient(self.config)


def is_obsid(text: object) -> bool:
    """True for an ObsId as CIAO's find_chandra_obsid reads one: 1-5 digits, 1 to 65535."""
    s = str(text).strip()
    return bool(_OBSID.match(s)) and 1 <= int(s) <= 65535


def parse_position(ra: str | float, dec: str | float) -> tuple[float, float]:
    """RA and Dec in degrees from decimal degrees or sexagesimal text.

    Sexagesimal RA is in hours (``12 30 49.4``, ``12:30:49.4``, ``12h30m49.4s``), Dec in
    degrees (``+12 23 28``, ``-47d 34'``). A bad value raises ValueError naming it.
    """
    from astropy import units as u
    from astropy.coordinates import Angle

    def angle(value: str | float, unit: u.Unit, what: str) -> float:
        try:
            return (
                float(value)
                if _is_number(value)
                else float(Angle(str(value).strip(), unit=unit).deg)
            )
        except (ValueError, TypeError, u.UnitsError) as exc:
            raise ValueError(f"Invalid {what} {value!r}: {exc}") from None

    ra_deg = angle(ra, u.hourangle, "RA")
    dec_deg = angle(dec, u.deg, "Dec")
    if not 0 <= ra_deg < 360:
        raise ValueError(f"Invalid RA {ra!r}: must be from 0 to 360 degrees (24 hours)")
    if not -90 <= dec_deg <= 90:
        raise ValueError(f"Invalid Dec {dec!r}: must be from -90 to +90 degrees")
    return ra_deg, dec_deg


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def obsid_position(obsid: int, services: Services) -> tuple[float, float] | None:
    """Position of an ObsId from ``ocatDetails.do``; None when the catalogue has no such ObsId."""
    url = ocat_details_url(services.ocat_url, obsid)  # type: ignore[arg-type]
    reply = services.client.get("ocat", url)
    rows = parse_ocat(reply.body, url)
    if not rows:
        return None
    row = rows[0]
    vlog(
        2,
        "ObsId %s status=%s RA=%s Dec=%s",
        obsid,
        row.get("STATUS"),
        row.get("RA"),
        row.get("Dec"),
    )
    try:
        return parse_position(row["RA"], row["Dec"])
    except (KeyError, ValueError) as exc:
        raise ServiceError(
            "ocat", url, f"no readable RA and Dec for ObsId {obsid}: {exc}"
        ) from None


def resolve_name(name: str, services: Services) -> tuple[float, float]:
    """Position of a target name: the CADC resolver, then CDS Sesame (CIAO's order).

    Raises
    ------
    NameNotResolved
        Neither resolver knows the name (and at least one answered).
    ServiceError
        Both resolvers failed: ``could not resolve 'm87': CADC name resolver (URL) failed:
        ...; CDS Sesame name resolver (URL) failed: ...``.
    """
    problems: list[ServiceError] = []
    for key, make_url, parse in (
        ("cadc", cadc_url, parse_cadc),
        ("sesame", sesame_url, parse_sesame),
    ):
        base = getattr(services, f"{key}_url")
        try:
            reply = services.client.get(key, make_url(base, name), ok=(200, 425))
            pos = parse(reply)
        except ServiceError as exc:
            vlog(2, "%s", exc)
            problems.append(exc)
            continue
        if pos is not None:
            vlog(2, "Resolved %r to ra=%s dec=%s (%s)", name, pos[0], pos[1], key)
            return pos
    if len(problems) == 2:
        raise ResolversFailed(name, problems)
    extra = f" ({problems[0].brief})" if problems else ""
    raise NameNotResolved(f"Unable to resolve the name {name!r} with CADC or CDS Sesame{extra}")


def locate(
    arg: object, dec: object | None, services: Services
) -> tuple[float, float, str]:  # fmt: skip
    """(ra, dec, how) of what the user gave: RA and Dec, an ObsId, or a name."""
    if dec is not None and str(dec).strip() != "":
        ra_deg, dec_deg = parse_position(arg, dec)  # type: ignore[arg-type]
        return ra_deg, dec_deg, "position"
    if hasattr(arg, "icrs"):  # an astropy SkyCoord
        c = arg.icrs  # type: ignore[attr-defined]
        return float(c.ra.deg), float(c.dec.deg), "position"
    text = str(arg).strip()
    if not text:
        raise ValueError("A position (RA and Dec), ObsId or target name must be given")
    if is_obsid(text):
        pos = obsid_position(int(text), services)
        if pos is not None:
            return pos[0], pos[1], f"ObsId {int(text)}"
        vlog(2, "No ObsId %s in the catalogue; trying it as a name", text)
        try:
            ra_deg, dec_deg = resolve_name(text, services)
        except NameNotResolved:
            raise NameNotResolved(
                f"ObsId {int(text)} is not in the observation catalogue, and no name resolver "
                f"knows {text!r}"
            ) from None
        return ra_deg, dec_deg, f"name {text!r}"
    ra_deg, dec_deg = resolve_name(text, services)
    return ra_deg, dec_deg, f"name {text!r}"


def search(
    ra: float, dec: float, radius: float, instrument: str, grating: str, services: Services
) -> Table:
    """The footprint search around (ra, dec) within ``radius`` arcmin, as a Table."""
    inst = INSTRUMENTS[instrument]
    url = footprint_query(services.footprint_url, ra, dec, radius / 60.0, inst)  # type: ignore[arg-type]
    vlog(2, "Querying the footprint service: %s", url)
    rows = parse_footprints(services.client.get("footprint", url).body, url)
    keep = GRATINGS[grating]
    seen: set[int] = set()
    unique = []
    for row in rows:
        try:
            value: Any = row["ObsId"]  # a service's text: checked here
            obsid = int(value)
        except (TypeError, ValueError):
            raise ServiceError("footprint", url, f"bad ObsId {row['ObsId']!r}") from None
        if obsid in seen:
            continue
        seen.add(obsid)
        if keep is None or str(row["Grating"]).strip().upper() in keep:
            unique.append(row)
    vlog(3, "%d rows, %d ObsIds after removing duplicates and filtering", len(rows), len(unique))
    return _table(unique, ra, dec, radius)


def _table(rows: Sequence[Mapping[str, object]], ra: float, dec: float, radius: float) -> Table:
    import numpy as np
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    def col(name: str, kind: type) -> list:
        return [kind(r.get(name) if r.get(name) is not None else kind()) for r in rows]

    ras, decs = np.array(col("RA", float)), np.array(col("Dec", float))
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    sep = centre.separation(SkyCoord(ras * u.deg, decs * u.deg)).arcmin if rows else []
    table = Table(
        [
            np.array(col("ObsId", int), dtype=int),
            np.array(col("Instrument", str), dtype=str),
            np.array(col("Grating", str), dtype=str),
            np.array(col("Exposure", float)) * u.ks,
            ras * u.deg,
            decs * u.deg,
            np.array(sep, dtype=float) * u.arcmin,
            np.array(col("target_name", str), dtype=str),
            np.array(col("obs_date", str), dtype=str),
            np.array(col("pi_last_name", str), dtype=str),
        ],
        names=COLUMNS,
        meta={"ra": ra, "dec": dec, "radius": radius},
    )
    table["exposure"].format, table["separation"].format = ".1f", ".2f"  # for printing only
    return table


def find_chandra_obsids(
    arg: object,
    dec: object | None = None,
    *,
    radius: float = 1.0,
    instrument: str = "all",
    grating: str = "all",
    config: SessionConfig | None = None,
    footprint_url: str | None = None,
    ocat_url: str | None = None,
    cadc_url: str | None = None,
    sesame_url: str | None = None,
    **options: object,
) -> Table:
    """Public Chandra observations around a position, an ObsId's position or a target name.

    Parameters
    ----------
    arg : str, int, float or SkyCoord
        An ObsId (1-5 digits), a target name (CADC resolver, then CDS Sesame), the RA when
        ``dec`` is given (decimal degrees or sexagesimal hours), or a SkyCoord.
    dec : str or float, optional
        The Dec (decimal or sexagesimal degrees) when ``arg`` is an RA.
    radius : float, default 1
        Search radius in arcmin; 0 means the position must be covered.
    instrument : str, default "all"
        ``all``, ``acis``, ``hrc``, ``acisi``, ``aciss``, ``hrci`` or ``hrcs``.
    grating : str, default "all"
        ``all``, ``none``, ``letg``, ``hetg`` or ``any`` (filtered here: the service cannot).
    config : SessionConfig, optional
        Timeouts, retries and TLS settings; keyword ``options`` (``timeout=``...) override.
    footprint_url, ocat_url, cadc_url, sesame_url : str, optional
        Service base URLs; default ``$CHANDRA_FOOTPRINT_URL``, ``$CHANDRA_OCAT_URL`` (up to
        and including ``srservices/``), ``$CHANDRA_CADC_RESOLVER_URL``,
        ``$CHANDRA_SESAME_URL``, else the real services.

    Returns
    -------
    astropy.table.Table
        One row per ObsId (the service's first row for it): ``obsid``, ``instrument``,
        ``grating``, ``exposure`` (ks), ``ra``, ``dec`` (deg, aim point), ``separation``
        (arcmin from the search position), ``target``, ``obsdate``, ``pi``; ``meta`` holds
        the search ``ra``, ``dec`` and ``radius``. ``table["obsid"]`` goes straight
        into :func:`chandra_download.download`.

    Raises
    ------
    ValueError
        A bad argument (also :class:`NameNotResolved` for an unknown name).
    ServiceError
        A service failed or answered something unreadable; the message names it.
    """
    instrument, grating = _search_choices(instrument, grating, radius)
    config = _with_options(config, options)
    services = Services(config, footprint_url, ocat_url, cadc_url, sesame_url)
    try:
        ra, dec_deg, how = locate(arg, dec, services)
        vlog(2, "Searching around ra=%s dec=%s (%s), radius %s arcmin", ra, dec_deg, how, radius)
        table = search(ra, dec_deg, float(radius), instrument, grating, services)
    finally:
        services.client.close()
    table.meta["located_by"] = how
    return table


def _search_choices(instrument: str, grating: str, radius: float) -> tuple[str, str]:
    """The instrument and grating in lower case, each checked, and the radius checked."""
    instrument, grating = str(instrument).lower(), str(grating).lower()
    if instrument not in INSTRUMENTS:
        raise ValueError(f"Invalid instrument {instrument!r}; use one of {', '.join(INSTRUMENTS)}")
    if grating not in GRATINGS:
        raise ValueError(f"Invalid grating {grating!r}; use one of {', '.join(GRATINGS)}")
    if not radius >= 0:
        raise ValueError(f"Invalid radius {radius!r}: must be 0 or more arcmin")
    return instrument, grating


def _with_options(config: SessionConfig | None, options: dict[str, object]) -> SessionConfig:
    """A copy of ``config`` with the keyword ``options`` set on it, checked again; the
    caller's object is never changed."""
    return configured(config, options, "find_chandra_obsids")
