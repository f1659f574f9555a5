"""Helpers for the S3 tests: the test tree, reading bodies, fake botocore errors and streams."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
import urllib3.exceptions
from botocore.exceptions import ClientError

from chandra_download.sources.base import RemoteFile
from chandra_download.sources.s3 import S3Source

PREFIX = "chandra/data/"
MANY = 1100  # more than one ListObjectsV2 page (1000 keys)
EVT2 = "primary/acisf01843N003_evt2.fits.gz"


def build_tree() -> dict[str, bytes]:
    """Files of the test archive, relative to the base (``byobsid/...``) -> content."""
    rng = random.Random(1843)
    files = {
        "byobsid/3/1843/oif.fits": rng.randbytes(2880),
        "byobsid/3/1843/00README": b"readme\n",
        f"byobsid/3/1843/{EVT2}": rng.randbytes(300_000),
        "byobsid/3/1843/primary/responses/acisf01843N003_Hm1_arf2.fits.gz": rng.randbytes(777),
        "byobsid/3/1843/secondary/aspect/pcadf01843_000N001_osol1.fits.gz": b"",
        "byobsid/4/184/oif.fits": rng.randbytes(100),
        "byobsid/8/6298/oif.fits": rng.randbytes(50),
    }
    for i in range(MANY):
        files[f"byobsid/9/2749/secondary/f{i:04d}.fits"] = bytes([i % 256]) * (i % 7)
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write files (relative path -> content) below root; return root."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Remove every AWS_* variable and point the AWS config files at nothing."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def auth_headers(src: S3Source) -> list[str | None]:
    """A list that collects the Authorization header of every request the source sends."""
    seen: list[str | None] = []

    def capture(request: Any, **_: Any) -> None:
        value = request.headers.get("Authorization")
        seen.append(value.decode() if isinstance(value, bytes) else value)

    src._client.meta.events.register("before-send.s3.*", capture)
    return seen


def read_all(src: S3Source, f: RemoteFile, offset: int = 0) -> tuple[int, int | None, bytes]:
    """(start, total, bytes) of a file read from offset to the end."""
    with src.open(f, offset) as body:
        chunks = []
        while chunk := body.read(65536):
            chunks.append(chunk)
        return body.start, body.total, b"".join(chunks)


def by_rel(files: list[RemoteFile]) -> dict[str, RemoteFile]:
    """Index a listing by relative path."""
    return {f.relpath: f for f in files}


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> ClientError:
    """A botocore ClientError as an S3 error response would produce it."""
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "GetObject")


class BrokenStream:
    """A response body whose connection breaks on the first read."""

    def read(self, n: int) -> bytes:
        raise urllib3.exceptions.ProtocolError("Connection broken")

    def close(self) -> None:
        pass
