"""A large file read back whole is hashed on a reader thread of its own beside the checks
(verify._HashBeside, issue 16's 2 GB figure): the digest must be the file's, whatever the
checks find, and no reader may outlive the call."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading

import pytest

from chandra_download import verify
from chandra_download.errors import VerificationError


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "chandra-download sha256"]


def _big_gz(path, damage: bool = False) -> bytes:
    raw = os.urandom(9 << 20) + bytes(6 << 20)  # 15 MiB inflated, 9 of them incompressible
    data = bytearray(gzip.compress(raw, compresslevel=1))
    assert len(data) >= verify._HASH_BESIDE_AT
    if damage:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def _check(path, name: str) -> verify.Checker:
    fd = os.open(path, os.O_RDONLY)
    try:
        return verify.check_fd(fd, name)
    finally:
        os.close(fd)


def test_a_large_file_read_back_is_hashed_beside_its_checks(tmp_path, monkeypatch):
    data = _big_gz(tmp_path / "f.gz")
    started = []
    real = verify._HashBeside.__init__

    def spy(self, fd, sha):
        real(self, fd, sha)
        started.append(self._thread.name)

    monkeypatch.setattr(verify._HashBeside, "__init__", spy)
    checker = _check(tmp_path / "f.gz", "acisf00001N001_evt2.fits.gz")
    assert started == ["chandra-download sha256"]
    with pytest.raises(VerificationError):  # (not FITS inside: the FITS check says so)
        checker.finish()
    assert checker.digest == hashlib.sha256(data).hexdigest()
    assert checker.size == len(data)
    assert not _readers()


def test_a_damaged_large_file_is_still_hashed_whole(tmp_path):
    data = _big_gz(tmp_path / "f.gz", damage=True)
    checker = _check(tmp_path / "f.gz", "notes.txt.gz")
    with pytest.raises(VerificationError):
        checker.finish()
    # Two fetches of the same bad bytes are told the archive's by this digest.
    assert checker.digest == hashlib.sha256(data).hexdigest()


def test_a_small_file_is_hashed_inline(tmp_path, monkeypatch):
    data = gzip.compress(b"x" * 1000)
    (tmp_path / "s.gz").write_bytes(data)
    monkeypatch.setattr(verify, "_HashBeside", None)  # would raise if used
    checker = _check(tmp_path / "s.gz", "s.txt.gz")
    assert checker.finish() == hashlib.sha256(data).hexdigest()


def test_an_interrupted_read_back_leaves_no_reader_behind(tmp_path, monkeypatch):
    _big_gz(tmp_path / "f.gz")
    fed = []
    real_feed = verify.Checker.feed

    def feed(self, data):
        fed.append(len(data))
        if len(fed) == 2:
            raise KeyboardInterrupt
        real_feed(self, data)

    monkeypatch.setattr(verify.Checker, "feed", feed)
    with pytest.raises(KeyboardInterrupt):
        _check(tmp_path / "f.gz", "notes.txt.gz")
    assert not _readers()
