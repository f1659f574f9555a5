"""The gzip check's inflater: zlib-ng's drop-in when installed, the standard zlib otherwise,
with the same verdict on every kind of damage either way."""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Iterator
from types import ModuleType

import pytest

from chandra_download import verify
from chandra_download.errors import VerificationError


@pytest.fixture
def without_zlib_ng(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on a machine without zlib-ng: its import fails, and the choice is made anew."""
    monkeypatch.setitem(sys.modules, "zlib_ng", None)  # (None in sys.modules: ImportError)
    monkeypatch.setitem(sys.modules, "zlib_ng.zlib_ng", None)
    monkeypatch.setattr(verify, "_INFLATER", None)
    yield


@pytest.fixture(params=["zlib-ng", "zlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Each inflater in turn (zlib: the fallback, chosen as when zlib-ng is absent)."""
    monkeypatch.setattr(verify, "_INFLATER", None)
    if request.param == "zlib":
        monkeypatch.setitem(sys.modules, "zlib_ng", None)
        monkeypatch.setitem(sys.modules, "zlib_ng.zlib_ng", None)
    return verify.inflater()


def _check(data: bytes, piece: int = 65536) -> int:
    """Feed a Gunzip ``data`` in pieces; the inflated size (raises VerificationError)."""
    g, size = verify.Gunzip("f.gz"), 0
    for i in range(0, len(data), piece):
        size += sum(len(out) for out in g.feed(memoryview(data)[i : i + piece]))
    return size + sum(len(out) for out in g.close())


def test_zlib_ng_is_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from zlib_ng import zlib_ng  # a core dependency: installed wherever the package is

    monkeypatch.setattr(verify, "_INFLATER", None)
    assert verify.inflater() is zlib_ng
    assert isinstance(verify.Gunzip("a.gz")._dec, type(zlib_ng.decompressobj()))


def test_standard_zlib_when_zlib_ng_cannot_be_imported(without_zlib_ng: None) -> None:
    assert verify.inflater() is zlib
    assert isinstance(verify.Gunzip("a.gz")._dec, type(zlib.decompressobj()))
    data = os.urandom(300_000)
    assert _check(gzip.compress(data)) == len(data)
    checker = verify.Checker("b.txt.gz")
    bad = bytearray(gzip.compress(data))
    bad[-6] ^= 1  # the CRC-32
    checker.feed(bytes(bad))
    with pytest.raises(VerificationError, match="b.txt.gz: corrupt gzip data"):
        checker.finish()


def test_members_padding_and_bounded_output_alike(backend: ModuleType) -> None:
    members = gzip.compress(b"a" * 3_000_000) + gzip.compress(b"b" * 7) + b"\0" * 10
    assert _check(members, 1000) == 3_000_007
    bomb = gzip.compress(b"\0" * 50_000_000)
    pieces = list(verify.Gunzip("z.gz").feed(bomb))
    assert max(len(p) for p in pieces) <= verify._READ  # output bounded, whatever the input
    assert sum(len(p) for p in pieces) <= 50_000_000


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("crc", "corrupt gzip data"),
        ("length", "corrupt gzip data"),
        ("body", "corrupt gzip data"),
        ("cut", "truncated"),
        ("header", "corrupt gzip data"),
        ("empty", "empty file"),
        ("garbage after", "corrupt gzip data"),
    ],
)
def test_every_damage_is_refused_alike(backend: ModuleType, damage: str, says: str) -> None:
    good = gzip.compress(os.urandom(200_000) + b"x" * 200_000)
    bad = bytearray(good)
    if damage == "crc":
        bad[-8] ^= 0x10
    elif damage == "length":
        bad[-1] ^= 0x01
    elif damage == "body":
        bad[len(bad) // 3 : len(bad) // 3 + 64] = bytes(64)
    elif damage == "cut":
        bad = bad[:-100]
    elif damage == "header":
        bad[0] ^= 0xFF
    elif damage == "empty":
        bad = bytearray()
    else:
        bad += b"not gzip"
    with pytest.raises(VerificationError, match=says):
        _check(bytes(bad))
