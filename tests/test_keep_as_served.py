"""Issue 11: a file failing its content check with the same bytes on every fetch is the
archive's own copy: kept as served, with a warning naming the check. Different damage on each
fetch is damage in transit: retried, then failed, as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from crash_support import OBSID, OIF, archive_files, archive_fixture, http_fixture

from chandra_download import cli, download
from chandra_download.results import Status
from chandra_download.simulator.faults import Fault, corrupt_bytes
from chandra_download.simulator.http import ArchiveHTTPServer

FITS_GZ = "primary/acisf01843N005_full_img2.fits.gz"
# (file, fault offset, what the warning names): flips at these offsets break a FITS DATASUM in
# HDU 1 (the header stays readable) and a gzip CRC.
CASES = [(OIF, 6000, "FITS"), (FITS_GZ, 3000, "gzip")]
FAST = {"retries": 3, "backoff": 0.01, "backoff_max": 0.02, "timeout": 5.0, "split_threshold": 0}


root = archive_fixture("served-archive")
http = http_fixture()


def as_served(root: Path, rel: str, after: int) -> bytes:
    """The bytes a ``corrupt`` fault with ``after_bytes=after`` sends for a whole file."""
    data = archive_files(root)[rel].read_bytes()
    return corrupt_bytes(data, 0, len(data), after)


def fetch(http: ArchiveHTTPServer, out: Path, rel: str, **options: object):
    results = download(OBSID, mirror=http.base_url, outdir=out, **{**FAST, **options})
    return next(f for f in results.files if f.relpath == rel)


@pytest.mark.parametrize(("rel", "after", "check"), CASES, ids=["fits", "fits.gz"])
def test_identical_damage_is_kept_as_served_with_a_warning(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, rel: str, after: int, check: str
) -> None:
    http.faults.add(Fault("corrupt", f"*{rel}", times=None, after_bytes=after))
    fr = fetch(http, tmp_path, rel)
    assert fr.status is Status.DOWNLOADED, fr.reason
    assert (fr.warning or "").startswith("kept as served:"), fr.warning
    assert check.lower() in fr.warning.lower()
    target = tmp_path / str(OBSID) / rel
    assert target.read_bytes() == as_served(root, rel, after)
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(target.name)) == [
        target.name
    ]  # no .part left beside it


@pytest.mark.parametrize(("rel", "after", "check"), CASES, ids=["fits", "fits.gz"])
def test_different_damage_each_time_still_fails(
    http: ArchiveHTTPServer, tmp_path: Path, rel: str, after: int, check: str
) -> None:
    for i in range(FAST["retries"] + 4):  # one use each, every fetch damaged elsewhere
        http.faults.add(Fault("corrupt", f"*{rel}", times=1, after_bytes=after + 16 * i))
    fr = fetch(http, tmp_path, rel)
    assert fr.status is Status.FAILED
    assert fr.warning is None
    assert not (tmp_path / str(OBSID) / rel).exists()


def test_a_body_of_the_wrong_length_is_never_kept(http: ArchiveHTTPServer, tmp_path: Path) -> None:
    http.faults.add(Fault("truncate", f"*{OIF}", times=None, after_bytes=9000))
    fr = fetch(http, tmp_path, OIF)
    assert fr.status is Status.FAILED and fr.warning is None
    assert not (tmp_path / str(OBSID) / OIF).exists()


def test_kept_file_in_the_output_then_check_and_repair(
    http: ArchiveHTTPServer, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rel, after, _ = CASES[0]
    http.faults.add(Fault("corrupt", f"*{rel}", times=None, after_bytes=after))
    args = [str(OBSID), "oif", "--mirror", http.base_url, "--outdir", str(tmp_path)]
    assert cli.main([*args, "--retries", "3"]) == 0  # downloaded, with a warning
    seen = capsys.readouterr()
    assert "kept as served" in seen.out + seen.err
    served = as_served(root, rel, after)
    target = tmp_path / str(OBSID) / rel
    assert target.read_bytes() == served

    # --check remembers (the record of what was fetched) that this very copy was kept as
    # served: reported as such, not as failing, and nothing says it was damaged (issue 20.8).
    assert cli.main([*args, "--check"]) == 0
    seen = capsys.readouterr()
    report = seen.out + seen.err
    about = [ln for ln in report.splitlines() if rel in ln]
    assert about and all("kept as served" in ln for ln in about), report
    assert not any("corrupt" in ln.lower() or "damage" in ln.lower() for ln in about), report

    fr = fetch(http, tmp_path, rel, repair=True)
    assert fr.status is Status.DOWNLOADED
    assert (fr.warning or "").startswith("kept as served:")
    assert target.read_bytes() == served
