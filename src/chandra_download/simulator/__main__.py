"""Command line of the archive simulator: ``python -m chandra_download.simulator``.

``generate ROOT`` writes a simulated archive tree; ``serve`` serves one (HTTP/HTTPS here; FTP,
S3 and the search services through ``STARTERS``) until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def _bytes(text: str) -> float:
    """Parse ``1500``, ``2.5e6``, ``10M``, ``512Ki``, ``1G`` (optionally followed by B)."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgG]i?)?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r}")
    return float(m[1]) * _UNITS[(m[2] or "").lower()]


def _obsids(text: str) -> dict[int, str] | list[int]:
    """``1843,2749`` (kinds cycled) or ``1843:acis,6298:hrc``; kinds given for only some
    ObsIds are refused (they were dropped without a word)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        if all(":" in t for t in items):
            kinds = {int(t.split(":")[0]): t.split(":", 1)[1].strip() for t in items}
            return _known_kinds(kinds)
        if any(":" in t for t in items):
            bare = ", ".join(t for t in items if ":" not in t)
            raise argparse.ArgumentTypeError(
                f"a kind for every ObsId or for none: {bare} has none (e.g. 1843:acis,3002:hrc)"
            )
        return [int(t) for t in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of ObsIds: {text!r}") from None


def _known_kinds(kinds: dict[int, str]) -> dict[int, str]:
    from .tree import KINDS

    for obsid, kind in kinds.items():
        if kind not in KINDS:
            raise argparse.ArgumentTypeError(
                f"ObsId {obsid}: unknown kind {kind!r}; use one of {', '.join(KINDS)}"
            )
    return kinds


def _start_http(args: argparse.Namespace, link: Any, faults: Any) -> Any:
    from .http import ArchiveHTTPServer

    auth = (args.user, args.password or "") if args.user else None
    prefix = args.prefix if args.prefix is not None else "/cdaftp/"
    return ArchiveHTTPServer(
        args.root, args.host, args.port, tls=args.tls, link=link, faults=faults,
        prefix=prefix, auth=auth,
    ).start()  # fmt: skip


def _start_ftp(args: argparse.Namespace, link: Any, faults: Any) -> Any:
    from .ftp import ArchiveFTPServer  # written separately; see simulator/ftp.py

    users = {args.user: args.password or ""} if args.user else None
    return ArchiveFTPServer(
        args.root, args.host, args.port, users=users, tls=args.tls, link=link, faults=faults
    ).start()


def _start_s3(args: argparse.Namespace, link: Any, faults: Any) -> Any:
    from .s3 import ArchiveS3Server  # written separately; see simulator/s3.py

    prefix = args.prefix if args.prefix is not None else "chandra/data/"
    return ArchiveS3Server(
        args.root, args.bucket, prefix, host=args.host, port=args.port, faults=faults
    ).start()


def _start_services(args: argparse.Namespace, link: Any, faults: Any) -> Any:
    from .services import ArchiveServicesServer

    server = ArchiveServicesServer(args.root, args.host, args.port, tls=args.tls).start()
    for name, value in server.env().items():
        print(f"export {name}={value}", flush=True)
    return server


# ---- protocol -> starter: each returns a started server with .stop(), .base_url ------------
# (and optionally .ca_file). Add protocols here; `serve --protocol` offers these keys.
STARTERS: dict[str, Callable[[argparse.Namespace, Any, Any], Any]] = {
    "http": _start_http,
    "ftp": _start_ftp,
    "s3": _start_s3,
    "services": _start_services,  # footprint search, catalogue, name resolvers
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chandra-archive-simulator",
        description="Generate and serve a local simulated Chandra Data Archive.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="write a simulated archive tree")
    g.add_argument("root", type=Path, help="directory to write (it will hold byobsid/)")
    g.add_argument(
        "--obsids",
        type=_obsids,
        default=None,
        help="e.g. 1843,2749 or 1843:acis,6298:hrc (default: 1843,2749,6298)",
    )
    g.add_argument("--scale", type=float, default=1.0, help="multiply all sizes")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="TYPE=BYTES",
        help="size of one file type, e.g. evt1=2G (repeatable)",
    )
    r = sub.add_parser("reprocess", help="reprocess ObsIds: next processing version")
    r.add_argument("--root", type=Path, required=True, help="a generated archive root")
    r.add_argument("obsids", type=int, nargs="+", help="ObsIds generated there")
    s = sub.add_parser("serve", help="serve a tree until Ctrl-C")
    s.add_argument(
        "--root",
        type=Path,
        default=None,
        help="archive root (generated with defaults if it holds no byobsid/)",
    )
    s.add_argument("--protocol", choices=sorted(STARTERS), default="http")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="default: a free port")
    s.add_argument("--tls", action="store_true", help="HTTPS (or FTPS) with a private CA")
    s.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    s.add_argument("--conn-bandwidth", type=_bytes, default=None, help="bytes/s per connection")
    s.add_argument("--total-bandwidth", type=_bytes, default=None, help="bytes/s in total")
    s.add_argument("--prefix", default=None, help="URL path of the base (HTTP: /cdaftp/)")
    s.add_argument("--bucket", default="nasa-heasarc", help="S3 bucket name")
    s.add_argument("--user", default=None, help="require this user name (basic auth / FTP)")
    s.add_argument("--password", default=None)
    return p  # fmt: skip


def _generate(args: argparse.Namespace) -> int:
    from .tree import generate_archive

    sizes = {}
    for item in args.size:
        ftype, _, value = item.partition("=")
        sizes[ftype.strip()] = int(_bytes(value))
    root = generate_archive(args.root, args.obsids, scale=args.scale, seed=args.seed, sizes=sizes)
    print(f"Archive written to {root}", flush=True)
    return 0


def _reprocess(args: argparse.Namespace) -> int:
    from .tree import reprocess

    for obsid in args.obsids:
        try:
            done = reprocess(args.root, obsid)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"ObsId {obsid}: N{done.old_version:03d} -> N{done.new_version:03d}: "
            f"{len(done.renamed)} file(s) renamed, {len(done.changed)} changed in place",
            flush=True,
        )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .faults import FaultPlan
    from .link import LinkModel
    from .tree import generate_archive

    if args.root is None:
        args.root = Path(tempfile.mkdtemp(prefix="chandra-archive-"))
    if not (args.root / "byobsid").is_dir():
        print(f"Generating the default archive in {args.root}", flush=True)
        generate_archive(args.root)
    link = LinkModel(args.latency, args.conn_bandwidth, args.total_bandwidth)
    server = STARTERS[args.protocol](args, link, FaultPlan())
    print(f"Serving {args.root}", flush=True)
    print(f"Base URL: {server.base_url}", flush=True)
    if args.protocol == "s3":  # without it, a client goes to the real AWS
        print(f"Endpoint URL: {server.endpoint_url}", flush=True)
        print(
            f"Use: download_chandra_obsid 1843 --mirror {server.base_url} "
            f"--endpoint-url {server.endpoint_url}",
            flush=True,
        )
    if getattr(server, "ca_file", None):
        print(f"CA file: {server.ca_file}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chandra-archive-simulator``; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    if args.command == "reprocess":
        return _reprocess(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
