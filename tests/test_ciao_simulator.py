"""The simulator's command line as a newcomer meets it (issue 17.7): kinds given for only some
ObsIds are refused rather than dropped, and ``serve --protocol s3`` says its endpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest


def sim(*args: str, **kw):
    return subprocess.run(
        [sys.executable, "-m", "chandra_download.simulator", *args],
        capture_output=True, text=True, timeout=120, **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("obsids", "words"),
    [
        ("1843,3002:hrc", "a kind for every ObsId or for none: 1843 has none"),
        ("1843:hrc,3002", "3002 has none"),
        ("1843:xray", "ObsId 1843: unknown kind 'xray'"),
        ("18x3", "not a list of ObsIds"),
    ],
)
def test_generate_refuses_kinds_it_cannot_apply(tmp_path, obsids, words):
    p = sim("generate", str(tmp_path / "cda"), "--obsids", obsids)
    assert p.returncode == 2 and words in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "cda").exists()


def test_generate_applies_a_kind_to_every_obsid(tmp_path):
    p = sim("generate", str(tmp_path / "cda"), "--obsids", "1843:hrc,3002:acis", "--scale", "0.01")
    assert p.returncode == 0, p.stderr
    assert list((tmp_path / "cda/byobsid/3/1843/primary").glob("hrcf01843*"))
    assert list((tmp_path / "cda/byobsid/2/3002/primary").glob("acisf03002*"))


def test_serve_s3_prints_its_endpoint(archive_root):
    pytest.importorskip("moto")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chandra_download.simulator", "serve", "--root", str(archive_root),
         "--protocol", "s3", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C"):
                break
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    base = next(x for x in lines if x.startswith("Base URL: ")).split(": ", 1)[1]
    endpoint = next(x for x in lines if x.startswith("Endpoint URL: ")).split(": ", 1)[1]
    assert endpoint.startswith("http://127.0.0.1:")
    assert f"--mirror {base} --endpoint-url {endpoint}" in "\n".join(lines)
