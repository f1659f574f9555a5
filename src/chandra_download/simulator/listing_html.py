"""HTML the CDA's Apache 2.4 sends: ``mod_autoindex`` listings, error pages, Content-Types.

Pure functions with no server state, so clients' listing parsers can be tested against the
exact markup without starting a server.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

__all__ = ["apache_listing", "apache_size", "content_type", "error_page"]

_ERROR_PAGE = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>{code} {reason}'
    "</title>\n</head><body>\n<h1>{reason}</h1>\n<p>{text}</p>\n</body></html>\n"
)
_TYPES = (
    (".fits.gz", "application/x-gzip"),
    (".gz", "application/x-gzip"),
    (".fits", "application/fits"),
    (".jpg", "image/jpeg"),
    (".png", "image/png"),
    (".pdf", "application/pdf"),
    (".par", "text/plain"),
    (".log", "text/plain"),
)
# Date shown for the fake entries of a ``traversal`` fault (the generator's MTIME; not
# imported from ``content`` so that the HTTP server does not load numpy).
_MTIME_FALLBACK = 1560411720.0


def error_page(code: int, reason: str, text: str) -> str:
    """Apache's default error document (HTML 2.0), e.g. for ``404 Not Found``."""
    return _ERROR_PAGE.format(code=code, reason=reason, text=text)


def content_type(name: str) -> str:
    """Apache-like Content-Type; ``.gz`` is never announced as a Content-Encoding."""
    low = name.lower()
    for suffix, ctype in _TYPES:
        if low.endswith(suffix):
            return ctype
    return "text/plain" if "." not in low else "application/octet-stream"


def apache_size(size: int) -> str:
    """Size column of mod_autoindex (a port of ``apr_strfsize``): `` 20 ``, ``112K``, ``2.1M``."""
    if size < 973:
        return f"{size:3d} "
    for unit in "KMGTPE":
        remain, size = size & 1023, size >> 10
        if size >= 973:
            continue
        if size < 9 or (size == 9 and remain < 973):
            remain = (remain * 5 + 256) // 512
            if remain >= 10:
                size, remain = size + 1, 0
            return f"{size}.{remain}{unit}"
        return f"{size + (remain >= 512):3d}{unit}"
    return "  - "


def apache_listing(
    url_path: str, directory: Path, query: str = "", extra: Iterable[str] = ()
) -> str:
    """Apache 2.4 ``mod_autoindex`` page (FancyIndexing, HTMLTable) for ``directory``.

    Parameters
    ----------
    url_path : str
        Decoded URL path of the directory (the page title), e.g. ``/cdaftp/byobsid/3/1843/``.
    directory : Path
        Directory whose entries are listed; dot files are left out (the simulator's own temporaries are dot-named).
    query : str
        Query string selecting the sort order, as Apache's ``?C=M;O=D``.
    extra : iterable of str
        Names listed verbatim, unescaped (the ``traversal`` fault).

    Returns
    -------
    str
        The HTML page.
    """
    title = html.escape(url_path.rstrip("/") or "/")
    entries = []
    for e in os.scandir(directory):
        if e.name.startswith("."):
            continue  # like Apache's IndexIgnore .??*
        st = e.stat()
        entries.append((e.name, e.is_dir(), st.st_mtime, -1 if e.is_dir() else st.st_size))
    opts = dict(kv.split("=", 1) for kv in query.replace("&", ";").split(";") if "=" in kv)
    key = {"M": 2, "S": 3}.get(opts.get("C", "N"), 0)
    entries.sort(key=lambda x: (x[key], x[0]), reverse=opts.get("O") == "D")
    parent = url_path.rstrip("/").rsplit("/", 1)[0] + "/"
    rows = [
        '<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td><td><a href="'
        + html.escape(quote(parent))
        + '">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td>'
        "<td>&nbsp;</td></tr>"
    ]
    items = [(n, d, t, s, False) for n, d, t, s in entries]
    items += [(n, False, _MTIME_FALLBACK, 0, True) for n in extra]
    for name, is_dir, mtime, size, raw in items:
        label = name + ("/" if is_dir else "")
        href = label if raw else html.escape(quote(label, safe="$-_.+!*'(),:@&=~/"))
        icon, alt = ("folder.gif", "[DIR]") if is_dir else ("unknown.gif", "[   ]")
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
        rows.append(
            f'<tr><td valign="top"><img src="/icons/{icon}" alt="{alt}"></td>'
            f'<td><a href="{href}">{label if raw else html.escape(label)}</a></td>'
            f'<td align="right">{when}  </td><td align="right">'
            f"{'  - ' if is_dir else apache_size(size)}</td><td>&nbsp;</td></tr>"
        )
    return (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<html>\n <head>\n'
        f"  <title>Index of {title}</title>\n </head>\n <body>\n<h1>Index of {title}</h1>\n"
        '  <table>\n   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th>'
        '<th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th>'
        '<th><a href="?C=S;O=A">Size</a></th><th><a href="?C=D;O=A">Description</a></th></tr>\n'
        '   <tr><th colspan="5"><hr></th></tr>\n'
        + "\n".join(rows)
        + '\n   <tr><th colspan="5"><hr></th></tr>\n</table>\n</body></html>\n'
    )
