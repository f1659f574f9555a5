"""Parse Apache ``mod_autoindex`` (and nginx ``autoindex``) directory pages into entries.

Every entry is kept (a file and a directory of the same name are two entries: the caller
decides what that means); a page that does not look like a directory index says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from html.parser import HTMLParser
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

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

    def between_tags(self) -> bool:
        """Whether all fed so far is parsed, outside any link or script: the next bytes
        start afresh, as a table row of :data:`_ROW` may (see :func:`_rows`)."""
        return not self.rawdata and self.cdata_elem is None and not self._in_a

    def add_rows(self, html: str, start: int, end: int) -> None:
        """The rows of ``html[start:end]``, one :data:`_ROW` after another on lines of their
        own, as feeding them would add them (a separator at each ``<tr>``, the texts after
        each link: its date and size cells, the ``&nbsp;`` cell, the line's end)."""
        for m in _ROW.finditer(html, start, end):
            if self.rows:
                self.rows.append(("", []))
            texts = [text for text in m.group(2, 3) if text]  # (an empty cell: no text)
            texts.append("\xa0")
            if m.end() < end:
                texts.append("\n")
            self.rows.append((m.group(1), texts))


#: One entry's row of Apache 2.4's table (FancyIndexing, HTMLTable), on a line of its own,
#: nothing in it escaped: read by a regular expression, 5-10x faster than html.parser
#: (issue 19.4). Any other row or text (an escaped name, another server's layout, a row
#: broken up) is html.parser's, so the rows are the same either way.
_CELL = r'[^"<>&\n]*'
_ROW = re.compile(
    rf'<tr><td valign="top"><img src="{_CELL}" alt="{_CELL}"></td>'
    rf'<td><a href="({_CELL})">{_CELL}</a></td>'
    rf'<td align="right">({_CELL})</td><td align="right">({_CELL})</td>'
    r"<td>&nbsp;</td></tr>"
)
#: Such rows one after another, one per line.
_ROWS = re.compile(rf"(?:{_ROW.pattern}\n)*{_ROW.pattern}")
#: Apache 2.4's page up to its first entry: the sorting links, the parent directory's row.
_HEAD = re.compile(
    r'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<html>\n <head>\n'
    rf"  <title>{_CELL}</title>\n </head>\n <body>\n<h1>{_CELL}</h1>\n  <table>\n"
    rf'   <tr><th valign="top"><img src="{_CELL}" alt="{_CELL}"></th>'
    rf'<th><a href="({_CELL})">Name</a></th><th><a href="({_CELL})">Last modified</a></th>'
    rf'<th><a href="({_CELL})">Size</a></th><th><a href="({_CELL})">Description</a></th></tr>\n'
    r'   <tr><th colspan="5"><hr></th></tr>\n'
    rf'<tr><td valign="top"><img src="{_CELL}" alt="{_CELL}"></td>'
    rf'<td><a href="({_CELL})">Parent Directory</a></td>'
    r'<td>&nbsp;</td><td align="right">  - </td><td>&nbsp;</td></tr>\n(?=<)'
)


def _head_rows(m: re.Match[str]) -> list[tuple[str, list[str]]]:
    """The rows html.parser makes of a page's :data:`_HEAD` (the title's text belongs to no
    row; a separator at each ``<tr>`` and ``<hr>``)."""
    *sorting, last, up = m.groups()
    rows: list[tuple[str, list[str]]] = [(href, []) for href in sorting]
    rows += [(last, ["\n   "]), ("", []), ("", ["\n"]), ("", [])]
    return [*rows, (up, ["\xa0", "  - ", "\xa0", "\n"])]


#: Off: every page through html.parser and urljoin alone (the tests compare both ways).
_FAST = True


def _rows(html: str) -> list[tuple[str, list[str]]]:
    """The page's links in order, each with the texts after it on its row (``("", [])``
    between rows): html.parser's, Apache's plain table rows read at once (:data:`_ROW`)."""
    parser = _Parser()
    at = 0
    head = _HEAD.match(html) if _FAST else None
    if head is not None:
        parser.rows, at = _head_rows(head), head.end()
    while _FAST and (block := _ROWS.search(html, at)) is not None:
        parser.feed(html[at : block.start()])
        if not parser.between_tags():  # (a row inside a comment, a tag, a script...)
            parser = _Parser()
            parser.feed(html)
            return parser.rows
        parser.add_rows(html, block.start(), block.end())
        at = block.end()
    parser.feed(html[at:])
    return parser.rows


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
    rows = _rows(html)
    base = urlsplit(page_url)
    base_path = base.path if base.path.endswith("/") else base.path + "/"
    plain = _FAST and base_path == base.path  # a plain name is then just below the page's directory
    entries: dict[tuple[str, bool], ListingEntry] = {}
    unsafe: list[str] = []
    parent = False
    for href, texts in rows:
        if not href or href.startswith(("?", "#", "mailto:", "javascript:")):
            continue
        rest = href if plain and _PLAIN.fullmatch(href) else _below(href, page_url, base)
        if rest is _Link.PARENT or rest is _Link.OTHER:
            parent = parent or rest is _Link.PARENT
            continue
        if rest is _Link.UNSAFE:
            unsafe.append(unquote(href))
            continue
        assert isinstance(rest, str)
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


#: An href that is a plain name (or a directory's: a trailing slash): the same below the
#: page's directory as urljoin would make it, without its cost (issue 19.4).
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*/?")


class _Link(Enum):
    """Where an href that is no entry of the page leads."""

    PARENT = "parent"  # an ancestor directory (the "Parent Directory" link)
    OTHER = "other"  # another host, a query or fragment, the directory itself: ignored
    UNSAFE = "unsafe"  # out of the directory: refused by the caller


def _below(href: str, page_url: str, base: SplitResult) -> str | _Link:
    """The path of ``href`` below the directory of the page at ``page_url`` (``base``,
    split), or where else it leads."""
    base_path = base.path if base.path.endswith("/") else base.path + "/"
    target = urlsplit(urljoin(page_url, href))
    if target.query or target.fragment:
        return _Link.OTHER
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        return _Link.OTHER
    if not target.path.startswith(base_path):
        if target.path.endswith("/") and base_path.startswith(target.path):
            return _Link.PARENT
        return _Link.UNSAFE
    rest = target.path[len(base_path) :]
    return rest if rest else _Link.OTHER
