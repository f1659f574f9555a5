"""Credentials: userinfo in URLs, ~/.netrc, and masking so passwords never reach output."""

from __future__ import annotations

import netrc
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass(frozen=True)
class Credentials:
    """A user name and password. ``repr`` never shows the password."""

    username: str
    password: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"

    __str__ = __repr__


def split_userinfo(url: str) -> tuple[str, Credentials | None]:
    """Remove RFC 3986 userinfo from a URL; return (url without it, percent-decoded credentials)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    creds = Credentials(unquote(user), unquote(password) if sep else "")
    return urlunsplit(parts._replace(netloc=hostport)), creds


def resolve_credentials(
    url: str, username: str | None, userpass: str | None, use_netrc: bool = True
) -> tuple[str, Credentials | None]:
    """Merge credentials from the URL, from arguments and from netrc (in that order of trust).

    Giving the same thing twice with different values is a ValueError, since guessing which
    one the user meant could send a password to the wrong account.
    """
    clean, from_url = split_userinfo(url)
    if from_url is not None:
        if username is not None and username != from_url.username:
            raise ValueError("The user name in the mirror URL differs from the username option")
        if userpass is not None and from_url.password and userpass != from_url.password:
            raise ValueError("The password in the mirror URL differs from the userpass option")
        password = from_url.password or (userpass or "")
        return clean, Credentials(from_url.username, password)
    if username is not None or userpass is not None:
        return clean, Credentials(username or "anonymous", userpass or "")
    if use_netrc:
        host = urlsplit(clean).hostname
        found = netrc_credentials(host) if host else None
        if found is not None:
            return clean, found
    return clean, None


def netrc_credentials(host: str) -> Credentials | None:
    """Look a host up in ``$NETRC`` or ``~/.netrc``; None when absent or unreadable."""
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        return None
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    if not auth:
        return None
    login, _account, password = auth
    return Credentials(login or "anonymous", password or "")


# The userinfo of a URL in any text, whatever the number of slashes after the scheme
# ("ftp:/u:p@h/" is refused as malformed, and its message must not show the password). The
# password runs from the first ":" after the user name to the LAST "@" of the URL (a run
# without white space): a raw "@", ":" or "/" in it is masked too ("https://u:p@ss@host/" ->
# "https://u:***@host/"). Masking too much (an "@" in the path) is safe; showing any is not.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*:/*)(?P<user>[^:/?#\s]*):(?P<pw>\S*)@")


def mask_url(url: str) -> str:
    """Replace any password in a URL (or in URLs inside a text) with ``***``.

    Works for every scheme (``https``, ``ftp``, ``ftps``, ``s3``...), percent-encoded or raw
    ``@`` in the password, and userinfo without a password (left as is: a user name alone is
    not a secret, and it helps debugging).
    """
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def scrub(text: str, secrets: list[str]) -> str:
    """Mask URLs with userinfo and any literal secret in a message."""
    text = mask_url(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
