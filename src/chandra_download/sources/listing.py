"""Parse Apache ``mod_autoindex`` directory pages into entries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass(frozen=True)
class ListingEntry:
    """One child of a listed directory: its decoded name, whether it is a directory, and
    the rounded size shown in the page (None when the page shows none)."""

    name: str
    is_dir: bool
    approx_size: int | None


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[str, list[str]]] = []  # (href, texts that follow it on its row)
        self._href: str | None = None
        self._in_a = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href is not None:
                self.rows.append((href, []))
                self._in_a = True
        elif tag in ("tr", "br", "hr", "li") and self.rows:
            self.rows.append(("", []))  # row separator: sizes never leak across rows

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_a = False

    def handle_data(self, data: str) -> None:
        if self.rows and not self._in_a:
            self.rows[-1][1].append(data)


def parse_size(text: str) -> int | None:
    """``2.1M`` -> 2202009, ``112K`` -> 114688, ``20`` -> 20, ``-`` -> None."""
    m = _SIZE.match(text)
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_listing(html: str, page_url: str) -> tuple[list[ListingEntry], list[str]]:
    """Return the direct children of the directory listed at ``page_url``, and the hrefs that
    point outside it.

    Parent-directory links, column-sorting links (``?C=N;O=D``) and links to other hosts are
    ignored; hrefs are percent-decoded and may be relative or absolute. Any other link that
    leaves the directory is returned as unsafe so the caller can refuse it loudly. Names are
    checked further by the caller (``check_relpath``).
    """
    parser = _Parser()
    parser.feed(html)
    base = urlsplit(page_url)
    base_path = base.path if base.path.endswith("/") else base.path + "/"
    entries: dict[str, ListingEntry] = {}
    unsafe: list[str] = []
    for href, texts in parser.rows:
        if not href or href.startswith(("?", "#", "mailto:", "javascript:")):
            continue
        target = urlsplit(urljoin(page_url, href))
        if target.query or target.fragment:
            continue
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            continue
        if not target.path.startswith(base_path):
            # An ancestor directory is the "Parent Directory" link; anything else escapes.
            if not (target.path.endswith("/") and base_path.startswith(target.path)):
                unsafe.append(unquote(href))
            continue
        rest = target.path[len(base_path) :]
        if not rest:
            continue
        is_dir = rest.endswith("/")
        name = unquote(rest[:-1] if is_dir else rest)
        if "/" in name or name in ("", ".", ".."):
            unsafe.append(unquote(href))
            continue
        size = None
        if not is_dir:
            size = next((s for s in (parse_size(t) for t in texts) if s is not None), None)
        entries[name] = ListingEntry(name, is_dir, size)
    return list(entries.values()), unsafe
