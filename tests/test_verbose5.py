"""``--verbose 5`` adds protocol detail over level 4: HTTP requests and responses, FTP
commands (never the password) and replies, S3 GetObject keys and ranges; URLs masked."""

from __future__ import annotations

import re

from statedir_support import ours

from chandra_download import cli
from chandra_download.simulator.fixtures import FTP_PASSWORD, FTP_USER


def _lines(capsys, argv: list[str]) -> list[str]:
    assert cli.main(argv) == 0
    return capsys.readouterr().out.splitlines()


def test_level_5_shows_http_requests_and_responses(archive_http, tmp_path, capsys):
    base = ["1843", "oif", "-m", archive_http.base_url, "--outdir"]
    four = _lines(capsys, [*base, str(tmp_path / "a"), "--verbose", "4"])
    five = _lines(capsys, [*base, str(tmp_path / "b"), "--verbose", "5"])
    assert not any(line.startswith("HTTP ") for line in four)
    assert any(line.startswith("HTTP > GET ") and "oif.fits" in line for line in five)
    assert any(
        line.startswith("HTTP < 200 ") and "Content-Length: " in line and "oif.fits" in line
        for line in five
    )
    assert len(five) > len(four)


def test_level_5_shows_a_range_and_its_content_range(archive_http, source_files, tmp_path, capsys):
    evt2 = "primary/acisf01843N005_evt2.fits.gz"
    part = ours(tmp_path, 1843, evt2)
    part.write_bytes(source_files(1843)[evt2].read_bytes()[:100_000])
    out = _lines(capsys, ["1843", "evt2", "-m", archive_http.base_url, "--outdir", str(tmp_path),
                          "--verbose", "5"])  # fmt: skip
    gets = [line for line in out if line.startswith("HTTP > GET ") and evt2 in line]
    assert any(re.search(r"Range: bytes=\d+-$", line) for line in gets), gets
    assert any(
        line.startswith("HTTP < 206 ") and re.search(r"Content-Range: bytes \d+-\d+/\d+$", line)
        for line in out
    )


def test_level_5_ftp_commands_never_show_the_password(archive_ftp, tmp_path, capsys):
    argv = ["1843", "oif", "-m", archive_ftp.base_url, "--username", FTP_USER,
            "--userpass", FTP_PASSWORD, "--outdir", str(tmp_path), "--verbose", "5"]  # fmt: skip
    out = _lines(capsys, argv)
    text = "\n".join(out)
    assert FTP_PASSWORD not in text
    assert any(line.endswith(f"> USER {FTP_USER}") for line in out)
    assert any(line.endswith("> PASS ****") for line in out)
    assert any(" > RETR " in line and "oif.fits" in line for line in out)
    assert any(line.startswith("FTP ") and " < 230" in line for line in out)  # logged in


def test_level_5_shows_s3_getobject_key_and_range(archive_s3, tmp_path, capsys):
    argv = ["1843", "oif", "-m", archive_s3.base_url, "--endpoint-url", archive_s3.endpoint_url,
            "--outdir", str(tmp_path), "--verbose", "5"]  # fmt: skip
    out = _lines(capsys, argv)
    assert any(
        line.startswith("S3 > GetObject ") and "key=chandra/data/byobsid/3/1843/oif.fits" in line
        for line in out
    ), out
    assert any(line.startswith("S3 < GetObject ") and "ContentLength=" in line for line in out)
