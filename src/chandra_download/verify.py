"""Content checks of a finished file: gzip CRC and length, FITS CHECKSUM/DATASUM.

Everything is checked in one streaming pass with bounded memory, whatever the file's size:
the gzip stream is inflated chunk by chunk and the inflated bytes go through a FITS reader
that sums each HDU as it passes. astropy reads a whole HDU into memory to sum it, which
made checking large event files cost about twice their size in RAM.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import VerificationError

_READ = 1024 * 1024
_BLOCK = 2880  # FITS logical record
_CARD = 80
_END_CARD = b"END" + b" " * 77
# A header longer than this is not one (a lying server must not make us buffer it all).
_MAX_HEADER = 16 * 1024 * 1024
_SIZE_KEYS = {"BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "GROUPS"}
_SUM_KEYS = {"CHECKSUM", "DATASUM"}
# Inflated bytes still checked by the gzip pass after the FITS check failed: enough to reach
# the CRC of a small damaged file, bounded so that a gzip bomb costs milliseconds.
_LOOKAHEAD = 16 * 1024 * 1024


def is_fits_name(name: str) -> bool:
    base = name.lower()
    if base.endswith(".gz"):
        base = base[:-3]
    return base.endswith((".fits", ".fit", ".fts"))


def ones_sum(data: bytes | bytearray | memoryview | np.ndarray, acc: int = 0) -> int:
    """FITS 32-bit ones' complement sum of big-endian words (length a multiple of 4),
    added to ``acc`` and folded to 32 bits (FITS standard 4.0, appendix J)."""
    words = np.frombuffer(data, dtype=">u4")
    acc += int(words.sum(dtype=np.uint64))  # 2**32 words of 2**32 each would overflow
    while acc >> 32:
        acc = (acc & 0xFFFFFFFF) + (acc >> 32)
    return acc


def check_gzip(path: Path) -> int:
    """Decompress a gzip file in constant memory, checking every member's CRC and length.

    Returns the uncompressed size; raises VerificationError naming the problem.
    """
    with open(path, "rb") as fh:
        return sum(len(c) for c in _gunzip(_read(fh), path.name))


def _read(fh: BinaryIO) -> Iterator[bytes]:
    while chunk := fh.read(_READ):
        yield chunk


def _gunzip(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Inflate gzip members one bounded piece at a time; raise on a bad CRC, length or end."""
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    started = False
    for chunk in chunks:
        started = True
        while chunk:
            try:
                # Bounded output: 1 MiB of zeros inflates to ~1 GB in one call otherwise.
                out = dec.decompress(chunk, _READ)
            except zlib.error as exc:
                raise VerificationError(f"{name}: corrupt gzip data ({exc})") from None
            if out:
                yield out
            if dec.eof:  # (first: at a member's end unconsumed_tail may still hold data)
                chunk = dec.unused_data
                if chunk.strip(b"\0"):  # another member follows (NUL padding is allowed)
                    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    chunk = b""
            else:
                chunk = dec.unconsumed_tail
    if not started:
        raise VerificationError(f"{name}: empty file where gzip data was expected")
    while not dec.eof:  # output held back by the bound above
        out = dec.decompress(b"", _READ)
        if not out:
            break
        yield out
    if not dec.eof:
        raise VerificationError(f"{name}: gzip data is truncated")


class FitsStream:
    """Check a FITS file fed in pieces of any size: structure, DATASUM and CHECKSUM per HDU.

    A HDU passes when its DATASUM equals the sum of its data, and when the sum of its raw
    header and data is negative zero (all ones) where it carries CHECKSUM, as fitsverify
    does. Memory is one header plus three bytes, however large the data.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.hdus = 0
        self._header = bytearray()
        # Bytes of the current data unit still to come (padding included); 0 between HDUs.
        self._data_left = 0
        self._tail = b""  # 0-3 bytes that did not yet make a whole 32-bit word
        self._datasum = 0
        self._cards: dict[str, object] = {}
        self._header_sum = 0

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            if self._data_left:
                view = self._feed_data(view)
            else:
                view = self._feed_header(view)

    def close(self) -> None:
        """Raise unless the bytes fed end exactly after a whole HDU."""
        if self._data_left:
            raise self._error(f"truncated in the data of HDU {self.hdus}")
        if self._header and (not self.hdus or any(self._header)):  # NUL padding is harmless
            raise self._error(f"truncated in the header of HDU {self.hdus}")
        if not self.hdus:
            raise self._error("empty")

    def _feed_header(self, view: memoryview) -> memoryview:
        need = _BLOCK - len(self._header) % _BLOCK
        self._header += view[:need]
        view = view[need:]
        if len(self._header) % _BLOCK:
            return view
        start = len(self._header) - _BLOCK
        if start == 0:
            if self.hdus and not any(self._header):
                self._header = bytearray()  # NUL padding after the last HDU is harmless
                return view
            want = b"SIMPLE  = " if self.hdus == 0 else b"XTENSION= "
            if self._header[:10] != want:
                what = f"unexpected bytes after HDU {self.hdus - 1}" if self.hdus else "no SIMPLE"
                raise self._error(what)
        block = self._header[start:]
        if any(block[i : i + _CARD] == _END_CARD for i in range(0, _BLOCK, _CARD)):
            self._start_data()
        elif len(self._header) >= _MAX_HEADER:
            raise self._error(f"no END card in the header of HDU {self.hdus}")
        return view

    def _start_data(self) -> None:
        self._cards = _cards(bytes(self._header), self._error)
        self._header_sum = ones_sum(self._header)
        self._header = bytearray()
        self._datasum = 0
        self._data_left = _data_size(self._cards, first=self.hdus == 0, error=self._error)
        if not self._data_left:
            self._end_hdu()

    def _feed_data(self, view: memoryview) -> memoryview:
        n = min(len(view), self._data_left)
        take, rest = view[:n], view[n:]
        self._data_left -= n
        if self._tail:  # complete the word split across two pieces
            fill = 4 - len(self._tail)
            self._tail += bytes(take[:fill])
            take = take[fill:]
            if len(self._tail) == 4:
                self._datasum = ones_sum(self._tail, self._datasum)
                self._tail = b""
        whole = len(take) - len(take) % 4
        if whole:
            self._datasum = ones_sum(take[:whole], self._datasum)
        self._tail += bytes(take[whole:])
        if not self._data_left:
            self._end_hdu()
        return rest

    def _end_hdu(self) -> None:
        index, cards = self.hdus, self._cards
        if "DATASUM" in cards and _as_int(cards["DATASUM"]) != self._datasum:
            raise self._error(f"DATASUM mismatch in HDU {index}", fits=True)
        if "CHECKSUM" in cards:
            total = ones_sum(b"", self._header_sum + self._datasum)
            if total not in (0, 0xFFFFFFFF):
                raise self._error(f"CHECKSUM mismatch in HDU {index}", fits=True)
        self.hdus += 1

    def _error(self, what: str, fits: bool = False) -> VerificationError:
        if fits:
            return VerificationError(f"{self.name}: FITS {what}")
        return VerificationError(f"{self.name}: not a readable FITS file ({what})")


def _cards(header: bytes, error) -> dict[str, object]:
    """The values of the keywords that size the data unit and carry its sums (astropy parses
    each card, so odd but legal formatting reads as cfitsio would write it)."""
    from astropy.io import fits

    found: dict[str, object] = {}
    for i in range(0, len(header), _CARD):
        card = header[i : i + _CARD]
        key = card[:8].rstrip().decode("ascii", "replace")
        if key == "END" and card == _END_CARD:
            break
        if key in _SIZE_KEYS or key in _SUM_KEYS or (key.startswith("NAXIS") and key[5:].isdigit()):
            try:
                found[key] = fits.Card.fromstring(card.decode("ascii")).value
            except Exception as exc:  # astropy raises several kinds for a damaged card
                raise error(f"bad {key} card: {exc}") from None
    return found


def _as_int(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _data_size(cards: dict[str, object], *, first: bool, error) -> int:
    """Bytes of the data unit with its padding (FITS standard 4.0, sections 4.4.1 and 7)."""

    def number(key: str, default: int | None = None) -> int:
        value = cards.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise error(f"missing or bad {key}")
        return value

    bitpix = cards.get("BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64) or isinstance(bitpix, bool):
        raise error("missing or bad BITPIX")
    naxis = number("NAXIS")
    if naxis > 999:
        raise error(f"NAXIS {naxis}")
    if naxis == 0:
        return 0
    axes = [number(f"NAXIS{i}") for i in range(1, naxis + 1)]
    groups = first and cards.get("GROUPS") is True and axes[0] == 0
    if first and not groups:
        pcount, gcount = 0, 1
    else:
        pcount, gcount = number("PCOUNT", 0), number("GCOUNT", 1)
    elements = 1
    for n in axes[1:] if groups else axes:
        elements *= n
    size = abs(bitpix) // 8 * gcount * (pcount + elements)
    return -(-size // _BLOCK) * _BLOCK


def check_file(path: Path, name: str, *, checksums: bool = True) -> list[str]:
    """Run every check that applies to a file in one pass; return the names of the checks.

    ``name`` is the archive name (the path may be a temporary ``.part``). Checks stop at the
    first failure, so a gzip bomb whose FITS stream fails early is not inflated to its end;
    only a short look-ahead (``_LOOKAHEAD`` inflated bytes) lets damage to the gzip stream
    near that point be reported as such, its root cause.
    """
    if not checksums:
        return []
    gz, fits = name.lower().endswith(".gz"), is_fits_name(name)
    if not (gz or fits):
        return []
    base = Path(name).name
    reader = FitsStream(base) if fits else None
    fits_error: VerificationError | None = None
    ahead = 0
    with open(path, "rb") as fh:
        chunks = _gunzip(_read(fh), base) if gz else _read(fh)
        for chunk in chunks:
            if fits_error is not None:
                ahead += len(chunk)
                if ahead > _LOOKAHEAD:
                    break
            elif reader is not None:
                try:
                    reader.feed(chunk)
                except VerificationError as exc:
                    if not gz:
                        raise
                    fits_error = exc
    if fits_error:
        raise fits_error
    if reader:
        reader.close()
    return [c for c, on in (("gzip", gz), ("fits", fits)) if on]
