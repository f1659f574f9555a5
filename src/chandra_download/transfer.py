"""One file's single path: decide, lock, decide again, fetch (whole or in parts), verify, move.

A :class:`FileJob` is made per file and source. :meth:`FileJob.start` looks at the disk,
learns the archive's exact size when it needs it, skips what is done, and otherwise takes the
``.part`` lock and decides again under it (a rival process may have finished the file while
we waited). It then says how the bytes are to come: on one connection
(:meth:`FileJob.run_whole`) or as ranged parts that the engine runs on its workers
(:meth:`FileJob.run_part`). Both end in :meth:`FileJob._finish`: size and content checks on
the worker, then flush, rename and directory fsync on the session's finisher
(:mod:`chandra_download.finisher`), which settles the file and lets its lock go. Bytes that fail a content check identically on two fetches are the archive's own and
are kept, with a warning; different bytes each time are damage in transit and are retried.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from . import _crashpoint
from .context import Context, sha256_of
from .disk import acquire, flush, release
from .errors import (
    ContentRangeMismatch,
    LocalError,
    RangeNotSatisfiable,
    SizeUnknown,
    SourceError,
    TransientError,
    VerificationError,
)
from .log import vlog
from .parts import Outcome, PartsFile, RangedParts
from .plan import Action, Decision, OnDisk, decide, look, needs_size
from .record import (
    MODIFIED_SLACK,
    PARTIAL_NOTE_LIMIT,
    modified_epoch,
    note_partial,
    partial_changed,
    partial_noted,
)
from .results import FileResult, LocalState, Status
from .retry import Interrupted, RetriesExhausted, RetryPolicy
from .sources.base import Body, RemoteFile, Source
from .split import PartsState
from .statedir import Spot
from .stream import (
    DROP_BEHIND,
    OVERLAP,
    WRITE_SLICE,
    Copy,
    RateGuard,
    ResumeMismatch,
    body_has_more,
    resume_from,
)
from .tree import Dirs, fsync_at, lstat_at, open_at, rename_at, unlink_at
from .verify import Checker, check_fd, content_checks, read_into


class Next(Enum):
    """What :meth:`FileJob.start` leaves to do."""

    DONE = "done"  # settled (present, larger, failed or finished)
    WHOLE = "whole"  # run_whole() on this worker
    PARTS = "parts"  # run_part(i) for each pending part, on any workers


class FileJob:
    """One remote file on one source, from decision to verified final name."""

    def __init__(self, ctx: Context, source: Source, remote: RemoteFile, fr: FileResult) -> None:
        self.ctx, self.config = ctx, ctx.config
        self.source, self.remote, self.fr = source, remote, fr
        self.target = fr.path
        # Our temporaries live in our hidden directory, never beside the archive's names.
        self.spot = Spot.of(fr)
        self.size = remote.size
        #: What the caller saw on disk just before, and the size it vouched for then (the
        #: engine's batch looked already, to ask the sizes only the site can tell at once).
        self.seen: tuple[OnDisk, int | None] | None = None
        self.fd = -1
        #: The open directories of the file and of its temporaries, once it is to be written:
        #: every name below the output directory goes through them (tree.py), never a path.
        self.dirs: Dirs | None = None
        self.parts: RangedParts | None = None  # a large file's ranged parts, when split
        self.failed_hash: str | None = None  # bytes that last failed a content check
        self.resumed = False
        #: Bytes already in the .part when the fetch begins (:meth:`_begin`).
        self.begins_at = 0
        self._began = False  # this job wrote the .part's bytes from byte 0
        self._lock = threading.Lock()  # parts report bytes from several workers
        self._no_size = False  # the site states no size: the file comes whole
        self._streamed: Checker | None = None  # this attempt's bytes, checked as they came
        self._digest: str | None = None  # the sha256 of the .part's bytes, once known
        #: Set once the file is whole and verified: (size, status, identity) it ends with.
        self._final: tuple[int, Status, tuple[str | None, str | None]] | None = None
        self._moved = False  # renamed into place (by the finisher, when handed over)
        #: No state file was there when the lock was taken: with no parts since, none is.
        self._stateless = False
        self._moved_st: os.stat_result | None = None  # the open file's, as moved into place
        self._part_st: os.stat_result | None = None  # the .part's, as its lock was taken
        #: Handed to the session's finisher (finisher.py): it settles the file and lets the
        #: lock go, then calls :attr:`then`; the worker must neither settle nor release it.
        self.handed = False
        #: Called on the finisher's thread once a file handed over is settled (the engine's
        #: report); without it, the file is finished on the worker (inline).
        self.then: Callable[[], None] | None = None
        #: The file's retry budget: the whole-file loop and each ranged part retry through
        #: a part of it (RetryPolicy.for_part), so every retry counts in fr.attempts.
        self.retry = RetryPolicy.for_session(
            ctx.config, ctx.stop, fr.relpath, on_retry=self._told_retry
        )

    @property
    def part(self) -> Path:
        """The file's ``.part`` (its path, for what is said; every call goes by name)."""
        return self.spot.part

    @property
    def state_file(self) -> Path:
        """The file's split state (its path, for what is said)."""
        return self.spot.state

    # -- deciding -------------------------------------------------------------------------
    def start(self) -> Next:
        """Decide from the disk, lock, decide again; settle the file when nothing is to do."""
        self.fr.site = self.source.label
        try:
            with self._local_errors():
                return self._start()
        except (Interrupted, KeyboardInterrupt):
            self._stopped()
            self.release()  # (stopped under the lock: a later run here would wait on it)
            raise
        except SourceError as exc:
            self._fail(str(exc))
        self.release()
        return Next.DONE

    @contextmanager
    def _local_errors(self) -> Iterator[None]:
        """A local error (ours, or one the OS raised) fails the file with one clear line."""
        try:
            yield
        except (LocalError, OSError) as exc:
            self._fail_local(LocalError.of(exc, self.part))

    def _start(self) -> Next:
        if self.seen is not None:  # (its directories are held only to be written, below)
            (disk, vouched), self.seen = self.seen, None
            self.size = vouched if self.size is None else self.size
        else:
            self.dirs = self.ctx.tree.hold(self.spot, create=False)  # (let go in _release)
            disk = look(self.spot, self.dirs)
            if self.size is None:  # a complete local copy may tell its size without a HEAD
                self.size = vouched_size(self.ctx, self.remote, self.fr, disk)
        self._learn_size(disk)
        first = decide(disk, self.size)
        if not self._changed_at_archive(disk) and (
            first.action is Action.LARGER
            or (first.action is Action.PRESENT and not disk.leftovers and self._good_as_is())
        ):
            self._settle(first)
            self._release()  # (its directories)
            return Next.DONE
        # Every directory opened below its parent without following links, every name
        # through those descriptors: a symlink planted since the listing is never followed.
        self._hold_to_write()
        self._lock_part()
        # Again under the lock (a rival may have finished), the .part as the lock found it.
        disk = look(self.spot, self._dirs(), self._part_st)
        self._stateless = not disk.state_file  # (only the lock holder writes one)
        self._learn_size(disk)
        return self._act(decide(disk, self.size), disk)

    def _hold_to_write(self) -> None:
        """The file's directories, made where missing and opened anew where moved or
        removed since (tree.py), held until the file ends (on the finisher, if handed)."""
        old, self.dirs = self.dirs, self.ctx.tree.hold(self.spot)
        if old is not None:
            self.ctx.tree.let_go(old)

    def _good_as_is(self) -> bool:
        """A complete file needs nothing written: always without --repair; with it, when its
        content check passes (read before taking any lock, so a read-only tree of good
        files is repaired without a write, issue 20.8; a failing one is checked again under
        the lock)."""
        if not self.config.repair:
            return True
        if self.dirs is None:
            self.dirs = self.ctx.tree.hold(self.spot, create=False)  # (let go in _release)
        try:
            self.fr.sha256 = self._check_present().finish()
        except (VerificationError, OSError):
            return False
        return True

    def _dirs(self) -> Dirs:
        assert self.dirs is not None  # set in _start before anything is written
        return self.dirs

    @property
    def dir_fd(self) -> int:
        """The open directory of the file's final name (the finisher fsyncs it)."""
        return self._dirs().target_fd

    def _lock_part(self) -> None:
        """Take the .part's lock. A .part with other hard links (a ``cp -al`` snapshot of
        the tree) is never written through: its name is dropped, the other links keep their
        bytes, and the file is fetched into a fresh .part of ours."""
        dirs = self._dirs()
        for _ in range(_LINK_TRIES):
            self.fd = acquire(self.part, dirs.partial_fd)
            self._part_st = os.fstat(self.fd)
            if self._part_st.st_nlink == 1:
                return
            vlog(2, "%s: its partial file has other hard links; starting afresh", self.fr.relpath)
            self._unlink(self.spot.part_name)
            self._unlink(self.spot.state_name)
            release(self.fd)
            self.fd = -1
        raise LocalError(f"refusing to write {self.part}: it has other hard links", self.part)

    def _unlink(self, name: str) -> None:
        """Remove one of our temporaries (by name, in our open directory) if it is there."""
        unlink_at(self._dirs().partial_fd, name, lambda: self.spot.partial_dir / name)

    def _learn_size(self, disk: OnDisk) -> None:
        """The archive's exact size, asked of the source when deciding or splitting needs it,
        or when the listing gave not even a rounded size (nothing else would bound the body)."""
        cfg = self.config
        big = self._splittable() and self.remote.best_size >= cfg.split_threshold
        unbounded = self.remote.approx_size is None
        if self.size is None and not self._no_size and (needs_size(disk) or big or unbounded):
            policy = RetryPolicy.for_session(cfg, self.ctx.stop, f"{self.fr.relpath} (size)")
            try:
                self.size = policy.call(lambda: self.source.size(self.remote))
            except SizeUnknown:
                if needs_size(disk) or unbounded:
                    raise  # deciding, or bounding the body, needs it
                vlog(2, "%s: the site gives no size; fetching it whole", self.fr.relpath)
                self._no_size = True
                return  # no size, no parts: one connection, bounded by the listing
            self.fr.size = self.size

    def _act(self, d: Decision, disk: OnDisk) -> Next:
        if d.note:
            vlog(2, "%s: %s; starting over", self.fr.relpath, d.note)
        # A state file's temporary is only ever written by the lock holder, which we are now:
        # one left by a process killed while saving is stale.
        self._unlink(self.spot.state_tmp_name)
        if self.fr.changed and disk.final is not None:
            return self._fetch_anew()
        if d.action in (Action.RESUME, Action.PARTS, Action.FINISH):
            self.fr.changed = partial_changed(self.fr)  # its bytes: of the site's copy now?
            if self.fr.changed:
                return self._fetch_anew()
        if d.action in (Action.PRESENT, Action.LARGER):
            return self._present(d)
        self.fr.local_size = d.offset
        if d.action is Action.ADOPT:
            return self._adopt()
        unknown = d.action is not Action.FETCH and self._of_unknown_copy(d)
        if d.action is Action.PARTS and not unknown:
            assert isinstance(disk.state, PartsState)  # PARTS: a usable state is there
            self.parts, self.resumed = self._ranged(disk.state), True
            vlog(2, "%s: resuming %d part(s)", self.fr.relpath, len(self.parts.pending))
            return self._go_parts()
        if d.action is Action.FETCH or unknown:
            if disk.part != 0:  # (the lock's own new .part is empty: nothing to cut)
                os.ftruncate(self.fd, 0)  # a .part we cannot use may have holes
            if disk.state_file:  # (only the lock holder writes one: none is, if none was)
                self._unlink(self.spot.state_name)
            d = Decision(Action.FETCH)
        self.resumed = d.offset > 0
        return self._begin(d.offset)

    def _changed_at_archive(self, disk: OnDisk) -> bool:
        """Whether the local file is a copy the archive has since changed (its record of
        what was fetched says so: size, ETag or Last-Modified); sets ``fr.changed``."""
        self.fr.last_modified, self.fr.etag = self.source.identity(self.remote)
        self.fr.changed = None
        if disk.final is not None:
            self.fr.changed = self.ctx.records.changed(self.fr, self.size)
        return self.fr.changed is not None

    def _note_partial(self) -> None:
        """A large file's bytes begin: note whose copy they are (its ETag/Last-Modified), so
        a later resume onto them is refused when the archive's copy changed (issue 20.9)."""
        self._began = True
        if (self.size or self.remote.best_size) >= PARTIAL_NOTE_LIMIT:
            note_partial(self.fr, self.source.identity(self.remote))

    def _of_unknown_copy(self, d: Decision, mtime: float | None = None) -> bool:
        """A partial file with no note of whose copy it holds (a killed run's, CIAO's or
        wget's leftover, a note lost) and no content check to catch bytes of an older copy
        (issue 20.9), at a site stating an identity: fetched again from byte 0 when it was
        last written (``mtime``; the .part's by default) before the site's copy existed;
        and always when it is to be resumed from its end and small (below
        PARTIAL_NOTE_LIMIT: only the bytes near the resume point are compared)."""
        resume = d.action in (Action.RESUME, Action.ADOPT)
        if not (resume or d.action in (Action.PARTS, Action.FINISH)) or d.offset <= OVERLAP:
            return False  # (a resume at most OVERLAP in starts at byte 0 anyway)
        if content_checks(self.fr.relpath, self.config.verify_checksums):
            return False  # bytes of another copy fail its check at the end
        if not (self.fr.last_modified or self.fr.etag) or partial_noted(self.fr):
            return False  # (a site stating none: nothing could match, as for a large file)
        if self._older_than_site(os.fstat(self.fd).st_mtime if mtime is None else mtime):
            return True
        if not resume or (self.size or self.remote.best_size) >= PARTIAL_NOTE_LIMIT:
            return False
        vlog(
            2,
            "%s: nothing says whose copy its partial file holds; fetching it from the start",
            self.fr.relpath,
        )
        return True

    def _older_than_site(self, mtime: float) -> bool:
        """Whether a partial file last written at ``mtime`` predates the site's copy (its
        Last-Modified, read at its earliest): its bytes cannot all be of that copy."""
        since = modified_epoch(self.fr.last_modified)
        if since is None or mtime >= since - MODIFIED_SLACK:
            return False
        vlog(
            2,
            "%s: its partial file was last written before the site's copy (Last-Modified %s); "
            "fetching it from the start",
            self.fr.relpath,
            self.fr.last_modified,
        )
        return True

    def _fetch_anew(self) -> Next:
        """The archive changed the file: fetch its new copy from byte 0 into the partial
        file; the old copy stays in place until the new one is complete and verified."""
        vlog(2, "%s: %s; fetching it again", self.fr.relpath, self.fr.changed)
        os.ftruncate(self.fd, 0)
        self._unlink(self.spot.state_name)
        self.resumed = False
        return self._begin(0)

    def _adopt(self) -> Next:
        """CIAO's tool leaves partial files at the final name: resume one through our .part.
        It is moved there when it is ours alone; copied when it has other hard links (never
        written through: the other links keep their bytes); left alone, with one line, when
        another user owns it or it is read-only."""
        dirs = self._dirs()
        src = self._open_target()
        try:
            st = os.fstat(src)
            why = _not_ours(st, self.target)
            if why is not None:
                return self._leave_alone(why)
            self._unlink(self.spot.state_name)  # its .part is replaced: no state is of it
            if st.st_nlink > 1:
                return self._adopt_a_copy(src, st)
        finally:
            os.close(src)
        rename_at(dirs.target_fd, self.spot.name, dirs.partial_fd, self.spot.part_name, self.part)
        release(self.fd)  # its lock was on the .part the move replaced
        self.fd = -1
        self._lock_part()
        disk = look(self.spot, dirs)  # what we moved, unless a rival came between
        return self._act(decide(disk, self.size), disk)

    def _adopt_a_copy(self, src: int, st: os.stat_result) -> Next:
        """Resume a leftover with other hard links from a copy of it in our .part, under the
        guards of a moved one (issue 20.9): bytes of an unknown copy are not copied at all."""
        vlog(2, "%s: its partial file has other hard links; copied", self.fr.relpath)
        os.ftruncate(self.fd, 0)
        have = 0
        if not self._of_unknown_copy(Decision(Action.RESUME, st.st_size), st.st_mtime):
            have = _copy_into(src, self.fd)
        self.resumed = have > 0
        return self._begin(have)

    def _leave_alone(self, why: str) -> Next:
        """A local file not ours to touch: the file is skipped, with why, and kept."""
        self.fr.status, self.fr.reason = Status.SKIPPED, why
        self.fr.local = LocalState.PARTIAL
        self.release()
        return Next.DONE

    def _open_target(self) -> int:
        """The file at the final name, opened to read through its open directory."""
        try:
            return open_at(self._dirs().target_fd, self.spot.name, os.O_RDONLY)
        except OSError as exc:
            raise LocalError.from_os(exc, self.target) from None

    def _begin(self, have: int) -> Next:
        """Whole on one connection, or as ranged parts when the file is large."""
        cfg, size = self.config, self.size
        self.begins_at = have
        if size is None or size - have < cfg.split_threshold:
            return Next.WHOLE
        if not self._splittable():
            return Next.WHOLE
        self.parts = self._ranged(PartsState.plan(size, cfg.jobs, cfg.split_threshold, have))
        self.parts.save()  # before any data: a .part with holes always has its state beside it
        if have == 0:
            self._note_partial()
        return self._go_parts()

    def _splittable(self) -> bool:
        """Whether the session fetches large files in ranged parts at all."""
        return self.config.split_threshold > 0 and self.config.jobs > 1

    def _go_parts(self) -> Next:
        assert self.parts is not None
        return Next.PARTS if self.parts.pending else self._end_parts_now()

    def _end_parts_now(self) -> Next:
        """Every part was already done (a crash before the rename): just finish."""
        self._end_parts()
        return Next.DONE

    def _present(self, d: Decision) -> Next:
        if d.action is Action.PRESENT and self.config.repair:
            checker = self._check_present()
            try:
                self.fr.sha256 = checker.finish()
            except VerificationError as problem:
                return self._repair(problem, checker.digest)
        # Leftovers of ours beside a done file (a crash after the rename) go; we hold the lock.
        self._unlink(self.spot.state_name)
        self._unlink(self.spot.part_name)
        self._settle(d)
        self.release()
        return Next.DONE

    def _repair(self, problem: VerificationError, digest: str) -> Next:
        """Fetch a file that fails its check into .part; the bad copy stays until replaced."""
        vlog(2, "%s fails its check (%s); fetching it again", self.fr.relpath, problem)
        self.failed_hash = digest  # the same bytes again are the archive's own
        os.ftruncate(self.fd, 0)
        self._unlink(self.spot.state_name)
        return self._begin(0)

    def _check_present(self) -> Checker:
        """The content checks and sha256 of the file at its final name, in one read."""
        fd = self._open_target()
        try:
            return check_fd(fd, self.fr.relpath, checksums=self.config.verify_checksums)
        finally:
            os.close(fd)

    def _settle(self, d: Decision) -> None:
        fr = self.fr
        fr.local, fr.local_size = d.local, d.offset
        if self.size is not None:
            fr.size = self.size
        if d.action is Action.PRESENT:
            fr.status = Status.PRESENT
        else:
            fr.status = Status.SKIPPED
            fr.reason = (
                f"local file is larger than the archive's ({d.offset} > {self.size} bytes); "
                "left alone"
            )

    # -- one connection -------------------------------------------------------------------
    def run_whole(self) -> None:
        """Fetch on one connection with retries and resume, then verify and move into place."""
        try:
            with self._local_errors():
                self._attempts()
        except (Interrupted, KeyboardInterrupt):
            self._stopped()
            raise
        finally:
            self.release()

    def _attempts(self) -> None:
        policy = self.retry.for_part(self.fr.relpath)
        while True:
            self.fr.attempts = self.retry.attempts
            if self.ctx.stop.is_set():
                raise Interrupted()
            try:
                self._fetch_once()
                _crashpoint.crashpoint("part-written", self.target.name)
                self._finish()
                return
            except VerificationError as exc:
                first = self.failed_hash is None
                if self._bad_content(exc) or not self._refetch(policy, exc, first):
                    return
            except TransientError as exc:
                if isinstance(exc, (ResumeMismatch, ContentRangeMismatch)):
                    os.ftruncate(self.fd, 0)  # a site wrong about ranges: start over from 0
                if not self._refetch(policy, exc, False):
                    return
            except SourceError as exc:
                return self._fail(str(exc))

    def _refetch(self, policy: RetryPolicy, exc: Exception, compare: bool) -> bool:
        """Whether to fetch again after ``exc`` (waiting first for a transient failure);
        ``compare``: one more fetch to compare with, whatever the retries (the same bytes
        again are the archive's own). False when the file has failed for good."""
        try:
            if isinstance(exc, VerificationError):
                policy.increment(exc, extra=compare)  # damage in transit: no wait
            else:
                policy.retry(exc)
        except RetriesExhausted as final:
            self._fail(f"{final} (gave up after {self.retry.attempts} attempts)")
            if isinstance(exc, VerificationError):
                os.ftruncate(self.fd, 0)  # bad bytes are never resumed from
            return False
        return True

    def _told_retry(self, attempt: int, delay: float, reason: str) -> None:
        self.fr.attempts = attempt
        self.ctx.notify("file_retry", self.fr, attempt, delay, reason)  # it logs it

    def _fetch_once(self) -> None:
        """One attempt: bring the .part to the file's full size (or raise)."""
        self._streamed = None
        have = os.fstat(self.fd).st_size
        if self.size is not None and have > self.size:
            os.ftruncate(self.fd, 0)
            have = 0
        if self.size is not None and have == self.size:
            return  # already whole (a crash before the rename): finish it
        asked = resume_from(have)
        t0 = time.monotonic()  # a file's time runs from its request to its last byte (CIAO's)
        try:
            body = self.source.open(self.remote, asked)
        except RangeNotSatisfiable as exc:
            self._beyond_end(have, exc)
            return
        with body:
            self._take_size(body)
            if body.start != asked:
                have = self._restart_point(body, asked)
            self.resumed = have > 0  # this attempt's bytes join ones already on disk
            if have == 0:
                self._note_partial()
            self._attempt_started(have)
            checker = self._checker(have)
            try:
                copy = self._copy(body, have, self.size, self._whole_progress, sink=checker.feed)
                copy.drop_behind = DROP_BEHIND if self.config.fsync else 0
                pos = copy.run()
            finally:
                self.fr.elapsed += time.monotonic() - t0
            self._check_end(body, pos)
            self._streamed = checker

    def _checker(self, have: int) -> Checker:
        """A checker fed the ``have`` bytes already on disk (a resume reads back only
        those); the copy feeds it the rest as it writes them."""
        checker = Checker(self.fr.relpath, checksums=self.config.verify_checksums)
        read_into(checker, self.fd, 0, have)
        return checker

    def _beyond_end(self, have: int, exc: RangeNotSatisfiable) -> None:
        """416 for our offset: the .part may be whole already (a crash before the rename)."""
        if exc.total is None or (self.size is not None and exc.total != self.size):
            raise TransientError(f"{self.fr.relpath}: the server refused offset {have}")
        self.size = self.fr.size = exc.total
        if have != exc.total:
            os.ftruncate(self.fd, 0)
            raise TransientError(f"{self.fr.relpath}: the server refused to resume at {have}")

    def _take_size(self, body: Body) -> None:
        if body.total is None:
            return
        if self.size is None:
            self.size = self.fr.size = body.total
        elif body.total != self.size:
            raise SourceError(
                f"{self.fr.relpath}: the site says {body.total} bytes, the listing {self.size}"
            )

    def _restart_point(self, body: Body, asked: int) -> int:
        if body.start != 0:
            raise TransientError(f"{self.fr.relpath}: data starts at {body.start}, not {asked}")
        vlog(
            2, "%s: the server ignored the resume offset; fetching from the start", self.fr.relpath
        )
        os.ftruncate(self.fd, 0)
        return 0

    def _check_end(self, body: Body, pos: int) -> None:
        if self.size is None:  # no size anywhere: the body's end is the file's, if the
            self._short_of_listing(pos)  # listing's rounded size allows it
            self.size = self.fr.size = pos
        if pos < self.size:
            raise TransientError(f"{self.fr.relpath}: got {pos} of {self.size} bytes")
        if body_has_more(body):
            os.ftruncate(self.fd, 0)
            raise TransientError(
                f"{self.fr.relpath}: the server sent more than the file's {self.size} bytes"
            )

    def _short_of_listing(self, pos: int) -> None:
        """A body of unannounced length that ended well short of the listing's rounded size
        was cut, not the file (an HTTP/1.0 close, a dropped chunked stream): retried."""
        shown = self.remote.approx_size
        if shown is not None and pos < shown and not _within_rounding(pos, shown):
            os.ftruncate(self.fd, 0)  # nothing vouches for where these bytes end
            raise TransientError(
                f"{self.fr.relpath}: the body ended after {pos} bytes, of no stated length; "
                f"the listing shows about {shown} bytes"
            )

    def _whole_progress(self, n: int, pos: int) -> None:
        self.fr.bytes_transferred += n
        self.ctx.reporter.file_bytes(self.fr, n)

    def _copy(
        self,
        body: Body,
        verify_below: int,
        end: int | None,
        on_bytes: Callable[[int, int], None],
        seam: bytearray | None = None,
        sink: Callable[[memoryview], None] | None = None,
    ) -> Copy:
        guard = RateGuard(self.config.min_rate, self.config.timeout)
        return Copy(
            self.fd,
            self.part,
            body,
            verify_below,
            end,
            self.ctx.stop,
            guard,
            self.config.chunk_size,
            on_bytes,
            seam,
            sink,
        )

    def _attempt_started(self, have: int) -> None:
        """Each attempt of a whole file restarts its display from the bytes on disk."""
        self.fr.local_size = have
        self.ctx.reporter.file_started(self.fr)

    # -- ranged parts (parts.py) ----------------------------------------------------------
    def _ranged(self, state: PartsState) -> RangedParts:
        """The parts object for ``state``, writing through this job's locked .part."""
        file = PartsFile(
            fd=self.fd,
            part=self.part,
            state_file=self.state_file,
            dir_fd=self._dirs().partial_fd,
            durable=self.config.fsync,
            source=self.source,
            remote=self.remote,
            copy=self._copy,
            retry=self.retry,
            started=self._parts_started,
            progress=self._parts_progress,
            local_problem=self.ctx.local_problem,
            checker=functools.partial(
                Checker, self.fr.relpath, checksums=self.config.verify_checksums
            ),
        )
        return RangedParts(state, file, self.fr.relpath)

    def run_part(self, index: int) -> bool:
        """Fetch one ranged part (on any worker); True for the call that settled the file."""
        assert self.parts is not None  # Next.PARTS: start() made them
        if not self.parts.run(index):
            return False
        self._end_parts()
        return True

    def _parts_started(self, have: int) -> None:
        """A split file is one display from its first part's first byte."""
        self.fr.local_size = have
        self.ctx.reporter.file_started(self.fr)

    def _parts_progress(self, n: int) -> None:
        with self._lock:
            self.fr.bytes_transferred += n
        self.ctx.reporter.file_bytes(self.fr, n)

    def _end_parts(self) -> None:
        """Runs once, in the worker that ended the last part."""
        parts = self.parts
        assert parts is not None
        self.fr.elapsed = parts.elapsed
        self.fr.attempts = self.retry.attempts
        try:
            with self._local_errors():
                self._settle_parts(parts)
        except (Interrupted, KeyboardInterrupt):
            pass  # run_whole said so in the file's status; the session is stopping
        except Exception as exc:  # a bug must still settle the file, once
            self._fail(f"internal error: {exc!r}")
        finally:
            parts.unfollow()  # (before the .part is closed; a no-op once they finished)
            self.release()  # (run_whole, when it ran, released already: this is a no-op)

    def _settle_parts(self, parts: RangedParts) -> None:
        outcome = parts.outcome
        if outcome is not Outcome.FINISH:
            parts.unfollow()
        if outcome is Outcome.STOPPED:
            parts.save()
            self._stopped()
        elif outcome is Outcome.FAILED:
            parts.save()
            self._fail(parts.reason or "a part failed")
        elif outcome is Outcome.WHOLE:
            self._restart_whole()
        else:
            self._finish_parts()

    def _finish_parts(self) -> None:
        _crashpoint.crashpoint("parts-done", self.target.name)
        assert self.parts is not None
        self._streamed = self.parts.followed()  # (None: read back whole by _finish)
        try:
            self._finish()
        except VerificationError as exc:
            if not self._bad_content(exc):
                self._restart_whole()  # fetch it again on one connection
        except TransientError as exc:
            self._fail(str(exc))

    def _restart_whole(self) -> None:
        os.ftruncate(self.fd, 0)
        self._unlink(self.spot.state_name)
        self.parts = None
        self.resumed = False
        self.run_whole()

    # -- the end --------------------------------------------------------------------------
    def _finish(self) -> None:
        """Verify the whole .part and move it into place; VerificationError when it fails."""
        size = os.fstat(self.fd).st_size
        if self.size is not None and size != self.size:
            raise TransientError(
                f"{self.fr.relpath}: {size} bytes on disk, the file has {self.size}"
            )
        checker, self._streamed = self._streamed, None
        if checker is None or checker.size != size:  # (split, or whole from an earlier run)
            checker = check_fd(self.fd, self.fr.relpath, checksums=self.config.verify_checksums)
        self._digest = checker.digest
        checker.finish()  # raises VerificationError when a check fails
        self._end(size, Status.RESUMED if self.resumed else Status.DOWNLOADED)

    def _end(self, size: int, status: Status) -> None:
        """The file is whole and verified: into place by the session's finisher, so this
        worker takes its next request at once; here when there is none or nothing to flush."""
        self._final = (size, status, self.source.identity(self.remote))
        finisher = self.ctx.finisher
        if finisher is not None and self.then is not None and self.config.fsync:
            self.handed = True
            finisher.take(self)
            return
        self._move()
        if self.config.fsync:
            fsync_at(self.dir_fd)
        self._done()

    def move_into_place(self) -> bool:
        """The finisher's first step: flush, rename, check what is now at the final name;
        False when that failed (the file is failed, its bytes kept in the .part)."""
        try:
            with self._local_errors():
                self._move()
        except Exception as exc:  # a bug must still settle the file, once
            self._fail(f"internal error: {exc!r}")
        return self._moved

    def finished_off(self) -> None:
        """The finisher's last step, once the directory is fsynced: the file's result is
        set, its lock let go, and :attr:`then` told."""
        try:
            if self._moved:
                self._done()
        finally:
            self._release()
        if self.then is not None:
            try:
                self.then()
            except Exception as exc:  # (a bug in the report: the finisher must go on)
                vlog(0, "internal error reporting %s: %r", self.fr.relpath, exc)

    def _move(self) -> None:
        """Flush the .part (durable before any name vouches for it) and rename it."""
        if self.config.fsync:
            flush(self.fd)
        # Before the rename (a lone full .part is contiguous); none to remove when none was
        # there under the lock and no parts were saved since.
        if self.parts is not None or not self._stateless:
            self._unlink(self.spot.state_name)
        try:
            self._rename_into_place()
        except LocalError as exc:
            if exc.errno != errno.ENOENT:
                raise
            self._hold_to_write()  # its directory, removed since it was opened: made again
            self._rename_into_place()
        _crashpoint.crashpoint("renamed", self.target.name)
        self._moved_is_ours()
        self._moved = True

    def _done(self) -> None:
        """Durable under its final name (directory fsynced, lock still held): the file's
        result. This is the moment the file is done."""
        assert self._final is not None  # (_end set it)
        size, status, (self.fr.last_modified, self.fr.etag) = self._final
        self.fr.size = self.fr.local_size = size
        self.fr.reason = None
        self.fr.sha256 = self._digest
        self.fr.status = status
        # Recorded now, not only at the session's end: a run killed later keeps it.
        st = self._moved_st or os.fstat(self.fd)  # (nothing is written after the move)
        self.ctx.records.journal(self.fr, st, self.config.verify_checksums)

    def _rename_into_place(self) -> None:
        dirs, spot = self._dirs(), self.spot
        rename_at(dirs.partial_fd, spot.part_name, dirs.target_fd, spot.name, self.target)

    def _moved_is_ours(self) -> None:
        """The file now at the final name must be the open file checked: a name swapped in
        meanwhile would have moved other bytes into place. Those are taken out."""
        target_fd = self._dirs().target_fd
        st = lstat_at(target_fd, self.spot.name, self.target)
        mine = self._moved_st = os.fstat(self.fd)
        if st is None or (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
            if st is not None and stat.S_ISREG(st.st_mode):
                unlink_at(target_fd, self.spot.name, self.target)
            raise LocalError(
                f"cannot write {self.target}: another file was moved in its place", self.target
            )

    def _bad_content(self, exc: VerificationError) -> bool:
        """Bytes that failed a check: kept when identical to the last failure (True)."""
        digest, self._digest = self._digest or sha256_of(self.fd), None
        if digest == self.failed_hash:
            self.fr.warning = f"kept as served: the archive's copy fails its check ({exc.detail})"
            vlog(2, "%s: %s", self.fr.relpath, self.fr.warning)
            self._digest = digest
            self._end(os.fstat(self.fd).st_size, Status.DOWNLOADED)
            return True
        self.failed_hash = digest
        os.ftruncate(self.fd, 0)  # bad bytes are never resumed from
        self._unlink(self.spot.state_name)
        vlog(2, "%s failed a check (%s); fetching it again", self.fr.relpath, exc)
        return False

    def _fail(self, reason: str) -> None:
        self.fr.status, self.fr.reason = Status.FAILED, reason

    def _stopped(self) -> None:
        """The session is stopping: the file is interrupted (not failed), its data kept."""
        self.fr.status = Status.INTERRUPTED
        self.fr.reason = "interrupted; any data fetched is kept for resume"

    def _fail_local(self, exc: LocalError) -> None:
        reason = self.ctx.local_problem(exc)
        kept = os.fstat(self.fd).st_size if exc.no_space and self.fd >= 0 else 0
        if kept:  # (an empty .part is removed: nothing to say about it)
            reason += f"; {kept} bytes kept in {self.spot.partial_dir} for resume"
        self._fail(reason)

    def release(self) -> None:
        """Drop the lock, unless the finisher holds the file now (it lets the lock go once
        the file is in place); an empty .part of a file that did not finish is removed."""
        if not self.handed:
            self._release()

    def _release(self) -> None:
        try:
            if self.fd >= 0:
                self._drop_if_empty()
        finally:
            if self.fd >= 0:
                release(self.fd)
                self.fd = -1
            if self.dirs is not None:
                self.ctx.tree.let_go(self.dirs)
                self.dirs = None

    def _drop_if_empty(self) -> None:
        """An empty .part of a file that did not finish goes, with any state of it."""
        try:
            # (a file moved into place has no .part: that name may be a rival's new one now)
            kept = not self._moved and self.fr.status is not Status.PRESENT
            if kept and os.fstat(self.fd).st_size == 0:
                self._unlink(self.spot.state_name)  # it can claim nothing of an empty .part
                self._unlink(self.spot.part_name)
            elif kept and self._began and (self.size or 0) < PARTIAL_NOTE_LIMIT:
                # A small file's bytes are noted only now they stay (a full disk, a stop, a
                # failure): a later run may then resume them (see _of_unknown_copy).
                note_partial(self.fr, self.source.identity(self.remote))
        except LocalError:
            pass  # (a directory planted at a name): the next run refuses it, clearly


def _listed_anew(then: str | None, now: str | None) -> bool:
    """Whether the listing shows another date for a file than when it was fetched."""
    return then is not None and now is not None and then != now


def vouched_size(ctx: Context, remote: RemoteFile, fr: FileResult, disk: OnDisk) -> int | None:
    """The size of a file complete at its final name, known without asking the site (no
    HEAD): it is within the listing's rounded size, and its fetch record still describes it
    or its content check passes (``fr.sha256`` is then set). None when only the site can
    tell (no record, no content check, a size outside the rounding) and under ``--repair``
    (it checks every file anyway); ``--check`` (audit.py) always asks."""
    final = disk.final
    if final is None or disk.leftovers or remote.approx_size is None or ctx.config.repair:
        return None
    if not _within_rounding(final, remote.approx_size):
        return None
    record = ctx.records.get(fr)
    if record is not None and _listed_anew(record.listed_date, remote.listed_date):
        return None  # the listing's date moved since the fetch: the site's answer decides
    if record is not None and record.size == final:
        fr.size = final
        return final
    checker = Checker(fr.relpath, checksums=ctx.config.verify_checksums)
    if not checker.checks:
        return None
    if not _read_final(ctx, Spot.of(fr), checker):
        return None  # (the decision says what is wrong with it)
    try:
        fr.sha256 = checker.finish()
    except VerificationError:
        return None  # a partial or damaged copy: the site's exact size decides
    fr.size = final
    return final


def _read_final(ctx: Context, spot: Spot, checker: Checker) -> bool:
    """Feed the file at ``spot``'s final name to ``checker``; False when it cannot be read."""
    try:
        with ctx.tree.held(spot) as dirs:
            fd = open_at(dirs.target_fd, spot.name, os.O_RDONLY)
    except (OSError, LocalError):
        return False
    try:
        read_into(checker, fd)
    finally:
        os.close(fd)
    return True


def _within_rounding(size: int, shown: int) -> bool:
    """Whether ``size`` bytes may be shown as ``shown`` by a listing that rounds sizes to
    two or three digits of K/M/G (Apache: ``2.1M``, ``12K``, exact below 1 KiB): within a
    tenth of the shown value, and 1 KiB."""
    slack = max(1024, shown // 10 + 1)
    return shown - slack <= size <= shown + slack


#: Fresh .part names taken for a file whose .part keeps getting other hard links.
_LINK_TRIES = 3


def _not_ours(st: os.stat_result, path: Path) -> str | None:
    """Why a partial file at a final name is not ours to take over, or None: another user
    owns it, or it is read-only (someone meant it to stay as it is)."""
    if not stat.S_ISREG(st.st_mode):
        return f"refusing to write {path}: it is not a regular file"
    if st.st_uid != os.geteuid():
        return (
            f"{path} is a partial file that belongs to another user (uid {st.st_uid}): left alone"
        )
    if not st.st_mode & stat.S_IWUSR:
        return f"{path} is a partial file that is read-only: left alone"
    return None


def _copy_into(src: int, dst: int) -> int:
    """Copy a file's bytes into another open file from byte 0; the bytes copied."""
    pos = 0
    while chunk := os.pread(src, _COPY_CHUNK, pos):
        os.pwrite(dst, chunk, pos)
        pos += len(chunk)
    return pos


_COPY_CHUNK = WRITE_SLICE  # (read and written in pieces that stay in the CPU's cache)
