"""The streaming FITS check against files astropy writes, damaged ones, and a large one."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from chandra_download.errors import VerificationError
from chandra_download.simulator.content import write_file
from chandra_download.verify import FitsStream, check_file

BLOCK = 2880


def _hdus(rng: np.random.Generator) -> fits.HDUList:
    """Image, table with a heap, float image and random groups: every data-size rule."""
    image = fits.PrimaryHDU(rng.integers(-999, 999, (37, 53)).astype(">i2"))
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("TIME", "1D", array=rng.random(1001)),
            fits.Column("VAR", "PJ()", array=[np.arange(i % 7) for i in range(1001)]),
        ]
    )
    floats = fits.ImageHDU(rng.random((5, 7)).astype(">f4"))
    return fits.HDUList([image, table, floats])


def _groups(rng: np.random.Generator) -> fits.HDUList:
    data = fits.GroupData(
        rng.random((11, 1, 3, 4)).astype(">f4"),
        parnames=["UU", "VV"],
        pardata=[rng.random(11), rng.random(11)],
        bitpix=-32,
    )
    return fits.HDUList([fits.GroupsHDU(data)])


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fits") / "signed.fits"
    _hdus(np.random.default_rng(7)).writeto(path, checksum=True)
    return path.read_bytes()


def _verdict(raw: bytes, name: str = "f.fits") -> FitsStream:
    stream = FitsStream(name)
    stream.feed(raw)
    stream.close()
    return stream


@pytest.mark.parametrize("piece", [1, 3, 7, 80, BLOCK, 10_007, 10**7])
def test_astropy_signed_file_passes_in_pieces_of_any_size(signed: bytes, piece: int) -> None:
    stream = FitsStream("f.fits")
    for i in range(0, len(signed), piece):
        stream.feed(signed[i : i + piece])
    stream.close()
    assert stream.hdus == 3


def test_random_groups_and_unsigned_files_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    _groups(rng).writeto(tmp_path / "g.fits", checksum=True)
    assert _verdict((tmp_path / "g.fits").read_bytes()).hdus == 1
    _hdus(rng).writeto(tmp_path / "u.fits")  # no CHECKSUM/DATASUM: structure only
    assert _verdict((tmp_path / "u.fits").read_bytes()).hdus == 3


def test_every_flipped_byte_is_caught(signed: bytes) -> None:
    """Headers, data, heap and padding are all summed: one flipped bit anywhere fails."""
    rng = np.random.default_rng(11)
    positions = {0, 9, len(signed) - 1, *rng.integers(0, len(signed), 300).tolist()}
    for pos in sorted(positions):
        damaged = bytearray(signed)
        damaged[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises(VerificationError):
            _verdict(bytes(damaged))


def test_messages_name_the_problem(signed: bytes) -> None:
    data_start = signed.index(b"XTENSION")  # the primary's data ends where this starts
    damaged = bytearray(signed)
    damaged[data_start - 1] ^= 0xFF  # last data byte of HDU 0
    with pytest.raises(VerificationError, match="f.fits: FITS DATASUM mismatch in HDU 0"):
        _verdict(bytes(damaged))
    with pytest.raises(VerificationError, match="truncated in the data of HDU 2"):
        _verdict(signed[:-BLOCK])
    with pytest.raises(VerificationError, match="truncated in the header of HDU 1"):
        _verdict(signed[: data_start + 100])
    with pytest.raises(VerificationError, match="unexpected bytes after HDU 2"):
        _verdict(signed + b"junk" * (BLOCK // 4))
    with pytest.raises(VerificationError, match="unexpected bytes after HDU 2"):
        _verdict(signed + bytes(BLOCK) + b"junk" * (BLOCK // 4))
    assert _verdict(signed + bytes(BLOCK + 100)).hdus == 3  # NUL padding, as after gzip
    with pytest.raises(VerificationError, match="not a readable FITS file"):
        _verdict(b"<html>Service Unavailable</html>".ljust(BLOCK))
    with pytest.raises(VerificationError, match="empty"):
        _verdict(b"")


def test_a_datasum_keyword_that_lies_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "l.fits"
    _hdus(np.random.default_rng(5)).writeto(path, checksum=True)
    raw = path.read_bytes()
    start = raw.index(b"DATASUM = '") + 11
    end = raw.index(b"'", start)
    lie = str(int(raw[start:end]) ^ 1).encode().ljust(end - start)[: end - start]
    with pytest.raises(VerificationError, match="DATASUM mismatch in HDU 0"):
        _verdict(raw[:start] + lie + raw[end:])


def test_gzip_damage_is_reported_as_gzip_even_when_the_sums_fail_first(
    tmp_path: Path, signed: bytes
) -> None:
    stored = bytearray(gzip.compress(signed, compresslevel=0))  # bytes pass through as is
    at = stored.index(signed[5000:5040]) + 20
    stored[at] ^= 0xFF
    (tmp_path / "s.fits.gz").write_bytes(bytes(stored))
    with pytest.raises(VerificationError, match="corrupt gzip data|CRC"):
        check_file(tmp_path / "s.fits.gz", "s.fits.gz")
    (tmp_path / "ok.fits.gz").write_bytes(gzip.compress(signed))
    assert check_file(tmp_path / "ok.fits.gz", "primary/ok.fits.gz") == ["gzip", "fits"]
    assert check_file(tmp_path / "ok.fits.gz", "ok.fits.gz", checksums=False) == []


def test_large_file_is_checked_whole_in_bounded_memory(tmp_path: Path) -> None:
    """A 150 MB event file (past the old 64 MiB astropy limit) is summed to its last byte."""
    path = tmp_path / "evt1.fits"
    size = write_file(path, "secondary/acisf01843_000N002_evt1.fits", 1843, "acis", 150_000_000, 0)
    tracemalloc.start()
    try:
        assert check_file(path, "secondary/acisf01843_000N002_evt1.fits") == ["fits"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    with open(path, "r+b") as fh:  # one bit near the end of the data
        fh.seek(size - BLOCK - 17)
        byte = fh.read(1)
        fh.seek(size - BLOCK - 17)
        fh.write(bytes([byte[0] ^ 4]))
    with pytest.raises(VerificationError, match="DATASUM mismatch in HDU 1"):
        check_file(path, "acisf01843_000N002_evt1.fits")
