"""Pick a source from a mirror value: one small class per site kind, all behind ``Source``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..config import SessionConfig
from ..credentials import mask_url, resolve_credentials
from .base import Body, RemoteFile, Source, check_relpath, obsid_dir

DEFAULT_SITE = "https://cxc.cfa.harvard.edu/cdaftp/"

#: Short names accepted wherever a mirror is.
NAMED_SITES: dict[str, str] = {
    "cda": DEFAULT_SITE,
    "heasarc": "https://heasarc.gsfc.nasa.gov/FTP/chandra/data/",
    "aws": "s3://nasa-heasarc/chandra/data/",
    "cda-ftp": "ftp://cda.harvard.edu/pub/",
}

__all__ = [
    "Body",
    "DEFAULT_SITE",
    "NAMED_SITES",
    "RemoteFile",
    "Source",
    "check_relpath",
    "choose_source",
    "expand_mirror",
    "obsid_dir",
]


def expand_mirror(mirror: str | None) -> str:
    """Turn a mirror value (None, a site name, a URL or a path) into a URL or path.

    None means ``$CDA_MIRROR_SITE`` when set, else the CDA.
    """
    if mirror is None or mirror == "":
        mirror = os.environ.get("CDA_MIRROR_SITE") or DEFAULT_SITE
    mirror = mirror.strip()
    return NAMED_SITES.get(mirror.lower(), mirror)


def choose_source(
    mirror: str | None,
    config: SessionConfig | None = None,
    username: str | None = None,
    userpass: str | None = None,
) -> Source:
    """Build the source for a mirror value.

    Parameters
    ----------
    mirror : str or None
        ``https://``/``http://``, ``ftp://``/``ftps://``, ``s3://`` URL, ``file://`` URL, a local
        directory, or a site name (``cda``, ``heasarc``, ``aws``). The location up to, not
        including, ``byobsid/``.
    config : SessionConfig, optional
        Session settings.
    username, userpass : str, optional
        Credentials for FTP or HTTP(S) sites (also accepted as userinfo in the URL).

    Raises
    ------
    ValueError
        For a URL scheme or form that is not supported, naming it (password masked).
    """
    config = config or SessionConfig()
    url = expand_mirror(mirror)
    _check_form(url)
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("http", "https"):
        from .http import HTTPSource

        return _with_login(HTTPSource, url, config, username, userpass)
    if scheme in ("ftp", "ftps"):
        from .ftp import FTPSource

        return _with_login(FTPSource, url, config, username, userpass)
    if scheme == "s3":
        from .s3 import S3Source

        if not urlsplit(url).netloc:
            raise ValueError(f"Invalid S3 mirror {mask_url(url)!r}: no bucket name")
        return S3Source(url, config)
    if scheme == "file" or scheme == "":
        from .local import LocalSource

        path = Path(unquote(urlsplit(url).path)) if scheme == "file" else Path(url).expanduser()
        return LocalSource(path, config)
    raise ValueError(
        f"Unsupported mirror {mask_url(url)!r}: use an https://, http://, ftp://, ftps://, s3:// "
        f"or file:// URL, a local directory, or one of {', '.join(NAMED_SITES)}"
    )


def _with_login(
    cls: type[Source],
    url: str,
    config: SessionConfig,
    username: str | None,
    userpass: str | None,
) -> Source:
    """An FTP or HTTP(S) source: credentials out of the URL (or given, or from netrc), and a
    host name required."""
    clean, creds = resolve_credentials(url, username, userpass, config.use_netrc)
    _require_host(clean, url)
    return cls(clean, config, creds)  # type: ignore[call-arg]


def _require_host(clean: str, original: str) -> None:
    parts = urlsplit(clean)
    if not parts.hostname:
        raise ValueError(f"Invalid mirror URL {mask_url(original)!r}: no host name")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(
            f"Invalid mirror URL {mask_url(original)!r}: the port must be a number from 1 to 65535"
        ) from None
    if parts.port == 0:
        raise ValueError(f"Invalid mirror URL {mask_url(original)!r}: port 0")


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def _check_form(url: str) -> None:
    """Refuse, before any connection, values that are neither a URL nor a directory:
    ``ftp:/x`` (a URL missing ``//``) and bare words that are no known site name."""
    if "://" in url:
        return
    match = _SCHEME.match(url)
    if match and not Path(url).expanduser().exists():
        raise ValueError(
            f"Malformed mirror URL {mask_url(url)!r}: expected {match.group(1)}://host/path/"
        )
    if "/" not in url and os.sep not in url and not Path(url).expanduser().exists():
        raise ValueError(
            f"Unknown site {url!r}: use one of {', '.join(NAMED_SITES)}, a URL "
            "(https://, http://, ftp://, ftps://, s3://, file://) or an existing directory"
        )
