"""gzip checks in bounded memory, across members, and with truncation caught."""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import pytest

from chandra_download.errors import VerificationError
from chandra_download.verify import check_gzip


def _write(path: Path, *members: bytes) -> Path:
    path.write_bytes(b"".join(gzip.compress(m, 6) for m in members))
    return path


def test_highly_compressible_file_is_checked_in_bounded_memory(tmp_path: Path) -> None:
    path = _write(tmp_path / "zeros.gz", b"\0" * 200_000_000)  # ~200 kB on disk
    tracemalloc.start()
    try:
        assert check_gzip(path) == 200_000_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.timeout(30)
def test_members_after_a_large_one(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.gz", b"a" * 5_000_000, b"b" * 7)
    path.write_bytes(path.read_bytes() + b"\0" * 10)  # NUL padding after the last member
    assert check_gzip(path) == 5_000_007
    rand = os.urandom(3_000_000)
    assert check_gzip(_write(tmp_path / "r.gz", rand, b"\0" * 9_000_000)) == 12_000_000


def test_truncated_and_corrupt_are_refused(tmp_path: Path) -> None:
    raw = gzip.compress(b"\0" * 20_000_000)
    (tmp_path / "t.gz").write_bytes(raw[:-10])
    with pytest.raises(VerificationError, match="truncated"):
        check_gzip(tmp_path / "t.gz")
    bad = bytearray(gzip.compress(os.urandom(100_000)))
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "c.gz").write_bytes(bytes(bad))
    with pytest.raises(VerificationError):
        check_gzip(tmp_path / "c.gz")
