"""The code base stays ruff-clean (lint and format), as the project's standards require."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    return [exe] if exe else [sys.executable, "-m", "ruff"]


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff_clean(args: list[str]) -> None:
    paths = [str(ROOT / p) for p in ("src", "tests", "benchmarks") if (ROOT / p).exists()]
    proc = subprocess.run(_ruff() + args + paths, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
