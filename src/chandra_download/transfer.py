"""One file's life: lock, decide, stream to ``.part`` with retries, verify, move into place."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .config import SessionConfig
from .errors import RangeNotSatisfiable, SourceError, TransientError, VerificationError
from .log import vlog
from .plan import Action, part_path, plan_file, resolve
from .results import FileResult, Status
from .retry import Interrupted, backoff_delay, with_retries
from .sources.base import RemoteFile, Source
from .verify import check_file


def acquire(part: Path) -> int:
    """Open and lock the live ``.part`` file. Two processes never write the same file: the
    lock holder of the inode currently at the ``.part`` name is the only writer."""
    while True:
        # O_NOFOLLOW: a symlink planted at the .part name must not be written through.
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            vlog(1, "Waiting for another process writing %s", part.name[: -len(".part")])
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            live = os.stat(part).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            live = False
        if live:
            return fd
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Transfer:
    """Fetches single files for the engine; safe to call from many threads at once."""

    def __init__(
        self,
        config: SessionConfig,
        stop: threading.Event,
        on_bytes: Callable[[FileResult, int], None] = lambda fr, n: None,
        on_start: Callable[[FileResult], None] = lambda fr: None,
    ) -> None:
        self.config = config
        self.stop = stop
        self.on_bytes = on_bytes
        self.on_start = on_start

    def run(self, source: Source, remote: RemoteFile, fr: FileResult) -> None:
        """Bring ``fr.path`` up to date with ``remote``; fill in ``fr``'s status and reason."""
        target = fr.path
        fr.site = source.label
        plan = plan_file(remote, target)
        if plan.action is Action.PROBE and plan.partial_at_target:
            # Size unknown (HTTP) and a file at the final name: ask before touching it.
            remote = self._sized(source, remote, fr, plan.offset)
            if remote is None:
                return
            plan = plan_file(remote, target)
        if plan.action in (Action.PRESENT, Action.LARGER):
            self._settle(fr, plan.action, plan.offset, remote.size)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        part = part_path(target)
        fd = acquire(part)
        try:
            plan = plan_file(remote, target)  # again: another process may have finished it
            if plan.action is Action.PROBE and plan.partial_at_target:
                # It did (or left a file there) while we waited: never move a file that may
                # be complete without first learning the archive's size.
                sized = self._sized(source, remote, fr, plan.offset)
                if sized is None:
                    if os.fstat(fd).st_size == 0:
                        unlink_quietly(part)
                    return
                remote = sized
                plan = plan_file(remote, target)
            if plan.partial_at_target and plan.action in (Action.RESUME, Action.PROBE):
                # CIAO's tool leaves partial files at the final name; resume them via .part.
                os.replace(target, part)
                os.close(fd)
                fd = acquire(part)
                plan = plan_file(remote, target)
            if plan.action in (Action.PRESENT, Action.LARGER):
                if os.fstat(fd).st_size == 0:
                    unlink_quietly(part)
                self._settle(fr, plan.action, plan.offset, remote.size)
                return
            self._attempts(source, remote, fr, fd, part)
            if fr.status is Status.FAILED and os.fstat(fd).st_size == 0:
                unlink_quietly(part)  # nothing to resume from: leave no empty .part behind
        finally:
            os.close(fd)

    def _sized(
        self, source: Source, remote: RemoteFile, fr: FileResult, offset: int
    ) -> RemoteFile | None:
        """``remote`` with its exact size when the site tells it; None (``fr`` failed) on error."""
        try:
            total = with_retries(
                lambda: self._probe(source, remote, offset), self.config, self.stop, fr.relpath
            )
        except SourceError as exc:
            fr.status, fr.reason = Status.FAILED, str(exc)
            return None
        return remote if total is None else replace(remote, size=total)

    @staticmethod
    def _probe(source: Source, remote: RemoteFile, offset: int) -> int | None:
        """The archive's size of a file, asked without transferring its body (HTTP HEAD): a
        ranged GET closed unread still has the server push the rest of the file."""
        try:
            return source.size(remote)
        except NotImplementedError:
            pass
        try:
            body = source.open(remote, offset)
        except RangeNotSatisfiable as exc:
            return exc.total
        body.close()
        return body.total

    def _settle(self, fr: FileResult, action: Action, local: int, size: int | None) -> None:
        fr.local_size = local
        if size is not None:
            fr.size = size
        if action is Action.PRESENT:
            fr.status = Status.PRESENT
        else:
            fr.status = Status.SKIPPED
            fr.reason = (
                f"local file is larger than the archive's ({local} > {size} bytes); left alone"
            )

    def _attempts(self, source: Source, remote: RemoteFile, fr: FileResult, fd: int, part: Path):
        cfg = self.config
        resumed = False
        last: Exception | None = None
        for attempt in range(1, cfg.retries + 2):
            fr.attempts = attempt
            if self.stop.is_set():
                raise Interrupted()
            try:
                outcome = self._once(source, remote, fr, fd)
                if outcome is Action.LARGER:
                    os.ftruncate(fd, 0)  # our .part outgrew the archive's file: start over
                    continue
                # PRESENT here means the .part was already whole: finishing it is a resume.
                resumed = resumed or outcome in (Action.RESUME, Action.PRESENT)
                self.finish(fr, fd, part, remote)
                fr.status = Status.RESUMED if resumed else Status.DOWNLOADED
                return
            except (Interrupted, KeyboardInterrupt):
                fr.status, fr.reason = Status.FAILED, "interrupted; partial data kept for resume"
                raise
            except VerificationError as exc:
                last = exc
                os.ftruncate(fd, 0)  # bad bytes are never resumed from
                vlog(2, "%s failed a check (%s); fetching it again", fr.relpath, exc)
            except TransientError as exc:
                last = exc
                delay = backoff_delay(cfg, attempt, exc.retry_after)
                if attempt <= cfg.retries:
                    vlog(2, "%s: %s; retry %d in %.1f s", fr.relpath, exc, attempt, delay)
                    if self.stop.wait(delay):
                        raise Interrupted() from None
            except SourceError as exc:
                fr.status, fr.reason = Status.FAILED, str(exc)
                return
            except OSError as exc:
                fr.status = Status.FAILED
                kept = os.fstat(fd).st_size
                if exc.errno == errno.ENOSPC:
                    fr.reason = (
                        f"no space left on device writing to {part.parent}; "
                        f"{kept} bytes kept in {part.name} for resume"
                    )
                else:
                    fr.reason = f"cannot write {part}: {exc.strerror}"
                return
        fr.status = Status.FAILED
        fr.reason = f"{last} (gave up after {fr.attempts} attempts)"
        if isinstance(last, VerificationError):
            unlink_quietly(part)

    def _once(self, source: Source, remote: RemoteFile, fr: FileResult, fd: int) -> Action:
        """One attempt: returns RESUME or FETCH for data written, PRESENT when .part is whole."""
        have = os.fstat(fd).st_size
        if remote.size is not None and have > remote.size:
            os.ftruncate(fd, 0)
            have = 0
        try:
            body = source.open(remote, have)
        except RangeNotSatisfiable as exc:
            if exc.total is None:
                raise TransientError(f"{fr.relpath}: the server refused offset {have}") from None
            fr.size = exc.total
            action = resolve(have, exc.total)
            if action is Action.RESUME:
                raise TransientError(
                    f"{fr.relpath}: the server refused to resume at {have}"
                ) from None
            return action
        with body:
            total = body.total if body.total is not None else remote.size
            fr.size = total
            if body.start != have:
                if body.start != 0:
                    raise TransientError(f"{fr.relpath}: data starts at {body.start}, not {have}")
                vlog(
                    2,
                    "%s: the server ignored the resume offset; fetching from the start",
                    fr.relpath,
                )
                have = 0
            os.ftruncate(fd, have)
            os.lseek(fd, have, os.SEEK_SET)
            self.on_start(fr)
            written = have
            chunk = self.config.chunk_size
            started = time.monotonic()
            while True:
                if self.stop.is_set():
                    raise Interrupted()
                data = body.read(chunk)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                written += len(data)
                fr.bytes_transferred += len(data)
                self.on_bytes(fr, len(data))
            fr.elapsed += time.monotonic() - started
        if total is not None and written != total:
            if written > total:
                os.ftruncate(fd, 0)
            raise TransientError(f"{fr.relpath}: got {written} of {total} bytes")
        return Action.RESUME if have else Action.FETCH

    def finish(self, fr: FileResult, fd: int, part: Path, remote: RemoteFile) -> None:
        """Verify a whole ``.part`` and move it into place; VerificationError when it fails."""
        checks = check_file(part, fr.relpath, checksums=self.config.verify_checksums)
        size = os.fstat(fd).st_size
        if remote.size is not None and size != remote.size:
            raise VerificationError(f"{fr.relpath}: {size} bytes, the listing says {remote.size}")
        if checks:
            vlog(3, "%s: %s check passed", fr.relpath, "+".join(checks))
        if self.config.fsync:
            flush(fd)
        os.replace(part, fr.path)
        if self.config.fsync:
            fsync_dir(fr.path.parent)
        fr.size = size
        fr.local_size = size


def flush(fd: int, *, data_only: bool = False) -> None:
    """fsync (or fdatasync) a file; file systems without it are let be, but EIO is raised:
    it means written data was lost."""
    sync = getattr(os, "fdatasync", None) if data_only else None  # macOS has no fdatasync
    try:
        (sync or os.fsync)(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):
            raise


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the file itself is flushed
    finally:
        os.close(fd)
