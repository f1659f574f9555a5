"""The public functions: CIAO's ``download_chandra_obsids`` and the richer ``download``."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .budget import BudgetedSource, ConnectionBudget
from .config import SessionConfig, configured
from .engine import Engine
from .errors import SourceError
from .filetypes import DESCRIPTIONS, SELECTIONS, Selection
from .log import LOGGER
from .obsids import validate_obsids
from .progress import Reporter, guarded, shown
from .record import record_session, say_changed
from .results import Results
from .revisions import settle_superseded
from .shard import select as select_shard
from .sources import DEFAULT_SITE, NAMED_SITES, Source, choose_source, expand_mirror

if TYPE_CHECKING:
    from .status import CatalogueStatus

ObsIds = Iterable[int | str] | int | str
Mirror = str | Sequence[str] | None
Types = str | Iterable[str] | None


def _mirrors(mirror: Mirror) -> list[str | None]:
    if mirror is None or isinstance(mirror, str):
        return [mirror]
    mirrors: list[str | None] = list(mirror)
    if not mirrors:
        raise ValueError("mirror is an empty list")
    return mirrors


def session_config(config: SessionConfig | None, options: dict[str, Any]) -> SessionConfig:
    """A copy of ``config`` (never the caller's object) with ``options`` applied and checked."""
    return configured(config, options, "download")


def _warn_once(msg: str) -> None:
    # Logged for whoever set up logging, and a Python warning for everyone else; the command
    # line ignores the latter, so each warning is shown once.
    LOGGER.warning(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)


def _auto_reporter(progress: bool | None, mirror: bool) -> Reporter:
    """The library is silent by default, except for a progress display in Jupyter."""
    if progress is not False:
        from .display import NotebookReporter, in_notebook

        if in_notebook():
            return NotebookReporter(mirror)
        if progress:
            import sys

            from .display import RichReporter

            if sys.stderr.isatty():
                return RichReporter(mirror=mirror)
    return Reporter(mirror)


def _catalogue(
    cfg: SessionConfig, status: bool, ocat_url: str | None
) -> Callable[[int], str | None] | None:
    """The observation catalogue's answer to "why is this ObsId missing", when wanted (with
    a short time budget of its own: an outage must not hold up the download's report)."""
    if not status:
        return None
    return _Explainer(cfg, ocat_url)


class _Explainer:
    """``why_missing`` for the engine. A catalogue that cannot be reached is no reason for an
    ObsId to be missing: its failure is said once (a warning; standard error on the command
    line), and the ObsIds' ``why_missing`` stay None. The catalogue's client (and its
    modules: the XML parser...) is made when an ObsId is first missing, not by every run."""

    def __init__(self, cfg: SessionConfig, ocat_url: str | None) -> None:
        self._cfg, self._ocat_url = cfg, ocat_url
        self._made: CatalogueStatus | None = None
        self._lock = threading.Lock()
        self._said = False

    @property
    def _catalogue(self) -> CatalogueStatus:
        with self._lock:
            if self._made is None:
                from .status import CatalogueStatus

                self._made = CatalogueStatus(self._cfg, self._ocat_url)
            return self._made

    def __call__(self, obsid: int) -> str | None:
        why = self._catalogue.why_missing(obsid)
        failure = self._catalogue.unreachable
        if failure is None:
            return why
        with self._lock:
            said, self._said = self._said, True
        if not said:
            _warn_once(f"{failure}: cannot tell why ObsIds are missing")
        return None


def download(
    obsids: ObsIds | None,
    filetypes: Types = None,
    mirror: Mirror = None,
    username: str | None = None,
    userpass: str | None = None,
    *,
    excludes: Types = None,
    exclude: Types = None,
    outdir: str | os.PathLike[str] = ".",
    list_only: bool = False,
    config: SessionConfig | None = None,
    reporter: Reporter | None = None,
    progress: bool | None = None,
    status: bool = True,
    ocat_url: str | None = None,
    prune_superseded: bool = False,
    shard: tuple[int, int] | None = None,
    budget: ConnectionBudget | None = None,
    manifest: str | os.PathLike[str] | None = None,
    frozen: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Results:
    """Download ObsIds and report what happened to every file.

    Parameters
    ----------
    obsids : int, str or iterable of int or str
        ObsIds to fetch. Invalid values raise ValueError before any request. None only
        with ``frozen=`` (every ObsId of the manifest).
    filetypes : str or iterable of str, optional
        Types to fetch (see ``chandra_download.FILETYPES``); None fetches every file.
    mirror : str or list of str, optional
        Site: a URL up to ``byobsid/`` (https, http, ftp, ftps, s3, file), a local directory or
        a name (``cda``, ``heasarc``, ``aws``). Default ``$CDA_MIRROR_SITE``, else the CDA.
        A list is tried in order, per ObsId and per file.
    username, userpass : str, optional
        Credentials for FTP and HTTP(S) sites.
    excludes : str or iterable of str, optional
        Types not to fetch (CIAO's keyword); wins over ``filetypes``. ``exclude`` is an alias.
    outdir : path, default "."
        Files go to ``<outdir>/<ObsId>/``.
    list_only : bool, default False
        Only find out what would be fetched (sizes and local state); write nothing.
    config : SessionConfig, optional
        Session settings; never modified. Keyword ``options`` (``jobs=``, ``retries=``,
        ``timeout=``, ``repair=``, ``insecure=``, ``profile=``...) override its fields.
    reporter : Reporter, optional
        Receives progress events (the command line passes one that draws bars).
    progress : bool, optional
        A live progress display: by default only in a Jupyter notebook; False never, True
        also on a terminal. Ignored when ``reporter`` is given.
    status : bool, default True
        Ask the observation catalogue why a missing ObsId is missing (``why_missing``); its
        failure never changes the outcome.
    ocat_url : str, optional
        The catalogue's base URL up to and including ``srservices/`` (default
        ``$CHANDRA_OCAT_URL``, else the CDA's).
    prune_superseded : bool, default False
        Move local files the archive has reprocessed under a higher processing version
        (``ObsIdResult.superseded``) to ``<outdir>/superseded/<ObsId>/``, once the new
        revision of each is complete and verified; never deleted. Without it they are said.
    shard : (int, int), optional
        ``(K, N)``: only the K-th of N parts of ``obsids`` (positions K, K+N, K+2N... of the
        list as given, 1-based): the same on every run and machine, for job arrays.
    budget : ConnectionBudget, optional
        A lease of it held by each socket open to a site (a cluster's shared budget, see
        :mod:`chandra_download.budget`); by default ``jobs`` alone bounds connections.
    manifest : path, optional
        Also write a manifest of the session (:mod:`chandra_download.manifest`): per file
        its size, sha256, processing version, the site's Last-Modified/ETag, what was checked.
    frozen : path, optional
        A manifest to reproduce exactly (:func:`chandra_download.frozen.reproduce`): its
        files are fetched into the same relative paths, each verified by sha256; ``obsids``
        may then be None (all of its ObsIds) or restrict it. ``filetypes`` are ignored.

    Returns
    -------
    Results
        One :class:`ObsIdResult` per ObsId, in order, each listing its files' outcomes.
    """
    if frozen is not None:
        return _reproduce(
            frozen, obsids, mirror, username, userpass, outdir, reporter, config, options
        )
    if obsids is None:
        raise TypeError("download() needs the ObsIds (None only with frozen=)")
    ids = select_shard(validate_obsids(obsids), shard)
    selection = _selection(filetypes, excludes, exclude)
    if selection.conflicts:
        _warn_once(
            f"File type(s) {', '.join(selection.conflicts)} both requested and excluded: excluded"
        )
    cfg = session_config(config, options)
    if cfg.insecure:
        _warn_once("TLS certificate verification is OFF (insecure): data could be tampered with")
    mirrors = _mirrors(mirror)
    with _sources(mirrors, cfg, username, userpass) as sources:
        if budget is not None:
            sources = [BudgetedSource(s, budget) for s in sources]
        is_mirror = expand_mirror(mirrors[0]).rstrip("/") != DEFAULT_SITE.rstrip("/")
        rep = _start_reporter(reporter, progress, ids, is_mirror)
        engine = Engine(sources, cfg, rep, explain=_catalogue(cfg, status, ocat_url))
        with shown(rep) if reporter is None else nullcontext():
            items = engine.run(ids, selection, Path(outdir), list_only=list_only)
    if not list_only:
        record_session(Path(outdir), items, cfg.verify_checksums, cfg.fsync, engine.ctx.records)
        say_changed(items)
    settle_superseded(items, Path(outdir), prune_superseded, list_only)
    if manifest is not None:
        from .manifest import write_results

        selected = {"obsids": ids, "filetypes": filetypes, "exclude": selection.excluded or None}
        write_results(
            items, manifest, sites=mirrors, selection=selected, verify=cfg.verify_checksums
        )
    # The same download again, with the settings this one resolved (config, not options).
    rerun = partial(
        download,
        ids,
        filetypes,
        mirror,
        username,
        userpass,
        excludes=selection.excluded or None,
        outdir=outdir,
        list_only=list_only,
        config=cfg,
        reporter=reporter,
        progress=progress,
        status=status,
        ocat_url=ocat_url,
        prune_superseded=prune_superseded,
        budget=budget,
        manifest=manifest,
    )
    return Results(items, rerun=rerun)


def _reproduce(
    frozen: str | os.PathLike[str],
    obsids: ObsIds | None,
    mirror: Mirror,
    username: str | None,
    userpass: str | None,
    outdir: str | os.PathLike[str],
    reporter: Reporter | None,
    config: SessionConfig | None,
    options: dict[str, object],
) -> Results:
    """``download(frozen=...)``: exactly a manifest's files, each verified by sha256."""
    from .frozen import reproduce
    from .manifest import read

    wanted = read(frozen)
    ids = validate_obsids(obsids) if obsids not in (None, [], ()) else None
    return reproduce(
        wanted, mirror, username, userpass, outdir=outdir, obsids=ids, reporter=reporter,
        config=config, **options,
    )  # fmt: skip


def _selection(filetypes: Types, excludes: Types, exclude: Types) -> Selection:
    """The file selection; ``exclude`` is an alias of CIAO's ``excludes``, not a second list."""
    if excludes is not None and exclude is not None:
        raise TypeError("give excludes= or exclude=, not both")
    return Selection(filetypes, excludes if excludes is not None else exclude)


@contextmanager
def _sources(
    mirrors: list[str | None], cfg: SessionConfig, username: str | None, userpass: str | None
) -> Iterator[list[Source]]:
    """One source per mirror; every source made is closed after, also when a later mirror
    cannot be used."""
    sources: list[Source] = []
    try:
        for m in mirrors:
            sources.append(choose_source(m, cfg, username, userpass))
        yield sources
    finally:
        for s in sources:
            s.close()


def _start_reporter(
    reporter: Reporter | None, progress: bool | None, ids: list[int], is_mirror: bool
) -> Reporter:
    """The caller's reporter, else the automatic one, told the session is beginning."""
    rep = guarded(reporter) if reporter is not None else _auto_reporter(progress, is_mirror)
    if hasattr(rep, "begin"):  # optional: duck-typed reporters need only the engine's events
        rep.begin(ids, is_mirror)
    return rep


@dataclass
class _CiaoArgs:
    """What the positional arguments after ``filetypes`` meant (either of CIAO's forms)."""

    excludes: Types = None
    mirror: Mirror = None
    username: str | None = None
    userpass: str | None = None


def _is_site(value: object) -> bool:
    """A mirror value: a URL, a site name, a path, or a list of those (a fallback list)."""
    if isinstance(value, str):
        text = value.strip()
        return (
            "://" in text
            or text.lower() in NAMED_SITES
            or text.startswith(("/", ".", "~"))
            or os.path.isdir(text)
        )
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_is_site(v) for v in value)
    return False


def _is_types(value: object) -> bool:
    """A list of file types (or selections): a comma string or a sequence of names."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple, set, frozenset)):
        return False
    words = [str(n).strip().lower() for n in names]
    return bool(words) and all(w in DESCRIPTIONS or w in SELECTIONS for w in words if w)


def _ambiguous(position: str, value: object, meanings: str) -> TypeError:
    return TypeError(
        f"download_chandra_obsids: the {position} positional argument {value!r} is neither "
        f"{meanings}; pass it by keyword (excludes=, mirror=, username=)"
    )


def _ciao_positional(args: tuple[object, ...]) -> _CiaoArgs:
    """Read the arguments after ``filetypes`` as CIAO's current ``(excludes, mirror)`` or the
    2013 ``(mirror, username, userpass)``, by their values: file types are ``excludes``, a
    site is ``mirror`` (see :func:`download_chandra_obsids`)."""
    if len(args) > 3:
        raise TypeError(
            f"download_chandra_obsids takes at most 5 positional arguments, not {len(args) + 2}"
        )
    third, fourth, fifth = (*args, None, None, None)[:3]
    if third is not None and _is_site(third) and _is_types(third):
        raise _ambiguous("third", third, "only file types nor only a site (it is both)")
    if len(args) == 3 or (third is not None and _is_site(third)):  # 2013
        if third is not None and not _is_site(third):
            raise _ambiguous("third", third, "a site (the 2013 form's mirror)")
        site = cast(Mirror, third)
        return _CiaoArgs(None, site, _text(fourth, "username"), _text(fifth, "userpass"))
    if third is not None:
        if not _is_types(third):
            raise _ambiguous("third", third, "file types to exclude nor a site")
        return _CiaoArgs(cast(Types, third), cast(Mirror, fourth))
    if fourth is None or _is_site(fourth):
        return _CiaoArgs(None, cast(Mirror, fourth))
    raise _ambiguous(
        "fourth", fourth, "a site (the current form's mirror) nor, with no mirror, a user name"
    )


def _text(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"download_chandra_obsids: {name} must be a string, not {value!r}")


def _merge(found: _CiaoArgs, keywords: Mapping[str, object]) -> _CiaoArgs:
    """The positional meaning plus the keywords; one value given twice is an error."""
    for name, value in keywords.items():
        if value is None:
            continue
        if getattr(found, name) is not None:
            raise TypeError(
                f"download_chandra_obsids: {name} given twice (by position and keyword)"
            )
        setattr(found, name, value)
    return found


def download_chandra_obsids(
    obsids: ObsIds,
    filetypes: Types = None,
    *args: object,
    excludes: Types = None,
    mirror: Mirror = None,
    username: str | None = None,
    userpass: str | None = None,
    **options: Any,
) -> list[bool]:
    """Download public Chandra data by ObsId, as CIAO's function of the same name does.

    Both of CIAO's signatures work, positionally too: the current release's
    ``download_chandra_obsids(obsids, filetypes=None, excludes=None, mirror=None)`` and the
    2013 ``download_chandra_obsids(obsids, filetypes, mirror, username, userpass)``. The
    arguments after ``filetypes`` are read by their values: a list of file types (or a
    comma string of them) is ``excludes``; a site (a URL, a name such as ``heasarc``, a
    path, or a list of those) is ``mirror``; five positional arguments are the 2013 form.
    A value that is neither, where it matters, is refused with a TypeError (pass it by
    keyword): ``(obsids, types, None, "x")`` is refused, as ``"x"`` is no site and a user
    name without a mirror means nothing.

    Parameters
    ----------
    obsids : iterable of int or str
        The ObsIds (ints or strings of digits).
    filetypes : iterable of str, optional
        Only these file types (e.g. ``["evt2", "asol"]``); None downloads everything. An
        empty list is an error (it would select nothing).
    *args
        ``excludes, mirror`` (current) or ``mirror, username, userpass`` (2013), as above.
    excludes : iterable of str, optional
        File types not to download (CIAO's current keyword).
    mirror : str, optional
        Another site, the location up to but not including ``byobsid/``; an ObsId missing
        there is not looked for at the CDA.
    username, userpass : str, optional
        Credentials for the mirror (may also be userinfo in the mirror URL).
    **options
        Any keyword of :func:`download` (``outdir=``, ``jobs=``...).

    Returns
    -------
    list of bool
        One per ObsId: whether it was found in the archive (not whether data was fetched).

    Raises
    ------
    TypeError
        Positional arguments that fit neither signature (see above).
    AuthError
        When the site refused the login: that is not "not in the archive".
    SourceError
        When an ObsId could not be listed at all (the site cannot be reached, or does not
        answer with archive listings): False would claim it is not in the archive.
    """
    given = dict(excludes=excludes, mirror=mirror, username=username, userpass=userpass)
    a = _merge(_ciao_positional(args), given)
    results = download(
        obsids, filetypes, a.mirror, a.username, a.userpass, excludes=a.excludes, **options
    )
    if results.refused:
        raise results.refused[0]  # the typed exception the site's refusal raised
    unknown = [r for r in results if not r.found and r.error]
    if unknown:
        raise SourceError(f"ObsId {unknown[0].obsid} could not be listed: {unknown[0].error}")
    return results.found
