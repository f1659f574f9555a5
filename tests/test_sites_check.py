"""``--check`` with a selection asks the site only about the selected files (issue 20.7)."""

from __future__ import annotations

from pathlib import Path

from chandra_download import download
from chandra_download.audit import check
from chandra_download.simulator import Fault


def test_check_with_a_selection_asks_only_about_it(archive_http, tmp_path: Path) -> None:
    assert download([1843], ["oif"], mirror=archive_http.base_url, outdir=tmp_path).ok
    # An unselected file that has gone from the site (404) is none of this check's business.
    archive_http.faults.add(Fault("status", "*evt2*", status=404, times=100))
    archive_http.stats.reset()
    report = check([1843], ["oif"], mirror=archive_http.base_url, outdir=tmp_path)
    assert report.ok, report.summary()
    assert report.obsids[0].complete == ["oif.fits"]
    assert report.obsids[0].extra == []
    assert archive_http.stats.get_count("*", method="HEAD") <= 1  # before: one per listed file


def test_a_wrong_host_name_is_not_hinted_as_a_ca_bundle(archive_root, tmp_path: Path) -> None:
    from chandra_download.simulator import ArchiveHTTPServer

    # The simulator's certificate holds 127.0.0.1 and localhost, not 127.0.0.2 (loopback too).
    with ArchiveHTTPServer(archive_root, host="0.0.0.0", tls=True) as server:
        mirror = server.base_url.replace("127.0.0.1", "127.0.0.2")
        r = download([1843], ["oif"], mirror=mirror, outdir=tmp_path, ca_bundle=server.ca_file)
    error = r[0].error or ""
    assert "not valid for that name" in error, error
    assert "--ca-bundle" not in error
