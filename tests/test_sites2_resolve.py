"""Issue 20.4: a name resolver that hangs must not hold a run. Python's getaddrinfo has no
timeout; every site kind and the search services resolve within ``--timeout``.

The command runs in a child process whose ``sitecustomize`` (a temporary directory first on
its PYTHONPATH) makes ``socket.getaddrinfo`` sleep 600 s for names under ``hang.invalid``,
and answer 127.0.0.1 (after a short delay, counting the lookups) for names under
``slow.invalid``, as a broken or slow resolver would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chandra_download import resolve

HANG = 600  # seconds a lookup of a hang.invalid name takes
BOUND = 60  # the run must end well within this with --timeout 2 --retries 1

SITECUSTOMIZE = f"""
import os, socket, time
_real = socket.getaddrinfo
def _patched(host, *args, **kw):
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.endswith("hang.invalid"):
        time.sleep({HANG})
    if name.endswith("slow.invalid"):
        with open(os.environ["LOOKUP_LOG"], "a") as log:
            log.write(name + "\\n")
        time.sleep(0.2)
        host = "127.0.0.1"
    return _real(host, *args, **kw)
socket.getaddrinfo = _patched
"""


def _run(tmp_path: Path, args: list[str], env: dict[str, str] | None = None, find: bool = False):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    child = dict(os.environ, **(env or {}))
    child["PYTHONPATH"] = os.pathsep.join([str(site), *sys.path])
    child["LOOKUP_LOG"] = str(tmp_path / "lookups.log")
    child["AWS_EC2_METADATA_DISABLED"] = "true"
    child.pop("HTTP_PROXY", None), child.pop("HTTPS_PROXY", None)
    main = "chandra_download.find_cli" if find else "chandra_download"
    cmd = [sys.executable, "-m", main, *args, "--timeout", "2", "--retries", "1"]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=BOUND, env=child, cwd=tmp_path
    )


@pytest.mark.parametrize(
    "mirror",
    [
        ["--mirror", "http://arch.hang.invalid:9/cdaftp/"],
        ["--mirror", "https://arch.hang.invalid:9/cdaftp/"],
        ["--mirror", "ftp://arch.hang.invalid:9/pub/cdaftp/"],
        ["--mirror", "s3://bucket/chandra/data/", "--endpoint-url", "http://arch.hang.invalid:9"],
    ],
    ids=["http", "https", "ftp", "s3"],
)
def test_a_hanging_resolver_ends_the_download_within_the_timeout(tmp_path, mirror) -> None:
    done = _run(tmp_path, ["1843", "oif", *mirror, "--outdir", str(tmp_path / "out")])
    assert done.returncode != 0
    assert "could not resolve arch.hang.invalid within 2 s" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_hanging_mirror_is_passed_over_for_the_next(tmp_path, archive_http) -> None:
    out = tmp_path / "out"
    args = ["1843", "oif", "--mirror", "http://arch.hang.invalid:9/cdaftp/"]
    done = _run(tmp_path, [*args, "--mirror", archive_http.base_url, "--outdir", str(out)])
    assert done.returncode == 0, done.stderr
    assert (out / "1843" / "oif.fits").stat().st_size > 0


def test_a_site_is_resolved_once_for_the_run(tmp_path, archive_http) -> None:
    base = archive_http.base_url.replace("127.0.0.1", "arch.slow.invalid")
    out = tmp_path / "out"
    done = _run(tmp_path, ["1843", "--mirror", base, "--outdir", str(out), "-j", "4"])
    assert done.returncode == 0, done.stderr
    assert len(list((out / "1843").rglob("*.fits*"))) > 5  # many requests, some connections
    lookups = (tmp_path / "lookups.log").read_text().split()
    assert lookups == ["arch.slow.invalid"]


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["M 31"], ["CHANDRA_CADC_RESOLVER_URL", "CHANDRA_SESAME_URL"]),
        (["10.68", "41.27"], ["CHANDRA_FOOTPRINT_URL"]),
    ],
    ids=["name-resolvers", "footprint"],
)
def test_a_hanging_resolver_ends_a_search_within_the_timeout(tmp_path, args, env) -> None:
    urls = {name: f"http://svc{i}.hang.invalid:9/x" for i, name in enumerate(env)}
    done = _run(tmp_path, args, urls, find=True)
    assert done.returncode != 0
    assert "could not resolve svc0.hang.invalid within 2 s" in done.stderr
    assert "Traceback" not in done.stderr


def test_lookups_of_one_host_share_one_resolver_call(monkeypatch) -> None:
    import socket
    import threading

    calls: list[str] = []
    release = threading.Event()

    def slow(host, *args, **kw):
        calls.append(host)
        release.wait(5)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", args[0]))]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    for _ in range(3):
        with pytest.raises(resolve.ResolveTimeout, match="within 0.05 s"):
            resolve.addresses("shared.hang.invalid", 80, wait=0.05)
    release.set()
    assert resolve.addresses("shared.hang.invalid", 80, wait=5)[0][4] == ("127.0.0.1", 80)
    assert resolve.addresses("shared.hang.invalid", 80, wait=5)[0][4] == ("127.0.0.1", 80)
    assert calls == ["shared.hang.invalid"]
