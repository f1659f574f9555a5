"""Every knob of a download session in one dataclass."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

#: The most ``jobs`` a session may run: each is a thread and a connection to one site, and
#: a few tens already fill any link the archive has (CIAO's own tool uses one).
MAX_JOBS = 64


@dataclass
class SessionConfig:
    """Settings shared by the sources, the plan and the transfer engine.

    Every field is checked when a config is made or copied (``dataclasses.replace``): a
    value of the wrong type is a ``TypeError``, one out of range (``chunk_size=0``, a
    negative ``retries``, a timeout of 0 or NaN) a ``ValueError``, each one line naming the
    field. A new field gets its type checked from its annotation and its bounds from
    ``field(metadata={"at_least": ...})`` or ``{"above": ...}``.

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
    pipeline_depth : int
        HTTP GETs of small files sent back to back on one keep-alive connection (HTTP/1.1
        pipelining, never through a proxy); 1 sends one request at a time. No extra
        connections: at most ``jobs`` to a site either way.
    """

    jobs: int = field(default=8, metadata={"at_least": 1, "at_most": MAX_JOBS})
    retries: int = field(default=5, metadata={"at_least": 0})
    timeout: float = field(default=60.0, metadata={"above": 0})
    backoff: float = field(default=0.5, metadata={"at_least": 0})
    backoff_max: float = field(default=30.0, metadata={"at_least": 0})
    verify_checksums: bool = True
    ca_bundle: str | None = None
    insecure: bool = False
    chunk_size: int = field(default=1024 * 1024, metadata={"at_least": 1})
    split_threshold: int = field(default=16 * 1024 * 1024, metadata={"at_least": 0})
    profile: str | None = None
    endpoint_url: str | None = None
    use_netrc: bool = True
    fsync: bool = True
    min_rate: float = field(default=1024.0, metadata={"at_least": 0})
    repair: bool = False
    pipeline_depth: int = field(default=8, metadata={"at_least": 1})

    def __post_init__(self) -> None:
        if isinstance(self.ca_bundle, os.PathLike):  # a Path is as good as its text
            self.ca_bundle = os.fspath(self.ca_bundle)
        for f in fields(self):
            problem = _problem(f, getattr(self, f.name))
            if problem is not None:
                raise problem


#: What each annotation accepts: (check, what the message calls it).
_KINDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an int"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "True or False"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or None"),
}


def _problem(f: Field[Any], value: object) -> TypeError | ValueError | None:
    """What is wrong with one field's value, as the error to raise (one line naming the
    field), or None. The type comes from the annotation, the bounds from the field's
    metadata (``at_least``, ``above``)."""
    kind = _KINDS.get(str(f.type))
    if kind is not None and not kind[0](value):
        return TypeError(f"{f.name} must be {kind[1]}, not {value!r}")
    if not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return ValueError(f"{f.name} must be a finite number, not {value!r}")
    at_least, above = f.metadata.get("at_least"), f.metadata.get("above")
    if at_least is not None and value < at_least:
        return ValueError(f"{f.name} must be at least {at_least}, not {value!r}")
    if above is not None and value <= above:
        return ValueError(f"{f.name} must be more than {above}, not {value!r}")
    at_most = f.metadata.get("at_most")
    if at_most is not None and value > at_most:
        return ValueError(f"{f.name} must be at most {at_most}, not {value!r}")
    return None


def configured(config: SessionConfig | None, options: dict[str, Any], caller: str) -> SessionConfig:
    """A copy of ``config`` (never the caller's object) with keyword ``options`` applied and
    checked; an unknown keyword is ``caller``'s TypeError, as Python would raise it."""
    known = {f.name for f in fields(SessionConfig)}
    for key in options:
        if key not in known:
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")
    return replace(config or SessionConfig(), **options)
