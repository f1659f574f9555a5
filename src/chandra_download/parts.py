"""The ranged-parts mode of a file's one path: its parts run on any of the engine's workers.

:class:`RangedParts` is the part of :class:`~chandra_download.transfer.FileJob` that fetches a
large file as ranged parts written in place into its ``.part`` (``pwrite``), saving their
progress in the state file (:mod:`chandra_download.split`). The worker that ends the last part
settles the file through the same finish as a whole-file fetch; a site that ignores ranges, or
parts that fail a content check, go on as one whole fetch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from . import _crashpoint
from .disk import flush, unlink_quietly
from .errors import LocalError, SourceError, TransientError, VerificationError
from .log import vlog
from .retry import Interrupted
from .split import SAVE_EVERY, Part, PartsState, save_state
from .stream import OVERLAP, ResumeMismatch, resume_from


class RangeIgnored(SourceError):
    """A ranged request was answered from another offset: parts cannot work here."""


class RangedParts:
    """Ranged-parts steps of a :class:`~chandra_download.transfer.FileJob` (its attributes,
    its ``run_whole``, ``_finish``, ``_bad_content``, ``_copy``, ``_fail`` and ``release``)."""

    def _first_part_started(self) -> None:
        """A split file is one display from its first part's first byte."""
        with self._lock:
            first, self._started = not self._started, True
            have = sum(q.done for q in self.parts.parts)
        if first:
            self._t0 = time.monotonic()
            self.fr.local_size = have
            self.ctx.reporter.file_started(self.fr)

    def run_part(self, index: int) -> bool:
        """Fetch one part with retries; True for the call that settled the file."""
        try:
            if not (self._errors or self._fallback or self._interrupted):
                policy = self.retry.for_part(f"{self.fr.relpath} part {index}")
                policy.call(lambda: self._fetch_part(index))
        except (Interrupted, KeyboardInterrupt):
            self._interrupted = True
        except RangeIgnored:
            self._fallback = True
        except (LocalError, OSError) as exc:  # told once per cause, as for a whole file
            self._note_error(self.ctx.local_problem(LocalError.of(exc, self.part)))
        except SourceError as exc:
            self._note_error(f"bytes {self.parts.parts[index].start}-: {exc}")
        except Exception as exc:  # a bug in one part must still let the file settle once
            self._note_error(f"internal error: {exc!r}")
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._end_parts()
        return last

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def _fetch_part(self, index: int) -> None:
        p = self.parts.parts[index]
        if self.ctx.stop.is_set():
            raise Interrupted()
        if self._errors:
            return  # another part failed for good: no more attempts; the state keeps progress
        # A resumed part asks again for bytes it has, to compare; a fresh one (but the first)
        # asks for the previous part's last bytes, compared once every part is written.
        fresh = p.done == 0 and p.start > 0
        asked = max(0, p.start - OVERLAP) if fresh else resume_from(p.next, p.start)
        seam = bytearray() if fresh else None
        with self.source.open(self.remote, asked, p.end) as body:
            if body.start != asked:
                raise RangeIgnored(f"the site ignored the range (data from {body.start})")
            if body.total is not None and body.total != self.size:
                raise SourceError(f"the file changed on the site ({body.total} bytes now)")
            self._first_part_started()
            try:
                pos = self._copy(body, p.next, p.end, self._part_progress(p), seam).run()
            except ResumeMismatch:
                with self._lock:
                    p.done = 0
                raise
            if pos < p.end:
                raise TransientError(f"got {pos - p.start} of {p.end - p.start} bytes")
        if seam is not None:
            with self._lock:
                self._seams[p.start] = bytes(seam)
        self._save()

    def _seams_agree(self) -> bool:
        """Each fresh part's first bytes, asked from before its start, match the bytes the
        part before it wrote: a range answered with bytes from elsewhere fails here."""
        for start, seam in self._seams.items():
            if os.pread(self.fd, len(seam), start - len(seam)) != seam:
                vlog(2, "%s: a part's bytes do not join the part before it", self.fr.relpath)
                return False
        return True

    def _part_progress(self, p: Part) -> Callable[[int, int], None]:
        def on_bytes(n: int, pos: int) -> None:
            with self._lock:
                p.done = pos - p.start
                self.fr.bytes_transferred += n
                self._unsaved += n
                due = self._unsaved >= SAVE_EVERY
                if due:
                    self._unsaved = 0
            self.ctx.reporter.file_bytes(self.fr, n)
            if due:
                self._save()

        return on_bytes

    def _save(self) -> None:
        with self._save_lock:  # one writer of the temporary name at a time
            if self.config.fsync:
                flush(self.fd, data_only=True)  # the state must never claim bytes the disk lacks
            with self._lock:
                parts = [Part(p.start, p.end, p.done) for p in self.parts.parts]
            snapshot = PartsState(self.size, parts)
            save_state(self.state_file, snapshot, durable=self.config.fsync)

    def _end_parts(self) -> None:
        """Runs once, in the worker that ended the last part."""
        self.fr.elapsed = time.monotonic() - self._t0
        self.fr.attempts = self.retry.attempts
        try:
            with self._local_errors():
                self._settle_parts()
        except (Interrupted, KeyboardInterrupt):
            pass  # run_whole said so in the file's status; the session is stopping
        except Exception as exc:  # a bug must still settle the file, once
            self._fail(f"internal error: {exc!r}")
        finally:
            self.release()  # (run_whole, when it ran, released already: this is a no-op)

    def _settle_parts(self) -> None:
        if self._interrupted:
            self._save()
            self._stopped()
        elif self._errors:
            self._save()
            self._fail("; ".join(self._errors[:3]))
        elif self._fallback:
            vlog(2, "%s: the site ignores ranges; fetching it whole", self.fr.relpath)
            self._restart_whole()
        else:
            self._finish_parts()

    def _finish_parts(self) -> None:
        _crashpoint.crashpoint("parts-done", self.target.name)
        if not self._seams_agree():
            self._restart_whole()  # the site's ranges cannot be trusted: one connection
            return
        try:
            self._finish()
        except VerificationError as exc:
            if not self._bad_content(exc):
                self._restart_whole()  # fetch it again on one connection
        except TransientError as exc:
            self._fail(str(exc))

    def _restart_whole(self) -> None:
        os.ftruncate(self.fd, 0)
        unlink_quietly(self.state_file)
        self.parts = None
        self.resumed = False
        self.run_whole()
