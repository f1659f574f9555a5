"""Generate a local, deterministic copy of the Chandra archive layout (``byobsid/`` tree).

File names, directories and formats follow the real archive (see ARCHIVE.md): FITS files are
valid FITS with correct ``CHECKSUM``/``DATASUM`` keywords, ``.gz`` files are real gzip
streams. Data are pseudo-random bytes seeded from (seed, ObsId, file name), so two runs give
identical trees. Large files are streamed in chunks, so multi-GB files need little memory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from ..filetypes import classify

__all__ = ["DEFAULT_OBSIDS", "DEFAULT_SIZES", "MTIME", "generate_archive", "iter_files"]

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

MTIME = 1560411720  # 2019-06-13 07:42:00 UTC, the date every generated entry carries
_GZ_FAST_LIMIT = 32_000_000  # above this, gzip level 0 (stored) so huge files are quick
_CHUNK = 2880 * 1456  # ~4 MiB, a whole number of FITS blocks and of 8-byte words
_REVISION = {1843: 5, 2749: 4, 6298: 6}
_STAMP_DIR = ".simulator"


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


def _layout(obsid: int, kind: str) -> list[str]:
    """Relative paths (below the ObsId directory) of one ObsId's files."""
    o5 = f"{obsid:05d}"
    rev = f"N{_REVISION.get(obsid, 4):03d}"
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


# --- deterministic byte streams ------------------------------------------------------------


def _seed_for(seed: int, obsid: int, rel: str) -> int:
    digest = hashlib.sha256(f"{seed}:{obsid}:{rel}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _chunks(seed: int, total: int, real: int) -> Iterator[np.ndarray]:
    """Yield ``total`` bytes (a multiple of 8) as uint8 arrays; bytes past ``real`` are 0.

    One random block is drawn and each further chunk is that block XOR a per-chunk key:
    drawing fresh random bytes for GB-sized files would dominate generation time.
    """
    rng = np.random.default_rng(seed)
    block = np.frombuffer(rng.bytes(min(_CHUNK, total)), dtype=np.uint64)
    keys = rng.integers(0, 2**63, size=max(1, -(-total // _CHUNK)), dtype=np.uint64)
    for i, start in enumerate(range(0, total, _CHUNK)):
        n = min(_CHUNK, total - start)
        words = block[: n // 8] ^ keys[i] if i else block[: n // 8].copy()
        out = words.view(np.uint8)
        if start + n > real:
            out[max(0, real - start) :] = 0
        yield out


def _ones_sum(data: bytes | np.ndarray, acc: int = 0) -> int:
    """FITS 32-bit ones' complement sum (big-endian words), folded to 32 bits."""
    words = np.frombuffer(data, dtype=">u4")
    acc += int(words.sum(dtype=np.uint64))
    while acc >> 32:
        acc = (acc & 0xFFFFFFFF) + (acc >> 32)
    return acc


def _encode_checksum(value: int) -> str:
    """ASCII encoding of the complement of a ones' complement sum (FITS checksum paper)."""
    value = ~value & 0xFFFFFFFF
    excluded = set(range(0x3A, 0x41)) | set(range(0x5B, 0x61))
    asc = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        ch = [byte // 4 + 0x30] * 4
        ch[0] += byte % 4
        changed = True
        while changed:  # keep to alphanumerics, preserving the pair sums
            changed = False
            for j in (0, 2):
                if ch[j] in excluded or ch[j + 1] in excluded:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    text = "".join(map(chr, asc))
    return text[-1] + text[:-1]


def _signed_header(cards: list[tuple], datasum: int) -> bytes:
    from astropy.io import fits

    header = fits.Header(cards)
    header["DATASUM"] = (str(datasum), "data unit checksum")
    header["CHECKSUM"] = ("0" * 16, "HDU checksum")
    total = _ones_sum(header.tostring().encode("ascii"), datasum)
    header["CHECKSUM"] = _encode_checksum(total)
    return header.tostring().encode("ascii")


def _fits_stream(seed: int, size: int, obsid: int, rel: str, kind: str) -> Iterator[bytes]:
    """Yield a two-HDU FITS file (empty primary + BINTABLE of random rows) of ~size bytes."""
    columns = [("TIME", "1D"), ("CHIPX", "1I"), ("CHIPY", "1I"), ("PHA", "1J")]
    columns += [("ENERGY", "1E"), ("STATUS", "4B")]
    rowlen = 24
    nrows = max(1, (size - 1200) // rowlen)  # ~1.2 kB: two gzipped headers
    real = nrows * rowlen
    padded = -(-real // 2880) * 2880
    ftype = classify(rel) or "unknown"
    common = [
        ("TELESCOP", "CHANDRA"),
        ("INSTRUME", "HRC" if kind == "hrc" else "ACIS"),
        ("OBS_ID", str(obsid)),
        ("CONTENT", ftype.upper()),
        ("ORIGIN", "ASC"),
        ("CREATOR", "chandra_download.simulator"),
        ("DATE", "2019-06-13T07:42:00"),
    ]
    primary = [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True), *common]
    yield _signed_header(primary, 0)
    ext = [
        ("XTENSION", "BINTABLE"),
        ("BITPIX", 8),
        ("NAXIS", 2),
        ("NAXIS1", rowlen),
        ("NAXIS2", nrows),
        ("PCOUNT", 0),
        ("GCOUNT", 1),
        ("TFIELDS", len(columns)),
    ]
    for i, (name, form) in enumerate(columns, 1):
        ext += [(f"TTYPE{i}", name), (f"TFORM{i}", form)]
    ext += [("EXTNAME", "EVENTS" if ftype.startswith("evt") else ftype.upper()), *common]
    # First pass only sums the (cheap, reproducible) data: the header must precede it.
    datasum = 0
    for chunk in _chunks(seed, padded, real):
        datasum = _ones_sum(chunk, datasum)
    yield _signed_header(ext, datasum)
    for chunk in _chunks(seed, padded, real):
        yield chunk


def _plain_stream(seed: int, size: int, rel: str, obsid: int) -> Iterator[bytes]:
    name = rel.rsplit("/", 1)[-1]
    if name == "00README":
        text = f"Chandra ObsId {obsid}\nGenerated by the chandra_download archive simulator.\n"
        yield (text * (size // len(text) + 1)).encode()[:size]
        return
    if name.endswith((".par", ".log")):
        line = f"# {name}: pipeline record for ObsId {obsid}\nkey = value\n"
        yield (line * (size // len(line) + 1)).encode()[:size]
        return
    head, tail = b"", b""
    if ".pdf" in name:
        head, tail = b"%PDF-1.4\n", b"\n%%EOF\n"
    elif name.endswith(".jpg"):
        head, tail = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\xff\xd9"
    elif name.endswith(".png"):
        head, tail = b"\x89PNG\r\n\x1a\n", b""
    body = max(0, size - len(head) - len(tail))
    yield head
    for chunk in _chunks(seed, -(-body // 8) * 8, body):
        yield chunk[: min(len(chunk), body)]
        body -= len(chunk)
    yield tail


class _StoredGzip:
    """Minimal gzip writer with stored (uncompressed) deflate blocks.

    zlib's level 0 still runs at ~400 MB/s; framing the blocks ourselves is bound by crc32
    and the disk, so multi-GB files take seconds.
    """

    def __init__(self, f, name: str) -> None:
        self.f, self.crc, self.size = f, 0, 0
        f.write(b"\x1f\x8b\x08\x08" + MTIME.to_bytes(4, "little") + b"\x00\xff")
        f.write(name.encode("latin-1", "replace") + b"\x00")

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        self.crc = zlib.crc32(view, self.crc)
        self.size += len(view)
        parts = []
        for i in range(0, len(view), 65535):
            block = view[i : i + 65535]
            n = len(block)
            parts += [b"\x00" + n.to_bytes(2, "little") + (n ^ 0xFFFF).to_bytes(2, "little"), block]
        self.f.write(b"".join(parts))

    def close(self) -> None:
        self.f.write(b"\x01\x00\x00\xff\xff")  # empty final block
        self.f.write(
            self.crc.to_bytes(4, "little") + (self.size & 0xFFFFFFFF).to_bytes(4, "little")
        )


def _write_file(path: Path, rel: str, obsid: int, kind: str, size: int, seed: int) -> int:
    inner = rel[:-3] if rel.endswith(".gz") else rel
    s = _seed_for(seed, obsid, rel)
    if ".fits" in inner:
        stream = _fits_stream(s, size, obsid, rel, kind)
    else:
        stream = _plain_stream(s, size, rel, obsid)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        if rel.endswith(".gz"):
            name = inner.rsplit("/", 1)[-1]
            if size > _GZ_FAST_LIMIT:
                raw = _StoredGzip(f, name)
                for part in stream:
                    raw.write(part)
                raw.close()
            else:
                with gzip.GzipFile(name, "wb", 1, fileobj=f, mtime=MTIME) as gz:
                    for part in stream:
                        gz.write(part)
        else:
            for part in stream:
                f.write(part)
    os.utime(tmp, (MTIME, MTIME))
    os.replace(tmp, path)  # atomic: a complete file or none
    return path.stat().st_size


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

    Returns
    -------
    Path
        ``root``. Calling again with the same arguments is cheap: a stamp file per ObsId
        in ``<root>/.simulator/`` records what was written, and complete files are kept.
    """
    root = Path(root)
    stamps = root / _STAMP_DIR
    stamps.mkdir(parents=True, exist_ok=True)
    overrides = dict(sizes or {})
    for obsid, kind in _kind_map(obsids).items():
        params = {"kind": kind, "scale": scale, "seed": seed, "sizes": sorted(overrides.items())}
        stamp = stamps / f"{obsid}.json"
        base = obsid_dir(root, obsid)
        try:
            old = json.loads(stamp.read_text())
        except (OSError, ValueError):
            old = {}
        done = old.get("files", {}) if old.get("params") == params else {}
        written: dict[str, int] = {}
        for rel in _layout(obsid, kind):
            path = base / rel
            if rel in done and path.is_file() and path.stat().st_size == done[rel]:
                written[rel] = done[rel]
                continue
            ftype = classify(rel)
            size = overrides.get(ftype or "", 0) or int(
                DEFAULT_SIZES.get(ftype, _OTHER_SIZE) * scale
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            written[rel] = _write_file(path, rel, obsid, kind, max(size, 16), seed)
        for d in sorted({(base / r).parent for r in written}, reverse=True) + [base]:
            os.utime(d, (MTIME, MTIME))
        stamp.write_text(json.dumps({"params": params, "files": written}, indent=1))
    return root


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
        if p.is_file() and not p.name.endswith(".part")
    ]
    return sorted(out)
