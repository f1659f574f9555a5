"""Integrity: atomic files, content checks, refusal of unsafe input, TLS.

Every test ends by comparing the output with the simulator's tree (sha256) and checking that
nothing is ever found at a final name unless complete, and nothing outside ``<outdir>/<ObsId>``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from fault_support import (
    EVT1,
    EVT2,
    FAST,
    OBSID,
    OIF,
    README,
    assert_complete,
    assert_identical,
    by_rel,
    files_outside,
    local_files,
    part_files,
    run_api,
    s3_fixture,  # noqa: F401 - pytest fixture
    s3_server_fixture,  # noqa: F401 - pytest fixture
    sha256,
    snapshot,
    source_files,
    source_size,
)
from statedir_support import ours

from chandra_download import classify, download
from chandra_download.results import Status
from chandra_download.simulator import ArchiveHTTPServer, Fault, FaultPlan, LinkModel

# -- atomic files -----------------------------------------------------------------------------


def test_failed_transfer_leaves_only_part_then_resumes(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    archive_http.faults.add(Fault("drop", EVT2, after_bytes=200_000))
    first = download(
        OBSID, "evt2", mirror=archive_http.base_url, outdir=tmp_path, retries=0, **FAST
    )
    fr = by_rel(first)[EVT2]
    assert fr.status is Status.FAILED and fr.attempts == 1
    top = tmp_path / str(OBSID)
    assert not (top / EVT2).exists()
    kept = ours(tmp_path, OBSID, EVT2).stat().st_size
    assert 0 < kept <= 200_000
    data = source_files(archive_root)[EVT2].read_bytes()
    assert ours(tmp_path, OBSID, EVT2).read_bytes() == data[:kept]

    again = download(OBSID, "evt2", mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    fr = by_rel(again)[EVT2]
    assert fr.status is Status.RESUMED
    assert fr.bytes_transferred == len(data) - kept
    assert_identical(archive_root, tmp_path, OBSID, [EVT2])
    assert part_files(top) == []


def test_partial_file_at_final_name_is_resumed(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    """CIAO's tool writes straight to the final name; its leftovers are resumed, not trusted."""
    download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    top = tmp_path / str(OBSID)
    cut = {EVT2: 123_457, EVT1: 1, OIF: 2880}
    for rel, size in cut.items():
        os.truncate(top / rel, size)
    archive_http.stats.reset()
    again = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    assert_complete(
        again,
        archive_root,
        tmp_path,
        statuses=dict.fromkeys(cut, Status.RESUMED),
        default=[Status.PRESENT],
    )
    for rel, size in cut.items():
        assert by_rel(again)[rel].bytes_transferred == source_size(archive_root, rel) - size
    assert archive_http.stats.bytes_sent < 2 * sum(source_size(archive_root, r) for r in cut)


_WORKER = """
import json, sys
from chandra_download import download
r = download(1843, mirror=sys.argv[1], outdir=sys.argv[2], jobs=4, backoff=0.01, timeout=10)
print(json.dumps({f.relpath: str(f.status) for f in r.files}))
"""


def test_two_processes_same_obsid_same_dir(archive_root: Path, tmp_path: Path) -> None:
    link = LinkModel(conn_bandwidth=1_500_000)
    with ArchiveHTTPServer(archive_root, link=link) as server:
        procs = [run_api(_WORKER, server.base_url, str(tmp_path)) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    statuses = [json.loads(out) for out, _ in outs]
    src = source_files(archive_root)
    assert sorted(statuses[0]) == sorted(src) == sorted(statuses[1])
    for rel in src:
        pair = sorted(s[rel] for s in statuses)
        # The .part lock makes one process fetch each file; the other finds it complete.
        assert pair == ["already present", "downloaded"], (rel, pair)
    assert_identical(archive_root, tmp_path, OBSID, src)
    assert sorted(local_files(tmp_path / str(OBSID))) == sorted(src)


_SLOW = """
import sys
from chandra_download import download
download(1843, mirror=sys.argv[1], outdir=sys.argv[2], jobs=3, backoff=0.01, timeout=10)
"""


def _a_part_with_data(outdir: Path) -> bool:
    """A .part with 100 kB in it anywhere below ``outdir`` (beside its target or in our
    hidden directory); one renamed away meanwhile is skipped."""
    for p in outdir.rglob("*.part"):
        try:
            if p.stat().st_size > 100_000:
                return True
        except FileNotFoundError:
            continue
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_no_partial_final_files(
    archive_root: Path, archive_http: ArchiveHTTPServer, tmp_path: Path, sig: signal.Signals
) -> None:
    top = tmp_path / str(OBSID)
    with ArchiveHTTPServer(archive_root, link=LinkModel(conn_bandwidth=250_000)) as slow:
        proc = run_api(_SLOW, slow.base_url, str(tmp_path))
        deadline = time.monotonic() + 20
        # Wait until some file is part-way: a .part with data in it.
        while time.monotonic() < deadline and proc.poll() is None:
            if _a_part_with_data(tmp_path):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the download finished before it could be interrupted"
        proc.send_signal(sig)
        proc.communicate(timeout=20)
    assert proc.returncode != 0
    src = source_files(archive_root)
    files = local_files(top)
    finals = list(files)
    parts = {
        rel: p.stat().st_size
        for rel in src
        if rel not in finals and (p := ours(tmp_path, OBSID, rel)).exists()
    }
    assert parts and any(size > 0 for size in parts.values())
    assert set(finals) | set(parts) <= set(src)
    assert_identical(archive_root, tmp_path, OBSID, finals)  # nothing partial at a final name

    again = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    statuses = {rel: Status.RESUMED for rel, size in parts.items() if size > 0}
    statuses.update(dict.fromkeys(finals, Status.PRESENT))
    assert_complete(again, archive_root, tmp_path, statuses=statuses)
    for rel, size in parts.items():
        assert by_rel(again)[rel].bytes_transferred == source_size(archive_root, rel) - size


# -- content checks ---------------------------------------------------------------------------


def _corrupt(rel: str, root: Path, times: int | None) -> Fault:
    # Flip bytes in the middle and at the end, not in the first header block: the damage must
    # be found by the checksum, not by a file that no longer parses.
    return Fault("corrupt", rel, times=times, after_bytes=source_size(root, rel) // 2)


@pytest.mark.parametrize("rel", [EVT2, OIF], ids=["fits.gz", "fits"])
def test_corruption_is_detected_and_refetched(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path, rel: str
) -> None:
    archive_http.faults.add(_corrupt(rel, archive_root, times=1))
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    assert_complete(results, archive_root, tmp_path)
    fr = by_rel(results)[rel]
    assert fr.attempts == 2
    assert fr.bytes_transferred == 2 * source_size(archive_root, rel)  # bad bytes not reused
    assert archive_http.faults.fired == [("http", f"byobsid/3/1843/{rel}", "corrupt")]


@pytest.mark.parametrize(
    ("rel", "check"), [(EVT2, "gzip"), (OIF, "CHECKSUM|DATASUM")], ids=["fits.gz", "fits"]
)
def test_damage_that_differs_each_time_fails_and_checks_can_be_disabled(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path, rel: str, check: str
) -> None:
    size = source_size(archive_root, rel)
    for where in (size // 2, size // 3, size // 4):  # three fetches, three different damages
        archive_http.faults.add(Fault("corrupt", rel, times=1, after_bytes=where))
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, retries=2, **FAST)
    fr = by_rel(results)[rel]
    assert fr.status is Status.FAILED and fr.attempts == 3
    assert re.search(check, fr.reason), fr.reason
    assert fr.warning is None
    top = tmp_path / str(OBSID)
    assert not (top / rel).exists() and not ours(tmp_path, OBSID, rel).exists()
    others = [f.relpath for f in results.files if f.relpath != rel]
    assert_identical(archive_root, tmp_path, OBSID, others)
    assert any(rel in line for line in results.errors)

    # Damaged bytes pass when the check is off: the check is what caught them.
    archive_http.faults.add(_corrupt(rel, archive_root, times=1))
    fresh = tmp_path / "unchecked"
    unchecked = download(
        OBSID,
        classify(rel),
        mirror=archive_http.base_url,
        outdir=fresh,
        verify_checksums=False,
        **FAST,
    )
    assert by_rel(unchecked)[rel].status is Status.DOWNLOADED
    assert sha256(fresh / str(OBSID) / rel) != sha256(source_files(archive_root)[rel])


@pytest.mark.parametrize(
    ("rel", "check"), [(EVT2, "gzip"), (OIF, "CHECKSUM|DATASUM")], ids=["fits.gz", "fits"]
)
def test_identical_damage_on_two_fetches_is_the_archives_and_kept(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path, rel: str, check: str
) -> None:
    archive_http.faults.add(_corrupt(rel, archive_root, times=None))
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, retries=4, **FAST)
    fr = by_rel(results)[rel]
    assert fr.status is Status.DOWNLOADED and fr.attempts == 2  # not retried to the end
    assert fr.warning.startswith("kept as served:") and re.search(check, fr.warning)
    assert results.ok
    kept = (tmp_path / str(OBSID) / rel).read_bytes()
    good = source_files(archive_root)[rel].read_bytes()
    assert len(kept) == len(good) and kept != good  # what the server sent, byte for byte
    assert part_files(tmp_path / str(OBSID)) == []


def test_html_error_page_is_never_saved(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    archive_http.faults.add(Fault("html", EVT2))
    archive_http.faults.add(Fault("html", README, times=None))  # plain text: no content check
    results = download(OBSID, mirror=archive_http.base_url, outdir=tmp_path, retries=2, **FAST)
    files = by_rel(results)
    assert files[EVT2].status is Status.DOWNLOADED and files[EVT2].attempts == 2
    readme = files[README]
    assert readme.status is Status.FAILED and "HTML" in readme.reason
    top = tmp_path / str(OBSID)
    assert not (top / README).exists()
    part = ours(tmp_path, OBSID, README)
    assert not part.exists() or part.stat().st_size == 0
    others = [rel for rel in files if rel != README]
    assert_identical(archive_root, tmp_path, OBSID, others)


@pytest.mark.parametrize("kind", ["ignore_range", "wrong_content_range"])
@pytest.mark.parametrize("where", ["part", "final"])
def test_resume_refused_by_server_restarts_from_zero(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path, kind: str, where: str
) -> None:
    data = source_files(archive_root)[EVT2].read_bytes()
    top = tmp_path / str(OBSID)
    seeded = ours(tmp_path, OBSID, EVT2) if where == "part" else top / EVT2
    seeded.parent.mkdir(parents=True, exist_ok=True)
    seeded.write_bytes(data[:100_000])
    archive_http.faults.add(Fault(kind, EVT2))
    results = download(OBSID, "evt2", mirror=archive_http.base_url, outdir=tmp_path, **FAST)
    fr = by_rel(results)[EVT2]
    assert fr.status is Status.DOWNLOADED, fr.reason
    assert fr.bytes_transferred == len(data)  # from zero: nothing appended to the prefix
    assert archive_http.faults.fired == [("http", f"byobsid/3/1843/{EVT2}", kind)]
    assert_identical(archive_root, tmp_path, OBSID, [EVT2])
    assert part_files(top) == []


@pytest.mark.parametrize("kind", ["ignore_range", "wrong_content_range"])
def test_s3_resume_refused_never_appends(s3, archive_root: Path, tmp_path: Path, kind: str) -> None:
    server, plan = s3
    data = source_files(archive_root)[EVT2].read_bytes()
    part = ours(tmp_path, OBSID, EVT2)
    part.write_bytes(data[:100_000])
    plan.add(Fault(kind, EVT2))
    results = download(
        OBSID,
        "evt2",
        mirror=server.base_url,
        endpoint_url=server.endpoint_url,
        outdir=tmp_path,
        **FAST,
    )
    fr = by_rel(results)[EVT2]
    assert fr.status in (Status.DOWNLOADED, Status.RESUMED), fr.reason
    assert fr.bytes_transferred <= len(data)
    assert [k for _, _, k in plan.fired] == [kind]
    assert_identical(archive_root, tmp_path, OBSID, [EVT2])


# -- unsafe input -----------------------------------------------------------------------------

_OUTSIDE = (Path("/tmp/evil.fits"), Path("/etc/passwd"), Path("/tmp/escape.fits"))


def _outside_state() -> dict[Path, tuple[int, int] | None]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None for p in _OUTSIDE}


def test_http_traversal_entries_are_refused(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    outdir = tmp_path / "a" / "b" / "c" / "d" / "out"  # every ../ target stays below tmp_path
    before = _outside_state()
    archive_http.faults.add(Fault("traversal", "byobsid/3/1843/*", times=None))
    results = download(OBSID, mirror=archive_http.base_url, outdir=outdir, **FAST)
    src = source_files(archive_root)
    files = by_rel(results)
    unsafe = [rel for rel in files if rel not in src]
    assert unsafe, "the traversal entries were not listed at all"
    for rel in unsafe:
        assert files[rel].status is Status.FAILED, (rel, files[rel].status)
        assert files[rel].reason
    assert all(files[rel].status is Status.DOWNLOADED for rel in src)
    assert_identical(archive_root, outdir, OBSID, src)
    assert files_outside(tmp_path, outdir / str(OBSID)) == []
    assert sorted(local_files(outdir / str(OBSID))) == sorted(src)
    assert _outside_state() == before
    assert len([e for e in results.errors if "Refusing" in e]) >= 5


def test_ftp_traversal_entries_are_refused(archive_root: Path, tmp_path: Path) -> None:
    from chandra_download.simulator.ftp import ArchiveFTPServer

    outdir = tmp_path / "a" / "b" / "c" / "d" / "out"
    before = _outside_state()
    plan = FaultPlan([Fault("traversal", "byobsid/3/1843/*", times=None)])
    with ArchiveFTPServer(archive_root, faults=plan) as ftp:
        results = download(OBSID, mirror=ftp.base_url, outdir=outdir, **FAST)
    assert plan.fired
    assert not results.ok
    assert "Refusing listing entry" in "\n".join(results.errors)
    assert files_outside(tmp_path, outdir / str(OBSID)) == []
    # Whatever was written (the source refuses the whole listing today) is a complete file.
    written = local_files(outdir / str(OBSID)) if (outdir / str(OBSID)).exists() else {}
    assert_identical(archive_root, outdir, OBSID, [r for r in written if not r.endswith(".part")])
    assert _outside_state() == before


def test_s3_traversal_keys_are_refused(s3, tmp_path: Path) -> None:
    server, plan = s3
    outdir = tmp_path / "a" / "b" / "c" / "d" / "out"
    before = _outside_state()
    plan.add(Fault("traversal", "byobsid/3/1843/", times=None))
    results = download(
        OBSID, mirror=server.base_url, endpoint_url=server.endpoint_url, outdir=outdir, **FAST
    )
    assert plan.fired
    assert not results.ok
    assert "Refusing listing entry" in "\n".join(results.errors)
    assert files_outside(tmp_path, outdir / str(OBSID)) == []
    assert _outside_state() == before


def test_symlinks_leading_out_of_the_tree_are_refused(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    outdir, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    top = outdir / str(OBSID)
    top.mkdir(parents=True)
    elsewhere.mkdir()
    victim = tmp_path / "victim.fits"
    victim.write_bytes(b"precious")
    part_victim = tmp_path / "part-victim"
    part_victim.write_bytes(b"also precious")
    (top / "primary").symlink_to(elsewhere, target_is_directory=True)
    (top / OIF).symlink_to(victim)
    ours(outdir, OBSID, README).symlink_to(part_victim)
    before = snapshot(tmp_path / "elsewhere")

    results = download(OBSID, mirror=archive_http.base_url, outdir=outdir, **FAST)
    files = by_rel(results)
    refused = [rel for rel in files if rel.startswith("primary/")] + [OIF, README]
    for rel in refused:
        assert files[rel].status is Status.FAILED and "symlink" in files[rel].reason, rel
    assert snapshot(elsewhere) == before == {}
    assert victim.read_bytes() == b"precious"
    assert part_victim.read_bytes() == b"also precious"
    safe = [rel for rel in files if rel not in refused]
    assert all(files[rel].status is Status.DOWNLOADED for rel in safe)
    assert_identical(archive_root, outdir, OBSID, safe)


# -- TLS --------------------------------------------------------------------------------------


def test_tls_is_verified_by_default(
    archive_https: ArchiveHTTPServer,
    archive_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    results = download(OBSID, mirror=archive_https.base_url, outdir=tmp_path, retries=1, **FAST)
    assert not results.ok and not results[0].found
    assert "certificate" in (results[0].error or "").lower()
    assert not (tmp_path / str(OBSID)).exists() or local_files(tmp_path / str(OBSID)) == {}

    trusted = download(
        OBSID,
        mirror=archive_https.base_url,
        outdir=tmp_path,
        ca_bundle=archive_https.ca_file,
        **FAST,
    )
    assert_complete(trusted, archive_root, tmp_path)


def test_insecure_works_and_warns(
    archive_https: ArchiveHTTPServer,
    archive_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.warns(UserWarning, match="TLS certificate verification is OFF"):
        results = download(
            OBSID, mirror=archive_https.base_url, outdir=tmp_path, insecure=True, **FAST
        )
    assert_complete(results, archive_root, tmp_path)


def test_identical_damage_is_compared_even_with_no_retries(
    archive_http: ArchiveHTTPServer, archive_root: Path, tmp_path: Path
) -> None:
    archive_http.faults.add(_corrupt(OIF, archive_root, times=None))
    results = download(OBSID, "oif", mirror=archive_http.base_url, outdir=tmp_path, retries=0)
    fr = by_rel(results)[OIF]
    assert fr.status is Status.DOWNLOADED and fr.attempts == 2, fr.reason
    assert fr.warning.startswith("kept as served:")
