"""The ``download_chandra_obsid`` command: CIAO's arguments, options and output, and more.

Exit status: 0 when everything asked for is complete; 1 when anything is missing or failed,
including ObsIds that could not be listed because a site is unusable (CIAO always exits 0: the
one deliberate difference); 2 for a bad argument or a setup error (unknown type or site,
malformed URL); 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .cli_common import add_tls_options, mirror_value, network_config
from .config import SessionConfig
from .credentials import mask_url
from .errors import ChandraDownloadError
from .filetypes import DESCRIPTIONS, FILETYPES, Selection, named_selections
from .log import (
    GuardedStdout,
    command_line_output,
    stdout_closed,
    stdout_error,
    stdout_failed,
    vlog,
)
from .obsids import list_file, parse_obsid_args
from .output import list_table
from .progress import Reporter, shown
from .results import Results

PROG = "download_chandra_obsid"
PREFIX = f"# {PROG} ({__version__}):"

COPYRIGHT = """
Copyright (C) the chandra-download authors.

This program is free software, distributed under the BSD 3-Clause License.
It is not part of CIAO; it implements the interface of CIAO's download_chandra_obsid
(Copyright (C) Smithsonian Astrophysical Observatory) so that it can be used in its place.
"""

EPILOG = """examples:
  download_chandra_obsid 1843
  download_chandra_obsid 1842,1843 evt2,asol,bpix
  download_chandra_obsid 1842-1850 --exclude evt1,vvref --jobs 8
  download_chandra_obsid @obsids.txt --mirror heasarc --outdir data
  download_chandra_obsid 1843 --list --json -
  download_chandra_obsid 1843 --check

exit status: 0 all complete; 1 anything missing, including ObsIds a site could not list
(CIAO's tool exits 0); 2 bad argument or setup error (unknown type or site, malformed URL);
130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Download public Chandra data by ObsId from the Chandra Data Archive "
        "or a mirror (HTTPS, FTP, S3 or a local directory).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("obsids", nargs="?", help="ObsIds: 1843 | 1842,1843 | 1842-1850 | @file")
    p.add_argument("filetypes", nargs="?", help="comma-separated file types or @file")
    p.add_argument(
        "--exclude", metavar="TYPES", help="file types not to fetch (comma list or @file)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no screen output")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    p.add_argument("-c", "--copyright", action="store_true", help="print the copyright and exit")
    p.add_argument(
        "-t", "--filetypes", dest="show_types", action="store_true", help="list the file types"
    )
    p.add_argument(
        "-m",
        "--mirror",
        action="append",
        metavar="URL",
        help="site up to byobsid/ (https/http/ftp/ftps/s3/file URL, directory, or "
        "cda, heasarc, aws); repeat for a fallback list; default $CDA_MIRROR_SITE or cda",
    )
    p.add_argument(
        "-d", "--debug", action="store_true", help="verbose level 3 and tracebacks on errors"
    )
    p.add_argument("--tracebackdebug", action="store_true", help="tracebacks on errors")
    p.add_argument(
        "--verbose", type=int, default=1, choices=range(6), metavar="N", help="verbosity 0-5"
    )
    _add_ours(p)
    _add_reproc_options(p)
    _add_cluster_options(p)
    _add_pipeline_options(p)
    return p


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    """HTTP/1.1 pipelining of small files (issue 19.1; pipeline's block)."""
    depth = SessionConfig.pipeline_depth
    p.add_argument(
        "--pipeline-depth",
        type=int,
        default=depth,
        metavar="N",
        help="HTTP GETs of small files sent back to back on one connection; 1 = off "
        f"(default {depth})",
    )


def _add_ours(p: argparse.ArgumentParser) -> None:
    """Options CIAO's tool does not have."""
    p.add_argument("--username", help="user name for the mirror (FTP or HTTP)")
    p.add_argument("--userpass", help="password for the mirror")
    p.add_argument("--outdir", default=".", help="where the <ObsId>/ directories go (default .)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="show what would be fetched; no writes")
    mode.add_argument(
        "--check", action="store_true", help="audit the local tree against the archive; no writes"
    )
    p.add_argument("--json", metavar="FILE", help="also write a JSON report to FILE (- = stdout)")
    cfg = SessionConfig
    p.add_argument("-j", "--jobs", type=int, default=cfg.jobs, help=f"default {cfg.jobs}")
    p.add_argument("--retries", type=int, default=cfg.retries, help=f"default {cfg.retries}")
    p.add_argument(
        "--timeout", type=float, default=cfg.timeout, help=f"seconds (default {cfg.timeout:g})"
    )
    p.add_argument(
        "--split-size",
        type=_size_arg,
        default=cfg.split_threshold,
        metavar="SIZE",
        help="fetch files at least this large (32M, 1G) as ranged parts; 0 = never "
        f"(default {cfg.split_threshold // 2**20}M)",
    )
    p.add_argument("--no-verify", action="store_true", help="no gzip CRC / FITS checksum checks")
    p.add_argument(
        "--repair", action="store_true", help="re-fetch complete files that fail their checks"
    )
    p.add_argument(
        "--no-status", action="store_true", help="do not ask the catalogue why ObsIds are missing"
    )
    p.add_argument("--no-fsync", action="store_true", help="do not flush files before renaming")
    add_tls_options(p)
    p.add_argument("--aws-profile", metavar="NAME", help="AWS profile for s3:// (default: none)")
    p.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint for s3://")
    p.add_argument("--no-progress", action="store_true", help="no live progress bars")


# -- reprocessing, records, manifests (issue 16; reproc's block) ---------------------------
def _add_reproc_options(p: argparse.ArgumentParser) -> None:
    """A dynamic archive: superseded revisions, manifests, exact reproduction."""
    p.add_argument(
        "--prune-superseded",
        action="store_true",
        help="move local files the archive has reprocessed (a higher N00x) to "
        "<outdir>/superseded/<ObsId>/ once the new revision is complete; never deleted",
    )
    p.add_argument(
        "--manifest",
        metavar="FILE",
        help="also write a manifest (JSON: per file size, sha256, processing version, "
        "Last-Modified/ETag, what was checked) after a download, --list or --check",
    )
    p.add_argument(
        "--frozen",
        metavar="FILE",
        help="fetch exactly the files of a manifest, each verified by sha256 (OBSIDS may be "
        "omitted); with --check: audit the local files against it by sha256",
    )


def _reproc_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """The API keywords of the options above, for a download."""
    out: dict[str, object] = {}
    if args.prune_superseded:
        out["prune_superseded"] = True
    if args.manifest:
        out["manifest"] = args.manifest
    return out


def _reproc_problem(args: argparse.Namespace) -> str | None:
    """A bad use of the options above, before anything is fetched."""
    if args.manifest and not _writable(args.manifest):
        return f"cannot write the manifest to {args.manifest}: no such directory or no permission"
    if getattr(args, "scheduler", None) and (args.manifest or args.frozen or args.prune_superseded):
        return "--manifest, --frozen and --prune-superseded run on one machine, not --scheduler"
    if args.frozen and args.list:
        return "--frozen fetches (or with --check, audits) a manifest's files; not with --list"
    return None


def _check_manifest(args: argparse.Namespace, audit: Any) -> None:
    """``--check --manifest FILE``: the manifest of the audited tree."""
    from .manifest import write_results

    if args.manifest and audit.listing is not None:
        sites = args.mirror or [os.environ.get("CDA_MIRROR_SITE") or "cda"]
        selection = {
            "obsids": [a.obsid for a in audit.obsids],
            "filetypes": args.filetypes,
            "exclude": args.exclude,
        }
        types = Selection(args.filetypes, args.exclude)
        write_results(audit.listing, args.manifest, sites=sites, selection=selection, types=types)


def _frozen(
    args: argparse.Namespace, obsids: list[int], config: SessionConfig, rep: Reporter, verbose: int
) -> int:
    """``--frozen FILE``: fetch exactly its files; with ``--check``, audit them by sha256."""
    from .api import download
    from .frozen import audit
    from .manifest import read

    if args.check:
        report = audit(read(args.frozen), args.outdir)
        if verbose >= 1:
            print("\n".join(report.lines(verbose)))
        return 0 if report.ok else _incomplete(report.lines()[-1])
    with shown(rep):
        results = download(
            obsids, mirror=mirror_value(args.mirror), username=args.username,
            userpass=args.userpass, outdir=args.outdir, config=config, reporter=rep,
            frozen=args.frozen,
        )  # fmt: skip
    for fr in results.files:
        if not fr.ok:
            error(f"ObsId {fr.obsid}: {fr.relpath}: {fr.reason}")
    return 0 if results.ok else _incomplete(results.summary())


# -- job arrays and Dask clusters (issue 15; cluster's block) ---------------------------------
def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Past one machine: a part of the ObsId list, or a Dask cluster."""
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="only the K-th of N parts of the ObsId list (positions K, K+N, ...): one task "
        "of a job array (e.g. --shard $SLURM_ARRAY_TASK_ID/100)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster of this scheduler (tcp://host:8786); needs "
        "chandra-download[dask] and an output directory the workers share",
    )
    p.add_argument(
        "--connections",
        type=int,
        metavar="N",
        help="with --scheduler: the most connections to a site at once, cluster-wide (default 8)",
    )


def _sharded(args: argparse.Namespace, obsids: list[int]) -> list[int]:
    """The ObsIds of ``--shard`` (all without it); a bad value is a ValueError (exit 2)."""
    from .shard import parse_shard, select

    if args.connections is not None and not args.scheduler:
        raise ValueError("--connections needs --scheduler")
    if args.connections is not None and args.connections < 1:
        raise ValueError(f"--connections {args.connections}: must be at least 1")
    if args.scheduler and (args.list or args.check):
        raise ValueError("--scheduler runs downloads only (not --list or --check)")
    return select(obsids, parse_shard(args.shard)) if args.shard is not None else obsids


def _empty_shard(args: argparse.Namespace, obsids: list[int]) -> bool:
    """A shard with no ObsIds (more parts than ObsIds): nothing to do, said once."""
    if args.shard and not obsids:
        vlog(1, "Shard %s of the ObsId list is empty: nothing to do", args.shard)
        return True
    return False


def _downloader(args: argparse.Namespace, verbose: int) -> Any:
    """chandra_download.download, or the same through the Dask scheduler of --scheduler."""
    from functools import partial

    from .api import download

    if not args.scheduler:
        return download
    from .cluster import cli_download

    show = verbose >= 1 and args.json != "-"
    return partial(cli_download, args.scheduler, args.connections or 8, blocks=show)


def _superseded_listing(results: Results, verbose: int) -> None:
    """``--list``: the local files the archive has reprocessed, after the table."""
    from .revisions import superseded_lines

    if verbose >= 1:
        for line in superseded_lines(results):
            print(line)


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


def print_filetypes(verbose: int = 1) -> None:
    """CIAO's ``-t``: the heading, then the sorted type names wrapped and indented; from
    ``--verbose 2`` also what each type is."""
    import textwrap

    print("The list of valid file types is:\n")
    print(
        textwrap.fill(" ".join(FILETYPES), width=77, initial_indent="   ", subsequent_indent="   ")
    )
    print()
    if verbose >= 2:
        for name in FILETYPES:
            print(f"   {name:<9} {DESCRIPTIONS[name]}")
    # Ours: named selections, accepted wherever a type list is.
    print("Named selections (usable wherever a list of types is):\n")
    for name, description, types in named_selections():
        for text, first in ((description, f"   {name:<7} "), (",".join(types), " " * 11)):
            print(textwrap.fill(text, width=79, initial_indent=first, subsequent_indent=" " * 11))


def error(message: str) -> None:
    """An error line on stderr, in CIAO's form."""
    print(f"{PREFIX} ERROR {message}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system's time limit): stops the session as Ctrl-C does,
    and is reported as what it is."""


def _sigterm(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module's docstring). Standard
    output closed (``>&-``) or unwritable (``> /dev/full``) is one error line, status 1."""
    if sys.stdout is None:  # started with stdout closed: nowhere for CIAO's table
        error("standard output is closed (>&-); redirect it to a file or /dev/null")
        return 1
    given, sys.stdout = sys.stdout, GuardedStdout(sys.stdout)  # a full disk: said once
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()
        code = 0
    finally:
        sys.stdout = given
    failed = stdout_error()
    if failed is not None:
        error(f"cannot write to standard output: {failed.strerror or failed}")
        return code or 1
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if _info(args):
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
            return 0
    except BrokenPipeError:
        stdout_closed()
        return 0
    except OSError as exc:
        stdout_failed(exc)
        return 1
    if not args.obsids and not args.frozen:
        parser.error("the ObsIds argument is required")
    verbose = 3 if args.debug else 0 if args.quiet else args.verbose
    show_tb = args.debug or args.tracebackdebug
    try:  # a bad value is one CIAO error line (argparse's usage is for bad syntax)
        obsids, config = _values(args)
    except ValueError as exc:
        if show_tb:
            traceback.print_exc()
        error(str(exc))
        return 2
    if args.json and args.json != "-" and not _writable(args.json):
        error(f"cannot write the JSON report to {args.json}: no such directory or no permission")
        return 2
    problem = _reproc_problem(args)
    if problem:
        error(problem)
        return 2
    command_line_output(verbose, PREFIX, stdout_taken=args.json == "-")
    vlog(3, "%s: %s", PROG, __version__)
    for m in args.mirror or [os.environ.get("CDA_MIRROR_SITE") or "cda (the default)"]:
        vlog(3, "Using site: %s", mask_url(m))
    reporter = _reporter(args, verbose)
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the logger has shown them
            return _dispatch(args, obsids, config, reporter, verbose)
    except KeyboardInterrupt as exc:
        reporter.silence()
        _interrupted(reporter, isinstance(exc, Terminated))
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        stdout_closed()
        return 0
    except (ValueError, ChandraDownloadError) as exc:
        if show_tb:
            traceback.print_exc()
        error(str(exc))
        return 2
    except Exception as exc:  # a bug: one line unless asked for the traceback
        if show_tb:
            traceback.print_exc()
        error(f"internal error: {exc!r} (run with --debug for the traceback)")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _info(args: argparse.Namespace) -> bool:
    """CIAO's print-and-exit options; True when one was given."""
    if args.version:
        print(__version__)
    elif args.copyright:
        print(COPYRIGHT)
    elif args.show_types:
        print_filetypes(args.verbose)
    else:
        return False
    return True


def types_arg(text: str | None) -> str | None:
    """A list of types as given (``evt2,asol``), each ``@file`` in it replaced by the file's
    types: one or more a line, blank lines and ``#`` comments ignored.

    Raises
    ------
    ValueError
        A file that cannot be read (one line naming it).
    """
    if text is None:
        return None
    out: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part.startswith("@"):
            out.append(part)
            continue
        types = _types_in(Path(part[1:]))
        if not types:
            raise ValueError(f"The file type list {part[1:]} holds no types")
        out.extend(types)
    return ",".join(out)


def _types_in(path: Path) -> list[str]:
    """The types an ``@file`` lists, or ValueError naming the file."""
    return list_file(path, "file type list")


def _values(args: argparse.Namespace) -> tuple[list[int], SessionConfig]:
    """The ObsIds and the session's settings; the type lists' @files read into ``args``."""
    obsids = _sharded(args, parse_obsid_args(args.obsids)) if args.obsids else []
    args.filetypes = types_arg(args.filetypes)
    args.exclude = types_arg(args.exclude)
    Selection(args.filetypes, args.exclude)
    return obsids, _config(args)


def _writable(path: str) -> bool:
    """Whether a report can be written there, asked before anything is fetched."""
    target = os.path.abspath(path)
    if os.path.isdir(target):
        return False
    if os.path.exists(target):
        return os.access(target, os.W_OK)
    return os.access(os.path.dirname(target), os.W_OK)


def _config(args: argparse.Namespace) -> SessionConfig:
    return network_config(
        args,
        split_threshold=args.split_size,
        verify_checksums=not args.no_verify,
        fsync=not args.no_fsync,
        profile=args.aws_profile,
        endpoint_url=args.endpoint_url,
        repair=args.repair,
        pipeline_depth=args.pipeline_depth,
    )


def _reporter(args: argparse.Namespace, verbose: int) -> Reporter:
    bars = (
        not args.no_progress
        and not (args.list or args.check)
        and verbose >= 1
        and sys.stdout.isatty()
        and args.json != "-"
    )
    if bars:
        from .display import RichReporter

        return RichReporter()
    reporter = Reporter()
    if args.list or args.check or args.json == "-":
        reporter.silence()  # their own output replaces CIAO's blocks
    return reporter


def _interrupted(reporter: Reporter, terminated: bool = False) -> None:
    c = reporter.counts
    left = c["queued"] - c["downloaded"] - c["present"] - c["failed"] - c["skipped"]
    what = "Terminated (SIGTERM)" if terminated else "Keyboard interrupt (control-c)"
    print(
        f"{PREFIX} {what}: {c['downloaded']} file(s) downloaded, "
        f"{c['present']} already present, {c['failed']} failed, {max(left, 0)} not finished; "
        "partial files are kept and resumed by the next run",
        file=sys.stderr,
    )


def _dispatch(
    args: argparse.Namespace, obsids: list[int], config: SessionConfig, rep: Reporter, verbose: int
) -> int:
    from . import report

    if args.frozen:
        return _frozen(args, obsids, config, rep, verbose)
    if _empty_shard(args, obsids):
        return 0
    mirror = mirror_value(args.mirror)
    common = dict(outdir=args.outdir, config=config, status=not args.no_status)
    if args.check:
        from .audit import check, print_report

        audit = check(
            obsids, args.filetypes, mirror, args.username, args.userpass, exclude=args.exclude,
            **common,
        )  # fmt: skip
        if args.json:
            report.write(report.audit_report(audit), args.json)
        if verbose >= 1 and args.json != "-":
            print_report(audit, verbose)
        _base_hint(args, audit.listing or [], audit.mirror)
        _check_manifest(args, audit)
        return 0 if audit.ok else _incomplete(audit.summary())
    kwargs = dict(excludes=args.exclude, list_only=args.list, reporter=rep, **common)
    kwargs.update(_reproc_kwargs(args))
    fetch = _downloader(args, verbose)
    with shown(rep):
        results = fetch(obsids, args.filetypes, mirror, args.username, args.userpass, **kwargs)
    if args.json:
        report.write(report.results_report(results, "list" if args.list else "download"), args.json)
    if args.list:
        if verbose >= 1 and args.json != "-":
            print("\n".join(list_table(results, rep.mirror)))
            _superseded_listing(results, verbose)
        ok = all(r.found and not r.failures for r in results)
    else:
        _totals(results, verbose)
        ok = results.ok
    _base_hint(args, results, rep.mirror)
    # A selection that matches no file at all fetched nothing that was asked for; one that
    # some ObsIds lack (arf of imaging ObsIds) is only said ("No files found"). --list and
    # --check follow the same rule.
    ok = ok and any(r.files for r in results)
    return 0 if ok else _incomplete(results.summary())


def _base_hint(args: argparse.Namespace, results: Sequence, mirror: bool) -> None:
    """Every ObsId not found on a mirror, and a sign that the base given is not the
    archive's: several ObsIds, or a directory without ``byobsid/``. One ObsId missing from
    a partial mirror is no such sign (an HTTP site's own "not found" checks ``byobsid/``)."""
    if not (mirror and results and all(not r.found and not r.error for r in results)):
        return
    sites = args.mirror or [os.environ.get("CDA_MIRROR_SITE") or ""]
    if len(results) < 2 and not any(_lacks_byobsid(m) for m in sites):
        return
    print(
        f"{PREFIX} is {' or '.join(mask_url(m) for m in sites)} the archive's base, up to "
        "byobsid/? e.g. https://cxc.cfa.harvard.edu/cdaftp/",
        file=sys.stderr,
    )


def _lacks_byobsid(mirror: str) -> bool:
    """A local mirror directory with no ``byobsid/`` in it (a remote site: False)."""
    from .sources import expand_mirror

    url = expand_mirror(mirror)
    if "://" in url and not url.startswith("file://"):
        return False
    path = Path(url.removeprefix("file://")).expanduser()
    return path.is_dir() and not (path / "byobsid").is_dir()


def _incomplete(summary: str) -> int:
    error(summary)
    return 1


def _totals(results: Results, verbose: int) -> None:
    """Verbose 2 and up: the session's counts (CIAO prints none; level 1 stays CIAO's)."""
    if verbose < 2:
        return
    files = results.files
    moved = sum(f.bytes_transferred for f in files)
    by = {s: sum(1 for f in files if f.status.value == s) for s in ("downloaded", "resumed")}
    unlisted = sum(1 for r in results if r.error and not r.found)
    missing = sum(1 for r in results if not r.found and not r.error)
    vlog(
        2,
        "Session: %d ObsId(s), %d not found, %d could not be listed; %d file(s) downloaded, "
        "%d resumed, %d already present, %d not complete; %d bytes moved.",
        len(results),
        missing,
        unlisted,
        by["downloaded"],
        by["resumed"],
        sum(1 for f in files if f.ok) - by["downloaded"] - by["resumed"],
        len([f for f in files if not f.ok]),
        moved,
    )


#: The cyclic collector's first threshold for the command's own process (Python's is 700):
#: a download makes many short-lived objects per file, few of them in cycles.
GC_THRESHOLD = 10_000


def _tune_gc() -> None:
    """The command's process only (never a library caller's): what the imports made is kept
    out of every later collection (``gc.freeze``), and the young objects are collected less
    often. A 444-file download spent ~10-14 ms in 23 collections, 3 ms with these."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _one_blas_thread() -> None:
    """The command's process never multiplies matrices: numpy (imported for the FITS sums
    of large files) then starts no OpenBLAS threads, whose start and spin cost ~80 ms of CPU
    per run. A caller's own setting is kept."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def run() -> None:
    """The console entry point: :func:`main`, then exit. After Ctrl-C the process ends at
    once, even while a listing thread still waits on a slow site (worker threads would
    otherwise hold the interpreter's exit); what is on disk is left for the next run, as
    after any crash."""
    _tune_gc()
    _one_blas_thread()
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
