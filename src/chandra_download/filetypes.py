"""The archive's file types: names, descriptions, and how a file name maps to one."""

from __future__ import annotations

from collections.abc import Iterable

# Description of every type CIAO knows (2013 help page plus the current tool's additions).
DESCRIPTIONS: dict[str, str] = {
    "adat": "Aspect camera raw data (PCAD level 1)",
    "aoff": "Aspect offset files",
    "aqual": "Aspect quality files",
    "arf": "Grating ancillary response files (ARF)",
    "asol": "Aspect solution files",
    "bias": "Bias maps",
    "bpix": "Bad-pixel file",
    "cntr_img": "High-resolution image (JPEG and FITS) of the center of the field of view",
    "dtf": "Dead-time factor file (HRC)",
    "eph0": "Level 0 ephemeris files",
    "eph1": "Ephemeris files (orbit, solar, lunar and viewing angles)",
    "evt1": "Level 1 event file",
    "evt1a": "Level 1.5 (grating) event file",
    "evt2": "Level 2 event file",
    "flt": "Good-time intervals for the observation",
    "fov": "Field-of-view file for the observation",
    "full_img": "Low-resolution image (JPEG and FITS) of the field of view",
    "msk": "The detector mask file",
    "mtl": "The mission timeline",
    "oif": "The observation index file",
    "osol": "The on-board-computer (OBC) aspect solution files",
    "pbk": "The parameter block file",
    "pha2": "Grating spectra",
    "plt": "Aspect plot files",
    "readme": "The 00README file",
    "rmf": "Grating response matrix files (RMF)",
    "soff": "Alignment offset files (no longer produced, as of DS 8.4)",
    "src2": "Imaging source list (no longer produced, as of DS 8.4)",
    "src_img": "Source image",
    "stat": "The exposure statistics file",
    "sum": "Aspect summary files",
    "vv": "The verification and validation report",
    "vvref": "The verification and validation reference report",
}

FILETYPES: tuple[str, ...] = tuple(sorted(DESCRIPTIONS))

# Named selections, accepted wherever a list of types is (filetypes and exclude lists).
SELECTIONS: dict[str, tuple[str, ...]] = {
    # What CIAO's chandra_repro reads (ciao-contrib bin/chandra_repro, the files it looks for
    # in primary/ and secondary/): evt1; flt1, msk1, mtl1, stat1 (ACIS); bpix1; bias0 and pbk0
    # (ACIS, for acis_build_badpix); asol1, or osol1 for OBC-mode observations without asol;
    # fov1; evt2 (tg_zo_position=evt2, and copied when no step runs); dtf1 (HRC); and every
    # eph1 file: the orbit ephemeris, and a non-orbit one that marks a moving (solar system)
    # target, which it corrects with sso_freeze (without it the correction is skipped).
    "repro": (
        "evt1", "evt2", "flt", "bpix", "bias", "pbk", "asol", "osol", "fov", "msk", "mtl",
        "stat", "dtf", "eph1",
    ),
    # A level-2 analysis: events, aspect, field of view, bad pixels, mask, dead time, orbit
    # ephemeris, and the grating spectra and responses where the observation has them.
    "level2": ("evt2", "asol", "fov", "bpix", "msk", "dtf", "eph1", "pha2", "arf", "rmf"),
    # The archive's ready-made images (JPEG and FITS).
    "images": ("cntr_img", "full_img", "src_img"),
}  # fmt: skip
SELECTION_DESCRIPTIONS: dict[str, str] = {
    "repro": "What CIAO's chandra_repro reads to reprocess an observation: level-1 events, "
    "GTIs, bad pixels, bias and parameter block, aspect (or OBC aspect), FOV, masks, "
    "timeline, exposure stats, dead time, and the ephemerides (moving targets)",
    "level2": "What a level-2 analysis needs (specextract, fluximage): level-2 events, aspect, "
    "FOV, bad pixels, mask, dead time, orbit ephemeris, grating spectra and responses",
    "images": "The archive's ready-made images (JPEG and FITS): center, full field, source",
}


def named_selections() -> list[tuple[str, str, tuple[str, ...]]]:
    """The named selections as (name, description, types), for ``-t`` listings."""
    return [(name, SELECTION_DESCRIPTIONS[name], types) for name, types in SELECTIONS.items()]


# Order matters: the first `_T` found in a name wins, most specific first.
_MATCH_ORDER: tuple[str, ...] = tuple(
    (
        "oif vv bpix fov evt2 src2 cntr_img full_img src_img asol eph0 eph1 aoff evt1a evt1 flt "
        "msk mtl soff stat arf rmf bias pbk osol aqual sum pha2 dtf plt adat vvref readme"
    ).split()
)


def classify(name: str) -> str | None:
    """Return the file type of an archive file name (its last path component), or None.

    Parameters
    ----------
    name : str
        A file name such as ``acisf02749N004_evt2.fits.gz`` (directories are ignored).

    Returns
    -------
    str or None
        The type, e.g. ``"evt2"``, or None when the name has no known type.
    """
    base = name.rsplit("/", 1)[-1]
    if base == "oif.fits":
        return "oif"
    if base.lower() == "00readme":
        return "readme"
    # vvref2 contains "vv" but not "vv2"; test it first so the two never collide.
    if "vvref2" in base:
        return "vvref"
    if "vv2" in base:
        return "vv"
    for ftype in _MATCH_ORDER:
        if f"_{ftype}" in base:
            return ftype
    return None


def file_format(name: str) -> str:
    """Short format label for output tables: ``fits``, ``pdf``, ``jpg``, ``text``..."""
    base = name.rsplit("/", 1)[-1].lower()
    if base.endswith(".gz"):
        base = base[:-3]
    if base.endswith((".fits", ".fit", ".fts")):
        return "fits"
    if "." not in base:
        return "text"
    return base.rsplit(".", 1)[-1]


def _normalise(types: str | Iterable[str] | None, what: str) -> tuple[set[str], set[str]]:
    """(every type meant, the types named one by one rather than through a selection)."""
    if types is None:
        return set(), set()
    if isinstance(types, str):
        types = types.split(",")
    out: set[str] = set()
    named: set[str] = set()
    given = [str(t).strip().lower() for t in types]
    if not any(given):  # an empty $TYPES in a script: not "everything"
        raise ValueError(f"The {what} file type list is empty; give types (see -t), or none at all")
    for t in given:
        if not t:
            continue
        if t in SELECTIONS:
            out.update(SELECTIONS[t])
            continue
        if t not in DESCRIPTIONS:
            raise ValueError(
                f"Unknown {what} file type {t!r}; valid types are: {', '.join(FILETYPES)} "
                f"(or the selections {', '.join(SELECTIONS)})"
            )
        out.add(t)
        named.add(t)
    return out, named


class Selection:
    """Which file types to fetch, from a wanted list and an excluded list.

    Parameters
    ----------
    filetypes : str or iterable of str, optional
        Types to fetch (a comma-separated string or a list). None: everything. An empty
        list or string is a ValueError (it selects nothing, and is usually an unset
        variable).
        A named selection (``repro``, ``level2``, ``images``; see ``SELECTIONS``) stands
        for its types.
    exclude : str or iterable of str, optional
        Types never to fetch (selections allowed); None: none. Empty is a ValueError. A type in both lists is excluded (see
        ``conflicts``).
    """

    def __init__(
        self,
        filetypes: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
    ) -> None:
        self.wanted, named = _normalise(filetypes, "requested")
        self.excluded, _ = _normalise(exclude, "excluded")
        # A selection minus some of its types (``level2`` excluding ``eph1``) is no conflict.
        self.conflicts = sorted(named & self.excluded)

    def accepts(self, ftype: str | None) -> bool:
        """True when a file of this type (None: untyped) should be fetched."""
        if ftype is not None and ftype in self.excluded:
            return False
        if self.wanted:
            return ftype in self.wanted
        return True

    def bytes_saved(self, files: Iterable[tuple[str, int | None]]) -> int:
        """Bytes of the listed files this selection leaves out (what ``--list`` saves).

        Parameters
        ----------
        files : iterable of (str, int or None)
            Every file of the listing: (path or name, size in bytes; None counts as 0).
        """
        return sum(size or 0 for name, size in files if not self.accepts(classify(name)))

    def describe(self) -> str:
        parts = []
        if self.wanted:
            parts.append("types " + ",".join(sorted(self.wanted)))
        if self.excluded:
            parts.append("excluding " + ",".join(sorted(self.excluded)))
        return "; ".join(parts) or "all files"
