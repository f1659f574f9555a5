"""Manifests and exact reproduction (issue 16.3, 16.4): write, change a byte at the archive,
``--frozen`` fails naming it while the rest completes; a byte flipped locally in a jpg is
found by ``--check --frozen``; bad manifests are one clear line, exit 2, nothing fetched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from reproc_support import at_archive, sha

from chandra_download import cli, download
from chandra_download.manifest import SCHEMA_VERSION, ManifestError, read, read_table
from chandra_download.results import Status

pytest_plugins = ["reproc_support"]  # its fixture: site

JPG = "primary/acisf01843N005_full_img2.jpg"
EVT2 = "primary/acisf01843N005_evt2.fits.gz"
TYPES = "evt2,full_img,oif,readme"


def flip(path: Path, at: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def args(server, out, *more):
    return ["--mirror", server.base_url, "--outdir", str(out), "--no-status", *more]


def test_manifest_after_a_download(site, tmp_path):
    root, server = site
    out, m = tmp_path / "out", tmp_path / "m.json"
    user = server.base_url.replace("http://", "http://ann:s3cret@")
    argv = ["1843", TYPES, "--mirror", user, "--outdir", str(out), "--no-status"]
    assert cli.main([*argv, "--manifest", str(m)]) == 0
    doc = json.loads(m.read_text())
    assert (
        doc["schema"] == SCHEMA_VERSION
        and doc["tool_version"]
        and doc["created"].endswith("+00:00")
    )
    assert "s3cret" not in m.read_text()
    assert doc["selection"]["obsids"] == [1843] and doc["selection"]["filetypes"] == TYPES
    files = {f["relpath"]: f for f in doc["files"]}
    evt2 = files[EVT2]
    assert evt2["sha256"] == sha(out / "1843" / EVT2) == sha(at_archive(root, EVT2))
    assert evt2["obsid"] == 1843 and evt2["type"] == "evt2" and evt2["version"] == 5
    assert evt2["size"] == at_archive(root, EVT2).stat().st_size
    assert evt2["checked"] == "verified" and files[JPG]["checked"] == "no content check"
    assert evt2["etag"] and evt2["last_modified"] and evt2["url"].endswith(EVT2)
    table = read_table(m)
    assert len(table) == len(files) and set(table["relpath"]) == set(files)
    assert table.meta["schema"] == SCHEMA_VERSION
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_manifest_after_list_has_no_sha256_for_files_not_local(site, tmp_path):
    root, server = site
    out, m = tmp_path / "out", tmp_path / "m.json"
    download([1843], ["evt2"], mirror=server.base_url, outdir=out, status=False)
    res = download([1843], ["evt2", "full_img"], mirror=server.base_url, outdir=out,
                   status=False, list_only=True, manifest=m)  # fmt: skip
    files = {f["relpath"]: f for f in json.loads(m.read_text())["files"]}
    assert files[EVT2]["sha256"] == sha(out / "1843" / EVT2)
    assert (
        files[JPG]["sha256"] is None and files[JPG]["size"] == at_archive(root, JPG).stat().st_size
    )
    assert not (out / "1843" / JPG).exists()
    res.write_manifest(tmp_path / "again.json")  # Results can write one too
    assert {f.relpath for f in read(tmp_path / "again.json").files} == set(files)


def test_manifest_after_check(site, tmp_path):
    root, server = site
    out, m = tmp_path / "out", tmp_path / "m.json"
    download([1843], ["evt2"], mirror=server.base_url, outdir=out, status=False)
    assert cli.main(["1843", "evt2", *args(server, out, "--check", "--manifest", str(m))]) == 0
    assert [f.sha256 for f in read(m).files] == [sha(out / "1843" / EVT2)]


def test_frozen_round_trip(site, tmp_path, capsys):
    """Write, change a byte at the archive: --frozen fails naming it, the rest completes."""
    root, server = site
    first, m = tmp_path / "first", tmp_path / "m.json"
    assert cli.main(["1843", TYPES, *args(server, first, "--manifest", str(m))]) == 0
    wanted = read(m)
    flip(at_archive(root, JPG))  # the archive changes one file (same size)
    again = tmp_path / "again"
    capsys.readouterr()
    assert cli.main(["--frozen", str(m), *args(server, again)]) == 1
    err = capsys.readouterr().err
    assert JPG in err and "changed at the archive since the manifest was written" in err
    assert not (again / "1843" / JPG).exists()  # not put in place
    for f in wanted.files:
        if f.relpath != JPG:
            assert sha(again / "1843" / f.relpath) == f.sha256
    assert not any((again / ".chandra-download" / "frozen").rglob("*.jpg"))
    # The same files already in place are not fetched again; the changed one still fails.
    res = download(None, mirror=server.base_url, outdir=again, frozen=m, status=False)
    by = {f.relpath: f for f in res.files}
    assert by[EVT2].status is Status.PRESENT and by[JPG].status is Status.FAILED
    assert len(by) == len(wanted.files)


def test_frozen_names_a_file_gone_from_the_archive(site, tmp_path, capsys):
    root, server = site
    out, m = tmp_path / "out", tmp_path / "m.json"
    download([1843], ["evt2", "full_img"], mirror=server.base_url, outdir=out, status=False,
             manifest=m)  # fmt: skip
    os.unlink(at_archive(root, EVT2))
    again = tmp_path / "again"
    assert cli.main(["1843", "--frozen", str(m), *args(server, again)]) == 1
    err = capsys.readouterr().err
    assert f"{EVT2}: gone from the archive" in err
    assert (again / "1843" / JPG).is_file() and not (again / "1843" / EVT2).exists()


def test_check_frozen_finds_a_flipped_byte_in_a_jpg(site, tmp_path, capsys):
    root, server = site
    out, m = tmp_path / "out", tmp_path / "m.json"
    assert cli.main(["1843", TYPES, *args(server, out, "--manifest", str(m))]) == 0
    capsys.readouterr()
    assert cli.main(["--check", "--frozen", str(m), "--outdir", str(out)]) == 0
    assert "Manifest: OK" in capsys.readouterr().out
    flip(out / "1843" / JPG)
    assert cli.main(["--check", "--frozen", str(m), "--outdir", str(out)]) == 1
    seen = capsys.readouterr()
    assert f"differs  1843/{JPG}: not the manifest's bytes (same size" in seen.out
    # the jpg has no check of its own: the plain --check cannot see it
    assert cli.main(["1843", TYPES, *args(server, out, "--check")]) == 0


def good_manifest(tmp_path: Path) -> dict:
    return {
        "schema": SCHEMA_VERSION,
        "files": [{"obsid": 1843, "relpath": EVT2, "sha256": "a" * 64, "size": 10}],
    }


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda d: "{not json", "not JSON"),
        (lambda d: {**d, "schema": 99}, "schema version 99"),
        (
            lambda d: {**d, "files": [{**d["files"][0], "relpath": "../../etc/passwd"}]},
            "leaves the ObsId directory",
        ),
        (lambda d: {**d, "files": [{**d["files"][0], "relpath": "/etc/passwd"}]}, "absolute"),
        (lambda d: {**d, "files": [{**d["files"][0], "sha256": "abc"}]}, "not 64 hex digits"),
        (lambda d: {**d, "files": [{**d["files"][0], "sha256": "G" * 64}]}, "not 64 hex digits"),
    ],
    ids=["not-json", "schema", "dotdot", "absolute", "short-sha", "non-hex-sha"],
)
def test_bad_manifests_are_one_line_exit_2_nothing_fetched(site, tmp_path, capsys, change, said):
    root, server = site
    doc = change(good_manifest(tmp_path))
    m = tmp_path / "m.json"
    m.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    out = tmp_path / "out"
    before = server.stats.requests if hasattr(server, "stats") else None
    for extra in ([], ["--check"]):
        assert cli.main(["--frozen", str(m), *extra, *args(server, out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0] and "Traceback" not in err[0], err
    assert not out.exists()
    if before is not None:
        assert server.stats.requests == before
    with pytest.raises(ManifestError):
        read(m)


def test_large_files_are_recorded_without_a_read_back_yet_the_manifest_has_it(
    site, tmp_path, monkeypatch
):
    """A fetched file's sha256 comes from the copy loop; a large file already present and not
    recorded is recorded without a read-back (``READ_BACK_LIMIT``); a manifest still gives its
    sha256, and --frozen still verifies it."""
    import chandra_download.record as record

    root, server = site
    out, m = tmp_path / "out", tmp_path / "m.json"
    res = download([1843], ["full_img"], mirror=server.base_url, outdir=out, status=False)
    assert get_sha(res, JPG) == record.load(out, 1843)[JPG].sha256 == sha(out / "1843" / JPG)
    record.record_path(out, 1843).unlink()
    monkeypatch.setattr(record, "READ_BACK_LIMIT", 0)
    download([1843], ["full_img"], mirror=server.base_url, outdir=out, status=False)
    assert record.load(out, 1843)[JPG].sha256 is None
    download([1843], ["full_img"], mirror=server.base_url, outdir=out, status=False, manifest=m)
    assert {f.relpath: f.sha256 for f in read(m).files}[JPG] == sha(out / "1843" / JPG)
    res = download(None, mirror=server.base_url, outdir=out, frozen=m, status=False)
    assert {f.status for f in res.files} == {Status.PRESENT}


def get_sha(res, rel):
    return next(f.sha256 for f in res.files if f.relpath == rel)
