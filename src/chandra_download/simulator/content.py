"""Content of the simulated archive files: valid FITS and gzip, streamed and deterministic.

FITS files hold an empty primary HDU and a BINTABLE of pseudo-random rows, with correct
``CHECKSUM``/``DATASUM`` keywords; ``.gz`` files are real gzip streams (stored blocks for very
large files, so multi-GB files take seconds). Bytes are seeded from (seed, ObsId, file name),
and produced in chunks, so memory stays small whatever the size.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..filetypes import classify
from ..verify import ones_sum

__all__ = ["MTIME", "write_file"]

MTIME = 1560411720  # 2019-06-13 07:42:00 UTC, the date every generated entry carries
_GZ_FAST_LIMIT = 32_000_000  # above this, gzip level 0 (stored) so huge files are quick
_Bytes = bytes | memoryview  # what the streams yield
_CHUNK = 2880 * 1456  # ~4 MiB, a whole number of FITS blocks and of 8-byte words


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
    total = ones_sum(header.tostring().encode("ascii"), datasum)
    header["CHECKSUM"] = _encode_checksum(total)
    return header.tostring().encode("ascii")


def _fits_stream(seed: int, size: int, obsid: int, rel: str, kind: str) -> Iterator[_Bytes]:
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
        datasum = ones_sum(chunk, datasum)
    yield _signed_header(ext, datasum)
    for chunk in _chunks(seed, padded, real):
        yield chunk.data


def _plain_stream(seed: int, size: int, rel: str, obsid: int, version: int) -> Iterator[_Bytes]:
    name = rel.rsplit("/", 1)[-1]
    if name == "00README":
        text = f"Chandra ObsId {obsid}\nGenerated by the chandra_download archive simulator.\n"
        if version:
            text += f"Reprocessed ({version} time(s)).\n"
        yield (text * (size // len(text) + 1)).encode()[:size]
        return
    if name.endswith((".par", ".log")):
        line = f"# {name}: pipeline record for ObsId {obsid}\nkey = value\n"
        if version:
            line += f"version = {version}\n"
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
        yield chunk[: min(len(chunk), body)].data
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
        parts: list[bytes | memoryview] = []
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


def write_file(
    path: Path,
    rel: str,
    obsid: int,
    kind: str,
    size: int,
    seed: int,
    *,
    version: int = 0,
    mtime: int = MTIME,
) -> int:
    """Write one archive file of about ``size`` bytes; return its final size.

    Parameters
    ----------
    path : Path
        Destination; written as ``.<name>.tmp`` (a dot name, never listed) then renamed, with mtime ``mtime``.
    rel : str
        Path below the ObsId directory: the name picks the format (``.fits``, ``.gz``...).
    obsid : int
        The ObsId (in FITS headers and the seed).
    kind : str
        ``"acis"``, ``"acis-grating"`` or ``"hrc"`` (the FITS ``INSTRUME``).
    size : int
        Approximate size on disk (random data barely compresses, so also for ``.gz``).
    seed : int
        Archive-wide seed; the content is a function of (seed, obsid, rel, version).
    version : int, default 0
        How many times the ObsId was reprocessed: a file whose name does not change with the
        processing version (``oif.fits``, ``00README``) gets new content with each.
    mtime : int
        The file's modification time (the HTTP server's ``Last-Modified``).

    Returns
    -------
    int
        Size in bytes of the written file.
    """
    inner = rel[:-3] if rel.endswith(".gz") else rel
    s = _seed_for(seed, obsid, rel if not version else f"{rel}@{version}")
    if ".fits" in inner:
        stream = _fits_stream(s, size, obsid, rel, kind)
    else:
        stream = _plain_stream(s, size, rel, obsid, version)
    tmp = path.with_name(f".{path.name}.tmp")
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
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)  # atomic: a complete file or none
    return path.stat().st_size
