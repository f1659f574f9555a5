"""Exceptions shared by sources, the engine and the API."""

from __future__ import annotations


class ChandraDownloadError(Exception):
    """Base class of every error this package raises on purpose."""


class Interrupted(Exception):
    """The session is stopping (Ctrl-C, SIGTERM); partial data is kept for resume.

    Not a :class:`ChandraDownloadError`: it is never a problem to report, only a reason to stop.
    """


class ObsIdNotFound(ChandraDownloadError):
    """The ObsId directory does not exist on the site."""


class SourceError(ChandraDownloadError):
    """A permanent failure talking to a site (retrying will not help)."""


class SiteUnreachable(SourceError):
    """The site could not be reached at all on first contact (DNS failure, connection refused).

    Not retried: a fallback list moves on to its next site at once. Failures after the site
    has answered once are ``TransientError`` and keep the retry policy.
    """


class TransientError(SourceError):
    """A failure worth retrying: dropped connection, timeout, 5xx, throttling.

    ``retry_after`` is the delay in seconds the server asked for, when it did.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoAnswer(TransientError):
    """A request the site did not answer at all: a connect or read timeout, headers that never
    came. The site's health (``health.SiteHealth``) counts these, not each file."""


class SiteSilent(SourceError):
    """Nothing at a site has answered for the session's retry budget: every request left to
    it fails at once with this (``no answer from HOST for N s``), not retried."""


class ContentRangeMismatch(TransientError):
    """A 206 whose ``Content-Range`` does not answer the ranged request: none of its bytes are
    used. Retrying the same range may meet the same server; fetching from 0 avoids ranges."""


class AuthError(SourceError):
    """The site refused the credentials (or asked for some and got none)."""


class SizeUnknown(SourceError):
    """The site does not state a file's exact size (a HEAD without ``Content-Length``: chunked
    or HTTP/1.0 answers). Such a file can still be fetched whole, bounded by its listing."""


class FileMissing(SourceError):
    """A listed file is not there any more (HTTP 404, FTP 550, S3 NoSuchKey)."""


class RangeNotSatisfiable(SourceError):
    """The requested offset is at or past the end of the file; ``total`` is its size if known."""

    def __init__(self, message: str, total: int | None) -> None:
        super().__init__(message)
        self.total = total


class UnsafeEntry(SourceError):
    """A listing named a path outside the ObsId directory (or an otherwise unsafe name)."""


class VerificationError(ChandraDownloadError):
    """Downloaded bytes failed a content check (size, gzip CRC, FITS checksum, HTML page).
    Messages read ``<file name>: <what failed>``."""

    @property
    def detail(self) -> str:
        """What failed, without the file name the message starts with."""
        return str(self).split(": ", 1)[-1]


class LocalError(ChandraDownloadError):
    """A problem with the local disk (permissions, full disk, not a directory, a symlink in
    the way...). The message names the path and the cause; ``errno`` tells which."""

    def __init__(self, message: str, path: object, errno_: int | None = None) -> None:
        super().__init__(message)
        self.path = str(path)
        self.errno = errno_

    @classmethod
    def of(cls, exc: OSError | LocalError, path: object) -> LocalError:
        """``exc`` as a LocalError: as it is, or an OSError about its own file name when it
        names one, else about ``path``."""
        if isinstance(exc, LocalError):
            return exc
        return cls.from_os(exc, exc.filename or path)

    @classmethod
    def from_os(cls, exc: OSError, path: object) -> LocalError:
        """One clear line for an OSError met while writing ``path``."""
        import errno as codes

        if exc.errno == codes.ENOSPC:
            return cls(f"no space left on device writing {path}", path, exc.errno)
        if exc.errno == codes.ELOOP:
            return cls(f"refusing to write {path}: it is a symlink", path, exc.errno)
        return cls(f"cannot write {path}: {exc.strerror or exc}", path, exc.errno)

    @property
    def no_space(self) -> bool:
        import errno as codes

        return self.errno in (codes.ENOSPC, codes.EDQUOT)
