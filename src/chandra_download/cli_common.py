"""What the two commands (``download_chandra_obsid``, ``find_chandra_obsid``) share: the TLS
options, the session settings they both take, and the ``--mirror`` value."""

from __future__ import annotations

import argparse

from .config import SessionConfig


def add_tls_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--ca-bundle`` and ``--insecure``."""
    p.add_argument("--ca-bundle", metavar="FILE", help="trusted CA certificates (PEM)")
    p.add_argument("--insecure", action="store_true", help="DO NOT verify TLS certificates")


def network_config(args: argparse.Namespace, **more: object) -> SessionConfig:
    """The session settings of both commands (jobs, retries, timeout, TLS), plus ``more``."""
    return SessionConfig(
        jobs=args.jobs,
        retries=args.retries,
        timeout=args.timeout,
        ca_bundle=args.ca_bundle,
        insecure=args.insecure,
        **more,  # type: ignore[arg-type]
    )


def mirror_value(mirrors: list[str] | None) -> str | list[str] | None:
    """``download()``'s ``mirror`` for the repeated ``--mirror``: a list only when there are
    several (a fallback list), else the one site, else None (the default)."""
    if not mirrors:
        return None
    return mirrors if len(mirrors) > 1 else mirrors[0]
