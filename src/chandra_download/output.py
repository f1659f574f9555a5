"""CIAO's console formats: sizes, times, the per-ObsId block and our ``--list`` table.

The block is what CIAO's ``download_chandra_obsid`` prints for each ObsId (see ARCHIVE.md,
"CIAO's command line and output, exactly"); scripts parse it, so its shape is kept exactly.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from .results import FileResult, LocalState, ObsIdResult, Status

KB, MB, GB = 1024, 1024**2, 1024**3

TABLE_HEADER = "  Type     Format      Size  0........H.........1  Download Time Average Rate"
TABLE_RULE = "  " + "-" * 75
#: CIAO's format labels, tried in this (sorted) order against the file name.
FORMATS = ("ascii", "fits", "html", "jpg", "pdf", "ps")
#: The widest row we print: terminals wrap at 80 columns.
ROW_WIDTH = 79


def ciao_size(nbytes: int | None) -> str:
    """CIAO's size string: ``< 1 Kb``, ``%d Kb``, ``%d Mb`` or ``%.1f Gb`` (powers of 1024).

    Parameters
    ----------
    nbytes : int or None
        A size in bytes; None (unknown) is shown as ``?``.

    Returns
    -------
    str
        For example ``27 Kb`` or ``1.2 Gb``; whole units are truncated, as CIAO does.
    """
    if nbytes is None:
        return "?"
    if nbytes < KB:
        return "< 1 Kb"
    if nbytes < MB:
        return f"{nbytes // KB} Kb"
    if nbytes < GB:
        return f"{nbytes // MB} Mb"
    return f"{nbytes / GB:.1f} Gb"


def ciao_time(seconds: float) -> str:
    """CIAO's duration string: ``< 1 s``, ``%d s``, ``%d m %d s``, ``%d h %d m``,
    ``%d day[s] %d h``."""
    s = int(seconds)
    if seconds < 1:
        return "< 1 s"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} m"
    days = s // 86400
    return f"{days} day{'s' if days > 1 else ''} {s % 86400 // 3600} h"


def ciao_format(relpath: str) -> str:
    """The Format column: the first of CIAO's labels found in the file name, else blank."""
    name = relpath.rsplit("/", 1)[-1]
    if name.upper() == "00README":
        return "ascii"
    return next((f for f in FORMATS if f in name), "")


def _row_head(fr: FileResult) -> str:
    return f"  {fr.filetype or '':8s} {ciao_format(fr.relpath):6s} {ciao_size(fr.size):>9s}  "


def _rate(fr: FileResult) -> str:
    """Average rate in KiB/s over the time data flowed, CIAO's ``%.1f kb/s``."""
    if fr.elapsed <= 0:
        return ""
    return f"{fr.bytes_transferred / fr.elapsed / KB:.1f} kb/s"


def _done_row(head: str, fr: FileResult) -> str:
    """A fetched file's row. CIAO's time column is 13 wide; a rate too wide for 79 columns
    (a million kb/s and up) takes the spare blanks of the time column instead."""
    time, rate = ciao_time(fr.elapsed), _rate(fr)
    room = ROW_WIDTH - len(head) - 20 - 4 - len(rate)  # columns left for the time
    width = max(len(time), min(13, room))
    row = f"{head}{'#' * 20}  {time:>{width}s}  {rate}".rstrip()
    if len(row) > ROW_WIDTH:  # absurd rates only (a clock tick): the row stays readable
        row = f"{head}{'#' * 20}  {time}  {fr.bytes_transferred / fr.elapsed / KB:.3g} kb/s"
    return row


def sub_lines(fr: FileResult, text: str, label: str = "") -> list[str]:
    """Lines under a file's row: ``text`` without a leading ``<path>: `` (the row names the
    file), wrapped at 79 columns with a hanging indent."""
    for prefix in (
        f"{fr.obsid}/{fr.relpath}: ",
        f"{fr.relpath}: ",
        fr.relpath.rsplit("/", 1)[-1] + ": ",
    ):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return textwrap.wrap(
        label + text,
        width=ROW_WIDTH,
        initial_indent="    ",
        subsequent_indent="      ",
        break_long_words=False,
        break_on_hyphens=False,
    ) or ["    " + label.strip()]


def file_row(fr: FileResult) -> list[str]:
    """The row of one file, plus a line for its warning or failure when there is one."""
    head = _row_head(fr)
    lines: list[str] = []
    if fr.status is Status.PRESENT:
        lines.append(f"{head}{'already downloaded':>20s}")
    elif fr.status in (Status.DOWNLOADED, Status.RESUMED):
        lines.append(_done_row(head, fr))
    elif fr.status is Status.SKIPPED and fr.local_size and fr.size is not None:
        lines.append(f"{head}{'skipped':>20s}")
        lines.append(
            f"Archive size is less than disk size for {fr.obsid}/{fr.relpath} - "
            f"{fr.size} vs {fr.local_size} bytes."
        )
    elif fr.status is Status.FAILED:
        lines.append(f"{head}{'FAILED':>20s}")
        lines.extend(sub_lines(fr, fr.reason or "failed"))
    else:
        lines.append(f"{head}{str(fr.status):>20s}")
        if fr.reason:
            lines.extend(sub_lines(fr, fr.reason))
    if fr.warning:
        lines.extend(sub_lines(fr, fr.warning, "warning: "))
    return lines


def row_order(files: Iterable[FileResult]) -> list[FileResult]:
    """CIAO's row order: largest first (ties by path, so the block is stable)."""
    return sorted(files, key=lambda f: (-(f.size or 0), f.relpath))


def missing_block(r: ObsIdResult, mirror: bool) -> list[str]:
    """An ObsId that is not there, or could not be listed. When one site answered "not found"
    and the others failed (``site_failures``), it is not found, the failures as detail."""
    if r.error:
        return [f"Skipping ObsId {r.obsid} as it could not be listed: {r.error}", ""]
    site = "mirror" if mirror else "archive"
    lines = [f"Skipping ObsId {r.obsid} as it was not found on the {site} site."]
    if r.why_missing:
        lines.append(f"  ObsId {r.obsid}: {r.why_missing}")
    for failure in getattr(r, "site_failures", None) or ():
        lines.append(f"  (another site could not be asked: {failure})")
    return lines


def obsid_block(r: ObsIdResult, elapsed: float, mirror: bool = False) -> list[str]:
    """CIAO's block for one ObsId: header, table, rows, totals; blank lines as CIAO has them.

    Parameters
    ----------
    r : ObsIdResult
        The finished ObsId.
    elapsed : float
        Seconds from its first file's start to its last file's end.
    mirror : bool
        Whether a site other than the CDA was used (``mirror site`` in the skip line).
    """
    if not r.found:
        return missing_block(r, mirror)
    files = [f for f in r.files if not _interrupted(f)]
    if not r.files:
        return [f"No files found for ObsId {r.obsid}!"]
    lines = [
        f"Downloading files for ObsId {r.obsid}, total size is {ciao_size(r.total_size)}.",
        "",
        TABLE_HEADER,
        TABLE_RULE,
    ]
    for fr in row_order(files):
        lines.extend(file_row(fr))
    moved = sum(download_size(f) for f in files)
    if len(r.files) > 1 and moved > 0:
        lines.append("")
        lines.append(f"      Total download size for ObsId {r.obsid} = {ciao_size(moved)}")
        lines.append(f"      Total download time for ObsId {r.obsid} = {ciao_time(elapsed)}")
    lines.append("")
    return lines


def download_size(fr: FileResult) -> int:
    """CIAO's download size of one file: the bytes it received, each byte of the file counted
    once (a file fetched again after a damaged copy moved more than it holds)."""
    if fr.size is None:
        return fr.bytes_transferred
    return min(fr.bytes_transferred, fr.size)


def _interrupted(fr: FileResult) -> bool:
    return fr.status is Status.INTERRUPTED


# -- --list -----------------------------------------------------------------------------------
LIST_HEADER = f"{'ObsId':>6}  {'Type':<9}{'Size':>12}{'On disk':>12}  {'Local':<9}Path"


def local_state(fr: FileResult) -> LocalState:
    """The typed local state: the engine's, else from the sizes it measured."""
    if fr.local is not None:
        return fr.local
    if fr.local_size <= 0:
        return LocalState.MISSING
    if fr.size is None or fr.local_size < fr.size:
        return LocalState.PARTIAL
    return LocalState.COMPLETE if fr.local_size == fr.size else LocalState.LARGER


def to_fetch(fr: FileResult) -> int:
    """Bytes a download would move for this file (nothing for complete or larger files)."""
    state = local_state(fr)
    if fr.status is Status.FAILED or fr.size is None:
        return 0
    if state is LocalState.MISSING:
        return fr.size
    if state is LocalState.PARTIAL:
        return fr.size - fr.local_size
    return 0


def list_table(results: Iterable[ObsIdResult], mirror: bool = False) -> list[str]:
    """``--list``: one row per file in ObsId order then path, exact sizes, the totals."""
    results = list(results)
    lines = [LIST_HEADER]
    nfiles = total = fetch = 0
    for r in results:
        if not r.found:
            lines.extend("  " + line for line in missing_block(r, mirror) if line)
            continue
        if not r.files:
            lines.append(f"  No files found for ObsId {r.obsid}!")
        for fr in sorted(r.files, key=lambda f: f.relpath):
            if fr.status is Status.FAILED:
                state, size = "error", "?"
            else:
                state, size = str(local_state(fr)), "?" if fr.size is None else str(fr.size)
            lines.append(
                f"{fr.obsid:>6}  {fr.filetype or '-':<9}{size:>12}{fr.local_size:>12}  "
                f"{state:<9}{fr.relpath}"
            )
            if fr.status is Status.FAILED:
                lines.append(f"        {fr.reason}")
            nfiles += 1
            total += fr.size or 0
            fetch += to_fetch(fr)
    found = sum(1 for r in results if r.found)
    saved = sum(r.unselected_bytes for r in results)
    left_out = f"; left out by the selection: {ciao_size(saved)}" if saved else ""
    lines.append(
        f"Total: {nfiles} file(s) in {found} of {len(results)} ObsId(s), {total} bytes "
        f"({ciao_size(total)}); to fetch: {fetch} bytes ({ciao_size(fetch)}){left_out}."
    )
    return lines
