"""Apache's listing rows read without html.parser (issue 19.4): the pages come out the same.

sources/listing.py reads Apache 2.4's own table layout (its head, one plain row per entry)
with regular expressions and leaves everything else to html.parser, and takes a plain name's
href as it is where urljoin would give the same. These tests hold that to the slow way
(``listing._FAST`` off: every page through html.parser and urljoin alone) on the simulator's
pages, hostile names, and thousands of damaged pages, and check the fast way is taken.
"""

from __future__ import annotations

import random

import pytest
from test_listing import APACHE_24, APACHE_PRE

from chandra_download.simulator.http import apache_listing
from chandra_download.sources import listing
from chandra_download.sources.listing import DirectoryPage, parse_page

URL = "http://127.0.0.1:8080/cdaftp/byobsid/3/1843/"
HOSTILE_NAMES = [
    "../../etc/passwd", "..", ".", "a/../../b", "/abs/path", "%2e%2e/x", "a%2Fb", "x?y=1",
    "#frag", "http://elsewhere.example/x", "//elsewhere.example/x", "sub//x", "name with space",
    "a&b.fits", 'q"uote', "tab\there", "-dash", "+plus", "_under", "ünï.fits", "a..b", "x/",
]  # fmt: skip


def both_ways(html: str, url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[DirectoryPage, ...]:
    fast = parse_page(html, url)
    with monkeypatch.context() as m:
        m.setattr(listing, "_FAST", False)
        slow = parse_page(html, url)
    return fast, slow


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Simulator pages of a directory of files and sub-directories, in every sort order,
    with and without hostile entries, and test_listing's Apache 2.4 and <pre> pages."""
    top = tmp_path_factory.mktemp("listed")
    for i, size in enumerate([0, 20, 999, 1024, 11_000, 60_000, 2_300_000]):
        (top / f"acisf01843_{i}_evt{i}.fits.gz").write_bytes(b"x" * size)
    (top / "primary").mkdir()
    (top / "name with space.fits").write_bytes(b"y" * 30)
    out = [APACHE_24, APACHE_PRE]
    for query in ("", "C=S;O=D", "C=M;O=A", "C=N;O=D"):
        out.append(apache_listing("/cdaftp/byobsid/3/1843/", top, query))
        out.append(apache_listing("/cdaftp/byobsid/3/1843/", top, query, HOSTILE_NAMES))
    return out


@pytest.mark.parametrize("url", [URL, URL.rstrip("/"), URL + "?C=S;O=D", "https://h.example/x/"])
def test_every_page_reads_as_html_parser_and_urljoin_read_it(pages, url, monkeypatch):
    for html in pages:
        fast, slow = both_ways(html, url, monkeypatch)
        assert fast == slow


def test_damaged_pages_read_as_html_parser_reads_them(pages, monkeypatch):
    """Seeded damage anywhere (a comment or script opened, a quote, an entity, a row cut or
    doubled): the fast way never reads a page otherwise than html.parser."""
    rnd = random.Random(19)
    bits = ["<", ">", "&", '"', "\n", "<!--", "-->", '<a href="x.fits">', "</a>", "<tr>", "</tr>",
            "<script>", "&amp;", "&nbsp", ";", "'", "=", " 12K", "2020-01-05 12:34", "<td>"]  # fmt: skip
    for _ in range(3000):
        html = list(rnd.choice(pages))
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randrange(len(html) + 1)
            if rnd.random() < 0.5:
                html[at:at] = [rnd.choice(bits)]
            else:
                del html[at : at + rnd.randint(1, 40)]
        text = "".join(html)
        fast, slow = both_ways(text, URL, monkeypatch)
        assert fast == slow, text


def test_apaches_rows_are_read_without_html_parser(pages, monkeypatch):
    """The saving itself: of a plain Apache 2.4 page, html.parser reads only its last lines."""
    html = pages[2]
    fed: list[str] = []
    real = listing._Parser.feed

    def feed(self: listing._Parser, data: str) -> None:
        fed.append(data)
        real(self, data)

    monkeypatch.setattr(listing._Parser, "feed", feed)
    page = parse_page(html, URL)
    assert len(page.entries) == 9 and page.is_index
    assert sum(map(len, fed)) < 100 < len(html) // 10
