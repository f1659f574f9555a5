"""Parsing Apache mod_autoindex pages (sources/listing.py), without a network."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from chandra_download.simulator import iter_files
from chandra_download.simulator.http import apache_listing
from chandra_download.sources.listing import (
    ListingEntry,
    ends_html,
    parse_listing,
    parse_page,
    parse_size,
    size_ceiling,
)

PAGE_URL = "https://cxc.cfa.harvard.edu/cdaftp/byobsid/3/1843/"

# As the CDA's Apache 2.4 serves it (FancyIndexing + HTMLTable), with a few extra rows.
APACHE_24 = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of /cdaftp/byobsid/3/1843</title>
 </head>
 <body>
<h1>Index of /cdaftp/byobsid/3/1843</h1>
  <table>
   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th><th><a href="?C=S;O=A">Size</a></th><th><a href="?C=D;O=A">Description</a></th></tr>
   <tr><th colspan="5"><hr></th></tr>
<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td><td><a href="/cdaftp/byobsid/3/">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/text.gif" alt="[TXT]"></td><td><a href="00README">00README</a></td><td align="right">2019-06-13 07:42  </td><td align="right">2.0K</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="axaff01843N005_VV001_vv2.pdf.gz">axaff01843N005_VV001_vv2.pdf.gz</a></td><td align="right">2019-06-13 07:42  </td><td align="right"> 29K</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="oif.fits">oif.fits</a></td><td align="right">2019-06-13 07:42  </td><td align="right"> 17K</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/folder.gif" alt="[DIR]"></td><td><a href="primary/">primary/</a></td><td align="right">2019-06-13 07:42  </td><td align="right">  - </td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/folder.gif" alt="[DIR]"></td><td><a href="/cdaftp/byobsid/3/1843/secondary/">secondary/</a></td><td align="right">2019-06-13 07:42  </td><td align="right">  - </td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="https://cxc.cfa.harvard.edu/cdaftp/byobsid/3/1843/big_evt1.fits.gz">big_evt1.fits.gz</a></td><td align="right">2019-06-13 07:42  </td><td align="right">2.1M</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="name%20with%20space%2Bplus.fits">name with space+plus.fits</a></td><td align="right">2019-06-13 07:42  </td><td align="right"> 20 </td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="a&amp;b.fits">a&amp;b.fits</a></td><td align="right">2019-06-13 07:42  </td><td align="right">1.5G</td><td>&nbsp;</td></tr>
   <tr><th colspan="5"><hr></th></tr>
</table>
<address>Apache/2.4.62 (Unix) Server at <a href="https://cxc.harvard.edu/">cxc.harvard.edu</a> Port 443</address>
</body></html>
"""

# The older FancyIndexing layout without HTMLTable: rows are lines of a <pre> block.
APACHE_PRE = """<html><head><title>Index of /cdaftp/byobsid/3/1843</title></head><body>
<h1>Index of /cdaftp/byobsid/3/1843</h1>
<pre><img src="/icons/blank.gif" alt="Icon "> <a href="?C=N;O=D">Name</a>                    <a href="?C=M;O=A">Last modified</a>      <a href="?C=S;O=A">Size</a>  <a href="?C=D;O=A">Description</a><hr><img src="/icons/back.gif" alt="[PARENTDIR]"> <a href="/cdaftp/byobsid/3/">Parent Directory</a>                             -
<img src="/icons/unknown.gif" alt="[   ]"> <a href="oif.fits">oif.fits</a>                2019-06-13 07:42   17K
<img src="/icons/folder.gif" alt="[DIR]"> <a href="primary/">primary/</a>                2019-06-13 07:42    -
<hr></pre>
</body></html>
"""


def by_name(entries: list[ListingEntry]) -> dict[str, ListingEntry]:
    return {e.name: e for e in entries}


def test_real_apache_24_page():
    entries, unsafe = parse_listing(APACHE_24, PAGE_URL)
    assert unsafe == []
    got = by_name(entries)
    # No parent directory, no sort links, no footer link to another host.
    assert set(got) == {
        "00README",
        "axaff01843N005_VV001_vv2.pdf.gz",
        "oif.fits",
        "primary",
        "secondary",
        "big_evt1.fits.gz",
        "name with space+plus.fits",
        "a&b.fits",
    }
    assert got["primary"].is_dir and got["secondary"].is_dir  # relative and absolute hrefs
    assert got["primary"].approx_size is None
    assert not got["oif.fits"].is_dir
    assert got["oif.fits"].approx_size == 17 * 1024
    assert got["00README"].approx_size == 2048
    assert got["big_evt1.fits.gz"].approx_size == int(2.1 * 1024**2)  # absolute URL href
    assert got["name with space+plus.fits"].approx_size == 20
    assert got["a&b.fits"].approx_size == int(1.5 * 1024**3)


def test_pre_layout_names():
    entries, unsafe = parse_listing(APACHE_PRE, PAGE_URL)
    assert unsafe == []
    got = by_name(entries)
    assert set(got) == {"oif.fits", "primary"}
    assert got["primary"].is_dir and not got["oif.fits"].is_dir


def test_page_url_with_sort_query_resolves_the_same():
    entries, _ = parse_listing(APACHE_24, PAGE_URL + "?C=S;O=D")
    assert by_name(entries) == by_name(parse_listing(APACHE_24, PAGE_URL)[0])


@pytest.mark.parametrize(
    "href",
    [
        "../evil.fits",
        "../../../../tmp/evil.fits",
        "/etc/passwd",
        "%2e%2e/x.fits",
        "..%2fy.fits",
        "primary/../../escape.fits",
        "/cdaftp/byobsid/3/1844/oif.fits",
        "https://cxc.cfa.harvard.edu/cdaftp/byobsid/3/oif.fits",
        "primary%2fsneaky.fits",
    ],
)
def test_hrefs_leaving_the_directory_are_unsafe(href):
    page = f'<table><tr><td><a href="{href}">x</a></td></tr><tr><td><a href="ok.fits">ok</a></td></tr></table>'
    entries, unsafe = parse_listing(page, PAGE_URL)
    assert [e.name for e in entries] == ["ok.fits"]
    assert unsafe == [unquote(href)]


@pytest.mark.parametrize(
    "href",
    [
        "?C=N;O=D",
        "?C=M;O=A",
        "#top",
        "mailto:cdaweb@cfa.harvard.edu",
        "/cdaftp/byobsid/3/",  # the parent
        "/cdaftp/",  # an ancestor
        "../",
        "./",
        "http://other.example.org/data/x.fits",
        "oif.fits?download=1",
    ],
)
def test_links_that_are_not_entries_are_ignored(href):
    page = f'<a href="{href}">link</a> 12K <a href="oif.fits">oif.fits</a>'
    entries, unsafe = parse_listing(page, PAGE_URL)
    assert [e.name for e in entries] == ["oif.fits"]
    assert unsafe == []


def test_percent_decoding_and_duplicates():
    page = (
        '<a href="caf%C3%A9.fits">x</a><a href="caf%c3%a9.fits">x</a>'
        '<a href="/cdaftp/byobsid/3/1843/sub%20dir/">sub dir/</a>'
    )
    entries, unsafe = parse_listing(page, PAGE_URL)
    assert unsafe == []
    assert [(e.name, e.is_dir) for e in entries] == [("café.fits", False), ("sub dir", True)]


def test_sizes_never_leak_across_rows():
    page = (
        "<table><tr><td><a href='a.fits'>a.fits</a></td><td></td></tr>"
        "<tr><td>999K</td><td><a href='b.fits'>b.fits</a></td><td>1.0M</td></tr></table>"
    )
    got = by_name(parse_listing(page, PAGE_URL)[0])
    assert got["a.fits"].approx_size is None
    assert got["b.fits"].approx_size == 1024**2


def test_simulator_pages_round_trip(archive_root):
    """Every directory page of a generated ObsId, in every sort order, gives its children."""
    base = archive_root / "byobsid/9/2749"
    files = [rel for rel, _ in iter_files(archive_root, 2749)]
    dirs = {""} | {rel.rsplit("/", 1)[0] + "/" for rel in files if "/" in rel}
    dirs |= {d.rsplit("/", 2)[0] + "/" for d in dirs if d.count("/") > 1}
    for d in sorted(dirs):
        url_path = f"/cdaftp/byobsid/9/2749/{d}"
        want = {p.name: p.is_dir() for p in (base / d).iterdir() if not p.name.startswith(".")}
        for query in ("", "C=S;O=D", "C=M;O=A", "C=N;O=D"):
            html = apache_listing(url_path, base / d, query)
            entries, unsafe = parse_listing(html, f"http://127.0.0.1:8080{url_path}")
            assert unsafe == []
            assert {e.name: e.is_dir for e in entries} == want
            for e in entries:
                if not e.is_dir:
                    real = (base / d / e.name).stat().st_size
                    assert e.approx_size is not None
                    assert abs(e.approx_size - real) <= max(0.06 * real, 1024)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (" 20 ", 20),
        ("0", 0),
        ("112K", 112 * 1024),
        ("2.1M", int(2.1 * 1024**2)),
        ("1.0G", 1024**3),
        ("3T", 3 * 1024**4),
        ("9.5k", int(9.5 * 1024)),
        ("  - ", None),
        ("", None),
        ("2019-06-13 07:42", None),
        ("12Q", None),
    ],
)
def test_parse_size(text, want):
    assert parse_size(text) == want


def test_a_file_and_a_directory_of_one_name_are_both_kept():
    page = '<a href="oif.fits">oif.fits</a> 12K <a href="oif.fits/">oif.fits/</a>'
    entries, _ = parse_listing(page, PAGE_URL)
    assert sorted((e.name, e.is_dir) for e in entries) == [("oif.fits", False), ("oif.fits", True)]


@pytest.mark.parametrize(
    ("page", "is_index"),
    [
        (APACHE_24, True),
        ("<html><title>Index of /x/</title><a href='a.fits'>a</a></html>", True),  # nginx
        ('<a href="../">../</a><a href="a.fits">a.fits</a>', True),  # a parent link
        ("<html><title>Welcome</title><a href='help.html'>help</a></html>", False),
        ("<html><title>200 Service Unavailable</title><h1>Try later</h1></html>", False),
    ],
)
def test_pages_that_are_not_directory_indexes_say_so(page, is_index):
    assert parse_page(page, PAGE_URL).is_index is is_index


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("1.0K", 1024, 2048),  # at least 1 KiB above what is shown
        ("2.1M", int(2.15 * 1024**2), int(2.2 * 1024**2) + 1),
        ("12K", int(12.5 * 1024), 13 * 1024 + 1024 + 1),
        ("1.2G", int(1.25 * 1024**3), int(1.3 * 1024**3) + 1),
    ],
)
def test_size_ceiling_covers_the_rounding_and_no_more(text, low, high):
    """The most bytes a rounded size can stand for: above every size it rounds from."""
    assert low <= size_ceiling(text) <= high
    assert size_ceiling("-") is None


# nginx autoindex and Python's http.server end their pages like this.
NGINX_END = '<a href="z.fits">z.fits</a>   13-Jun-2019 07:42    2000\n</pre><hr></body>\n</html>\n'
PYTHON_END = '<li><a href="z.fits">z.fits</a></li>\n</ul>\n<hr>\n</body>\n</html>\n'


def test_whole_pages_end_their_html_and_cut_ones_do_not(archive_root) -> None:
    """A listing without Content-Length is taken only when it ends its HTML (a cut table
    would silently drop files)."""
    whole = [APACHE_24, APACHE_PRE, NGINX_END, PYTHON_END, NGINX_END.upper()]
    whole.append(apache_listing("/cdaftp/byobsid/9/2749/", archive_root / "byobsid/9/2749"))
    for page in whole:
        raw = page.encode()
        assert ends_html(raw), page[-80:]
        assert not ends_html(raw[: len(raw) * 2 // 3])
        assert not ends_html(raw[: raw.lower().rindex(b"</html>") + 6])
