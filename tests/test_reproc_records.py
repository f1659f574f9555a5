"""Records of what was fetched (issue 16.2, 20.8, 20.9): a file the archive changed under the
same name is told apart from an interrupted download or local damage, by a re-run and by
``--check``; ``--check`` remembers a file kept as served."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reproc_support import at_archive, sha

from chandra_download import cli, download
from chandra_download.record import KEPT, NO_CHECK, VERIFIED, load, record_path, update
from chandra_download.results import Status
from chandra_download.simulator import ArchiveHTTPServer, Fault, generate_archive, reprocess

pytest_plugins = ["reproc_support"]  # its fixture: site

JPG = "primary/acisf01843N005_full_img2.jpg"
EVT2 = "primary/acisf01843N005_evt2.fits.gz"


def get(res, rel):
    return next(f for f in res.files if f.relpath == rel)


def fetch(server, out, types=None, **kw):
    return download([1843], types, mirror=server.base_url, outdir=out, status=False, **kw)


def test_every_download_is_recorded(site, tmp_path):
    root, server = site
    out = tmp_path / "out"
    assert fetch(server, out).ok
    recs = load(out, 1843)
    assert record_path(out, 1843) == out / ".chandra-download" / "records" / "1843.json"
    assert set(recs) == {
        p.relative_to(out / "1843").as_posix() for p in (out / "1843").rglob("*") if p.is_file()
    }
    evt2, jpg = recs[EVT2], recs[JPG]
    assert (
        evt2.sha256 == sha(out / "1843" / EVT2)
        and evt2.size == (out / "1843" / EVT2).stat().st_size
    )
    assert evt2.version == 5 and evt2.checked == VERIFIED and jpg.checked == NO_CHECK
    assert evt2.last_modified and evt2.etag  # the site's, as it gave them
    assert recs["oif.fits"].version is None


def test_changed_in_place_is_fetched_again_not_resumed(site, tmp_path, capsys):
    """oif.fits grows at the archive, 00README... both are fetched anew, never resumed
    onto the old bytes; --check said so before."""
    root, server = site
    out = tmp_path / "out"
    base = ["1843", "--mirror", server.base_url, "--outdir", str(out), "--no-status"]
    assert cli.main(base) == 0
    reprocess(root, 1843)
    capsys.readouterr()
    assert cli.main([*base, "--check"]) == 1
    checked = capsys.readouterr().out
    assert "changed  oif.fits: changed at the archive since it was fetched" in checked
    assert "changed  00README: changed at the archive" in checked
    assert "partial  oif.fits" not in checked

    res = fetch(server, out)
    assert res.ok
    oif = get(res, "oif.fits")
    assert oif.status is Status.DOWNLOADED and oif.changed and "since it was fetched" in oif.changed
    for rel in ("oif.fits", "00README"):
        assert sha(out / "1843" / rel) == sha(at_archive(root, rel))
        assert load(out, 1843)[rel].sha256 == sha(at_archive(root, rel))
    capsys.readouterr()
    assert cli.main([*base, "--check", "--prune-superseded"]) in (0, 1)  # (superseded remain)
    assert "changed  " not in capsys.readouterr().out


def test_a_smaller_archive_copy_is_not_a_larger_local_file(tmp_path, capsys):
    root = generate_archive(tmp_path / "a", {1843: "acis"}, scale=0.05, sizes={"readme": 4000})
    with ArchiveHTTPServer(root) as server:
        _smaller_archive_copy(root, server, tmp_path, capsys)


def _smaller_archive_copy(root, server, tmp_path, capsys):
    out = tmp_path / "out"
    fetch(server, out, ["readme"])
    readme = at_archive(root, "00README")
    readme.write_bytes(b"Chandra ObsId 1843\nshorter now\n")
    os.utime(readme, (1.7e9, 1.7e9))
    base = ["1843", "readme", "--mirror", server.base_url, "--outdir", str(out), "--no-status"]
    assert cli.main([*base, "--check"]) == 1
    checked = capsys.readouterr().out
    assert "changed at the archive since it was fetched" in checked and "larger" not in checked
    assert cli.main(base) == 0
    err = capsys.readouterr().err
    assert "changed at the archive since they were fetched (00README)" in err
    assert (out / "1843" / "00README").read_bytes() == readme.read_bytes()


def test_same_size_change_at_the_site_is_told_by_its_etag(site, tmp_path, capsys):
    """A jpg changed at the archive with the same size: only Last-Modified/ETag tell."""
    root, server = site
    out = tmp_path / "out"
    fetch(server, out, ["full_img"])
    jpg = at_archive(root, JPG)
    data = bytearray(jpg.read_bytes())
    data[100] ^= 0xFF
    jpg.write_bytes(bytes(data))
    os.utime(jpg, (1.7e9, 1.7e9))
    base = ["1843", "full_img", "--mirror", server.base_url, "--outdir", str(out), "--no-status"]
    assert cli.main([*base, "--check"]) == 1
    assert (
        f"changed  {JPG}: changed at the archive since it was fetched (ETag"
        in capsys.readouterr().out
    )
    # A re-run may take a recorded file of the listing's rounded size as it is (no HEAD:
    # issue 19.3); --repair asks the site about every file, as --check's hint says.
    res = fetch(server, out, ["full_img"], repair=True)
    assert get(res, JPG).changed and sha(out / "1843" / JPG) == sha(jpg)
    assert cli.main([*base, "--check"]) == 0


def test_a_damaged_record_is_discarded_with_a_message(site, tmp_path, capsys):
    root, server = site
    out = tmp_path / "out"
    base = ["1843", "evt2", "--mirror", server.base_url, "--outdir", str(out), "--no-status"]
    assert cli.main(base) == 0
    record_path(out, 1843).write_text('{"schema": 1, "files": [{"relpath": 3')
    capsys.readouterr()
    assert cli.main(base) == 0
    err = capsys.readouterr().err
    assert "record" in err and "damaged" in err and "internal error" not in err
    assert EVT2 in load(out, 1843)  # rebuilt
    assert cli.main([*base, "--check"]) == 0


def test_check_remembers_a_file_kept_as_served(site, tmp_path, capsys):
    """20.8: download and --repair keep the archive's failing copy; --check no longer
    reports it, and reports it again once its bytes change locally."""
    root, server = site
    out = tmp_path / "out"
    server.faults.add(Fault("corrupt", "*_evt2.fits.gz", times=None, after_bytes=3000))
    base = ["1843", "evt2", "--mirror", server.base_url, "--outdir", str(out), "--no-status"]
    assert cli.main(base) == 0
    res = fetch(server, out, ["evt2"])
    assert get(res, EVT2).status is Status.PRESENT
    assert load(out, 1843)[EVT2].checked == KEPT
    capsys.readouterr()
    assert cli.main([*base, "--check"]) == 0
    assert f"kept     {EVT2}: kept as served" in capsys.readouterr().out
    path = out / "1843" / EVT2
    data = bytearray(path.read_bytes())
    data[5000] ^= 0x01
    path.write_bytes(bytes(data))
    assert cli.main([*base, "--check"]) == 1
    assert f"fails    {EVT2}" in capsys.readouterr().out


def test_records_merge_by_rereading(tmp_path):
    """Two writers that each loaded the record before the other wrote: both entries stay."""
    from chandra_download.record import FileRecord

    def rec(rel: str) -> FileRecord:
        return FileRecord(rel, 1, "0" * 64, None, None, None, NO_CHECK, None, 0, "now")

    update(tmp_path, 1843, {"a": rec("a")})
    update(tmp_path, 1843, {"b": rec("b")})
    update(tmp_path, 1843, {"a": None})
    assert set(load(tmp_path, 1843)) == {"b"}
    doc = json.loads(record_path(tmp_path, 1843).read_text())
    assert doc["schema"] == 1 and doc["obsid"] == 1843
    assert not [p for p in record_path(tmp_path, 1843).parent.iterdir() if p.suffix == ".tmp"]


def test_s3_listing_gives_the_record_its_etag(archive_s3, tmp_path):
    """S3 keys carry ETag and LastModified natively: the listing's go into the record."""
    out = tmp_path / "out"
    s3 = dict(mirror=archive_s3.base_url, endpoint_url=archive_s3.endpoint_url, status=False)
    assert download([1843], ["oif"], outdir=out, **s3).ok
    rec = load(out, 1843)["oif.fits"]
    assert rec.etag and rec.last_modified and rec.sha256 == sha(out / "1843" / "oif.fits")


def test_a_local_mirror_changed_in_place_is_told_by_its_mtime(tmp_path):
    root = generate_archive(tmp_path / "archive", {1843: "acis"}, scale=0.05)
    out = tmp_path / "out"
    assert fetch_local(root, out).ok
    jpg = at_archive(root, JPG)
    data = bytearray(jpg.read_bytes())
    data[50] ^= 0x10
    jpg.write_bytes(bytes(data))
    os.utime(jpg, (1.7e9, 1.7e9))
    res = fetch_local(root, out)
    assert get(res, JPG).changed and sha(out / "1843" / JPG) == sha(jpg)


def fetch_local(root: Path, out: Path):
    return download([1843], ["full_img"], mirror=str(root), outdir=out, status=False)


def test_a_partial_file_is_not_resumed_onto_another_copy(tmp_path):
    """20.9: interrupted, then changed at the site with the same size (before the resume
    point, where the seam check does not look): fetched again, not completed with old bytes."""
    root = generate_archive(
        tmp_path / "archive", {1843: "acis"}, scale=0.05, sizes={"full_img": 3_000_000}
    )
    out = tmp_path / "out"
    with ArchiveHTTPServer(root) as server:
        server.faults.add(Fault("drop", "*_full_img2.jpg", after_bytes=2_000_000))
        opts = dict(mirror=server.base_url, outdir=out, status=False, retries=0)
        first = download([1843], ["full_img"], split_threshold=0, **opts)
        assert get(first, JPG).status is not Status.DOWNLOADED  # a partial file is left
        jpg = at_archive(root, JPG)
        data = bytearray(jpg.read_bytes())
        data[100] ^= 0xFF
        jpg.write_bytes(bytes(data))
        os.utime(jpg, (1.7e9, 1.7e9))
        server.faults.clear()
        again = download([1843], ["full_img"], split_threshold=0, **opts)
    fr = get(again, JPG)
    assert fr.ok and fr.changed and "partial download began" in fr.changed
    assert sha(out / "1843" / JPG) == sha(jpg)


def test_a_plain_rerun_tells_a_same_size_change_by_the_listings_date(site, tmp_path):
    """16.2 with 19.3: a re-run takes a recorded file of the listing's rounded size without a
    HEAD, unless the listing shows another date for it than when it was fetched: then the
    site is asked, and its new ETag says the file changed at the archive."""
    root, server = site
    out = tmp_path / "out"
    assert fetch(server, out, ["full_img"]).ok
    assert load(out, 1843)[JPG].listed_date  # the simulator's listing has Apache's dates
    quiet = fetch(server, out, ["full_img"])  # nothing changed: no HEAD, present
    assert get(quiet, JPG).status is Status.PRESENT and not get(quiet, JPG).changed
    jpg = at_archive(root, JPG)
    data = bytearray(jpg.read_bytes())
    data[100] ^= 0xFF
    jpg.write_bytes(bytes(data))
    os.utime(jpg, (1.7e9, 1.7e9))
    res = fetch(server, out, ["full_img"])
    fr = get(res, JPG)
    assert fr.ok and fr.changed and sha(out / "1843" / JPG) == sha(jpg)
    assert load(out, 1843)[JPG].sha256 == sha(jpg)


def test_a_file_whose_listing_date_moved_is_asked_about_once(site, tmp_path):
    """The date moved (the file was touched at the archive): the site is asked (a HEAD),
    and once the file is settled the record keeps the new date, so the next re-run is quiet
    again (no HEAD)."""
    root, server = site
    out = tmp_path / "out"
    assert fetch(server, out, ["full_img"]).ok
    os.utime(at_archive(root, JPG), (1.7e9, 1.7e9))
    heads = server.stats.get_count("*", method="HEAD")
    assert fetch(server, out, ["full_img"]).ok
    assert server.stats.get_count("*", method="HEAD") > heads
    heads = server.stats.get_count("*", method="HEAD")
    again = fetch(server, out, ["full_img"])
    assert get(again, JPG).status is Status.PRESENT
    assert server.stats.get_count("*", method="HEAD") == heads


def test_partial_notes_of_files_starting_at_once_are_all_kept(tmp_path):
    """Two large files of one ObsId start at once: each one's note of whose bytes it holds
    survives the other's (the notes file is read, merged and replaced whole)."""
    import threading as _threading

    from chandra_download.record import _load_partials, _partials_path, note_partial
    from chandra_download.results import FileResult

    out = tmp_path / "out"
    files = [
        FileResult(1843, f"primary/f{i}.jpg", "u", out / "1843" / "primary" / f"f{i}.jpg", None)
        for i in range(40)
    ]
    start = _threading.Barrier(len(files))

    def note(fr: FileResult) -> None:
        start.wait()
        note_partial(fr, ("Thu, 13 Jun 2019 07:42:00 GMT", f'"{fr.relpath}"'))

    threads = [_threading.Thread(target=note, args=(fr,)) for fr in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    notes = _load_partials(_partials_path(out, 1843))
    assert set(notes) == {fr.relpath for fr in files}
