"""The public functions: CIAO's ``download_chandra_obsids`` and the richer ``download``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from .config import SessionConfig
from .engine import Engine
from .filetypes import Selection
from .log import LOGGER
from .obsids import validate_obsids
from .progress import Reporter
from .results import Results
from .sources import choose_source

ObsIds = Iterable[int | str] | int | str
Mirror = str | Sequence[str] | None


def _mirrors(mirror: Mirror) -> list[str | None]:
    if mirror is None or isinstance(mirror, str):
        return [mirror]
    mirrors = list(mirror)
    if not mirrors:
        raise ValueError("mirror is an empty list")
    return mirrors


def download(
    obsids: ObsIds,
    filetypes: str | Iterable[str] | None = None,
    mirror: Mirror = None,
    username: str | None = None,
    userpass: str | None = None,
    *,
    exclude: str | Iterable[str] | None = None,
    outdir: str | os.PathLike[str] = ".",
    list_only: bool = False,
    config: SessionConfig | None = None,
    reporter: Reporter | None = None,
    **options: object,
) -> Results:
    """Download ObsIds and report what happened to every file.

    Parameters
    ----------
    obsids : int, str or iterable of int or str
        ObsIds to fetch. Invalid values raise ValueError before any request.
    filetypes : str or iterable of str, optional
        Types to fetch (see ``chandra_download.FILETYPES``); None fetches every file.
    mirror : str or list of str, optional
        Site: a URL up to ``byobsid/`` (https, http, ftp, ftps, s3, file), a local directory or
        a name (``cda``, ``heasarc``, ``aws``). Default ``$CDA_MIRROR_SITE``, else the CDA.
        A list is tried in order, per ObsId and per file.
    username, userpass : str, optional
        Credentials for FTP and HTTP(S) sites.
    exclude : str or iterable of str, optional
        Types not to fetch; wins over ``filetypes``.
    outdir : path, default "."
        Files go to ``<outdir>/<ObsId>/``.
    list_only : bool, default False
        Only find out what would be fetched (sizes and local state); write nothing.
    config : SessionConfig, optional
        All session settings; keyword ``options`` (``jobs=``, ``retries=``, ``timeout=``,
        ``verify_checksums=``, ``ca_bundle=``, ``insecure=``, ``profile=``, ``endpoint_url=``...)
        override its fields.
    reporter : Reporter, optional
        Receives progress events (the command line passes one that draws bars).

    Returns
    -------
    Results
        One :class:`ObsIdResult` per ObsId, in order, each listing its files' outcomes.
    """
    ids = validate_obsids(obsids)
    selection = Selection(filetypes, exclude)
    if selection.conflicts:
        msg = f"File type(s) {', '.join(selection.conflicts)} both requested and excluded: excluded"
        LOGGER.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    config = config or SessionConfig()
    for key, value in options.items():
        if not hasattr(config, key):
            raise TypeError(f"download() got an unexpected keyword argument {key!r}")
        setattr(config, key, value)
    config.__post_init__()
    if config.insecure:
        msg = "TLS certificate verification is OFF (insecure=True): data could be tampered with"
        LOGGER.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    sources = []
    try:
        for m in _mirrors(mirror):
            sources.append(choose_source(m, config, username, userpass))
        engine = Engine(sources, config, reporter or Reporter())
        items = engine.run(ids, selection, Path(outdir), list_only=list_only)
    finally:
        for s in sources:
            s.close()

    def rerun() -> Results:
        return download(
            ids,
            filetypes,
            mirror,
            username,
            userpass,
            exclude=exclude,
            outdir=outdir,
            list_only=list_only,
            config=config,
            reporter=reporter,
        )

    return Results(items, rerun=rerun)


def download_chandra_obsids(
    obsids: ObsIds,
    filetypes: str | Iterable[str] | None = None,
    mirror: Mirror = None,
    username: str | None = None,
    userpass: str | None = None,
    **options: object,
) -> list[bool]:
    """Download public Chandra data by ObsId, as CIAO's function of the same name does.

    Parameters
    ----------
    obsids : iterable of int or str
        The ObsIds (ints or strings of digits).
    filetypes : iterable of str, optional
        Only these file types (e.g. ``["evt2", "asol"]``); None downloads everything.
    mirror : str, optional
        Another site, the location up to but not including ``byobsid/``; an ObsId missing
        there is not looked for at the CDA.
    username, userpass : str, optional
        Credentials for the mirror (may also be userinfo in the mirror URL).
    **options
        Any keyword of :func:`download` (``exclude=``, ``outdir=``, ``jobs=``...).

    Returns
    -------
    list of bool
        One per ObsId: whether it was found in the archive (not whether data was fetched).
    """
    return download(obsids, filetypes, mirror, username, userpass, **options).found
