"""Issue 16.2 over S3, end to end: an object the bucket changed in place with the same size
is told by its ETag, by ``--check`` (exit 1) and by a plain re-run (fetched anew), never
taken for the copy that was fetched."""

from __future__ import annotations

import hashlib

from chandra_download import cli, download
from chandra_download.record import load

JPG = "primary/acisf01843N005_full_img2.jpg"


def _key(server, rel: str) -> str:
    return f"{server.prefix}byobsid/3/1843/{rel}"


def test_a_same_size_change_in_the_bucket_is_told_and_fetched_anew(archive_s3, tmp_path, capsys):
    out = tmp_path / "out"
    s3 = dict(mirror=archive_s3.base_url, endpoint_url=archive_s3.endpoint_url, status=False)
    assert download([1843], ["full_img"], outdir=out, **s3).ok
    local = out / "1843" / JPG
    before = local.read_bytes()
    etag = load(out, 1843)[JPG].etag
    changed = bytearray(before)
    changed[100] ^= 0xFF  # same size: only the ETag and LastModified tell
    archive_s3.put(_key(archive_s3, JPG), bytes(changed))

    base = ["1843", "full_img", "--mirror", archive_s3.base_url, "--outdir", str(out)]
    base += ["--endpoint-url", archive_s3.endpoint_url, "--no-status"]
    capsys.readouterr()
    assert cli.main([*base, "--check"]) == 1
    said = capsys.readouterr().out
    assert f"changed  {JPG}: changed at the archive since it was fetched (ETag" in said
    assert local.read_bytes() == before  # --check writes nothing

    res = download([1843], ["full_img"], outdir=out, **s3)
    got = next(f for f in res.files if f.relpath == JPG)
    assert res.ok and got.changed
    assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(changed).digest()
    assert load(out, 1843)[JPG].etag not in (None, etag)
    assert cli.main([*base, "--check"]) == 0
