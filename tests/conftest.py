"""Shared fixtures. The simulator fixtures (archive_root, archive_http, archive_https) come
from the package's pytest plugin (chandra_download.simulator.fixtures)."""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chandra_download import log as cd_log
from chandra_download.simulator import iter_files


@pytest.fixture(scope="session")
def _refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, _refusing_port: int) -> Iterator[None]:
    """No mirror from the environment, no proxy for loopback, no archive service beyond
    loopback (the catalogue asked about missing ObsIds refuses at once unless a test serves
    it), and the package logger restored after the test (``set_verbosity`` and ``cli.main``
    change global state)."""
    monkeypatch.delenv("CDA_MIRROR_SITE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    dead = f"http://127.0.0.1:{_refusing_port}"
    monkeypatch.setenv("CHANDRA_OCAT_URL", f"{dead}/srservices/")
    for name in ("CHANDRA_FOOTPRINT_URL", "CHANDRA_CADC_RESOLVER_URL", "CHANDRA_SESAME_URL"):
        monkeypatch.setenv(name, f"{dead}/{name.lower()}")
    logger = logging.getLogger("chandra_download")
    saved = (list(logger.handlers), logger.level, logger.propagate, cd_log._handler)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
    cd_log._handler = saved[3]


@pytest.fixture
def read_backs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files whose bytes were read back whole to be checked (a spy on
    ``transfer.check_fd``), in order."""
    from chandra_download import transfer

    seen: list[str] = []
    real = transfer.check_fd

    def counting(fd: int, name: str, **kw: object) -> object:
        seen.append(name)
        return real(fd, name, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(transfer, "check_fd", counting)
    return seen


@pytest.fixture
def fast() -> dict[str, object]:
    """Session options that keep failing tests quick (short timeout, tiny backoff)."""
    return {"timeout": 5.0, "retries": 2, "backoff": 0.01, "backoff_max": 0.05}


@pytest.fixture
def source_files(archive_root: Path) -> Callable[[int], dict[str, Path]]:
    """``source_files(obsid)``: {path below the ObsId directory: file in the archive tree}."""
    return lambda obsid: dict(iter_files(archive_root, obsid))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, tuple[int, int, str]]]:
    """``snapshot(dir)``: {relative path: (size, mtime_ns, sha256)} of every file below dir
    (directories too, as (-1, mtime_ns, "")), to prove a run wrote nothing."""

    def take(root: Path) -> dict[str, tuple[int, int, str]]:
        out: dict[str, tuple[int, int, str]] = {}
        for p in sorted(Path(root).rglob("*")):
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            out[rel] = (
                (-1, st.st_mtime_ns, "") if p.is_dir() else (st.st_size, st.st_mtime_ns, _sha(p))
            )
        return out

    return take
