"""Amazon S3 (and S3-compatible) sites, e.g. the AWS open-data copy ``s3://nasa-heasarc/chandra/data/``."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import botocore
import botocore.exceptions as bexc
import botocore.handlers
import urllib3.exceptions
from botocore.awsrequest import AWSHTTPConnectionPool, AWSHTTPSConnectionPool
from botocore.config import Config
from botocore.parsers import ResponseParserError

from ..config import SessionConfig
from ..credentials import Credentials, mask_url, scrub, split_userinfo
from ..deadline import Deadline
from ..errors import (
    AuthError,
    ContentRangeMismatch,
    FileMissing,
    NoAnswer,
    ObsIdNotFound,
    RangeNotSatisfiable,
    SiteUnreachable,
    SourceError,
    TransientError,
)
from ..log import vlog
from ..resolve import ResolveTimeout, bounded_pools
from .base import (
    Body,
    ListingPage,
    PageRef,
    RemoteFile,
    Source,
    check_relpath,
    obsid_dir,
    walk_listing,
)
from .wire import check_content_range, parse_content_range, parse_retry_after, range_header

if TYPE_CHECKING:
    from ..budget import SiteLeases

DEFAULT_REGION = "us-east-1"
#: Most objects one ObsId may list (a hostile endpoint could page forever).
MAX_KEYS = 1_000_000

_AUTH_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AccountProblem",
    "403",
    "401",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "BandwidthLimitExceeded",
    "500",
    "502",
    "503",
    "504",
}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}

#: Errors raised while reading a response body: the connection broke, retry with resume.
_STREAM_ERRORS: tuple[type[Exception], ...] = (
    bexc.ReadTimeoutError,
    bexc.ResponseStreamingError,
    bexc.IncompleteReadError,
    bexc.ConnectionClosedError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.IncompleteRead,
    urllib3.exceptions.SSLError,
    ConnectionError,
    TimeoutError,
)

#: What an S3 call raises that is the site's doing (mapped to ours by ``_map_error``).
_CALL_ERRORS: tuple[type[Exception], ...] = (
    bexc.ClientError,
    bexc.BotoCoreError,
    ResponseParserError,
    *_STREAM_ERRORS,
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://[key:secret@]bucket/prefix`` into the bucket and a prefix that is empty or
    ends in ``/`` (credentials in the URL are left out: see :class:`S3Source`)."""
    parts = urlsplit(url)
    bucket = parts.netloc.rpartition("@")[2]
    if parts.scheme.lower() != "s3" or not bucket:
        raise ValueError(f"Not an S3 URL with a bucket name: {mask_url(url)!r}")
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


class S3Source(Source):
    """A Chandra archive tree in an S3 bucket, read with boto3.

    Parameters
    ----------
    url : str
        ``s3://bucket/prefix/``: the location up to, not including, ``byobsid/`` (the prefix may
        be empty). ``s3://KEY:SECRET@bucket/prefix/`` signs requests with that access key
        (percent-encode ``/`` or ``@`` in the secret); it is never shown.
    config : SessionConfig
        ``profile`` selects an AWS profile (the standard credential chain); without one (and
        without a key in the URL), requests are anonymous and unsigned, as the AWS open-data
        bucket expects. ``endpoint_url`` points at an S3-compatible store; ``timeout``,
        ``jobs``, ``ca_bundle`` (else ``$SSL_CERT_FILE``, else botocore's bundle) and
        ``insecure`` set up the connection pool. The region is
        ``$AWS_REGION``/``$AWS_DEFAULT_REGION``, else us-east-1.

    Notes
    -----
    One botocore client is shared by all threads (botocore clients are thread-safe); its own
    retries are kept to a minimum because the engine retries with resume.
    """

    exact_sizes = True

    def __init__(self, url: str, config: SessionConfig) -> None:
        self.config = config
        url, creds = split_userinfo(url)
        if creds is not None and not creds.password:
            raise ValueError(f"S3 mirror {mask_url(url)!r}: an access key needs its secret")
        self._secrets = [creds.password] if creds else []
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.label = self.url + (
            f" (endpoint {config.endpoint_url})" if config.endpoint_url else ""
        )
        self.unsigned = config.profile is None and creds is None
        self._answered = False  # has the endpoint answered once? (else: SiteUnreachable)
        try:
            self._client = self._make_client(creds)
        except bexc.ProfileNotFound:
            raise AuthError(f"AWS profile {config.profile!r} not found in the AWS config") from None
        except bexc.BotoCoreError as exc:
            raise SourceError(
                self._scrub(f"Cannot set up S3 access to {self.label}: {exc}")
            ) from None

    def _make_client(self, creds: Credentials | None) -> Any:
        config = self.config
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        options: dict[str, Any] = {
            "connect_timeout": config.timeout,
            "read_timeout": config.timeout,
            "max_pool_connections": config.jobs + 4,
            "retries": {"total_max_attempts": 2 if config.retries > 0 else 1, "mode": "standard"},
            "response_checksum_validation": "when_required",
            "request_checksum_calculation": "when_required",
        }
        if self.unsigned:
            options["signature_version"] = botocore.UNSIGNED
        # Given keys win over a profile (None for both: the profile's, or unsigned).
        key_id = creds.username if creds is not None else None
        secret = creds.password if creds is not None else None
        session = boto3.session.Session(profile_name=config.profile if creds is None else None)
        client = session.client(
            "s3",
            region_name=region or DEFAULT_REGION,
            endpoint_url=config.endpoint_url,
            verify=_verify(config),
            config=Config(**options),
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )
        _resolve_bounded(client)
        _parse_errors_as_such(client)
        return client

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    # ------------------------------------------------------------------ listing
    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        """Every object under ``<prefix>byobsid/<digit>/<obsid>/``, with exact sizes."""
        files = walk_listing(self, obsid)
        if not files:
            raise ObsIdNotFound(f"ObsId {obsid} not found at {self.label}")
        return files

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:
        """One ``ListObjectsV2`` page; its continuation token is the page that follows."""
        base = f"{self.prefix}{obsid_dir(obsid)}/"
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base}
        if ref.token is not None:
            kwargs["ContinuationToken"] = ref.token
        vlog(5, "S3 > ListObjectsV2 bucket=%s prefix=%s", self.bucket, base)
        page = self._call(
            f"s3://{self.bucket}/{base}", lambda: self._client.list_objects_v2(**kwargs)
        )
        contents = page.get("Contents") or ()
        vlog(5, "S3 < ListObjectsV2 %d key(s)", len(contents))
        if len(contents) > MAX_KEYS:
            raise SourceError(
                f"ObsId {obsid} at {self.label} lists more than {MAX_KEYS} objects; "
                "refusing the listing"
            )
        files = [f for f in map(lambda o: self._remote(base, o), contents) if f is not None]
        token = page.get("NextContinuationToken")
        more = [PageRef(token=str(token))] if page.get("IsTruncated") and token else []
        if ref.is_top and not files and not more:
            raise ObsIdNotFound(f"ObsId {obsid} not found at {self.label}")
        return ListingPage(files, more, nbytes=200 * len(contents))

    def _remote(self, base: str, obj: dict[str, Any]) -> RemoteFile | None:
        key = str(obj["Key"])
        if not key.startswith(base) or key.endswith("/"):
            return None
        modified, etag = _identity(obj)
        return RemoteFile(
            check_relpath(key[len(base) :]),
            int(obj["Size"]),
            f"s3://{self.bucket}/{key}",
            last_modified=modified,
            etag=etag,
        )

    # ------------------------------------------------------------------ reading
    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        """Open an object from a byte offset (a ranged GetObject when offset > 0 or end)."""
        key = self._key(f)
        if f.size is not None and offset > 0 and offset >= f.size:
            raise RangeNotSatisfiable(
                f"Offset {offset} is at or past the end of {f.url} ({f.size} bytes)", f.size
            )
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        wanted = range_header(offset, end)
        if wanted is not None:
            kwargs["Range"] = wanted
        vlog(5, "S3 > GetObject bucket=%s key=%s range=%s", self.bucket, key, wanted or "-")
        resp = self._call(f.url, lambda: self._client.get_object(**kwargs), size=f.size)
        vlog(
            5, "S3 < GetObject %s ContentLength=%s ContentRange=%s", key,
            resp.get("ContentLength"), resp.get("ContentRange") or "-",
        )  # fmt: skip
        body = S3Body(resp, offset, f.url)
        if body.start != 0 or resp.get("ContentRange"):
            # A 206: its Content-Range must answer the request, else no byte of it is used.
            cr = parse_content_range(resp.get("ContentRange"))
            why = check_content_range(cr, offset, end)
            if why is not None:
                body.close()
                raise ContentRangeMismatch(f"{f.url}: {why}")
        return body

    def size(self, f: RemoteFile) -> int:
        """The listing's exact size (a HEAD of the object when a caller built ``f`` itself)."""
        if f.size is not None:
            return f.size
        vlog(5, "S3 > HeadObject bucket=%s key=%s", self.bucket, self._key(f))
        key = self._key(f)
        head = self._call(f.url, lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        return int(head["ContentLength"])

    def _call(self, where: str, call: Callable[[], Any], size: int | None = None) -> Any:
        """One S3 API call, its errors made ours. Its answer must come within the timeout
        (the headers, and a listing's whole XML, which botocore reads before returning): a
        site trickling it a byte at a time never trips the socket's own timeout."""
        with _Deadline(self.config.timeout) as deadline:
            try:
                answer = call()
            except _CALL_ERRORS as exc:
                vlog(5, "S3 < %s: %s", where, self._scrub(str(exc)))
                if deadline.fired:
                    raise NoAnswer(
                        f"No answer from {self.label} for {where}: not complete within "
                        f"{self.config.timeout:g} s"
                    ) from exc
                raise self._map_error(exc, where, size=size) from exc
        self._answered = True
        return answer

    def _key(self, f: RemoteFile) -> str:
        prefix = f"s3://{self.bucket}/"
        if f.url.startswith(prefix):
            return f.url[len(prefix) :]
        raise SourceError(f"{f.url} is not in bucket {self.bucket}")

    def under_budget(self, leases: SiteLeases) -> None:
        """Put every socket of botocore's pools under a cluster's connection budget: each
        takes a lease to connect and gives it back once closed (chandra_download.budget)."""
        http = self._client._endpoint.http_session
        pools = leases.pool_classes(http._pool_classes_by_scheme)
        http._pool_classes_by_scheme = pools  # (for proxy managers made later)
        http._manager.pool_classes_by_scheme = pools

    def close(self) -> None:
        """Close the client's connection pool."""
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    # ------------------------------------------------------------------ errors
    def _map_error(self, exc: Exception, where: str, size: int | None = None) -> SourceError:
        err = self._classify(exc, where, size)
        return type(err)(self._scrub(str(err)), *_extra(err))

    def _classify(self, exc: Exception, where: str, size: int | None) -> SourceError:
        if isinstance(exc, bexc.ClientError):
            self._answered = True
            return self._map_client_error(exc, where, size)
        if isinstance(exc, bexc.EndpointConnectionError):
            unresolved = _unresolved(exc)
            if not self._answered:
                return SiteUnreachable(f"cannot reach {self.label}: {unresolved or exc}")
            if unresolved:
                return NoAnswer(f"No answer from {self.label} for {where}: {unresolved}")
        if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
            return AuthError(
                f"No AWS credentials found for profile {self.config.profile!r} reading {where}"
            )
        if isinstance(exc, ResponseParserError):
            # Its text holds the hostile body itself: not shown. Retried (a cut connection).
            return TransientError(
                f"the answer of {self.label} for {where} was truncated or malformed "
                "(not valid S3 XML)"
            )
        if isinstance(exc, bexc.SSLError):
            return SourceError(f"TLS error talking to S3 for {where}: {exc}")
        if isinstance(exc, (bexc.ConnectTimeoutError, bexc.ReadTimeoutError)):
            return NoAnswer(f"No answer from {self.label} for {where}: {exc}")
        if isinstance(exc, (bexc.ConnectionError, bexc.HTTPClientError, *_STREAM_ERRORS)):
            return TransientError(f"Connection problem reading {where}: {exc}")
        return SourceError(f"S3 error reading {where}: {exc}")

    def _map_client_error(self, exc: bexc.ClientError, where: str, size: int | None) -> SourceError:
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code", ""))
        status = int(meta.get("HTTPStatusCode") or 0)
        message = error.get("Message") or code or str(status)
        if code == "NoSuchBucket":
            return SourceError(
                f"S3 bucket {self.bucket!r} does not exist ({self.label}); check the mirror URL"
            )
        if code in ("InvalidRange", "416") or status == 416:
            total = _total_from_content_range(meta.get("HTTPHeaders", {}).get("content-range"))
            actual = str(error.get("ActualObjectSize", ""))
            if total is None and actual.isdigit():
                total = int(actual)
            total = size if total is None else total
            return RangeNotSatisfiable(f"Requested range not satisfiable for {where}", total)
        if code in _AUTH_CODES or status in (401, 403):
            how = (
                "with anonymous (unsigned) access; if this bucket needs credentials, "
                "use --aws-profile"
                if self.unsigned
                else f"with AWS profile {self.config.profile!r}"
            )
            return AuthError(f"S3 refused access to {where} ({code or status}: {message}) {how}")
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            retry_after = parse_retry_after(meta.get("HTTPHeaders", {}).get("retry-after"))
            return TransientError(
                f"S3 temporary failure for {where} ({code or status}: {message})", retry_after
            )
        if code in _MISSING_CODES or status == 404:
            return FileMissing(f"{where} is not in the bucket any more ({code or status})")
        return SourceError(f"S3 error for {where} ({code or status}: {message})")


#: Per thread: the S3 call under way (:class:`_Deadline`), whose sockets its deadline covers.
_CALLS = threading.local()


class _Deadline(Deadline):
    """The end of one S3 call: each answer read for it (botocore's own retries included) is
    under it, through :class:`_CallDeadline` (the call's thread is the reading thread)."""

    def __enter__(self) -> _Deadline:
        _CALLS.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        _CALLS.current = None
        super().__exit__(*exc)


class _CallDeadline:
    """Mixin for botocore's connections: a response read for a call under a
    :class:`_Deadline` has its socket under that deadline (headers and body)."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 - http.client's
        deadline = getattr(_CALLS, "current", None)
        if deadline is not None:
            deadline.arm(self.sock)  # type: ignore[attr-defined]
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


def _resolve_bounded(client: Any) -> None:
    """Have botocore's connections resolve their host within the connect timeout
    (:mod:`~chandra_download.resolve`) and answer within their call's deadline
    (:class:`_CallDeadline`): its URLLib3Session keeps its pool classes in
    ``_pool_classes_by_scheme`` (for proxy managers made later) and on its pool manager."""
    http = client._endpoint.http_session
    pools = bounded_pools(
        _with_deadline(AWSHTTPConnectionPool), _with_deadline(AWSHTTPSConnectionPool)
    )
    http._pool_classes_by_scheme = pools
    http._manager.pool_classes_by_scheme = pools


def _parse_errors_as_such(client: Any) -> None:
    """botocore turns a 200 whose XML does not parse (a listing cut short) into a stand-in
    "500 Internal Server Error"; without that rewrite its parser raises ResponseParserError,
    which :meth:`S3Source._classify` names for what it is. Only body-less or XML answers are
    concerned: GetObject's streamed bodies are never rewritten (botocore excludes them)."""
    rewrite = getattr(botocore.handlers, "_handle_200_error", None)
    if rewrite is not None:
        try:
            client.meta.events.unregister("before-parse.s3.*", rewrite)
        except ValueError:  # not registered in this botocore
            pass


def _with_deadline(pool: type[Any]) -> type[Any]:
    """``pool`` whose connections are :class:`_CallDeadline` ones."""
    conn = type(f"Deadline{pool.ConnectionCls.__name__}", (_CallDeadline, pool.ConnectionCls), {})
    return type(f"Deadline{pool.__name__}", (pool,), {"ConnectionCls": conn})


def _unresolved(exc: bexc.EndpointConnectionError) -> str | None:
    """ "could not resolve HOST within N s" when that is why botocore could not connect."""
    cause: BaseException | None = exc.kwargs.get("error")
    while cause is not None and not isinstance(cause, ResolveTimeout):
        cause = cause.__cause__
    return str(cause) if cause is not None else None


def _verify(config: SessionConfig) -> bool | str | None:
    """botocore's ``verify``: off when insecure, else the CA bundle, else ``$SSL_CERT_FILE``
    (as the HTTP and FTP sources use it), else botocore's default."""
    if config.insecure:
        return False
    return config.ca_bundle or os.environ.get("SSL_CERT_FILE") or None


def _extra(err: SourceError) -> tuple:
    """Constructor arguments after the message, to rebuild ``err`` with a scrubbed message."""
    if isinstance(err, RangeNotSatisfiable):
        return (err.total,)
    if isinstance(err, TransientError):
        return (err.retry_after,)
    return ()


def _total_from_content_range(value: str | None) -> int | None:
    """The total from ``bytes */1234`` or ``bytes 0-9/1234``; None when absent or unknown."""
    cr = parse_content_range(value)
    return cr.total if cr is not None else None


class S3Body(Body):
    """The streaming body of one GetObject response."""

    def __init__(self, resp: dict[str, Any], offset: int, url: str) -> None:
        self._stream = resp["Body"]
        self.url = url
        length = int(resp.get("ContentLength") or 0)
        cr = parse_content_range(resp.get("ContentRange"))
        if cr is not None and cr.start is not None:
            self.start, self.end, self.total = cr.start, cr.end, cr.total
        else:
            # No Content-Range: the whole object came back (the server ignored the range).
            self.start = 0
            self.total = length
        self.requested = offset

    def read(self, n: int) -> bytes:
        """Up to n bytes; b"" at the end. A broken stream raises TransientError."""
        try:
            return self._stream.read(n)
        except _STREAM_ERRORS as exc:
            raise TransientError(f"Connection broken while reading {self.url}: {exc}") from exc
        except bexc.BotoCoreError as exc:
            raise TransientError(f"Error while reading {self.url}: {exc}") from exc

    def close(self) -> None:
        """Close the stream (the connection is returned to the pool only when fully read)."""
        try:
            self._stream.close()
        except Exception:  # noqa: BLE001 - closing a broken stream must not fail
            pass


def _identity(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """A listed object's ``LastModified`` and ``ETag``, for the records of what was fetched."""
    when, etag = obj.get("LastModified"), obj.get("ETag")
    stamp = when.isoformat() if isinstance(when, datetime) else None
    return stamp, etag if isinstance(etag, str) else None
