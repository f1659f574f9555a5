"""HTTP range and retry headers, parsed in one place for every source (HTTP, S3, FTP REST).

``Range`` is what a client asks (:func:`range_header`; with :func:`if_range_header`, only of
the copy it holds bytes of), ``Content-Range`` what a server says
it sent (:func:`parse_content_range`), and :func:`check_content_range` decides whether the two
agree; ``Retry-After`` (seconds or an HTTP-date) is read by :func:`parse_retry_after`.
FTP's equivalent of ``Range`` is ``REST`` (:func:`rest_command`), and its reply says where
the data will start (:func:`rest_start`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "ContentRange",
    "check_content_range",
    "content_length",
    "if_range_header",
    "parse_content_range",
    "parse_keep_alive_max",
    "parse_retry_after",
    "range_header",
    "rest_command",
    "rest_start",
]

_SATISFIED = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range``: bytes ``start`` to ``end`` (exclusive) of ``total``.

    ``start`` and ``end`` are None for an unsatisfied range (``bytes */1234``); ``total`` is
    None when the server does not know it (``bytes 0-9/*``).
    """

    start: int | None
    end: int | None
    total: int | None


def range_header(offset: int, end: int | None = None) -> str | None:
    """The ``Range`` value for bytes ``offset`` to ``end`` (exclusive, None: to the end of the
    file), or None when the whole file is wanted (offset 0, no end)."""
    if end is not None:
        return f"bytes={offset}-{end - 1}"
    return f"bytes={offset}-" if offset else None


#: A strong entity tag (RFC 9110 8.8.3: ``"..."`` of visible characters), and a date's text.
_STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e]{0,200}"')
_DATE_TEXT = re.compile(r"[\x20-\x7e]{1,64}")


def if_range_header(last_modified: str | None, etag: str | None) -> str | None:
    """The ``If-Range`` value for a ranged GET of the copy the site last described: its
    strong ETag, else its ``Last-Modified`` when it stated no ETag at all (RFC 9110 13.1.5:
    never a weak tag, a date only without a tag); None otherwise. A site's text that is not
    a valid header value is never sent back."""
    if etag:
        tag = etag.strip()
        return tag if _STRONG_ETAG.fullmatch(tag) else None
    date = (last_modified or "").strip()
    return date if _DATE_TEXT.fullmatch(date) else None


def parse_content_range(value: str | None) -> ContentRange | None:
    """``bytes 5-9/10`` -> (5, 10, 10); ``bytes */10`` -> (None, None, 10); None if malformed.

    A range whose last byte is before its first, or past the stated total, is malformed.
    """
    if not value:
        return None
    m = _SATISFIED.match(value)
    if m:
        first, last = int(m[1]), int(m[2])
        total = None if m[3] == "*" else int(m[3])
        if last < first or (total is not None and last >= total):
            return None
        return ContentRange(first, last + 1, total)
    m = _UNSATISFIED.match(value)
    return ContentRange(None, None, int(m[1])) if m else None


def check_content_range(cr: ContentRange | None, offset: int, end: int | None) -> str | None:
    """Why a 206's ``Content-Range`` does not answer a request for ``offset``..``end``
    (exclusive, None: to the end of the file); None when it does.

    The data must start exactly at ``offset``; it must run to ``end`` (or to the end of the
    file when that comes first), or to the end of the file when no ``end`` was asked.
    """
    if cr is None or cr.start is None or cr.end is None:
        return "no valid Content-Range"
    shown = f"bytes {cr.start}-{cr.end - 1}/{'*' if cr.total is None else cr.total}"
    if cr.start != offset:
        return f"Content-Range {shown} does not start at the requested byte {offset}"
    want = end if cr.total is None else (cr.total if end is None else min(end, cr.total))
    if want is not None and cr.end != want:
        return f"Content-Range {shown} does not end at byte {want - 1} as requested"
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date (a date in
    the past gives 0); None when absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is malformed
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def rest_command(offset: int) -> str | None:
    """FTP's ``REST`` command to start the next ``RETR`` at byte ``offset``; None from 0."""
    return f"REST {offset}" if offset else None


def rest_start(offset: int, reply: str | None) -> int:
    """The byte the next ``RETR``'s data starts at, after ``REST offset`` got ``reply``
    (None: refused with a 5xx error). Only a 3xx reply (350, "pending further information")
    means the server will skip to ``offset``; any other answer sends the file from byte 0."""
    return offset if offset and reply is not None and reply[:1] == "3" else 0


_KEEP_ALIVE_MAX = re.compile(r"(?:^|[,;\s])max\s*=\s*(\d+)", re.IGNORECASE)


def parse_keep_alive_max(value: str | None) -> int | None:
    """Requests a connection still takes from a ``Keep-Alive`` value (Apache's ``timeout=5,
    max=99`` gives 99); None when absent or malformed."""
    m = _KEEP_ALIVE_MAX.search(value or "")
    return int(m[1]) if m else None


def content_length(headers: Any) -> int | None:
    """A response's ``Content-Length`` (digits only), or None when absent or malformed."""
    value = (headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None
