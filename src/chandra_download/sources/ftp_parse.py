"""FTP directory listings: one ``MLSD`` line (RFC 3659) or one ``LIST`` line (Unix ``ls -l``
style, or the DOS style of IIS) to an entry."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import NamedTuple


class Entry(NamedTuple):
    """One listed entry. ``kind`` is file, dir, cdir, pdir or link; ``size`` None when not
    given; ``modified`` the ``MLSD`` ``modify`` fact as ISO 8601 UTC (None from ``LIST``,
    whose dates are too coarse to tell a change by)."""

    name: str
    kind: str
    size: int | None
    modified: str | None = None


# drwxr-xr-x  2 owner group  4096 Jan  1 12:00 name  (group column optional)
_LS = re.compile(
    r"^(?P<kind>[-dlbcps])\S*\s+\d+\s+.*?\s(?P<size>\d+)\s+"
    r"[A-Za-z]{3}\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4})\s(?P<name>.+)$"
)

# 12-02-26  10:00PM       <DIR>          primary       (IIS, DOS style)
# 12-02-2026  22:00             1234 oif.fits
_DOS = re.compile(
    r"^\d{2}-\d{2}-\d{2,4}\s+\d{1,2}:\d{2}(?:[AaPp][Mm])?\s+"
    r"(?:(?P<dir><DIR>)|(?P<size>\d+))\s+(?P<name>.+)$"
)


def parse_mlsd(line: str) -> Entry | None:
    """One ``MLSD`` line (RFC 3659 facts, a space, the name); None for other entry types."""
    facts_text, sep, name = line.rstrip("\r\n").partition(" ")
    if not sep:
        return None
    facts = {}
    for fact in facts_text.split(";"):
        key, eq, value = fact.partition("=")
        if eq:
            facts[key.strip().lower()] = value
    kind = facts.get("type", "").lower()
    if kind.startswith("os.unix=slink") or kind.startswith("os.unix=symlink"):
        kind = "link"
    if kind not in ("file", "dir", "cdir", "pdir", "link"):
        return None
    size = facts.get("size")
    return Entry(
        name, kind, int(size) if size and size.isdigit() else None, mlsd_time(facts.get("modify"))
    )


#: RFC 3659 time-val: YYYYMMDDHHMMSS in UTC, with an optional fraction of a second.
_TIME_VAL = re.compile(r"^(\d{14})(?:\.(\d{1,9}))?$")


def mlsd_time(value: str | None) -> str | None:
    """An ``MLSD``/``MDTM`` time-val as ISO 8601 UTC (``2020-01-01T00:00:00+00:00``), or None
    when absent or not a valid time (the server's text is never trusted further)."""
    m = _TIME_VAL.match(value.strip()) if value else None
    if m is None:
        return None
    try:
        when = datetime.strptime(m[1], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    stamp = when.isoformat()
    return stamp if m[2] is None else f"{stamp[:19]}.{m[2]}{stamp[19:]}"


def parse_ls(line: str) -> Entry | None:
    """One ``LIST`` line, Unix ``ls -l`` style or DOS style; None for ``total`` lines and
    other kinds."""
    m = _LS.match(line.rstrip("\r\n"))
    if m is None:
        dos = _DOS.match(line.rstrip("\r\n"))
        if dos is None:
            return None
        if dos["dir"]:
            return Entry(dos["name"], "dir", None)
        return Entry(dos["name"], "file", int(dos["size"]))
    kind = {"-": "file", "d": "dir", "l": "link"}.get(m["kind"])
    if kind is None:
        return None
    name = m["name"]
    if kind == "link":
        name = name.partition(" -> ")[0]
    return Entry(name, kind, int(m["size"]) if kind == "file" else None)
