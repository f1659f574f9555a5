"""The ``find_chandra_obsid`` command: CIAO's search, then this project's downloads.

``find_chandra_obsid arg [dec] [radius=1] [download=none|ask|all] [instrument=...]
[grating=...] [detail=basic|obsid|all] [mirror=...] [verbose=1]``, in CIAO's ``name=value``
form (unique prefixes allowed, as CIAO's parameter files do; CIAO's own parameters win a
prefix over this command's extra options, so ``in=`` is ``instrument=``) or as ``--name value``
options. An unknown ``name=`` is an error naming it.
The table printed for each ``detail`` is CIAO's, character for character.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence

from ._version import __version__
from .cli_common import add_tls_options, mirror_value, network_config
from .config import SessionConfig
from .errors import ChandraDownloadError
from .filetypes import Selection
from .find import GRATINGS, INSTRUMENTS, NameNotResolved, find_chandra_obsids
from .services import ServiceError

PROG = "find_chandra_obsid"
#: CIAO's own parameters (its parameter file), which win prefix matching over our options.
CIAO_PARAMS: tuple[str, ...] = ("arg", "dec", "radius", "download", "instrument", "grating")
CIAO_PARAMS += ("detail", "mirror")
CIAO_PARAMS += ("verbose",)
_PARAM_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
EPILOG = """examples:
  find_chandra_obsid m87
  find_chandra_obsid 1843 radius=5 detail=all
  find_chandra_obsid 187.706 12.391 instrument=acis grating=none
  find_chandra_obsid "12 30 49.4" "+12 23 28" --radius 3 --detail obsid
  find_chandra_obsid m87 download=all --filetypes repro --outdir data --jobs 8
  find_chandra_obsid m87 download=ask mirror=heasarc
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Find public Chandra observations around a position, an ObsId or a "
        "target name, and optionally download them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # CIAO-style prefixes are expanded before argparse sees them
    )
    p.add_argument("arg", nargs="?", help="ObsId, target name, or RA (with dec)")
    p.add_argument("dec", nargs="?", help="Dec, when arg is an RA (decimal or sexagesimal)")
    p.add_argument("--arg", dest="arg_opt", help=argparse.SUPPRESS)
    p.add_argument("--dec", dest="dec_opt", help=argparse.SUPPRESS)
    p.add_argument("--radius", type=float, default=1.0, help="arcmin (default 1; 0 = covered)")
    p.add_argument("--download", choices=("none", "ask", "all"), default="none")
    p.add_argument("--instrument", choices=tuple(INSTRUMENTS), default="all", type=str.lower)
    p.add_argument("--grating", choices=tuple(GRATINGS), default="all", type=str.lower)
    p.add_argument("--detail", choices=("basic", "obsid", "all"), default="basic")
    p.add_argument("--mirror", action="append", metavar="URL", help="site(s) to download from")
    p.add_argument("--verbose", type=int, default=1, choices=range(6), metavar="0-5")
    g = p.add_argument_group("download options (download=all|ask)")
    g.add_argument("--filetypes", metavar="TYPES", help="types or selections (repro, level2...)")
    g.add_argument("--exclude", metavar="TYPES", help="types not to fetch")
    g.add_argument("--outdir", default=".", help="where the <ObsId>/ directories go")
    g.add_argument("-j", "--jobs", type=int, default=SessionConfig.jobs)
    g.add_argument("--username", help="user name for the mirror")
    g.add_argument("--userpass", help="password for the mirror")
    s = p.add_argument_group("network (searches and downloads)")
    s.add_argument("--timeout", type=float, default=SessionConfig.timeout)
    s.add_argument("--retries", type=int, default=SessionConfig.retries)
    add_tls_options(s)
    for key in ("footprint", "ocat", "cadc", "sesame"):
        s.add_argument(f"--{key}-url", metavar="URL", help=f"the {key} service's base URL")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def ciao_argv(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """CIAO's ``name=value`` tokens as ``--name value``; ``-12.5``-like values kept positional.

    A name may be any unique prefix (``inst=acis``, ``verb=0``), CIAO's parameters first, then
    this command's other options; an unknown name is an error. A token whose part before
    ``=`` is no parameter name (``"NGC 1275=Per A"``) is left alone, as a value.
    """
    names = sorted({o[2:] for a in parser._actions for o in a.option_strings if o[:2] == "--"})
    out: list[str] = []
    for token in argv:
        key, eq, value = token.partition("=")
        key = key.strip().replace("_", "-").lower()
        if eq and _PARAM_NAME.match(key) and not token.startswith("-"):
            out += [f"--{_option(key, names, parser)}", _shield(value)]
        else:
            out.append(_shield(token))
    return out


def _option(key: str, names: list[str], parser: argparse.ArgumentParser) -> str:
    """The option a ``key=`` names: exact, else a unique prefix of CIAO's parameters, else of
    the other options; ambiguous or unknown is a usage error (exit 2)."""
    if key in names:
        return key
    for group in (list(CIAO_PARAMS), [n for n in names if n not in CIAO_PARAMS]):
        hits = sorted(n for n in group if n.startswith(key))
        if len(hits) > 1:
            parser.error(f"ambiguous parameter {key!r}: {', '.join(hits)}")
        if hits:
            return hits[0]
    parser.error(f"unknown parameter {key!r} (see --help for the parameters)")
    raise AssertionError("unreachable")  # parser.error exits


def _shield(token: str) -> str:
    """argparse takes a token starting ``-<digit>`` for an option unless it is a plain
    number; a leading blank keeps a Dec such as ``-0:12:34`` a value (stripped later)."""
    if token[:1] == "-" and (token[1:2].isdigit() or token[1:2] == "."):
        return " " + token
    return token


def _protect(s: str) -> str:
    """CIAO quotes names containing a space."""
    if " " not in s:
        return s
    return '"' + s.replace('"', '\\"') + '"' if '"' in s else f'"{s}"'


def _hms(ra: float) -> str:
    h = ra / 15
    hh, mm = int(h), int((h - int(h)) * 60)
    return f"{hh:02d}:{mm:02d}:{(h - hh - mm / 60) * 3600:04.1f}"


def _dms(dec: float) -> str:
    d = abs(dec)
    dd, mm = int(d), int((d - int(d)) * 60)
    return f"{'-' if dec < 0 else '+'}{dd:02d}:{mm:02d}:{(d - dd - mm / 60) * 3600:05.2f}"


def _where(table) -> str:
    """The search position as CIAO prints it (``ra=10.0 dec=-60.0``): its decimal degrees,
    rounded to 1e-10 degree so sexagesimal input shows no float noise (9.999999999999998)."""
    ra, dec = (repr(round(float(table.meta[k]), 10) + 0.0) for k in ("ra", "dec"))
    return f"ra={ra} dec={dec}"


def format_table(table, detail: str) -> list[str]:
    """The lines CIAO's find_chandra_obsid prints for a result ``table`` and ``detail``."""
    if len(table) == 0:
        return [f"# No observations were found for {_where(table)}"]
    if detail == "obsid":
        return ["# obsid"] + [str(o) for o in table["obsid"]]
    pis = [_protect(str(p)) for p in table["pi"]]
    targets = [_protect(str(t)) for t in table["target"]]
    pw, tw = max(6, *map(len, pis)), max(6, *map(len, targets))
    base = [
        (int(r["obsid"]), float(r["separation"]), str(r["instrument"]), str(r["grating"]),
         float(r["exposure"]))
        for r in table
    ]  # fmt: skip
    if detail == "basic":
        lines = [f"# obsid  sepn   inst grat   time    obsdate {'piname':>{pw}} {'target':>{tw}}"]
        for (o, sep, inst, grat, exp), date, pi, tgt in zip(
            base, table["obsdate"], pis, targets, strict=True
        ):
            lines.append(
                f"{o:<6} {sep:>6.1f} {inst:>6} {grat:>4} {exp:6.1f} {str(date)[:10]} "
                f"{pi:>{pw}} {tgt:>{tw}}"
            )
        return lines
    ras = [str(float(r)) for r in table["ra"]]
    decs = [str(float(d)) for d in table["dec"]]
    rw, dw = max(map(len, ras)), max(map(len, decs))
    lines = [
        f"# obsid sepn  {'inst':>6} {'grat':>4} {'time':>6} {'rastr':>10} {'decstr':>12} "
        f"{'obsdate':>19} {'piname':>{pw}} {'target':>{tw}} {'ra':>{rw}} {'dec':>{dw}}"
    ]
    for i, (o, sep, inst, grat, exp) in enumerate(base):
        lines.append(
            f"{o:<6} {sep:>6.1f} {inst:>6} {grat:>4} {exp:6.1f} {_hms(float(ras[i])):>10} "
            f"{_dms(float(decs[i])):>12} {table['obsdate'][i]} {pis[i]:>{pw}} "
            f"{targets[i]:>{tw}} {ras[i]:>{rw}} {decs[i]:>{dw}}"
        )
    return lines


def _print_help(left: int) -> None:
    print("Download options are:")
    print("    y  - download this ObsId")
    print("    n  - do not download this ObsId")
    if left > 1:
        print(f"    q  - do not download this or the remaining {left - 1} ObsIDs")
        print(f"    a  - download this ObsId and the remaining {left - 1} ObsIDs")
    print("    h  - display this information")


def _answer(left: int, ask: Callable[[str], str]) -> str:
    prompt = "Download [y, n, q, a, h]: " if left > 1 else "Download [y, n, h]: "
    print("")
    while True:
        try:
            reply = ask(prompt)
        except EOFError:
            print("")
            return "q"  # stdin closed: download nothing more
        ans = reply.strip().lower()
        if ans == "h":
            _print_help(left)
        elif ans and ans in "ynqa":
            return ans
        elif ans:
            print(f"Unrecognised option: {reply}")


def ask_obsids(table, ask: Callable[[str], str] = input) -> list[int]:
    """CIAO's ``download=ask`` dialogue: show each match, ask y/n/q/a/h; the chosen ObsIds."""
    n = len(table)
    width = int(math.floor(math.log10(n))) + 1

    def show(i: int) -> None:
        r = table[i]
        print(
            f"{i + 1:{width}d}/{n}: Obsid={r['obsid']} Sepn={float(r['separation']):.1f} "
            f"Inst={r['instrument']} Grat={r['grating']} Exp={float(r['exposure']):.1f} "
            f"ObsDate={str(r['obsdate'])[:10]}"
        )
        print(f"{' ':{width}}  PI={r['pi']} Target={r['target']}")

    print(
        "There was 1 matching observation:\n"
        if n == 1
        else f"There were {n} matching observations:\n"
    )
    for i in range(n):
        show(i)
    print("")
    print("Use h to get help on the download options.")
    chosen: list[int] = []
    for i in range(n):
        left = n - i
        print("")
        show(i)
        opt = _answer(left, ask)
        if opt == "q":
            if left > 1:
                print(f"Skipping the remaining {left} ObsIDs.")
            break
        if opt == "y":
            chosen.append(int(table["obsid"][i]))
        elif opt == "a":
            if left > 1:
                print(f"Downloading the remaining {left} ObsIDs.")
            chosen.extend(int(o) for o in table["obsid"][i:])
            break
    print("")
    if len(chosen) == 1:
        print(f"Selected ObsID: {chosen[0]}\n")
    elif chosen:
        print(f"Selected ObsIDs: {', '.join(map(str, chosen))}\n")
    return chosen


def _error(message: str) -> None:
    print(f"# {PROG} ({__version__}): ERROR {message}", file=sys.stderr)


def _download(args: argparse.Namespace, obsids: list[int], config: SessionConfig) -> int:
    from .api import download
    from .progress import Reporter

    results = download(
        obsids,
        args.filetypes,
        mirror_value([m for m in (args.mirror or []) if m.strip()]),
        args.username,
        args.userpass,
        exclude=args.exclude,
        outdir=args.outdir,
        config=config,
        reporter=Reporter(),
    )
    if not results.ok:
        _error(results.summary())
        return 1
    return 0


def main(argv: Sequence[str] | None = None, ask: Callable[[str], str] = input) -> int:
    """Run the command; 0 when the search ran (matches or none), 1 when a service (or a
    download) failed, 2 for a bad argument. ``ask`` reads ``download=ask`` answers."""
    parser = build_parser()
    args = parser.parse_args(ciao_argv(list(sys.argv[1:] if argv is None else argv), parser))
    arg = (args.arg_opt if args.arg_opt is not None else args.arg or "").strip()
    dec = (args.dec_opt if args.dec_opt is not None else args.dec or "").strip()
    if not arg:
        parser.error("a position (RA and Dec), ObsId or target name must be given")
    from .log import set_verbosity

    set_verbosity(args.verbose)  # verbose=2..5 shows the service requests, as CIAO's does
    try:
        Selection(args.filetypes, args.exclude)
        config = network_config(args)
        if args.download != "none":
            _check_mirrors(args, config)
        table = find_chandra_obsids(
            arg, dec or None, radius=args.radius, instrument=args.instrument,
            grating=args.grating, config=config, footprint_url=args.footprint_url,
            ocat_url=args.ocat_url, cadc_url=args.cadc_url, sesame_url=args.sesame_url,
        )  # fmt: skip
    except (ValueError, ChandraDownloadError, KeyboardInterrupt) as exc:
        return _failed(exc, bad_input=2)
    return _after_search(args, table, config, ask)


def _check_mirrors(args: argparse.Namespace, config: SessionConfig) -> None:
    """Refuse a bad mirror before any search, as download_chandra_obsid's setup does (a
    ValueError naming it); nothing is contacted."""
    from .sources import choose_source

    for mirror in [m for m in (args.mirror or []) if m.strip()] or [None]:
        choose_source(mirror, config, args.username, args.userpass).close()


def _after_search(args: argparse.Namespace, table, config: SessionConfig, ask) -> int:
    say = print if args.verbose >= 1 else (lambda *a, **k: None)
    if args.download == "none":
        for line in format_table(table, args.detail):
            say(line)
        return 0
    if len(table) == 0:
        say(f"No observations were found for {_where(table)}")
        return 0
    obsids = [int(o) for o in table["obsid"]] if args.download == "all" else ask_obsids(table, ask)
    if not obsids:
        say("No data has been selected for download.")
        return 0
    try:
        return _download(args, obsids, config)
    except (ValueError, ChandraDownloadError, KeyboardInterrupt) as exc:
        return _failed(exc, bad_input=1)


def _failed(exc: BaseException, bad_input: int) -> int:
    """Tell why the command stops, on one line; the exit status: 130 when interrupted, 1 when
    a service failed or no resolver knows the name, else ``bad_input``."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"# {PROG} ({__version__}): Keyboard interrupt (control-c)", file=sys.stderr)
        return 130  # CIAO's line has no ERROR in it
    _error(str(exc))
    return 1 if isinstance(exc, (ServiceError, NameNotResolved)) else bad_input


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
