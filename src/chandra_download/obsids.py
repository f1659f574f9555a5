"""Parsing and validation of ObsId values (ints, strings, comma lists, ranges, @files)."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable
from pathlib import Path

_DIGITS = re.compile(r"^\d+$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")
MAX_RANGE = 100_000


def validate_obsid(value: object) -> int:
    """Return an ObsId as an int, or raise ValueError naming the bad value.

    Accepts positive integers of any integer type (Python's, numpy's: a column of an
    astropy Table works) and strings of digits (surrounding blanks ignored).
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise ValueError(f"Invalid ObsId {value!r}: expected a positive integer")
    if isinstance(value, numbers.Integral):
        if value <= 0:
            raise ValueError(f"Invalid ObsId {value!r}: must be a positive integer")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not _DIGITS.match(text):
            raise ValueError(f"Invalid ObsId {value!r}: must be a positive integer")
        number = int(text)
        if number <= 0:
            raise ValueError(f"Invalid ObsId {value!r}: must be a positive integer")
        return number
    raise ValueError(f"Invalid ObsId {value!r}: expected an int or a string of digits")


def validate_obsids(values: Iterable[object] | int | str) -> list[int]:
    """Validate a list of ObsIds (order kept, duplicates kept as given)."""
    if isinstance(values, (int, numbers.Integral, str)):
        return [validate_obsid(values)]
    return [validate_obsid(v) for v in values]


def parse_obsid_args(text: str) -> list[int]:
    """Parse the command line's ObsId argument: ``1842,1843``, ``1842-1850``, ``@list.txt``.

    An @file holds ObsIds separated by commas, blanks or new lines; ``#`` starts a comment.
    Duplicates are dropped, first occurrence kept.
    """
    out: list[int] = []
    for token in _tokens(text):
        m = _RANGE.match(token)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo <= 0 or hi < lo:
                raise ValueError(f"Invalid ObsId range {token!r}")
            if hi - lo >= MAX_RANGE:
                raise ValueError(f"ObsId range {token!r} is too large")
            out.extend(range(lo, hi + 1))
        else:
            out.append(validate_obsid(token))
    if not out:
        raise ValueError("No ObsIds given")
    return list(dict.fromkeys(out))


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("@"):
            tokens.extend(list_file(Path(part[1:]), "ObsId list"))
        else:
            tokens.append(part)
    return tokens


def list_file(path: Path, what: str) -> list[str]:
    """The items an ``@file`` lists (one or more a line, comma or space separated, ``#``
    comments), or ValueError naming ``what`` and the file when it cannot be read or is not
    text. Shared by the ObsId and the file type lists."""
    try:
        content = path.read_text()
    except OSError as exc:
        raise ValueError(f"Cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"Cannot read {what} {path}: not a text file") from None
    found: list[str] = []
    for line in content.splitlines():
        found.extend(t for t in re.split(r"[\s,]+", line.split("#", 1)[0]) if t)
    return found
