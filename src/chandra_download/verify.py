"""Content checks of a finished file: gzip CRC and length, FITS CHECKSUM/DATASUM."""

from __future__ import annotations

import ctypes
import threading
import warnings
import zlib
from pathlib import Path

from .errors import VerificationError

#: FITS files larger than this (uncompressed) skip the astropy checksum pass: astropy reads
#: each HDU's data into memory to sum it (about twice the file's size at peak), and large event
#: files would lift the client's memory far above its streaming floor. Their gzip CRC (when
#: compressed) and exact size are still checked.
FITS_CHECK_MAX_BYTES = 64 * 1024 * 1024

_READ = 1024 * 1024
# warnings.catch_warnings is process-wide state: one FITS check at a time keeps it sane.
_FITS_LOCK = threading.Lock()
_malloc_trim = None


def is_fits_name(name: str) -> bool:
    base = name.lower()
    if base.endswith(".gz"):
        base = base[:-3]
    return base.endswith((".fits", ".fit", ".fts"))


def check_gzip(path: Path) -> int:
    """Decompress a gzip file in constant memory, checking every member's CRC and length.

    Returns the uncompressed size; raises VerificationError naming the problem.
    """
    total = 0
    with open(path, "rb") as fh:
        dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
        started = False
        while True:
            chunk = fh.read(_READ)
            if not chunk:
                break
            started = True
            while chunk:
                try:
                    # Bounded output: 1 MiB of zeros inflates to ~1 GB in one call otherwise.
                    total += len(dec.decompress(chunk, _READ))
                except zlib.error as exc:
                    raise VerificationError(f"{path.name}: corrupt gzip data ({exc})") from None
                if dec.eof:  # (first: at a member's end unconsumed_tail may still hold data)
                    chunk = dec.unused_data
                    if chunk.strip(b"\0"):  # another member follows (NUL padding is allowed)
                        dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    else:
                        chunk = b""
                else:
                    chunk = dec.unconsumed_tail
        if not started:
            raise VerificationError(f"{path.name}: empty file where gzip data was expected")
        while not dec.eof:  # output held back by the bound above
            out = dec.decompress(b"", _READ)
            if not out:
                break
            total += len(out)
        if not dec.eof:
            raise VerificationError(f"{path.name}: gzip data is truncated")
    return total


def check_fits(path: Path) -> None:
    """Verify CHECKSUM and DATASUM of every HDU that carries them (astropy does the sums)."""
    from astropy.io import fits

    with _FITS_LOCK, warnings.catch_warnings():
        # astropy warns about damaged cards; the checksum verdict below is what counts.
        warnings.simplefilter("ignore")
        try:
            _check_fits(path, fits)
        finally:
            _trim()


def _trim() -> None:
    """Give the freed FITS buffers back to the system: glibc keeps them in per-thread arenas,
    so with many workers the process would hold several files' worth of freed memory."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):  # not glibc
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def _check_fits(path: Path, fits) -> None:
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
            for index, hdu in enumerate(hdul):
                header = hdu.header
                if "DATASUM" in header and hdu.verify_datasum() == 0:
                    raise VerificationError(f"{path.name}: FITS DATASUM mismatch in HDU {index}")
                if "CHECKSUM" in header and hdu.verify_checksum() == 0:
                    raise VerificationError(f"{path.name}: FITS CHECKSUM mismatch in HDU {index}")
    except VerificationError:
        raise
    except Exception as exc:  # astropy raises many kinds for a damaged file
        raise VerificationError(f"{path.name}: not a readable FITS file ({exc})") from None


def check_file(path: Path, name: str, *, checksums: bool = True) -> list[str]:
    """Run every check that applies to a file; return the names of the checks done.

    ``name`` is the archive name (the path may be a temporary ``.part``).
    """
    done: list[str] = []
    if not checksums:
        return done
    uncompressed = path.stat().st_size
    if name.lower().endswith(".gz"):
        uncompressed = check_gzip(path)
        done.append("gzip")
    if is_fits_name(name):
        if uncompressed <= FITS_CHECK_MAX_BYTES:
            check_fits(path)
            done.append("fits")
    return done
