"""Parse Apache ``mod_autoindex`` (and nginx ``autoindex``) directory pages into entries.

Every entry is kept (a file and a directory of the same name are two entries: the caller
decides what that means); a page that does not look like a directory index says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
#: The date column: Apache's ``2020-01-05 12:34`` (or ``05-Jan-2020 12:34``, nginx and older
#: Apache). Kept as text: it is in the server's own time zone, so it is only ever compared
#: with what the same listing showed before.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?|\d{2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2}")


#: Titles of directory index pages (Apache, nginx, lighttpd; Python's http.server).
_INDEX_TITLE = re.compile(r"<(title|h1)>\s*(index of|directory listing for)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ListingEntry:
    """One child of a listed directory: its decoded name, whether it is a directory, the
    rounded size shown in the page (None when the page shows none), and the most bytes that
    rounded size can stand for (``max_size``; see :func:`size_ceiling`), and the date the
    page shows for it, as text (``listed_date``; None when it shows none)."""

    name: str
    is_dir: bool
    approx_size: int | None
    max_size: int | None = None
    listed_date: str | None = None


@dataclass(frozen=True)
class DirectoryPage:
    """A parsed listing page: its entries in page order, the hrefs that leave the directory
    (``unsafe``), and whether the page looks like a directory index at all (``is_index``:
    an index title, or a link to the parent directory), and the page's length (``nbytes``)."""

    entries: list[ListingEntry]
    unsafe: list[str]
    is_index: bool
    nbytes: int = 0


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


def size_ceiling(text: str) -> int | None:
    """The most bytes a listing's rounded size can stand for: the shown value plus one step of
    its precision (``1.0K`` -> 1.1 KiB, ``12K`` -> 13 KiB, ``2.1M`` -> 2.2 MiB), and at least
    1 KiB more than shown; None when the text is not a size."""
    m = _SIZE.match(text)
    if not m:
        return None
    number, unit = m.group(1), _UNITS[m.group(2).upper()]
    decimals = len(number.partition(".")[2])
    upper = (float(number) + 10.0**-decimals) * unit
    return max(int(upper) + 1, int(float(number) * unit) + 1024)


def ends_html(raw: bytes) -> bool:
    """True when a page ends its HTML: ``</html>`` in its last bytes (Apache ends with
    ``</body></html>``, nginx and Python's http.server with ``</html>`` on a line of its own)."""
    return b"</html>" in raw[-256:].lower()


def parse_listing(html: str, page_url: str) -> tuple[list[ListingEntry], list[str]]:
    """The entries and the unsafe hrefs of :func:`parse_page`."""
    page = parse_page(html, page_url)
    return page.entries, page.unsafe


def parse_page(html: str, page_url: str) -> DirectoryPage:
    """Return the direct children of the directory listed at ``page_url``, and the hrefs that
    point outside it.

    Parent-directory links, column-sorting links (``?C=N;O=D``) and links to other hosts are
    ignored; hrefs are percent-decoded and may be relative or absolute. Any other link that
    leaves the directory is returned as unsafe so the caller can refuse it loudly. Names are
    checked further by the caller (``check_relpath``). The same href twice (an icon link and a
    name link) is one entry; a file and a directory of the same name are two.
    """
    parser = _Parser()
    parser.feed(html)
    base = urlsplit(page_url)
    base_path = base.path if base.path.endswith("/") else base.path + "/"
    entries: dict[tuple[str, bool], ListingEntry] = {}
    unsafe: list[str] = []
    parent = False
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
            else:
                parent = True
            continue
        rest = target.path[len(base_path) :]
        if not rest:
            continue
        is_dir = rest.endswith("/")
        name = unquote(rest[:-1] if is_dir else rest)
        if "/" in name or name in ("", ".", ".."):
            unsafe.append(unquote(href))
            continue
        size = ceiling = None
        if not is_dir:
            shown = next((t for t in texts if parse_size(t) is not None), None)
            if shown is not None:
                size, ceiling = parse_size(shown), size_ceiling(shown)
        date = _DATE.search(" ".join(texts))
        old = entries.get((name, is_dir))
        if old is None or size is not None:
            listed = date.group(0) if date else None
            entries[(name, is_dir)] = ListingEntry(name, is_dir, size, ceiling, listed)
    is_index = parent or _INDEX_TITLE.search(html) is not None
    return DirectoryPage(list(entries.values()), unsafe, is_index, len(html))
