"""Switchable faults for the simulator servers (protocol-neutral).

A server asks its :class:`FaultPlan` once per request, naming the protocol, the path and the
fault kinds that can apply to that request; the first matching fault with uses left is
consumed and returned. Paths are matched with :func:`fnmatch.fnmatchcase` against BOTH the
path below the mirror base (``byobsid/3/1843/primary/x.fits.gz``; directories end in ``/``)
and the path below the ObsId directory (``primary/x.fits.gz``), so ``"*evt2*"`` and
``"primary/*"`` both work. ``*`` also matches ``/``.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = [
    "FAULT_KINDS",
    "PIPELINE_FAULTS",
    "TRAVERSAL_ENTRIES",
    "Fault",
    "FaultPlan",
    "ENDLESS_CAP",
    "corrupt_bytes",
    "cut_length",
    "endless_body",
    "split_obsid_path",
]

FAULT_KINDS: tuple[str, ...] = (
    "drop",  # abort the connection (TCP reset) after `after_bytes` body bytes
    "stall",  # stop sending for `seconds` after `after_bytes` body bytes, then go on
    "status",  # answer `status` (500, 503, 404, 403, 429...), with Retry-After if set
    "ignore_range",  # answer a Range request with 200 and the whole file
    "wrong_content_range",  # 206 with data from another offset and a mismatching range
    "truncate",  # announce the full length, send `after_bytes` (0: half), close cleanly
    "html",  # 200 text/html error page instead of the file
    "corrupt",  # flip a few body bytes, same length (`vary`: other bytes on each request)
    "traversal",  # listings gain malicious entries (`entries`)
    "endless",  # 200 with no Content-Length and a body that never ends (capped: `after_bytes`)
    "trickle",  # honest headers, then one body byte every `seconds` (slowloris)
    "dup_dir",  # listings also show files (`entries`, default all) as directories of that name
    "lying_range",  # 206 whose Content-Range claims the requested range; bytes from offset 0
    "redirect_loop",  # 302 back to the same URL, with a body ("moved elsewhere")
    # Servers that break HTTP/1.1 pipelining; each acts only on a request that came in while
    # another was being answered or that has another waiting behind it (HTTP only):
    "pipeline_close",  # close after this answer, unannounced, leaving the next unanswered
    "pipeline_swap",  # answer with the file the request waiting behind asks for (disorder)
    "pipeline_slow",  # answer a request that came in early only after `seconds`
    # swap two answers: this request gets the file behind it, and that one this file (no
    # answer given twice: only sizes can tell)
    "pipeline_exchange",
)
#: The fault kinds that need a pipelined request.
PIPELINE_FAULTS = frozenset(
    {"pipeline_close", "pipeline_swap", "pipeline_slow", "pipeline_exchange"}
)

#: Bytes an ``endless`` body sends when the fault's ``after_bytes`` is 0, so tests end.
ENDLESS_CAP = 64 * 1024 * 1024

# Names a hostile server could list; a client must never write outside its output directory.
TRAVERSAL_ENTRIES: tuple[str, ...] = (
    "../evil.fits",
    "../../../../tmp/evil.fits",
    "/etc/passwd",
    "%2e%2e/x.fits",
    "..%2fy.fits",
    "..\\evil.fits",
    "C:\\evil.fits",
    "bad\x01name.fits",
    "line\nbreak.fits",
    "primary/../../escape.fits",
)

_OBSID_PATH = re.compile(r"^(?:.*/)?byobsid/\d/\d+(?:/(.*))?$")


def split_obsid_path(path: str) -> str | None:
    """Path below the ObsId directory of a path below the base (None if not inside one).

    ``"byobsid/3/1843/primary/a.fits"`` gives ``"primary/a.fits"``; the ObsId directory
    itself gives ``""``.
    """
    m = _OBSID_PATH.match(path.lstrip("/"))
    return None if m is None else (m.group(1) or "")


@dataclass
class Fault:
    """One fault to inject.

    Parameters
    ----------
    kind : str
        One of ``FAULT_KINDS``.
    path_glob : str
        fnmatch pattern, matched against the path below the base and the path below the
        ObsId directory (see module docstring).
    times : int or None
        How many requests it affects; None for every matching request.
    after_bytes : int
        For drop/stall/truncate/corrupt: body bytes sent before the fault acts. For
        ``endless``: the body bytes sent before the server gives up (0: ``ENDLESS_CAP``).
    status : int
        Status code of a ``status`` fault.
    retry_after : int or None
        ``Retry-After`` seconds of a ``status`` fault.
    seconds : float
        Duration of a ``stall``; for ``trickle`` the pause before each byte (0: 1 s).
    entries : tuple of str
        Entries a ``traversal`` fault adds to listings. For ``dup_dir``: the file names also
        listed as directories (left at the default: every file of the listed directory).
    protocols : tuple of str or None
        Restrict to these protocols (``"http"``, ``"ftp"``, ``"s3"``); None for all.
    vary : bool
        For ``corrupt``: damage other bytes on each request (damage in transit), instead of
        the same bytes every time (an archive copy that fails its check). Each use of the fault
        gets its own ``seed``.
    seed : int
        Set by :meth:`FaultPlan.match` on each use of a ``vary`` fault; moves the damage.

    Notes
    -----
    Corrupt files for the "kept as served" rule (issue 11), over HTTP, FTP and S3. A
    ``corrupt`` fault flips the bytes at ``after_bytes``, mid-body and the last one:

    - the same damage on every request (the archive's own copy fails its check):
      ``Fault("corrupt", "oif.fits", times=None, after_bytes=5760)`` (the default ObsId 1843's
      ``oif.fits`` then fails its FITS DATASUM/CHECKSUM in HDU 1; ``after_bytes=0`` would hit
      ``SIMPLE`` instead) or ``Fault("corrupt", "primary/*evt2.fits.gz", times=None,
      after_bytes=size // 2)`` (the gzip check fails: "incorrect data check", its CRC);
    - different damage on every request (damage in transit): the same with ``vary=True``.

    Damage positions are counted from the first byte of each response body, so a ranged
    request is damaged at other file offsets than a whole-file one.
    """

    kind: str
    path_glob: str = "*"
    times: int | None = 1
    after_bytes: int = 0
    status: int = 503
    retry_after: int | None = None
    seconds: float = 0.0
    entries: tuple[str, ...] = field(default=TRAVERSAL_ENTRIES)
    protocols: tuple[str, ...] | None = None
    vary: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        self.entries = tuple(self.entries)
        if self.protocols is not None:
            self.protocols = tuple(self.protocols)

    def matches(self, protocol: str, path: str) -> bool:
        """True when this fault applies to ``path`` (below the base) over ``protocol``."""
        if self.protocols is not None and protocol not in self.protocols:
            return False
        candidates = [path.lstrip("/")]
        inner = split_obsid_path(path)
        if inner is not None:
            candidates.append(inner)
        return any(fnmatch.fnmatchcase(c, self.path_glob) for c in candidates)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the inverse of ``Fault(**d)``)."""
        d = asdict(self)
        d["entries"] = list(self.entries)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from a mapping, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


class FaultPlan:
    """Thread-safe, ordered set of faults shared by a server's request threads.

    Examples
    --------
    >>> plan = FaultPlan()
    >>> plan.add(Fault("status", "*evt2*", status=503, retry_after=1))
    >>> plan.match("http", "byobsid/3/1843/primary/acisf01843N005_evt2.fits.gz").status
    503
    """

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._fired: list[tuple[str, str, str]] = []
        self._uses = 0  # seeds of ``vary`` faults: one per use
        for f in faults:
            self.add(f)

    def add(self, fault: Fault) -> Fault:
        """Append a fault (checked in insertion order); returns it."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove all faults and forget the fired log."""
        with self._lock:
            self._faults.clear()
            self._fired.clear()

    @property
    def faults(self) -> list[Fault]:
        """A copy of the pending faults."""
        with self._lock:
            return list(self._faults)

    @property
    def fired(self) -> list[tuple[str, str, str]]:
        """(protocol, path, kind) of every fault applied so far."""
        with self._lock:
            return list(self._fired)

    def match(self, protocol: str, path: str, kinds: Iterable[str] | None = None) -> Fault | None:
        """Find, consume one use of, and return the first applicable fault.

        Parameters
        ----------
        protocol : str
            ``"http"``, ``"ftp"``, ``"s3"``...
        path : str
            Path below the mirror base (``byobsid/...``); directories end in ``/``.
        kinds : iterable of str, optional
            Fault kinds the caller can apply to this request (None: any).

        Returns
        -------
        Fault or None
        """
        allowed = None if kinds is None else set(kinds)
        with self._lock:
            for i, fault in enumerate(self._faults):
                if allowed is not None and fault.kind not in allowed:
                    continue
                if fault.times is not None and fault.times <= 0:
                    continue
                if not fault.matches(protocol, path):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        del self._faults[i]
                self._fired.append((protocol, path, fault.kind))
                if fault.vary:
                    self._uses += 1
                    return replace(fault, seed=self._uses, times=1)
                return fault
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)


def corrupt_bytes(data: bytes, offset: int, total: int, after_bytes: int, seed: int = 0) -> bytes:
    """Flip bytes of a body chunk: one at ``after_bytes``, one mid-body, the last one.

    With a ``seed`` (a ``vary`` fault) the mid-body byte moves by ``seed``, so each request's
    damage differs; with the same seed the damage is the same.

    Parameters
    ----------
    data : bytes
        The chunk, starting at body offset ``offset``.
    offset : int
        Offset of the chunk within the body being sent.
    total : int
        Length of the whole body.
    after_bytes : int
        The fault's ``after_bytes``.
    seed : int
        The fault's ``seed``.
    """
    targets = {min(after_bytes, total - 1), (total // 2 + seed) % max(total, 1), total - 1}
    hits = [t - offset for t in targets if offset <= t < offset + len(data)]
    if not hits:
        return data
    buf = bytearray(data)
    for h in hits:
        buf[h] ^= 0xFF
    return bytes(buf)


def endless_body(head: bytes, cap: int) -> Iterator[bytes]:
    """The body of an ``endless`` fault: ``head`` (the file), then filler, ``cap`` bytes in all."""
    sent = 0
    filler = b"endless " * 8192
    for piece in (head, *([filler] * (cap // len(filler) + 1))):
        piece = piece[: cap - sent]
        if not piece:
            return
        sent += len(piece)
        yield piece


def cut_length(fault: Fault | None, total: int) -> int:
    """Body bytes to send before closing, for ``drop``/``truncate`` (``total`` otherwise)."""
    if fault is None:
        return total
    if fault.kind == "drop":
        return min(max(fault.after_bytes, 0), total)
    if fault.kind == "truncate":
        want = fault.after_bytes if fault.after_bytes > 0 else total // 2
        return max(0, min(want, total - 1))
    return total
