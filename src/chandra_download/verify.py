"""Content checks of a file: gzip CRC and length, FITS CHECKSUM/DATASUM, fed as bytes arrive.

Everything is checked in one streaming pass with bounded memory, whatever the file's size:
the gzip stream is inflated chunk by chunk and the inflated bytes go through a FITS reader
that sums each HDU as it passes. astropy reads a whole HDU into memory to sum it, which
made checking large event files cost about twice their size in RAM.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import zlib
from array import array
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO

from .errors import VerificationError

if TYPE_CHECKING:
    import numpy as np

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
    acc += _words_sum(data)
    while acc >> 32:
        acc = (acc & 0xFFFFFFFF) + (acc >> 32)
    return acc


#: Bytes summed in Python before numpy is imported for it: its import costs about as much
#: CPU as summing this many bytes in Python, so a run of small files never pays it and a
#: run of large ones pays at most twice the cheaper way (numpy sums ~30x faster).
_PYTHON_BUDGET = 16 * 2**20
#: A larger piece goes to numpy at once: a file this large pays for the import alone.
_PYTHON_PIECE = 256 * 1024
_python_left = _PYTHON_BUDGET
_WORD = next(code for code in "IL" if array(code).itemsize == 4)  # a 32-bit word


def _words_sum(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The plain sum of the big-endian 32-bit words of ``data``."""
    global _python_left
    if (
        isinstance(data, (bytes, bytearray, memoryview))
        and len(data) <= _PYTHON_PIECE
        and _python_left > 0
        and "numpy" not in sys.modules
    ):
        _python_left -= len(data)  # (a race between threads only moves the switch a bit)
        return _python_sum(data)
    import numpy as np  # (here: a run with nothing large to check never pays numpy's import)

    words = np.frombuffer(data, dtype=">u4")
    if len(words) > _SCRATCH_WORDS:  # (a piece larger than any chunk read: summed as is)
        return int(words.sum(dtype=np.uint64))  # (as uint64: 2**32 words would overflow)
    # Byte-swapped into this thread's buffer, then summed: 1.7 -> 1.1 ms per 10 MB, as the
    # sum's own casting swaps and converts small buffers one after another.
    scratch = getattr(_scratch, "words", None)
    if scratch is None:
        scratch = _scratch.words = np.empty(_SCRATCH_WORDS, dtype=np.uint32)
    native = scratch[: len(words)]
    np.copyto(native, words)
    return int(native.sum(dtype=np.uint64))


#: Words of each thread's buffer for :func:`_words_sum` (as large as a chunk read or inflated).
_SCRATCH_WORDS = 2**20 // 4
_scratch = threading.local()


def _python_sum(data: bytes | bytearray | memoryview) -> int:
    words = array(_WORD)
    words.frombytes(data)
    if sys.byteorder == "little":
        words.byteswap()
    return sum(words)


def check_gzip(path: Path) -> int:
    """Decompress a gzip file in constant memory, checking every member's CRC and length.

    Returns the uncompressed size; raises VerificationError naming the problem.
    """
    inflate, size = Gunzip(path.name), 0
    with open(path, "rb") as fh:
        for chunk in _read(fh):
            size += sum(len(c) for c in inflate.feed(chunk))
    return size + sum(len(c) for c in inflate.close())


def _read(fh: BinaryIO) -> Iterator[bytes]:
    while chunk := fh.read(_READ):
        yield chunk


#: The zlib-compatible module that inflates (see :func:`inflater`); None until first asked.
_INFLATER: ModuleType | None = None


def inflater() -> ModuleType:
    """The module whose ``decompressobj`` inflates gzip data: zlib-ng's drop-in for zlib when
    installed (about 7x faster here on a large file, most of it its CRC-32), else zlib.

    Imported at the first gzip check, not with this module: a run that checks no gzip file
    does not pay for the import.
    """
    global _INFLATER
    if _INFLATER is None:
        try:
            from zlib_ng import zlib_ng as fast
        except ImportError:
            _INFLATER = zlib
        else:
            _INFLATER = fast
    return _INFLATER


class Gunzip:
    """Inflate gzip members fed in pieces of any size, one bounded output piece at a time;
    raise VerificationError on a bad CRC, length or end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._z = inflater()
        self._dec = self._z.decompressobj(16 + zlib.MAX_WBITS)
        self._started = False

    def feed(self, chunk: bytes | memoryview) -> Iterator[bytes]:
        """The inflated bytes of ``chunk`` (a generator: consume it before the next feed)."""
        self._started = self._started or bool(len(chunk))
        # (not copied: zlib takes any buffer, and keeps what it does not consume as bytes)
        data: bytes | memoryview = chunk
        if self._dec.eof:  # between members, or NUL padding after the last
            data = self._next_member(bytes(chunk))
        while data:
            try:
                # Bounded output: 1 MiB of zeros inflates to ~1 GB in one call otherwise.
                out = self._dec.decompress(data, _READ)
            except self._z.error as exc:
                raise VerificationError(f"{self.name}: corrupt gzip data ({exc})") from None
            if out:
                yield out
            if self._dec.eof:  # (first: at a member's end unconsumed_tail may still hold data)
                data = self._next_member(self._dec.unused_data)
            else:
                data = self._dec.unconsumed_tail

    def _next_member(self, data: bytes) -> bytes:
        """After a member's end: another member follows (NUL padding is allowed)."""
        if data.strip(b"\0"):
            self._dec = self._z.decompressobj(16 + zlib.MAX_WBITS)
            return data
        return b""

    def close(self) -> Iterator[bytes]:
        """The output held back by the bound, then raise unless the data ended a member."""
        if not self._started:
            raise VerificationError(f"{self.name}: empty file where gzip data was expected")
        while not self._dec.eof:
            out = self._dec.decompress(b"", _READ)
            if not out:
                break
            yield out
        if not self._dec.eof:
            raise VerificationError(f"{self.name}: gzip data is truncated")


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
        if _has_end(self._header, start):
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


def _has_end(header: bytearray, start: int) -> bool:
    """Whether the header block at ``start`` holds the END card (at a card's start)."""
    at = header.find(_END_CARD, start)
    while at >= 0 and (at - start) % _CARD:
        at = header.find(_END_CARD, at + 1)
    return at >= 0


#: The keywords :func:`_cards` reads (NAXISn aside), as the bytes of a card's keyword field.
_WANTED = frozenset(k.encode("ascii") for k in _SIZE_KEYS | _SUM_KEYS)


def _cards(header: bytes, error) -> dict[str, object]:
    """The values of the keywords that size the data unit and carry its sums (the others'
    keywords compared as bytes: a header has hundreds of cards, a few of them wanted)."""
    found: dict[str, object] = {}
    for i in range(0, len(header), _CARD):
        key = header[i : i + 8].rstrip()
        if key in _WANTED or (key[:5] == b"NAXIS" and key[5:].isdigit()):
            name = key.decode("ascii")
            found[name] = _card_value(header[i : i + _CARD], name, error)
        elif key == b"END" and header[i : i + _CARD] == _END_CARD:
            break
    return found


# A value card in the standard's plain form: "= ", then an integer, T/F or a quoted string
# (no control or non-ASCII byte anywhere), then an optional comment. Anything else goes to
# astropy, which reads odd but legal formatting as cfitsio would write it.
_PLAIN_VALUE = re.compile(rb" *(?:([+-]?[0-9]+)|([TF])|'((?:[ -&(-~]|'')*)') *(?:/[ -~]*)?")
_PRINTABLE_KEY = re.compile(rb"[ -~]{8}= ")


def _card_value(card: bytes, key: str, error) -> object:
    """One card's value: read here when in the plain form (the cards of nearly every file:
    importing astropy and parsing each card with it was most of a small file's CPU), else
    by astropy."""
    plain = _PRINTABLE_KEY.match(card) and _PLAIN_VALUE.fullmatch(card, 10)
    if plain:
        number, logical, text = plain.groups()
        if number is not None:
            return int(number)
        if logical is not None:
            return logical == b"T"
        return text.replace(b"''", b"'").rstrip(b" ").decode("ascii")
    return _astropy_value(card, key, error)


def _astropy_value(card: bytes, key: str, error) -> object:
    from astropy.io import fits

    try:
        return fits.Card.fromstring(card.decode("ascii")).value
    except Exception as exc:  # astropy raises several kinds for a damaged card
        raise error(f"bad {key} card: {exc}") from None


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


#: Private switch of ``benchmarks/bench_sha256.py`` (what the streaming sha256 costs): False
#: leaves the sha256 out of every Checker (its digest is then ""). Never False otherwise; a
#: benchmark's child process turns it off with ``CHANDRA_DOWNLOAD_TEST_NO_SHA256=1``.
_HASHING = os.environ.get("CHANDRA_DOWNLOAD_TEST_NO_SHA256", "") != "1"


class _NoHash:
    """A sha256 that hashes nothing (only with ``_HASHING`` off)."""

    def update(self, data: bytes | memoryview) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


def content_checks(name: str, checksums: bool = True) -> list[str]:
    """The content checks (``"gzip"``, ``"fits"``) that apply to a file of this name."""
    gz, fits = name.lower().endswith(".gz"), is_fits_name(name)
    return [c for c, on in (("gzip", gz), ("fits", fits)) if on and checksums]


class Checker:
    """Every content check that applies to a file, and its sha256, fed its bytes in order.

    ``feed`` never raises: the first failure is kept and raised by :meth:`finish`, so the
    bytes of a file that fails are still all hashed (two fetches of the same bad bytes are
    the archive's own copy). Checks stop at the first failure, so a gzip bomb whose FITS
    stream fails early is not inflated to its end; only a short look-ahead (``_LOOKAHEAD``
    inflated bytes) lets damage to the gzip stream near that point be reported as such, its
    root cause.
    """

    def __init__(self, name: str, *, checksums: bool = True) -> None:
        base = os.path.basename(name)  # (Path(name).name, without a Path per file)
        self.checks = content_checks(name, checksums)
        self.size = 0  # bytes fed
        self._sha: hashlib._Hash | _NoHash = hashlib.sha256() if _HASHING else _NoHash()
        self._digest_of = self._sha  # what digest reads (another hash: see hash_apart)
        self._gunzip = Gunzip(base) if "gzip" in self.checks else None
        self._fits = FitsStream(base) if "fits" in self.checks else None
        self._error: VerificationError | None = None  # the root cause: checks stopped
        self._fits_error: VerificationError | None = None  # gzip still looks ahead
        self._ahead = 0

    def hash_apart(self) -> hashlib._Hash | None:
        """Leave the sha256 to the caller, who feeds the hash returned the same bytes (on a
        thread of its own, beside the checks): this checker then only checks, and its
        digest is that hash's. None when nothing is hashed (a benchmark's switch)."""
        if isinstance(self._sha, _NoHash):
            return None
        self._digest_of, self._sha = self._sha, _NoHash()
        return self._digest_of

    @property
    def checking(self) -> bool:
        return self._error is None and (self._gunzip is not None or self._fits is not None)

    def feed(self, data: bytes | memoryview) -> None:
        self._sha.update(data)
        self.size += len(data)
        if not self.checking:
            return
        if self._gunzip is None:
            self._inflated(data)
            return
        try:
            for out in self._gunzip.feed(data):
                self._inflated(out)
                if not self.checking:
                    return
        except VerificationError as exc:
            self._error = exc

    def _inflated(self, data: bytes | memoryview) -> None:
        if self._fits_error is not None:
            self._ahead += len(data)
            if self._ahead > _LOOKAHEAD:
                self._error = self._fits_error
        elif self._fits is not None:
            try:
                self._fits.feed(data)
            except VerificationError as exc:
                if self._gunzip is None:
                    self._error = exc
                else:
                    self._fits_error = exc

    def finish(self) -> str:
        """The sha256 (hex) of the bytes fed; raise VerificationError when a check failed."""
        if self.checking and self._gunzip is not None:
            try:
                for out in self._gunzip.close():
                    self._inflated(out)
                    if not self.checking:
                        break
            except VerificationError as exc:
                self._error = exc
        for problem in (self._error, self._fits_error):
            if problem is not None:
                raise problem
        if self._fits is not None:
            self._fits.close()
        return self.digest

    @property
    def digest(self) -> str:
        """The sha256 (hex) of the bytes fed so far."""
        return self._digest_of.hexdigest()


def check_fd(fd: int, name: str, *, checksums: bool = True, start: int = 0) -> Checker:
    """A :class:`Checker` fed the bytes of an open file from ``start`` on (read with
    ``pread``: the file checked is the one open, whatever its name now); call its ``finish``.

    A large file read back whole (a split file's one pass) is hashed by a reader of its own
    beside the checks (:class:`_HashBeside`): the sha256 then costs no wall time where a core
    is free, as it is once the parts are in."""
    checker = Checker(name, checksums=checksums)
    if start or not _HASHING or not checker.checks or os.fstat(fd).st_size < _HASH_BESIDE_AT:
        read_into(checker, fd, start)
        return checker
    sha = checker.hash_apart()
    assert sha is not None  # (_HASHING)
    beside = _HashBeside(fd, sha)  # (the reader hashes; the checks only inflate and sum)
    try:
        read_into(checker, fd)
    except BaseException:
        beside.stop = True  # (Ctrl-C, a read error): the rest is not wanted
        raise
    finally:
        beside.join()
    return checker


#: A file read back whole from this size on is hashed on a thread of its own: below it the
#: thread's start costs about what it saves.
_HASH_BESIDE_AT = 8 * _READ


class _HashBeside:
    """The sha256 of an open file, read and hashed on a thread of its own (hashlib releases
    the GIL on large buffers, so it runs beside the inflate and FITS sums)."""

    def __init__(self, fd: int, sha: hashlib._Hash) -> None:
        self._fd = fd
        self._sha = sha
        self.stop = False  # set by the caller when the rest is not wanted
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="chandra-download sha256")
        self._thread.start()

    def _run(self) -> None:
        pos = 0
        try:
            while not self.stop and (chunk := os.pread(self._fd, _READ, pos)):
                self._sha.update(chunk)
                pos += len(chunk)
        except OSError as exc:
            self._error = exc

    def join(self) -> hashlib._Hash:
        """Wait for the reader; its sha256 (of the whole file unless told to stop)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sha


def read_into(checker: Checker, fd: int, start: int = 0, end: int | None = None) -> None:
    """Feed ``checker`` the bytes of ``fd`` from ``start`` to ``end`` (None: its end)."""
    pos = start
    while end is None or pos < end:
        want = _READ if end is None else min(_READ, end - pos)
        chunk = os.pread(fd, want, pos)
        if not chunk:
            break
        checker.feed(chunk)
        pos += len(chunk)


def check_file(path: Path, name: str, *, checksums: bool = True) -> list[str]:
    """Run every check that applies to a file in one pass; return the names of the checks.

    ``name`` is the archive name (the path may be a temporary file). See :class:`Checker`.
    """
    if not Checker(name, checksums=checksums).checks:
        return []
    fd = os.open(path, os.O_RDONLY)
    try:
        checker = check_fd(fd, name, checksums=checksums)
    finally:
        os.close(fd)
    checker.finish()
    return checker.checks
