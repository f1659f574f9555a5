"""Tests of the archive simulator: tree, link model, faults, HTTP(S) server, fixtures, CLI."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import re
import ssl
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import chandra_download
from chandra_download.filetypes import FILETYPES, classify
from chandra_download.simulator import (
    DEFAULT_OBSIDS,
    ArchiveHTTPServer,
    Fault,
    FaultPlan,
    LinkModel,
    generate_archive,
    iter_files,
    obsid_dir,
)
from chandra_download.simulator.__main__ import main as cli_main
from chandra_download.simulator.fixtures import FTP_PASSWORD, FTP_USER
from chandra_download.simulator.http import apache_size

EVT1 = "byobsid/3/1843/secondary/acisf01843_000N005_evt1.fits.gz"
EVT2 = "byobsid/3/1843/primary/acisf01843N005_evt2.fits.gz"


def request(server, path, headers=None, method="GET", body=None, conn=None):
    """One raw request; returns (response, body bytes)."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    target = path if path.startswith("/") else server.prefix + path
    conn.request(method, target, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp, resp.read()


def local(root: Path, rel: str) -> bytes:
    return (root / rel).read_bytes()


# --- tree -----------------------------------------------------------------------------------


def test_tree_has_real_patterns_and_every_type(archive_root):
    names = {o: [rel for rel, _ in iter_files(archive_root, o)] for o in DEFAULT_OBSIDS}
    assert (archive_root / "byobsid/3/1843/oif.fits").is_file()
    for rel in (
        "primary/acisf02749N004_evt2.fits.gz",
        "primary/acisf02749_000N004_fov1.fits.gz",
        "primary/pcadf02749_000N001_asol1.fits.gz",
        "primary/acisf02749N004_cntr_img2.jpg",
        "primary/acisf02749N004_full_img2.fits.gz",
        "primary/responses/acisf02749N004_Hm1_arf2.fits.gz",
        "secondary/acisf02749_000N004_evt1a.fits.gz",
        "axaff02749N004_VV001_vv2.pdf.gz",
        "secondary/axaff02749N004_VV001_vvref2.pdf.gz",
        "00README",
    ):
        assert rel in names[2749]
    assert "primary/hrcf06298N006_evt2.fits.gz" in names[6298]
    assert "secondary/hrcf06298_000N006_std_flt1.fits.gz" in names[6298]
    assert "secondary/hrcf06298_000N006_bpix1.fits.gz" in names[6298]
    assert classify("hrcf06298_000N006_std_dtfstat1.fits.gz") == "dtf"
    for o in DEFAULT_OBSIDS:
        assert any(r.startswith("secondary/aspect/pcadf") for r in names[o])
        assert any(r.startswith("secondary/ephem/lunarf") for r in names[o])
        assert all(f"{o:05d}" in r for r in names[o] if r.startswith("primary/acisf"))
    found = {classify(r) for rels in names.values() for r in rels}
    assert set(FILETYPES) <= found
    assert None in found  # at least one file of no known type
    sizes = [p.stat().st_size for o in DEFAULT_OBSIDS for _, p in iter_files(archive_root, o)]
    assert max(sizes) < 1_500_000
    assert not list((archive_root / "byobsid").rglob(".*.tmp"))  # no temporary of its own left


def test_gzip_and_fits_checksums_are_valid(archive_root):
    from astropy.io import fits

    for obsid in DEFAULT_OBSIDS:
        for rel, path in iter_files(archive_root, obsid):
            if rel.endswith(".gz"):
                with gzip.open(path) as g:  # reading to EOF checks the CRC and length
                    data = g.read()
                assert data
            if ".fits" in rel:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # astropy warns on a bad checksum
                    with fits.open(path, checksum=True) as hdus:
                        assert len(hdus) == 2
                        for hdu in hdus:
                            assert hdu.verify_checksum() == 1
                            assert hdu.verify_datasum() == 1
                        assert hdus[0].header["OBS_ID"] == str(obsid)


def test_generate_is_deterministic_idempotent_and_sized(tmp_path, archive_root):
    a = generate_archive(tmp_path / "a", {1843: "acis"})
    t0 = time.monotonic()
    generate_archive(a, {1843: "acis"})
    assert time.monotonic() - t0 < 0.5
    digest = hashlib.sha256(local(archive_root, EVT2)).hexdigest()
    assert hashlib.sha256(local(a, EVT2)).hexdigest() == digest
    other = generate_archive(tmp_path / "b", [1843], seed=1)
    assert local(other, EVT2) != local(a, EVT2)
    # Beyond 32 MB the generator writes stored gzip blocks; check that path too.
    big = generate_archive(tmp_path / "c", {7: "hrc"}, sizes={"evt2": 40_000_000}, scale=0.1)
    path = big / "byobsid/7/7/primary/hrcf00007N004_evt2.fits.gz"
    assert abs(path.stat().st_size - 40_000_000) < 400_000
    with gzip.open(path) as g:
        assert len(g.read()) > 39_000_000
    from astropy.io import fits

    with fits.open(path, checksum=True) as hdus:
        assert hdus[1].verify_datasum() == 1 and hdus[1].verify_checksum() == 1
    small = big / "byobsid/7/7/secondary/hrcf00007_000N004_evt1.fits.gz"
    assert small.stat().st_size < 150_000  # scale 0.1 of ~1 MB


def test_cli_generate(tmp_path):
    assert cli_main(["generate", str(tmp_path), "--obsids", "12:hrc", "--size", "evt1=50k"]) == 0
    files = dict(iter_files(tmp_path, 12))
    assert "primary/hrcf00012_000N004_dtf1.fits.gz" in files
    assert files["secondary/hrcf00012_000N004_evt1.fits.gz"].stat().st_size < 60_000


# --- link model and fault plan --------------------------------------------------------------


def test_link_pacing_is_accurate_with_small_chunks():
    link = LinkModel(conn_bandwidth=200_000)
    conn = link.new_connection()
    t0 = time.monotonic()
    for _ in range(100):
        link.pace(conn, 1000)
    elapsed = time.monotonic() - t0
    assert 0.35 <= elapsed < 1.5  # 100 kB at 200 kB/s, minus the small burst allowance
    assert LinkModel().new_connection() is None and not LinkModel().throttled


def test_fault_plan_matching():
    plan = FaultPlan()
    plan.add(Fault("status", "primary/*evt2*", times=2, protocols=("http",)))
    plan.add(Fault("corrupt", "byobsid/3/*", times=None))
    assert plan.match("ftp", EVT2, {"status"}) is None
    assert plan.match("http", EVT2, {"status"}).kind == "status"
    assert plan.match("http", EVT2, {"status"}).kind == "status"
    assert plan.match("http", EVT2, {"status"}) is None  # used up
    for _ in range(3):
        assert plan.match("s3", EVT1).kind == "corrupt"  # times=None: always
    assert plan.match("http", "byobsid/9/6299/x") is None
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "drop", "bogus": 1})
    plan.clear()
    assert len(plan) == 0


# --- HTTP basics ----------------------------------------------------------------------------


def test_listing_has_apache_form(archive_http, archive_root):
    resp, body = request(archive_http, "byobsid/3/1843/")
    page = body.decode()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/html")
    assert "<title>Index of /cdaftp/byobsid/3/1843</title>" in page
    assert "<h1>Index of /cdaftp/byobsid/3/1843</h1>" in page
    for q in ("?C=N;O=D", "?C=M;O=A", "?C=S;O=A", "?C=D;O=A"):
        assert f'<a href="{q}">' in page
    assert '<a href="/cdaftp/byobsid/3/">Parent Directory</a>' in page
    rows = re.findall(r'<td><a href="([^"?/][^"]*)">([^<]*)</a></td><td align="right">'
                      r'(\d{4}-\d\d-\d\d \d\d:\d\d)  </td><td align="right">([^<]*)</td>', page)  # fmt: skip
    base = archive_root / "byobsid/3/1843"
    expected = sorted(p.name + ("/" if p.is_dir() else "") for p in base.iterdir())
    assert [r[0] for r in rows] == expected and [r[1] for r in rows] == expected
    for href, _, when, size in rows:
        assert when == "2019-06-13 07:42"
        path = base / href
        assert size == ("  - " if path.is_dir() else apache_size(path.stat().st_size))
    assert apache_size(20) == " 20 " and apache_size(112 * 1024) == "112K"
    assert apache_size(2_200_000) == "2.1M" and apache_size(2000) == "2.0K"


def test_ranges_head_redirect_404_keepalive(archive_http, archive_root):
    data = local(archive_root, EVT1)
    total = len(data)
    conn = http.client.HTTPConnection("127.0.0.1", archive_http.port, timeout=10)
    resp, body = request(archive_http, EVT1, conn=conn)
    assert resp.status == 200 and body == data
    assert resp.getheader("Content-Length") == str(total)
    assert resp.getheader("Accept-Ranges") == "bytes"
    assert resp.getheader("Content-Encoding") is None
    assert resp.getheader("ETag") and resp.getheader("Last-Modified")
    resp, body = request(archive_http, EVT1, {"Range": "bytes=100-199"}, conn=conn)
    assert resp.status == 206 and body == data[100:200]
    assert resp.getheader("Content-Range") == f"bytes 100-199/{total}"
    resp, body = request(archive_http, EVT1, {"Range": "bytes=1000-"}, conn=conn)
    assert resp.status == 206 and body == data[1000:]
    assert resp.getheader("Content-Range") == f"bytes 1000-{total - 1}/{total}"
    resp, body = request(archive_http, EVT1, {"Range": f"bytes={total}-"}, conn=conn)
    assert resp.status == 416 and resp.getheader("Content-Range") == f"bytes */{total}"
    resp, body = request(archive_http, EVT1, method="HEAD", conn=conn)
    assert resp.status == 200 and body == b"" and resp.getheader("Content-Length") == str(total)
    resp, _ = request(archive_http, "byobsid/3/1843", conn=conn)
    assert resp.status == 301
    assert resp.getheader("Location") == "/cdaftp/byobsid/3/1843/"
    for bad in ("byobsid/3/99999/", "nothing.fits", "/other/byobsid/", "/cdaftp/../../etc/passwd",
                "/cdaftp/%2e%2e/%2e%2e/etc/passwd", "/cdaftp/.simulator/1843.json"):  # fmt: skip
        resp, body = request(archive_http, bad, conn=conn)
        assert resp.status == 404 and b"Not Found" in body
    # Everything above used one connection (keep-alive).
    assert archive_http.stats.connections_opened == 1
    assert archive_http.stats.requests[("GET", EVT1)] == 4
    conn.close()


def test_tls(archive_https):
    assert archive_https.base_url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=archive_https.ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", archive_https.port, context=ctx, timeout=10)
    resp, body = request(archive_https, "byobsid/3/1843/oif.fits", conn=conn)
    assert resp.status == 200 and body.startswith(b"SIMPLE  =")
    resp, body = request(archive_https, EVT2, {"Range": "bytes=5-9"}, conn=conn)
    assert resp.status == 206 and len(body) == 5
    plain = ssl.create_default_context()
    bad = http.client.HTTPSConnection("localhost", archive_https.port, context=plain, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        bad.request("GET", "/cdaftp/")


def test_basic_auth(archive_root):
    with ArchiveHTTPServer(archive_root, auth=("alice", "s3cret")) as server:
        resp, _ = request(server, "byobsid/3/1843/")
        assert resp.status == 401 and resp.getheader("WWW-Authenticate").startswith("Basic")
        import base64

        for pw, code in (("wrong", 401), ("s3cret", 200)):
            token = base64.b64encode(f"alice:{pw}".encode()).decode()
            resp, _ = request(server, "byobsid/3/1843/", {"Authorization": f"Basic {token}"})
            assert resp.status == code


def test_latency_and_bandwidth(archive_root):
    size = len(local(archive_root, EVT1))
    with ArchiveHTTPServer(archive_root, link=LinkModel(latency=0.3)) as server:
        t0 = time.monotonic()
        resp, _ = request(server, "byobsid/3/1843/oif.fits")
        assert resp.status == 200 and time.monotonic() - t0 >= 0.27
    with ArchiveHTTPServer(archive_root, link=LinkModel(conn_bandwidth=4e6)) as server:
        t0 = time.monotonic()
        _, body = request(server, EVT1)
        assert len(body) == size and 0.8 * size / 4e6 <= time.monotonic() - t0 < 5
    with ArchiveHTTPServer(archive_root, link=LinkModel(total_bandwidth=4e6)) as server:
        results = []
        threads = [threading.Thread(target=lambda: results.append(request(server, EVT1)[1]))
                   for _ in range(2)]  # fmt: skip
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [len(b) for b in results] == [size, size]
        assert 0.8 * 2 * size / 4e6 <= time.monotonic() - t0 < 8
        assert server.stats.peak_connections == 2


# --- faults ---------------------------------------------------------------------------------


def test_status_html_and_range_faults(archive_http, archive_root):
    data, total = local(archive_root, EVT1), len(local(archive_root, EVT1))
    plan = archive_http.faults
    plan.add(Fault("status", "*evt1*", status=503, retry_after=7))
    resp, _ = request(archive_http, EVT1)
    assert resp.status == 503 and resp.getheader("Retry-After") == "7"
    assert request(archive_http, EVT1)[0].status == 200  # times=1: used up
    plan.add(Fault("status", "*", status=429))
    assert request(archive_http, "byobsid/3/1843/")[0].status == 429
    plan.add(Fault("html", "primary/*"))
    resp, body = request(archive_http, EVT2)
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/html")
    assert body.lstrip().startswith(b"<!DOCTYPE")
    plan.add(Fault("ignore_range", "*"))
    resp, body = request(archive_http, EVT1)  # not a Range request: the fault waits
    plan_left = len(plan)
    resp, body = request(archive_http, EVT1, {"Range": "bytes=500-"})
    assert plan_left == 1 and resp.status == 200 and body == data
    plan.add(Fault("wrong_content_range", "*"))
    resp, body = request(archive_http, EVT1, {"Range": "bytes=1000-1999"})
    assert resp.status == 206
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", resp.getheader("Content-Range"))
    start, end = int(m[1]), int(m[2])
    assert (start, end) != (1000, 1999) and int(m[3]) == total
    assert body == data[start : end + 1]


def test_body_faults(archive_http, archive_root):
    data = local(archive_root, EVT1)
    plan = archive_http.faults
    plan.add(Fault("drop", "*evt1*", after_bytes=10_000))
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        request(archive_http, EVT1)
    plan.add(Fault("truncate", "*evt1*", after_bytes=20_000))
    with pytest.raises(http.client.IncompleteRead) as info:
        request(archive_http, EVT1)
    assert len(info.value.partial) == 20_000 and info.value.partial == data[:20_000]
    plan.add(Fault("corrupt", "*evt1*"))
    resp, body = request(archive_http, EVT1)
    assert resp.status == 200 and len(body) == len(data) and body != data
    plan.add(Fault("stall", "*evt1*", after_bytes=5000, seconds=0.5))
    t0 = time.monotonic()
    resp, body = request(archive_http, EVT1)
    assert body == data and time.monotonic() - t0 >= 0.45
    assert [k for _, _, k in plan.fired] == ["drop", "truncate", "corrupt", "stall"]


def test_traversal_fault_in_listing(archive_http):
    archive_http.faults.add(Fault("traversal", "byobsid/3/1843/"))
    _, body = request(archive_http, "byobsid/3/1843/")
    page = body.decode()
    for href in ('"../evil.fits"', '"/etc/passwd"', '"%2e%2e/x.fits"', '"..\\evil.fits"'):
        assert f"<a href={href}>" in page
    assert "bad\x01name.fits" in page
    _, body = request(archive_http, "byobsid/3/1843/")
    assert b"evil" not in body


def test_control_endpoints_and_stats(archive_http):
    faults = json.dumps([{"kind": "status", "path_glob": "*oif*", "status": 500}])
    resp, _ = request(archive_http, "/_simulator/faults", method="POST", body=faults,
                      headers={"Content-Type": "application/json"})  # fmt: skip
    assert resp.status == 200
    assert request(archive_http, "byobsid/3/1843/oif.fits")[0].status == 500
    archive_http.faults.add(Fault("status", "*", times=None))
    resp, _ = request(archive_http, "/_simulator/faults", method="DELETE")
    assert resp.status == 200 and len(archive_http.faults) == 0
    bad = json.dumps({"kind": "nope"})
    assert request(archive_http, "/_simulator/faults", method="POST", body=bad)[0].status == 400
    conns = [http.client.HTTPConnection("127.0.0.1", archive_http.port, timeout=10)
             for _ in range(3)]  # fmt: skip
    for c in conns:  # three connections open at once
        assert request(archive_http, "byobsid/3/1843/oif.fits", conn=c)[0].status == 200
    _, body = request(archive_http, "/_simulator/stats")
    stats = json.loads(body)
    assert stats["peak_connections"] >= 3 and stats["bytes_sent"] > 0
    assert archive_http.stats.get_count("*oif.fits") == 4
    assert archive_http.stats.get_count("byobsid/3/1843/*", method=None) == 4
    for c in conns:
        c.close()
    request(archive_http, "/_simulator/stats", method="DELETE")
    assert archive_http.stats.get_count() == 0 and archive_http.stats.bytes_sent == 0


# --- FTP and S3 fixtures -------------------------------------------------------------------


def assert_same_as_archive(results, root: Path) -> None:
    assert results.ok and results.files
    for f in results.files:
        assert f.path.read_bytes() == (obsid_dir(root, f.obsid) / f.relpath).read_bytes()


def test_archive_ftp_fixture(archive_ftp, archive_root, tmp_path):
    assert (FTP_USER, FTP_PASSWORD) == ("chandra", "x-ray")
    mirror = archive_ftp.base_url
    assert re.fullmatch(r"ftp://127\.0\.0\.1:\d+/", mirror)
    anon = chandra_download.download(1843, "evt2,oif", mirror=mirror, outdir=tmp_path / "a")
    assert_same_as_archive(anon, archive_root)
    assert {f.filetype for f in anon.files} == {"evt2", "oif"}
    logins = archive_ftp.stats.logins
    user = chandra_download.download(6298, "evt2", mirror, FTP_USER, FTP_PASSWORD,
                                     outdir=tmp_path / "u")  # fmt: skip
    assert_same_as_archive(user, archive_root)
    assert archive_ftp.stats.logins > logins and archive_ftp.stats.failed_logins == 0
    bad = chandra_download.download(6298, "evt2", mirror, FTP_USER, "wrong", retries=0,
                                    outdir=tmp_path / "b")  # fmt: skip
    assert not bad.ok and archive_ftp.stats.failed_logins >= 1


def test_archive_s3_fixture(archive_s3, archive_root, tmp_path):
    assert re.fullmatch(r"s3://chandra-sim-\d+/chandra/data/", archive_s3.base_url)
    results = chandra_download.download([1843, 2749], "evt2,pha2", mirror=archive_s3.base_url,
                                        endpoint_url=archive_s3.endpoint_url,
                                        outdir=tmp_path)  # fmt: skip
    assert_same_as_archive(results, archive_root)
    expected = {(1843, "evt2"), (2749, "evt2"), (2749, "pha2")}
    assert {(f.obsid, f.filetype) for f in results.files} == expected


# --- serve command --------------------------------------------------------------------------


def test_serve_command(archive_root):
    cmd = [sys.executable, "-m", "chandra_download.simulator", "serve", "--root",
           str(archive_root), "--port", "0", "--tls", "--latency", "0.01"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        lines = {}
        while "CA file" not in lines:
            line = proc.stdout.readline()
            assert line, "serve exited early"
            key, _, value = line.partition(": ")
            lines[key] = value.strip()
        url = lines["Base URL"]
        m = re.fullmatch(r"https://127\.0\.0\.1:(\d+)/cdaftp/", url)
        assert m and Path(lines["CA file"]).is_file()
        ctx = ssl.create_default_context(cafile=lines["CA file"])
        conn = http.client.HTTPSConnection("127.0.0.1", int(m[1]), context=ctx, timeout=10)
        conn.request("GET", "/cdaftp/byobsid/3/1843/")
        resp = conn.getresponse()
        assert resp.status == 200 and b"Index of" in resp.read()
        conn.close()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_corrupt_same_damage_every_time_or_varied(archive_http, archive_root):
    """Issue 11's faults: the archive's own bad copy (same bytes each time) and damage in
    transit (other bytes each time)."""
    data = local(archive_root, EVT1)
    plan = archive_http.faults
    plan.add(Fault("corrupt", "*evt1*", times=2))
    first, second = request(archive_http, EVT1)[1], request(archive_http, EVT1)[1]
    assert first == second != data and len(first) == len(data)
    plan.add(Fault("corrupt", "*evt1*", times=3, vary=True))
    bodies = [request(archive_http, EVT1)[1] for _ in range(3)]
    assert len(set(bodies)) == 3 and data not in bodies
    assert all(len(b) == len(data) for b in bodies)
    assert len(plan) == 0  # a vary fault's uses are counted on the fault itself


def test_hostile_http_faults(archive_http, archive_root):
    data = local(archive_root, EVT1)
    plan = archive_http.faults
    plan.add(Fault("redirect_loop", "*evt1*"))
    resp, body = request(archive_http, EVT1)
    assert resp.status == 302 and resp.getheader("Location").endswith(EVT1)
    plan.add(Fault("endless", "*evt1*", after_bytes=len(data) + 5000))
    resp, body = request(archive_http, EVT1)
    assert resp.status == 200 and resp.getheader("Content-Length") is None
    assert len(body) == len(data) + 5000 and body.startswith(data)
    plan.add(Fault("lying_range", "*evt1*"))
    resp, body = request(archive_http, EVT1, {"Range": "bytes=1000-1999"})
    assert resp.status == 206 and resp.getheader("Content-Range") == f"bytes 1000-1999/{len(data)}"
    assert body == data[:1000]
    plan.add(Fault("trickle", "*evt1*", seconds=0.2))
    t0 = time.monotonic()
    resp, body = request(archive_http, EVT1, {"Range": "bytes=0-2"})
    assert body == data[:3] and time.monotonic() - t0 >= 0.55
    assert [k for _, _, k in plan.fired] == ["redirect_loop", "endless", "lying_range", "trickle"]


def test_dup_dir_fault_in_listing(archive_http):
    archive_http.faults.add(Fault("dup_dir", "byobsid/3/1843/", entries=("oif.fits",)))
    page = request(archive_http, "byobsid/3/1843/")[1].decode()
    assert 'href="oif.fits"' in page and 'href="oif.fits/"' in page
    assert 'href="00README/"' not in page
    archive_http.faults.add(Fault("dup_dir", "byobsid/3/1843/"))  # default: every file
    page = request(archive_http, "byobsid/3/1843/")[1].decode()
    assert 'href="oif.fits/"' in page and 'href="00README/"' in page
