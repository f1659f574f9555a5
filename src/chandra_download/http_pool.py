"""What every urllib3 client of the package shares (the sites' and the search services'):
TLS verification from the session's settings and the proxy the environment names."""

from __future__ import annotations

import os
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3

from .config import SessionConfig


def ca_file(config: SessionConfig) -> str:
    """The trusted certificates: ``ca_bundle``, else ``$SSL_CERT_FILE``, else certifi's."""
    return config.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where()


def tls_options(config: SessionConfig) -> dict[str, str]:
    """urllib3 pool keywords verifying certificates, or not at all when ``insecure`` (whose
    per-request warning is then silenced: the session warns once)."""
    if config.insecure:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return {"cert_reqs": "CERT_NONE"}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_file(config)}


def proxy_for(url: str) -> str | None:
    """The proxy from HTTPS_PROXY/HTTP_PROXY for this URL, unless NO_PROXY covers its host."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def pool_manager(proxy: str | None, **kw: Any) -> urllib3.PoolManager:
    """A pool manager going through ``proxy`` when there is one."""
    return urllib3.ProxyManager(proxy, **kw) if proxy else urllib3.PoolManager(**kw)
