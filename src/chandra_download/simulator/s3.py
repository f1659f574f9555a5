"""A real S3-compatible server on loopback (moto in server mode) holding an archive tree."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from .faults import FaultPlan

#: moto keeps its state per process: servers started in one process share buckets.
_LIVE_BUCKETS: set[str] = set()
_LOCK = threading.Lock()
#: Bookkeeping of the tree generator, not archive content.
_SKIP = (".simulator/",)


class ArchiveS3Server:
    """Serve a directory tree from an S3 bucket on 127.0.0.1, readable without credentials.

    Parameters
    ----------
    root : str or Path or None
        A directory whose files are uploaded below ``prefix`` (``root/byobsid/3/1843/...`` becomes
        ``<prefix>byobsid/3/1843/...``). None starts with an empty bucket.
    bucket : str
        Bucket name.
    prefix : str
        Key prefix, the location up to ``byobsid/`` (empty, or ending in ``/``).
    host, port : str, int
        Where to listen; port 0 picks a free port.
    faults : FaultPlan, optional
        When given, clients talk to a fault-injecting proxy in front of moto instead
        (``endpoint_url`` is the proxy's; faults may be added to the plan while it runs);
        see :mod:`chandra_download.simulator.proxy`.

    Notes
    -----
    moto's backends are global to the process, so two servers running at the same time must use
    different bucket names; :meth:`stop` deletes the bucket so a later server starts clean.
    Uploads use dummy credentials passed to the upload client only; ``os.environ`` is untouched.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        bucket: str = "nasa-heasarc",
        prefix: str = "chandra/data/",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else None
        self.bucket = bucket
        self.prefix = prefix.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.host = host
        self.port = port
        self.faults = faults
        self._moto: Any = None
        self._proxy: Any = None
        self._client: Any = None
        self.moto_endpoint_url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ArchiveS3Server:
        """Start moto, create the (public-read) bucket and upload ``root``; return self."""
        from moto.server import ThreadedMotoServer

        access_log = logging.getLogger("werkzeug")  # one line per request otherwise
        if access_log.level == logging.NOTSET:
            access_log.setLevel(logging.WARNING)

        with _LOCK:
            if self.bucket in _LIVE_BUCKETS:
                raise RuntimeError(
                    f"An ArchiveS3Server with bucket {self.bucket!r} is already running in this "
                    "process (moto state is shared); use another bucket name"
                )
            _LIVE_BUCKETS.add(self.bucket)
        try:
            self._moto = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.moto_endpoint_url = f"http://{host}:{port}"
            self._client = boto3.session.Session().client(
                "s3",
                region_name="us-east-1",
                endpoint_url=self.moto_endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 2, "mode": "standard"}),
            )
            self._create_bucket()
            if self.root is not None:
                self.upload(self.root)
            if self.faults is not None:
                from .proxy import FaultProxy

                self._proxy = FaultProxy(
                    self.moto_endpoint_url, self.faults, self.bucket, self.prefix, host=self.host
                )
                self._proxy.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Delete the bucket and stop the server (and the proxy). Safe to call twice."""
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self._client is not None:
            try:
                self._delete_bucket()
            except Exception:  # noqa: BLE001 - best effort cleanup of moto state
                pass
            self._client.close()
            self._client = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        with _LOCK:
            _LIVE_BUCKETS.discard(self.bucket)

    def __enter__(self) -> ArchiveS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def stats(self) -> Any:
        """The proxy's connection counts (a :class:`~.link.ServerStats`: ``peak_connections``,
        ``connections_opened``) when faults are given (an empty plan will do), else None."""
        return self._proxy.stats if self._proxy is not None else None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``: the proxy's when faults are injected, else moto's."""
        if self._proxy is not None:
            return self._proxy.url
        if not self.moto_endpoint_url:
            raise RuntimeError("ArchiveS3Server is not started")
        return self.moto_endpoint_url

    @property
    def base_url(self) -> str:
        """The mirror value: ``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def client(self) -> Any:
        """A signed boto3 client straight to moto (for tests that add or remove objects)."""
        if self._client is None:
            raise RuntimeError("ArchiveS3Server is not started")
        return self._client

    # ------------------------------------------------------------------ content
    def upload(self, root: str | Path) -> int:
        """Upload every file under ``root`` below the prefix; return the number of files.

        ``root/.simulator/`` (the tree generator's stamps) is left out.
        """
        root = Path(root)
        count = 0
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not rel.startswith(_SKIP):
                key = self.prefix + rel
                self.put(key, path.read_bytes())
                count += 1
        return count

    def put(self, key: str, data: bytes) -> None:
        """Store one object under a full key (not relative to the prefix).

        moto runs in this process, so objects go straight into its backend (about 200 times
        faster than a PUT request); the HTTP API is the fallback if that ever fails.
        """
        try:
            from moto.backends import get_backend
            from moto.core import DEFAULT_ACCOUNT_ID

            backend = get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"]
            backend.put_object(self.bucket, key, data)
        except Exception:  # noqa: BLE001 - moto internals changed: use the public API
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def _create_bucket(self) -> None:
        existing = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            self.client.create_bucket(Bucket=self.bucket)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{self.bucket}", f"arn:aws:s3:::{self.bucket}/*"],
                }
            ],
        }
        self.client.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(policy))

    def _delete_bucket(self) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
        self.client.delete_bucket(Bucket=self.bucket)
