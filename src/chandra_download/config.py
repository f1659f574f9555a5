"""Every knob of a download session in one dataclass."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass
class SessionConfig:
    """Settings shared by the sources, the plan and the transfer engine.

    Parameters
    ----------
    jobs : int
        Files transferred at the same time (across all ObsIds). 1 is CIAO's sequential mode.
    retries : int
        Extra attempts per file after a transient failure (0: try once).
    timeout : float
        Seconds to wait for a connection or for the next bytes of a transfer.
    backoff : float
        First retry delay in seconds; doubled each attempt, with jitter, capped by ``backoff_max``.
    backoff_max : float
        Longest delay between two attempts.
    verify_checksums : bool
        Check gzip CRCs and FITS CHECKSUM/DATASUM of downloaded files.
    ca_bundle : str or None
        A PEM file of trusted certificates (else ``SSL_CERT_FILE``, else certifi).
    insecure : bool
        Do not verify TLS certificates. Loudly warned about; never the default.
    chunk_size : int
        Bytes read and written at a time.
    split_threshold : int
        Files at least this large are fetched as ranged parts by several of the ``jobs`` at
        once (never more connections than ``jobs``); 0 disables it. Resumable part by part.
    profile : str or None
        AWS profile for S3 sites (None: anonymous, unsigned access).
    endpoint_url : str or None
        S3-compatible endpoint to use instead of AWS.
    use_netrc : bool
        Read ``~/.netrc`` (or ``$NETRC``) for FTP/HTTP credentials when none are given.
    fsync : bool
        Flush each file to disk before it takes its final name, and its directory after, so a
        crash or power cut cannot leave a file of the right size with lost data under that
        name; split downloads flush their data before their state file claims it.
    min_rate : float
        Bytes per second below which a transfer counts as stalled: one that moves less than
        ``min_rate * timeout`` bytes in ``timeout`` seconds fails and is retried (slowloris).
    repair : bool
        Re-fetch complete local files that fail their content check; the bad copy goes only
        once the good one is in place.
    """

    jobs: int = 8
    retries: int = 5
    timeout: float = 60.0
    backoff: float = 0.5
    backoff_max: float = 30.0
    verify_checksums: bool = True
    ca_bundle: str | None = None
    insecure: bool = False
    chunk_size: int = 1024 * 1024
    split_threshold: int = 16 * 1024 * 1024
    profile: str | None = None
    endpoint_url: str | None = None
    use_netrc: bool = True
    fsync: bool = True
    min_rate: float = 1024.0
    repair: bool = False

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {self.jobs}")
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, not {self.retries}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        if self.split_threshold < 0:
            raise ValueError(f"split_threshold must be 0 or more, not {self.split_threshold}")


def configured(config: SessionConfig | None, options: dict[str, Any], caller: str) -> SessionConfig:
    """A copy of ``config`` (never the caller's object) with keyword ``options`` applied and
    checked; an unknown keyword is ``caller``'s TypeError, as Python would raise it."""
    known = {f.name for f in fields(SessionConfig)}
    for key in options:
        if key not in known:
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")
    return replace(config or SessionConfig(), **options)
