"""Generate a local, deterministic copy of the Chandra archive layout (``byobsid/`` tree).

File names, directories and formats follow the real archive (see ARCHIVE.md): FITS files are
valid FITS with correct ``CHECKSUM``/``DATASUM`` keywords, ``.gz`` files are real gzip
streams. Data are pseudo-random bytes seeded from (seed, ObsId, file name), so two runs give
identical trees. Large files are streamed in chunks, so multi-GB files need little memory.
File contents are written by :mod:`chandra_download.simulator.content`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..filetypes import classify
from .catalogue import update_catalogue
from .content import MTIME, write_file

__all__ = [
    "DEFAULT_OBSIDS",
    "DEFAULT_SIZES",
    "MTIME",
    "Reprocessed",
    "change_in_place",
    "generate_archive",
    "iter_files",
    "reprocess",
]

DEFAULT_OBSIDS: dict[int, str] = {1843: "acis", 2749: "acis-grating", 6298: "hrc"}
KINDS: tuple[str, ...] = ("acis", "acis-grating", "hrc")

# Approximate size in bytes of each file type at scale 1: one ObsId totals ~1-3 MB.
DEFAULT_SIZES: dict[str | None, int] = {
    "evt1": 1_000_000,
    "evt1a": 500_000,
    "evt2": 400_000,
    "vvref": 200_000,
    "pha2": 150_000,
    "arf": 30_000,
    "rmf": 60_000,
    "full_img": 60_000,
    "cntr_img": 40_000,
    "vv": 30_000,
    "readme": 2_000,
    None: 1_500,  # files with no known type
}
_OTHER_SIZE = 12_000

_REVISION = {1843: 5, 2749: 4, 6298: 6}
_STAMP_DIR = ".simulator"
_VERSION = re.compile(r"N\d{3}")
_REPROCESS_STEP = 30 * 86400  # each reprocessing is dated a month after the last


def _kind_map(obsids: Mapping[int, str] | Iterable[int] | None) -> dict[int, str]:
    if obsids is None:
        return dict(DEFAULT_OBSIDS)
    if isinstance(obsids, Mapping):
        out = {int(k): str(v) for k, v in obsids.items()}
    else:
        out = {int(o): KINDS[i % len(KINDS)] for i, o in enumerate(obsids)}
    for obsid, kind in out.items():
        if kind not in KINDS:
            raise ValueError(f"ObsId {obsid}: unknown kind {kind!r}; use one of {KINDS}")
    return out


def _layout(obsid: int, kind: str, bump: int = 0) -> list[str]:
    """Relative paths (below the ObsId directory) of one ObsId's files, after ``bump``
    reprocessings."""
    o5 = f"{obsid:05d}"
    rev = f"N{_REVISION.get(obsid, 4) + bump:03d}"
    t = f"{60_000_000 + obsid * 45_000:09d}"  # spacecraft-clock-like stamp in names
    inst = "hrcf" if kind == "hrc" else "acisf"
    p, s, a, e = "primary/", "secondary/", "secondary/aspect/", "secondary/ephem/"
    files = [
        "oif.fits",
        "00README",
        f"axaff{o5}{rev}_VV001_vv2.pdf.gz",
        f"{p}{inst}{o5}{rev}_evt2.fits.gz",
        f"{p}{inst}{o5}_000{rev}_fov1.fits.gz",
        f"{p}pcadf{o5}_000N001_asol1.fits.gz",
        f"{p}{inst}{o5}{rev}_cntr_img2.jpg",
        f"{p}{inst}{o5}{rev}_cntr_img2.fits.gz",
        f"{p}{inst}{o5}{rev}_full_img2.jpg",
        f"{p}{inst}{o5}{rev}_full_img2.fits.gz",
        f"{p}orbitf{t}N001_eph1.fits.gz",
        f"{s}{inst}{o5}_000{rev}_evt1.fits.gz",
        f"{s}{inst}{o5}_000{rev}_msk1.fits.gz",
        f"{s}{inst}{o5}_000{rev}_mtl1.fits.gz",
        f"{s}axaff{o5}{rev}_VV001_vvref2.pdf.gz",
        f"{a}pcadf{t}N001_osol1.fits.gz",
        f"{a}pcadf{int(t) + 1021:09d}N001_osol1.fits.gz",
        f"{a}pcadf{t}N001_aqual1.fits.gz",
        f"{a}pcadf{t}N001_adat31.fits.gz",
        f"{a}pcadf{t}N001_adat41.fits.gz",
        f"{a}pcadf{t}N001_adat71.fits.gz",
        f"{e}lunarf{t}N001_eph1.fits.gz",
        f"{e}solarf{t}N001_eph1.fits.gz",
        f"{e}anglesf{t}N001_eph1.fits.gz",
    ]
    if kind == "hrc":
        files += [
            f"{p}hrcf{o5}_000{rev}_dtf1.fits.gz",
            f"{s}hrcf{o5}_000{rev}_bpix1.fits.gz",
            f"{s}hrcf{o5}_000{rev}_std_flt1.fits.gz",
            f"{s}hrcf{o5}_000{rev}_std_dtfstat1.fits.gz",
            f"{a}pcadf{o5}_000N001_aoff1.fits.gz",
            f"{s}hrcf{o5}_000{rev}_evt1.log",  # no known type
        ]
    else:
        files += [
            f"{p}acisf{o5}_000{rev}_bpix1.fits.gz",
            f"{s}acisf{o5}_000{rev}_flt1.fits.gz",
            f"{s}acisf{o5}_000{rev}_stat1.fits.gz",
            f"{s}acisf{t}{rev}_0_bias0.fits.gz",
            f"{s}acisf{t}{rev}_1_bias0.fits.gz",
            f"{s}acisf{int(t) + 1110:09d}{rev}_pbk0.fits.gz",
            f"{s}acisf{o5}_000{rev}_process.par",  # no known type
        ]
    if kind == "acis":
        # Older products and rarer types, so that every known type occurs in the default tree.
        files += [
            f"{p}acisf{o5}{rev}_src2.fits.gz",
            f"{p}acisf{o5}{rev}_src_img2.jpg",
            f"{s}acisf{o5}_000{rev}_soff1.fits.gz",
            f"{a}pcadf{t}N001_sum2.fits.gz",
            f"{a}pcadf{t}N001_asp_plt1.png",
            f"{e}orbitf{t}N001_eph0.fits.gz",
        ]
    if kind == "acis-grating":
        files += [f"{p}acisf{o5}{rev}_pha2.fits.gz", f"{s}acisf{o5}_000{rev}_evt1a.fits.gz"]
        for arm in ("Hm1", "Hp1", "Mm1", "Mp1"):
            files.append(f"{p}responses/acisf{o5}{rev}_{arm}_arf2.fits.gz")
            files.append(f"{p}responses/acisf{o5}{rev}_{arm}_rmf2.fits.gz")
    return sorted(files)


def obsid_dir(root: Path | str, obsid: int) -> Path:
    """The directory ``<root>/byobsid/<obsid % 10>/<obsid>``."""
    return Path(root) / "byobsid" / str(obsid % 10) / str(obsid)


def generate_archive(
    root: Path | str,
    obsids: Mapping[int, str] | Iterable[int] | None = None,
    *,
    scale: float = 1.0,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    observations: Mapping[int, Mapping[str, object]] | None = None,
) -> Path:
    """Write a simulated archive tree ``<root>/byobsid/<obsid % 10>/<obsid>/...``.

    Parameters
    ----------
    root : path
        Directory to write into (created if needed); the mirror base is this directory.
    obsids : mapping of int to str, or iterable of int, optional
        ObsIds and their kind (``"acis"``, ``"acis-grating"`` or ``"hrc"``). A plain iterable
        cycles through the kinds in that order. Default: ``DEFAULT_OBSIDS``.
    scale : float
        Multiplies every data size (default sizes give ~1-3 MB per ObsId).
    seed : int
        Seed of the pseudo-random content.
    sizes : mapping of str to int, optional
        Approximate final size in bytes per file type (``classify`` name), e.g.
        ``{"evt1": 2_000_000_000}``; overrides ``scale`` for those types.
    observations : mapping of int to mapping, optional
        Catalogue metadata per ObsId (``instrument``, ``grating``, ``exposure``, ``ra``,
        ``dec``, ``target``, ``pi``, ``obs_date``... of
        :class:`~chandra_download.simulator.catalogue.Observation`), kept with the tree in
        ``.simulator/catalogue.json`` for the search services; defaults come from the kind.

    Returns
    -------
    Path
        ``root``. Calling again with the same arguments is cheap: a stamp file per ObsId
        in ``<root>/.simulator/`` records what was written, and complete files are kept.
    """
    root = Path(root)
    (root / _STAMP_DIR).mkdir(parents=True, exist_ok=True)
    overrides = dict(sizes or {})
    kinds = _kind_map(obsids)
    update_catalogue(root, kinds, observations)
    for obsid, kind in kinds.items():
        params = {"kind": kind, "scale": scale, "seed": seed, "sizes": sorted(overrides.items())}
        old = _read_stamp(root, obsid)
        done = old.get("files", {}) if old.get("params") == params else {}
        _write_obsid(root, obsid, params, done, int(old.get("reprocessed", 0)))
    return root


def _read_stamp(root: Path, obsid: int) -> dict:
    try:
        stamp = json.loads((root / _STAMP_DIR / f"{obsid}.json").read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _in_place(rel: str) -> bool:
    """A file whose name carries no processing version: reprocessing rewrites it in place."""
    return _VERSION.search(rel.rsplit("/", 1)[-1]) is None


def _write_obsid(
    root: Path, obsid: int, params: dict, done: Mapping[str, int], bump: int
) -> dict[str, int]:
    """Write one ObsId's files (those in ``done`` with that size are kept) and its stamp.

    ``bump`` is how many times the ObsId was reprocessed: versioned names carry a processing
    version that much higher, files without a version get new content (and size), and what
    changed carries a later modification time.
    """
    kind, seed = params["kind"], params["seed"]
    base = obsid_dir(root, obsid)
    written: dict[str, int] = {}
    for rel in _layout(obsid, kind, bump):
        path = base / rel
        if rel in done and path.is_file() and path.stat().st_size == done[rel]:
            written[rel] = done[rel]
            continue
        new = bump and (_in_place(rel) or f"N{_REVISION.get(obsid, 4) + bump:03d}" in rel)
        version = bump if bump and _in_place(rel) else 0
        path.parent.mkdir(parents=True, exist_ok=True)
        written[rel] = write_file(
            path,
            rel,
            obsid,
            kind,
            _asked_size(params, rel, version),
            seed,
            version=version,
            mtime=MTIME + _REPROCESS_STEP * bump if new else MTIME,
        )
    for d in sorted({(base / r).parent for r in written}, reverse=True) + [base]:
        os.utime(d, (MTIME, MTIME))
    stamp = {"params": params, "files": written, "reprocessed": bump}
    (root / _STAMP_DIR / f"{obsid}.json").write_text(json.dumps(stamp, indent=1))
    return written


def _asked_size(params: dict, rel: str, version: int) -> int:
    """The size a file is written with (``write_file`` makes it about that)."""
    ftype = classify(rel)
    size = dict(params["sizes"]).get(ftype or "", 0) or int(
        DEFAULT_SIZES.get(ftype, _OTHER_SIZE) * params["scale"]
    )
    return max(size, 16) + 6000 * version  # (each reprocessing: at least one more FITS block)


@dataclass(frozen=True)
class Reprocessed:
    """What :func:`reprocess` changed in one ObsId (paths relative to its directory)."""

    obsid: int
    old_version: int
    new_version: int
    #: (old name, new name) of every file whose name carries the processing version.
    renamed: list[tuple[str, str]]
    #: Files rewritten in place under the same name, with new content and size.
    changed: list[str]


def reprocess(root: Path | str, obsid: int) -> Reprocessed:
    """Reprocess one ObsId of a generated archive, as the CXC does.

    Every file whose name carries the ObsId's processing version (``N005``) is replaced by
    one named with the next version (``N006``) and new content: the old names are gone.
    Files whose names carry no version (``oif.fits``, ``00README``) are rewritten in place
    with new content and a new size. What changed gets a later modification time (the HTTP
    server's ``Last-Modified`` and ``ETag``); products of their own processing (``N001``
    aspect and ephemeris files) are left alone.

    Parameters
    ----------
    root : path
        The archive root given to :func:`generate_archive`.
    obsid : int
        An ObsId generated there.

    Returns
    -------
    Reprocessed
        The old and new processing versions and what was renamed and rewritten.

    Raises
    ------
    ValueError
        When the ObsId was not generated in ``root``.
    """
    root = Path(root)
    old = _read_stamp(root, obsid)
    if "params" not in old:
        raise ValueError(f"ObsId {obsid} was not generated in {root}")
    bump = int(old.get("reprocessed", 0))
    kind = old["params"]["kind"]
    before, after = _layout(obsid, kind, bump), _layout(obsid, kind, bump + 1)
    base = obsid_dir(root, obsid)
    for rel in sorted(set(before) - set(after)):
        (base / rel).unlink(missing_ok=True)
    done = {r: n for r, n in old.get("files", {}).items() if r in after and not _in_place(r)}
    _write_obsid(root, obsid, old["params"], done, bump + 1)
    gone = sorted(set(before) - set(after))
    renamed = list(zip(gone, sorted(set(after) - set(before)), strict=False))
    first = _REVISION.get(obsid, 4)
    changed = [r for r in after if _in_place(r)]
    return Reprocessed(obsid, first + bump, first + bump + 1, renamed, changed)


def change_in_place(root: Path | str, obsid: int, rel: str) -> Path:
    """Change one file at the archive in place: new content of the same size (still valid
    FITS where it is FITS), dated a day after its last modification time (the HTTP server's
    ``Last-Modified``/``ETag``, the FTP server's ``MLSD`` ``modify`` fact and ``MDTM``).

    Parameters
    ----------
    root : path
        The archive root given to :func:`generate_archive`.
    obsid : int
        An ObsId generated there.
    rel : str
        The file, relative to the ObsId directory; not gzipped (a new gzip stream need not
        keep its size).

    Returns
    -------
    Path
        The file at the archive.

    Raises
    ------
    ValueError
        When the ObsId was not generated in ``root``, the file is not there or is gzipped.
    """
    root = Path(root)
    stamp = _read_stamp(root, obsid)
    path = obsid_dir(root, obsid) / rel
    if "params" not in stamp or not path.is_file() or rel.endswith(".gz"):
        raise ValueError(f"cannot change {rel} of ObsId {obsid} in place at {root}")
    st = path.stat()
    changes = dict(stamp.get("in_place", {}))
    changes[rel] = int(changes.get(rel, 0)) + 1
    params = stamp["params"]
    asked = _asked_size(params, rel, int(stamp.get("reprocessed", 0)) if _in_place(rel) else 0)
    # The content is a function of the version: one no reprocessing reaches gives new bytes.
    write_file(
        path, rel, obsid, params["kind"], asked, params["seed"],
        version=1000 + changes[rel], mtime=int(st.st_mtime) + 86400,
    )  # fmt: skip
    if path.stat().st_size != st.st_size:
        raise AssertionError(f"{rel}: its size changed ({st.st_size} -> {path.stat().st_size})")
    stamp["in_place"] = changes
    (root / _STAMP_DIR / f"{obsid}.json").write_text(json.dumps(stamp, indent=1))
    return path


def iter_files(root: Path | str, obsid: int) -> list[tuple[str, Path]]:
    """List one ObsId's files as (path relative to the ObsId directory, absolute path).

    Parameters
    ----------
    root : path
        The archive root given to ``generate_archive``.
    obsid : int
        The ObsId.

    Returns
    -------
    list of (str, Path)
        Sorted by relative path (``/``-separated); empty if the ObsId is absent.
    """
    base = obsid_dir(root, obsid)
    out = [
        (p.relative_to(base).as_posix(), p)
        for p in base.rglob("*")
        if p.is_file() and not p.name.startswith(".")  # (its temporaries are dot-named)
    ]
    return sorted(out)
