"""Live progress: rich bars on a terminal, an HTML display in Jupyter. Both draw a
:class:`~chandra_download.progress.Tally`, so both tell the same truth."""

from __future__ import annotations

import html
import math
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from .progress import Reporter, Tally, fmt_size, interrupted
from .results import FileResult, ObsIdResult

if TYPE_CHECKING:  # rich is imported only when a terminal display is made
    from rich.progress import TaskID


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a plain IPython terminal)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


#: Short names of the usual reasons for a retry, for a display's narrow column.
_SHORT = (
    (re.compile(r"\bHTTP (\d{3})\b"), r"HTTP \1"),
    (re.compile(r"timed? ?out|stalled|too slow", re.I), "timed out"),
    (re.compile(r"reset", re.I), "conn reset"),
    (re.compile(r"refused", re.I), "refused"),
    (re.compile(r"closed|ended early|short|truncat", re.I), "cut short"),
    (re.compile(r"checksum|CRC|DATASUM|check", re.I), "bad check"),
)


def _without_path(fr: FileResult | None, reason: str) -> str:
    """The reason without a leading ``<path>: `` (the display names the file already)."""
    text = " ".join(str(reason).split())
    if fr is not None:
        for prefix in (f"{fr.obsid}/{fr.relpath}: ", f"{fr.relpath}: ", f"{_name(fr, 999)}: "):
            text = text.removeprefix(prefix)
    return text


def short_reason(fr: FileResult | None, reason: str) -> str:
    """A retry's reason in at most 12 columns: ``HTTP 503``, ``timed out``, ``conn reset``..."""
    text = _without_path(fr, reason)
    for pattern, short in _SHORT:
        m = pattern.search(text)
        if m:
            return m.expand(short)
    return text if len(text) <= 12 else text[:11] + "…"


def retry_text(fr: FileResult | None, attempt: int, delay: float, reason: str) -> str:
    """``evt1.fits.gz: retry 2 in 3 s: connection reset`` (the reason cut to one short line)."""
    reason = _without_path(fr, reason)
    if len(reason) > 40:
        reason = reason[:39] + "…"
    text = f"retry {attempt} in {delay:.0f} s: {reason}"
    return text if fr is None else f"{_name(fr)}: {text}"


def _name(fr: FileResult, width: int = 32) -> str:
    name = fr.relpath.rsplit("/", 1)[-1]
    return name if len(name) <= width else name[: width - 1] + "…"


class _LiveReporter(Reporter):
    """A reporter that keeps a :class:`Tally` and a description per active file."""

    def __init__(self, mirror: bool = False) -> None:
        super().__init__(mirror)
        self.tally = Tally()
        self.labels: dict[int, str] = {}  # id(FileResult) -> what the display shows
        self.since: dict[int, float] = {}  # id(FileResult) -> when its data started
        #: ObsId -> its listing's retry, until it is listed; "site:HOST" -> what a site that
        #: has not answered for a while is waited for, until it answers
        self.notes: dict[int | str, str] = {}
        self.quiet: dict[str, tuple[str, str, int]] = {}  # "site:HOST" -> (host, what, s)
        #: id(FileResult) or ObsId -> (attempt, when it starts, short reason) while waiting
        self.waits: dict[int, tuple[int, float, str]] = {}

    def obsid_listed(self, r: ObsIdResult) -> None:
        super().obsid_listed(r)
        self.tally.listed(r)
        if self.notes.pop(r.obsid, None) is not None:
            self.redraw_note(r.obsid)
        self.redraw()

    def obsid_retry(self, obsid: int, attempt: int, delay: float, reason: str) -> None:
        super().obsid_retry(obsid, attempt, delay, reason)
        text = retry_text(None, attempt, delay, reason)
        self.notes[obsid] = f"ObsId {obsid} listing: {text}"
        self.waits[obsid] = (attempt, time.monotonic() + delay, short_reason(None, reason))
        self.redraw_note(obsid)

    def site_wait(self, host: str, seconds: float, what: str | None, probing: bool) -> None:
        """A site has not answered ``what`` for ``seconds`` (the engine says so once a request
        is 2 s old, then as it goes on): a line of its own, gone once it answers (``what``
        None). ``probing``: the site is asked one request at a time."""
        key = f"site:{host}"
        if what is None:
            self.quiet.pop(key, None)
            if self.notes.pop(key, None) is not None:
                self.redraw_note(key)
            return
        mode = ", one request at a time" if probing else ""
        self.notes[key] = f"waiting for {host}{mode}: {what}, no answer for {int(seconds)} s"
        self.quiet[key] = (host, what, int(seconds))
        self.redraw_note(key)

    def redraw_note(self, obsid: int | str) -> None:
        """Show (or, once gone from ``notes``, remove) the line about an ObsId's listing or a
        site that does not answer."""

    def file_started(self, fr: FileResult) -> None:
        super().file_started(fr)
        self.tally.started(fr)
        self.since.setdefault(id(fr), time.monotonic() - fr.elapsed)
        self.labels[id(fr)] = _name(fr)
        self.waits.pop(id(fr), None)
        self.redraw(fr)

    def file_bytes(self, fr: FileResult, n: int) -> None:
        self.tally.advanced(fr, n)
        self.waits.pop(id(fr), None)  # data flows again
        self.redraw(fr)

    def file_retry(self, fr: FileResult, attempt: int, delay: float, reason: str) -> None:
        super().file_retry(fr, attempt, delay, reason)
        self.labels[id(fr)] = retry_text(fr, attempt, delay, reason)
        self.waits[id(fr)] = (attempt, time.monotonic() + delay, short_reason(fr, reason))
        self.redraw(fr)

    def file_done(self, fr: FileResult) -> None:
        super().file_done(fr)
        if interrupted(fr):
            return
        self.tally.finished(fr)
        self.labels.pop(id(fr), None)
        self.since.pop(id(fr), None)
        self.waits.pop(id(fr), None)
        self.redraw(fr, gone=True)

    def rate(self, fr: FileResult) -> str:
        """Bytes moved per second since the file's data started (all parts together)."""
        t0 = self.since.get(id(fr))
        elapsed = time.monotonic() - t0 if t0 is not None else 0.0
        return f"{fmt_size(int(fr.bytes_transferred / elapsed))}/s" if elapsed > 0.5 else ""

    def redraw(self, fr: FileResult | None = None, gone: bool = False) -> None:
        """Show the tally's new state (``fr`` changed, or left when ``gone``)."""


#: The widest file name a bar shows (longer ones are cut with "…"): the name never pushes the
#: bar, sizes, rate or time left off an 80-column terminal.
NAME_WIDTH = 24


def _columns() -> list[Any]:
    """The bars' columns: the name (cut), the bar (it takes what is left), the sizes, the rate
    or a retry's short reason, the time left or the retry's countdown."""
    from rich.progress import BarColumn, ProgressColumn, Task, TimeRemainingColumn
    from rich.table import Column
    from rich.text import Text

    class Name(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(task.description, no_wrap=True, overflow="ellipsis")

    class Sizes(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(str(task.fields.get("sizes", "")), justify="right")

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            wait = task.fields.get("wait")
            if wait:
                return Text(wait[2], style="yellow", no_wrap=True, overflow="ellipsis")
            return Text(str(task.fields.get("rate", "")), justify="right")

    class Left(TimeRemainingColumn):
        max_refresh = 0.0  # the countdown moves every refresh

        def render(self, task: Task) -> Text:
            wait = task.fields.get("wait")
            if not wait:
                return super().render(task)
            left = max(0, math.ceil(wait[1] - time.monotonic()))
            return Text(f"retry {wait[0]} in {left} s" if left else f"retry {wait[0]} now",
                        style="yellow")  # fmt: skip

    fixed = dict(no_wrap=True, justify="right")
    return [
        Name(table_column=Column(no_wrap=True, max_width=NAME_WIDTH, overflow="ellipsis")),
        BarColumn(bar_width=None),
        Sizes(table_column=Column(**fixed)),  # type: ignore[arg-type]
        Rate(table_column=Column(max_width=12, **fixed)),  # type: ignore[arg-type]
        Left(table_column=Column(min_width=7, **fixed)),  # type: ignore[arg-type]
    ]


class RichReporter(_LiveReporter):
    """Bars on a terminal: the whole session, and each file in flight (a split file is one
    bar of its parts' combined bytes). Transient: nothing is left in the scrollback."""

    def __init__(self, console=None, mirror: bool = False) -> None:
        super().__init__(mirror)
        from rich.progress import Progress

        self.progress = Progress(
            *_columns(),
            console=console,
            transient=True,
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self._overall = self.progress.add_task("total", total=None, sizes="", rate="", wait=None)
        self._tasks: dict[int, TaskID] = {}
        self._note_tasks: dict[int | str, TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def redraw(self, fr: FileResult | None = None, gone: bool = False) -> None:
        if self._silent:
            return
        with self._lock:
            if fr is not None:
                self._redraw_file(fr, gone)
            done, total = self.tally.overall()
            self.progress.update(
                self._overall, completed=done, total=total or None, sizes=_sizes(done, total)
            )

    def redraw_note(self, obsid: int | str) -> None:
        with self._lock:
            text, task = self.notes.get(obsid), self._note_tasks.get(obsid)
            if text is None and task is not None:
                self.progress.remove_task(self._note_tasks.pop(obsid))
            elif text is not None:
                fields = self._note_fields(obsid, text)
                if task is None:
                    self._note_tasks[obsid] = self.progress.add_task(total=None, **fields)
                else:
                    self.progress.update(task, **fields)

    def _note_fields(self, key: int | str, text: str) -> dict[str, Any]:
        """A listing's retry shows its countdown; a silent site its name, what it is asked
        and how long it has been quiet (in the sizes and rate columns)."""
        if isinstance(key, int):
            return dict(description=f"ObsId {key} listing", sizes="", rate="",
                        wait=self.waits.get(key))  # fmt: skip
        host, what, seconds = self.quiet[key]
        return dict(description=f"waiting: {host}", sizes=f"{seconds} s quiet", rate=what,
                    wait=None)  # fmt: skip

    def _redraw_file(self, fr: FileResult, gone: bool) -> None:
        task = self._tasks.get(id(fr))
        if gone:
            if task is not None:
                self.progress.remove_task(self._tasks.pop(id(fr)))
            return
        entry = self.tally.files.get(id(fr), [0, fr.size or 0])
        done, size = entry
        wait = self.waits.get(id(fr))  # the retry is in its own columns, not the name's
        if task is None:
            self._tasks[id(fr)] = self.progress.add_task(
                _name(fr), total=size or None, completed=done, sizes=_sizes(done, size),
                rate="", wait=wait,
            )  # fmt: skip
            return
        self.progress.update(
            task,
            description=_name(fr),
            completed=done,
            total=size or None,
            sizes=_sizes(done, size),
            rate=self.rate(fr),
            wait=wait,
        )


def _sizes(done: int, total: int) -> str:
    return f"{fmt_size(done)}/{fmt_size(total)}" if total else fmt_size(done)


class NotebookReporter(_LiveReporter):
    """A progress display in a Jupyter notebook: one HTML output updated in place (at most a
    few times a second), the session's bar and a line per file in flight."""

    INTERVAL = 0.25

    def __init__(self, mirror: bool = False) -> None:
        super().__init__(mirror)
        self._handle = None
        self._shown = 0.0
        self._draw_lock = threading.Lock()

    def __enter__(self) -> NotebookReporter:
        from IPython.display import HTML, display

        self._handle = display(HTML(self.render()), display_id=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._update(force=True)

    def redraw(self, fr: FileResult | None = None, gone: bool = False) -> None:
        self._update(force=gone and not self.tally.files)

    def redraw_note(self, obsid: int | str) -> None:
        self._update(force=True)

    def _update(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._handle is None or (not force and now - self._shown < self.INTERVAL):
            return
        with self._draw_lock:
            self._shown = now
            from IPython.display import HTML

            self._handle.update(HTML(self.render()))

    def render(self) -> str:
        """The display's HTML: the overall bar, then each active file and its state."""
        done, total = self.tally.overall()
        rows = [_html_bar("total", done, total)]
        with self.tally.lock:
            active = [(k, list(v)) for k, v in self.tally.files.items() if k in self.labels]
        for key, (fdone, size) in active:
            rows.append(_html_bar(self.labels.get(key, ""), fdone, size))
        for note in list(self.notes.values()):
            rows.append(f"<div><code>{html.escape(note)}</code></div>")
        return "<div>" + "".join(rows) + "</div>"


def _html_bar(label: str, done: int, total: int) -> str:
    value = f' value="{done}" max="{total}"' if total else ""
    return (
        f"<div><progress{value} style='width:40%'></progress> "
        f"<code>{html.escape(label)}</code> {html.escape(_sizes(done, total))}</div>"
    )
