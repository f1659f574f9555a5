"""FTP directory listings: one ``MLSD`` line (RFC 3659) or one Unix ``LIST`` line to an entry."""

from __future__ import annotations

import re

#: (name, kind, size): kind is file, dir, cdir, pdir or link; size None when not given.
Entry = tuple[str, str, int | None]

# drwxr-xr-x  2 owner group  4096 Jan  1 12:00 name  (group column optional)
_LS = re.compile(
    r"^(?P<kind>[-dlbcps])\S*\s+\d+\s+.*?\s(?P<size>\d+)\s+"
    r"[A-Za-z]{3}\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4})\s(?P<name>.+)$"
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
    return name, kind, int(size) if size and size.isdigit() else None


def parse_ls(line: str) -> Entry | None:
    """One Unix ``ls -l`` style ``LIST`` line; None for ``total`` lines and other kinds."""
    m = _LS.match(line.rstrip("\r\n"))
    if m is None:
        return None
    kind = {"-": "file", "d": "dir", "l": "link"}.get(m["kind"])
    if kind is None:
        return None
    name = m["name"]
    if kind == "link":
        name = name.partition(" -> ")[0]
    return name, kind, int(m["size"]) if kind == "file" else None
