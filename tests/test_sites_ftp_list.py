"""FTP listings without MLSD: DOS-style LIST lines are read, an unknown format is said."""

from __future__ import annotations

import pytest

from chandra_download.config import SessionConfig
from chandra_download.errors import SourceError
from chandra_download.sources.ftp_conn import Conn
from chandra_download.sources.ftp_parse import parse_ls
from chandra_download.sources.ftp_walk import ListingMixin


def test_dos_style_lines_are_entries() -> None:
    assert parse_ls("12-02-26  10:00PM       <DIR>          primary")[:3] == (
        "primary",
        "dir",
        None,
    )
    assert parse_ls("12-02-2026  22:00             1234 oif.fits")[:3] == ("oif.fits", "file", 1234)
    assert parse_ls("-rw-r--r--   1 ftp ftp  1234 Jan  1 12:00 oif.fits")[:3] == (
        "oif.fits",
        "file",
        1234,
    )


class _FakeFTP:
    sock = None  # no control connection to put under the listing's deadline

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def retrlines(self, cmd: str, callback) -> None:  # type: ignore[no-untyped-def]
        import ftplib

        if cmd.startswith("MLSD"):
            raise ftplib.error_perm("500 MLSD not understood")
        for line in self.lines:
            callback(line)


class _Lister(ListingMixin):
    _host = "ftp.example"
    _mlsd = None
    _config = SessionConfig()


def test_a_listing_in_an_unknown_format_is_not_no_files() -> None:
    conn = Conn(_FakeFTP(["+i8388621.48594,m825718503,r,s280, oif.fits"]))  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="LIST format of /d is not understood"):
        _Lister()._entries(conn, "/d")


def test_dos_listing_without_mlsd_is_read() -> None:
    lines = ["12-02-26  10:00PM       <DIR>          primary", "12-02-26  10:00PM  20 oif.fits"]
    conn = Conn(_FakeFTP(lines))  # type: ignore[arg-type]
    entries = [e[:3] for e in _Lister()._entries(conn, "/d")]
    assert entries == [("primary", "dir", None), ("oif.fits", "file", 20)]
