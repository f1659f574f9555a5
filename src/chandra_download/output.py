"""CIAO's console formats: sizes, times, the per-ObsId block and our ``--list`` table.

The block is what CIAO's ``download_chandra_obsid`` prints for each ObsId (see ARCHIVE.md,
"CIAO's command line and output, exactly"); scripts parse it, so its shape is kept exactly.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from .credentials import mask_url
from .results import FileResult, LocalState, ObsIdResult, Status

KB, MB, GB = 1024, 1024**2, 1024**3

TABLE_HEADER = "  Type     Format      Size  0........H.........1  Download Time Average Rate"
TABLE_RULE = "  " + "-" * 75
#: CIAO's format labels, tried in this (sorted) order against the file name.
FORMATS = ("ascii", "fits", "html", "jpg", "pdf", "ps")
#: The widest row we print: terminals wrap at 80 columns.
ROW_WIDTH = 79


def _half_up(x: float) -> int:
    """CIAO's rounding (``int(x + 0.5)``): halves go up, for the non-negative values it has."""
    return int(x + 0.5)


def ciao_size(nbytes: int | None) -> str:
    """CIAO's size string: ``< 1 Kb``, ``%d Kb``, ``%d Mb`` or ``%.1f Gb`` (powers of 1024).

    Parameters
    ----------
    nbytes : int or None
        A size in bytes; None (unknown) is shown as ``?``.

    Returns
    -------
    str
        For example ``17 Kb`` (17,280 bytes) or ``1.2 Gb``; Kb and Mb are rounded half up,
        as CIAO's ``stringify_size`` does, so 4,801,118 bytes are ``5 Mb``.
    """
    if nbytes is None:
        return "?"
    if nbytes < KB:
        return "< 1 Kb"
    if nbytes < MB:
        return f"{_half_up(nbytes / KB)} Kb"
    if nbytes < GB:
        return f"{_half_up(nbytes / MB)} Mb"
    return f"{nbytes / GB:.1f} Gb"


def ciao_time(seconds: float) -> str:
    """CIAO's duration string (its ``stringify_dt``): ``< 1 s`` below a second; else the
    largest non-zero unit and the next one only when it is not zero: ``%d day[s] [%d h]``,
    ``%d h [%d m]``, ``%d m [%d s]``, ``%d s``.

    Days, hours and minutes are whole; the seconds are rounded half up (9.6 s is ``10 s``,
    62.3 s ``1 m 2 s``, 60 s ``1 m``, 3,600 s ``1 h``). As in CIAO, the seconds are rounded
    after the minutes are taken, so 59.6 s is ``60 s``.
    """
    if seconds < 1:
        return "< 1 s"
    days = int(seconds // 86400)
    hours = int(seconds % 86400 // 3600)
    minutes = int(seconds % 3600 // 60)
    secs = _half_up(seconds % 60)
    if days:
        return f"{days} day{'s' if days > 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes} m" if minutes else "")
    if minutes:
        return f"{minutes} m" + (f" {secs} s" if secs else "")
    return f"{secs} s"


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
    elif fr.status is Status.SKIPPED and fr.size is not None and fr.local_size > fr.size:
        # (CIAO's line for a larger local file; another skip says its own reason below)
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


def _wrapped(text: str, indent: str = "", more: str = "    ") -> list[str]:
    """``text`` in lines of at most 79 columns (terminals wrap at 80); long words kept."""
    return textwrap.wrap(
        text,
        width=ROW_WIDTH,
        initial_indent=indent,
        subsequent_indent=more,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


def missing_block(r: ObsIdResult, mirror: bool) -> list[str]:
    """An ObsId that is not there, or could not be listed. When one site answered "not found"
    and the others failed (``site_failures``), it is not found, the failures as detail.
    Every line fits in 79 columns (a long error is wrapped, CIAO's first words kept)."""
    if r.error:
        text = f"Skipping ObsId {r.obsid} as it could not be listed: {r.error}"
        return [*_wrapped(text), ""]
    site = "mirror" if mirror else "archive"
    lines = [f"Skipping ObsId {r.obsid} as it was not found on the {site} site."]
    if r.why_missing:
        lines.extend(_wrapped(f"ObsId {r.obsid}: {r.why_missing}", "  ", "    "))
    for failure in getattr(r, "site_failures", None) or ():
        lines.extend(_wrapped(f"(another site could not be asked: {failure})", "  ", "    "))
    return lines


def obsid_block(r: ObsIdResult, elapsed: float, mirror: bool = False) -> list[str]:
    """CIAO's block for one ObsId: header, table, rows, totals; blank lines as CIAO has them.

    Parameters
    ----------
    r : ObsIdResult
        The finished ObsId.
    elapsed : float
        CIAO's "Total download time": the seconds its files spent downloading in this run,
        request to last byte (CIAO, one file at a time, adds the files' times; files in
        parallel count once: see :func:`busy_time`).
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


def busy_time(spans: Iterable[tuple[float, float]]) -> float:
    """Seconds covered by any of the ``(start, end)`` spans: the sum of the files' download
    times when they ran one at a time (CIAO's total), the time any ran when in parallel."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def download_size(fr: FileResult) -> int:
    """A file's part of CIAO's "Total download size": the size of each file fetched in this
    run, whole or resumed (CIAO adds the length of the file it wrote), each file once; files
    already complete, skipped or failed add nothing (CIAO's ``(0, 0)``)."""
    if fr.status not in (Status.DOWNLOADED, Status.RESUMED):
        return 0
    if fr.size is not None:
        return fr.size
    return fr.local_size + fr.bytes_transferred


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


# -- notebooks and the Python prompt -----------------------------------------------------------
def _counts(files: Iterable[FileResult]) -> str:
    """``40 downloaded, 2 already present`` (statuses in their order, zero counts left out)."""
    files = list(files)
    parts = [f"{n} {s}" for s in Status if (n := sum(1 for f in files if f.status is s))]
    return ", ".join(parts) or "no files"


def obsid_repr(r: ObsIdResult) -> str:
    """A one-line ``repr`` of an ObsId's result (its files counted, not listed)."""
    site = mask_url(r.site) if r.site else None
    extra = f", error={r.error!r}" if r.error else ""
    extra += f", why_missing={r.why_missing!r}" if r.why_missing else ""
    return (
        f"ObsIdResult(obsid={r.obsid}, found={r.found}, site={site!r}, "
        f"files={len(r.files)} ({_counts(r.files)}), size={r.total_size}{extra})"
    )


def results_repr(results: Iterable[ObsIdResult]) -> str:
    """A short ``repr`` of a session's results: one line per ObsId, at most a screenful."""
    results = list(results)
    files = [f for r in results for f in r.files]
    head = (
        f"<Results: {len(results)} ObsId(s), {sum(r.found for r in results)} found; "
        f"{len(files)} file(s): {_counts(files)}>"
    )
    shown = [f"  {obsid_repr(r)}" for r in results[:20]]
    if len(results) > 20:
        shown.append(f"  ... and {len(results) - 20} more ObsIds")
    return "\n".join([head, *shown])


def results_html(results: Iterable[ObsIdResult]) -> str:
    """A notebook's table of a session's results: one row per ObsId."""
    import html

    rows = []
    for r in results:
        state = "found" if r.found else f"not found{': ' + r.why_missing if r.why_missing else ''}"
        if r.error:
            state = f"error: {r.error}"
        cells = (
            str(r.obsid), state, mask_url(r.site) if r.site else "", str(len(r.files)),
            _counts(r.files), ciao_size(r.total_size),
        )  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("ObsId", "State", "Site", "Files", "Outcome", "Size"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
