"""What the user sees: CIAO's per-ObsId table through logging, and live bars on a terminal."""

from __future__ import annotations

import threading
import time

from .filetypes import file_format
from .log import vlog
from .results import FileResult, ObsIdResult, Status

MB = 1024 * 1024


def fmt_size(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= MB:
        return f"{n / MB:.1f} Mb"
    if n >= 1024:
        return f"{n / 1024:.0f} Kb"
    return f"{n} b"


class Reporter:
    """Receives the engine's events (from many threads) and logs CIAO-style lines.

    Lines are logged at verbose level 1, so a library user sees nothing unless they ask
    (:func:`chandra_download.set_verbosity`) and the command line shows them by default.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._bytes: dict[int, int] = {}

    def obsid_listed(self, r: ObsIdResult) -> None:
        if not r.found:
            # A listing error (TLS, refused access...) is an error: shown even when quiet.
            vlog(
                0 if r.error else 1, "ObsId %s: %s", r.obsid, r.error or "not found in the archive"
            )
            return
        total = sum(f.size or 0 for f in r.files)
        with self._lock:
            self._started[r.obsid] = time.monotonic()
            self._bytes[r.obsid] = 0
        vlog(1, "Downloading files for ObsId %s, total size is %d Mb.", r.obsid, round(total / MB))

    def file_started(self, fr: FileResult) -> None:
        vlog(3, "%s: transfer started (%s)", fr.relpath, fr.url)

    def file_bytes(self, fr: FileResult, n: int) -> None:
        pass

    def file_retry(self, fr: FileResult, attempt: int, delay: float, reason: str) -> None:
        """A transfer failed and is retried: attempt ``attempt`` starts in ``delay`` s."""

    def file_done(self, fr: FileResult) -> None:
        with self._lock:
            self._bytes[fr.obsid] = self._bytes.get(fr.obsid, 0) + fr.bytes_transferred
        kind = f"{fr.filetype or '-':<9} {file_format(fr.relpath):<5}"
        name = fr.relpath.rsplit("/", 1)[-1]
        if fr.status is Status.PRESENT:
            vlog(
                1, "  %5s %s %10s  already downloaded  %s", fr.obsid, kind, fmt_size(fr.size), name
            )
        elif fr.status in (Status.DOWNLOADED, Status.RESUMED):
            secs = max(fr.elapsed, 1e-6)
            rate = fr.bytes_transferred / secs / 1024
            extra = " (resumed)" if fr.status is Status.RESUMED else ""
            vlog(
                1,
                "  %5s %s %10s %7.1f s %9.1f kb/s  %s%s",
                fr.obsid,
                kind,
                fmt_size(fr.size),
                fr.elapsed,
                rate,
                name,
                extra,
            )
        elif fr.status is Status.PLANNED:
            vlog(
                1,
                "  %5s %s %10s  %-18s  %s",
                fr.obsid,
                kind,
                fmt_size(fr.size),
                fr.reason,
                fr.relpath,
            )
        else:
            vlog(0, "ObsId %s: %s %s: %s", fr.obsid, fr.relpath, fr.status, fr.reason)

    def obsid_done(self, r: ObsIdResult) -> None:
        if not r.found or all(f.status is Status.PLANNED for f in r.files):
            return
        with self._lock:
            t0 = self._started.get(r.obsid, time.monotonic())
            got = self._bytes.get(r.obsid, 0)
        vlog(1, "      Total download size for ObsId %s = %s", r.obsid, fmt_size(got))
        vlog(1, "      Total download time for ObsId %s = %.1f s", r.obsid, time.monotonic() - t0)


class RichReporter(Reporter):
    """Adds live progress bars (bytes overall and per active file) on a terminal."""

    def __init__(self, console=None) -> None:
        super().__init__()
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            redirect_stdout=True,
        )
        self._overall = self.progress.add_task("total", total=0)
        self._tasks: dict[int, int] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def obsid_listed(self, r: ObsIdResult) -> None:
        super().obsid_listed(r)
        add = sum(f.size or 0 for f in r.files if f.status is Status.PLANNED)
        with self._lock:
            total = (self.progress.tasks[self._overall].total or 0) + add
        self.progress.update(self._overall, total=total)

    def file_started(self, fr: FileResult) -> None:
        super().file_started(fr)
        with self._lock:
            if id(fr) not in self._tasks:
                name = fr.relpath.rsplit("/", 1)[-1]
                self._tasks[id(fr)] = self.progress.add_task(f"{name[:40]}", total=fr.size)

    def file_bytes(self, fr: FileResult, n: int) -> None:
        task = self._tasks.get(id(fr))
        if task is not None:
            self.progress.update(task, advance=n)
        self.progress.update(self._overall, advance=n)

    def file_done(self, fr: FileResult) -> None:
        super().file_done(fr)
        with self._lock:
            task = self._tasks.pop(id(fr), None)
        if task is not None:
            self.progress.remove_task(task)
        elif fr.status is Status.PRESENT:
            self.progress.update(self._overall, advance=fr.size or 0)
