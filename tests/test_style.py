"""The code base stays ruff-clean (lint and format) and mypy-clean, its documentation builds
without a warning, and it ships its type information, as the project's standards require."""

import importlib.resources
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


@pytest.mark.timeout(600)
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    # Warnings are errors: a docstring numpydoc cannot parse, a broken cross-reference or a
    # module autodoc cannot import fails here, not silently on a docs site.
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    proc = subprocess.run([*cmd, str(ROOT / "docs"), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (out / "api.html").read_text(encoding="utf-8")
    assert "download_chandra_obsids" in api and "Parameters" in api  # autodoc + numpydoc ran


def test_the_package_ships_py_typed() -> None:
    # PEP 561: type checkers use our annotations only if the installed package has py.typed.
    assert importlib.resources.files("chandra_download").joinpath("py.typed").is_file()


@pytest.mark.timeout(600)  # a cold mypy run on a loaded machine takes a while
def test_mypy_clean() -> None:
    # pyproject's [tool.mypy]: check_untyped_defs and ignore_missing_imports over the package.
    # Bodies without annotations are checked too, so a typo'd attribute fails here.
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    cmd.append(str(ROOT / "src" / "chandra_download"))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
