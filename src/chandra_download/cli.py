"""The ``download_chandra_obsid`` command: CIAO's arguments and options, and more."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from ._version import __version__
from .config import SessionConfig
from .filetypes import DESCRIPTIONS, FILETYPES, Selection
from .log import set_verbosity
from .obsids import parse_obsid_args
from .progress import Reporter, fmt_size
from .results import Results, Status

EPILOG = """examples:
  download_chandra_obsid 1843
  download_chandra_obsid 1842,1843 evt2,asol,bpix
  download_chandra_obsid 1842-1850 --exclude evt1,vvref --jobs 8
  download_chandra_obsid @obsids.txt --mirror heasarc --outdir data
  download_chandra_obsid 1843 --list
  download_chandra_obsid 1843 --check
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="download_chandra_obsid",
        description="Download public Chandra data by ObsId from the Chandra Data Archive "
        "or a mirror (HTTPS, FTP, S3 or a local directory).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("obsids", nargs="?", help="ObsIds: 1843 | 1842,1843 | 1842-1850 | @file")
    p.add_argument("filetypes", nargs="?", help="comma-separated file types (default: all)")
    p.add_argument("--exclude", metavar="TYPES", help="comma-separated file types not to fetch")
    p.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="site up to byobsid/ (https/http/ftp/ftps/s3/file URL, directory, or "
        "cda, heasarc, aws); repeat for a fallback list; default $CDA_MIRROR_SITE or cda",
    )
    p.add_argument("--username", help="user name for the mirror (FTP or HTTP)")
    p.add_argument("--userpass", help="password for the mirror")
    p.add_argument("--outdir", default=".", help="where the <ObsId>/ directories go (default .)")
    p.add_argument("-q", "--quiet", action="store_true", help="no output except errors")
    p.add_argument(
        "-v",
        "--verbose",
        type=int,
        default=1,
        choices=range(6),
        metavar="N",
        help="verbosity 0-5 (default 1)",
    )
    p.add_argument(
        "-t",
        "--filetypes",
        dest="show_types",
        action="store_true",
        help="list the file types and exit",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--list",
        action="store_true",
        help="show what would be fetched (type, size, local state); write nothing",
    )
    mode.add_argument(
        "--check",
        action="store_true",
        help="audit the local tree against the archive and checksums; write nothing",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=SessionConfig.jobs,
        help=f"files transferred at once (default {SessionConfig.jobs}; 1 = CIAO-style)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=SessionConfig.retries,
        help=f"retries per file after a transient failure (default {SessionConfig.retries})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=SessionConfig.timeout,
        help=f"network timeout in seconds (default {SessionConfig.timeout:g})",
    )
    p.add_argument(
        "--split-size",
        type=_size_arg,
        default=SessionConfig.split_threshold,
        metavar="SIZE",
        help="fetch files at least this large (e.g. 32M, 1G) as ranged parts over several "
        f"jobs' connections; 0 = never (default {SessionConfig.split_threshold // 2**20}M)",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check gzip CRCs and FITS checksums of downloaded files",
    )
    p.add_argument(
        "--no-fsync",
        action="store_true",
        help="do not flush files to disk before they take their final names (faster on some "
        "network file systems; a crash may then leave damaged files)",
    )
    p.add_argument("--ca-bundle", metavar="FILE", help="trusted CA certificates (PEM)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="DO NOT verify TLS certificates (unsafe; warned about)",
    )
    p.add_argument(
        "--aws-profile", metavar="NAME", help="AWS profile for s3:// (default: anonymous)"
    )
    p.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint for s3:// mirrors")
    p.add_argument("--no-progress", action="store_true", help="no live progress bars")
    return p


def _size_arg(text: str) -> int:
    """``32M``, ``1.5G``, ``4096``: a size in bytes (K, M, G are powers of 1024)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    try:
        value = float(t[: len(t) - len(unit)]) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 32M)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a size cannot be negative: {text!r}")
    return int(value)


def print_filetypes() -> None:
    print("Supported file types:")
    for name in FILETYPES:
        print(f"  {name:<9} {DESCRIPTIONS[name]}")


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 all complete, 1 not, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.show_types:
        print_filetypes()
        return 0
    if not args.obsids:
        parser.error("the ObsIds argument is required")
    verbose = 0 if args.quiet else args.verbose
    try:
        obsids = parse_obsid_args(args.obsids)
        Selection(args.filetypes, args.exclude)
        config = SessionConfig(
            jobs=args.jobs,
            retries=args.retries,
            timeout=args.timeout,
            split_threshold=args.split_size,
            verify_checksums=not args.no_verify,
            fsync=not args.no_fsync,
            ca_bundle=args.ca_bundle,
            insecure=args.insecure,
            profile=args.aws_profile,
            endpoint_url=args.endpoint_url,
        )
    except ValueError as exc:
        parser.error(str(exc))
    # The handler follows sys.stdout, so lines stay above the bars (which redirect it).
    set_verbosity(verbose)
    use_bars = not args.no_progress and verbose >= 1 and sys.stdout.isatty() and not args.check
    previous = signal.signal(signal.SIGTERM, _sigterm)
    started = time.monotonic()
    try:
        if args.check:
            from .audit import check, print_report

            report = check(
                obsids,
                args.filetypes,
                args.mirror,
                args.username,
                args.userpass,
                exclude=args.exclude,
                outdir=args.outdir,
                config=config,
            )
            print_report(report, verbose)
            return 0 if report.ok else 1
        results = _run(args, obsids, config, use_bars)
    except ValueError as exc:
        print(f"download_chandra_obsid: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "download_chandra_obsid: interrupted; partial files are kept and will be resumed "
            "by the next run",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print_totals(results, time.monotonic() - started, verbose, args.list)
    if args.list:
        # A listing succeeds when every ObsId was found and listed.
        if all(r.found and not r.failures for r in results):
            return 0
        print(f"download_chandra_obsid: {results.summary()}", file=sys.stderr)
        return 1
    if not results.ok:
        print(f"download_chandra_obsid: {results.summary()}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace, obsids: list[int], config: SessionConfig, bars: bool) -> Results:
    from .api import download

    mirror = args.mirror if args.mirror and len(args.mirror) > 1 else (args.mirror or [None])[0]
    kwargs = dict(exclude=args.exclude, outdir=args.outdir, list_only=args.list, config=config)
    if bars:
        from .progress import RichReporter

        with RichReporter() as reporter:
            return download(
                obsids,
                args.filetypes,
                mirror,
                args.username,
                args.userpass,
                reporter=reporter,
                **kwargs,
            )
    return download(
        obsids, args.filetypes, mirror, args.username, args.userpass, reporter=Reporter(), **kwargs
    )


def _print_totals(results: Results, elapsed: float, verbose: int, listing: bool) -> None:
    if verbose < 1:
        return
    files = results.files
    if listing:
        total = sum(f.size or 0 for f in files)
        missing = sum(
            (f.size or 0) - f.local_size
            for f in files
            if f.reason != "present"
            and f.status is Status.PLANNED
            and f.local_size <= (f.size or 0)
        )
        print(f"Total: {len(files)} file(s), {fmt_size(total)}; to fetch: {fmt_size(missing)}.")
        return
    got = sum(f.bytes_transferred for f in files)
    counts = {s: sum(1 for f in files if f.status is s) for s in Status}
    rate = got / elapsed / 1024 / 1024 if elapsed > 0 else 0.0
    print(
        f"Total: {counts[Status.DOWNLOADED]} downloaded, {counts[Status.RESUMED]} resumed, "
        f"{counts[Status.PRESENT]} already present, {counts[Status.SKIPPED]} skipped, "
        f"{counts[Status.FAILED]} failed; {fmt_size(got)} in {elapsed:.1f} s ({rate:.1f} Mb/s)."
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
