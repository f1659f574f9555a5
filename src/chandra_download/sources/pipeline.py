"""Pipelined HTTP/1.1 GETs of small files (issue 19.1).

Up to ``pipeline_depth`` GETs go back to back on one keep-alive connection of the site's own
urllib3 pool (so never more than ``jobs`` connections to a site), and their answers are read
in order with h11, each whole into memory (batches are small, see :func:`split_batches`). The
connection goes back to the pool before any file is written; each file then goes through its
:class:`~chandra_download.transfer.FileJob` as usual (copy, checks, rename), its first answer
being the pipelined one. Whatever the pipeline did not answer well is left to the normal
one-request path: a connection closed with requests unanswered (Apache's ``Keep-Alive:
max=100``, ``Connection: close``), any answer but a 200, a body cut short.

An HTTP answer does not say which request it answers, so a batch only holds files whose
listed sizes (with their rounding) cannot pass for each other's: an answer given for another
request of the pipeline shows by its size. A batch's answers are all checked before any of its
files is written. A site that answers pipelined requests wrongly (a size the listing rules
out, one file's answer twice: out of order), slowly, or by closing connections unannounced is
pipelined no more in this session (said at ``--verbose 3``); the batch goes to the normal
one-request path.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11
from urllib3.exceptions import HTTPError

from ..errors import Interrupted, SourceError, TransientError
from ..log import vlog
from ..stream import RateGuard
from .base import Body, RemoteFile, Source, WrappedSource
from .http_body import arm_header_deadline
from .wire import content_length, parse_keep_alive_max

if TYPE_CHECKING:
    from ..results import FileResult
    from ..transfer import FileJob
    from .http import HTTPSource

#: Files at most this large (by the listing) are pipelined; larger ones go one per request,
#: streamed to disk as they come (a round trip is worth ~300 KB at 8 MB/s and 40 ms).
MAX_FILE_BYTES = 256 << 10
#: Most listed bytes of one batch: its answers are held in memory until written.
MAX_BATCH_BYTES = 2 << 20
#: A pipelined answer whose headers come this much later than the previous answer's end
#: (and 3 times the first answer's wait) counts as slow.
SLOW_SECONDS = 1.0
#: Unannounced closes with requests unanswered (or slow answers) before the site is
#: pipelined no more.
MAX_STRIKES = 2

# Requests a connection still takes (its last ``Keep-Alive: max=``), by connection.
_LEFT: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def split_batches(
    files: Iterable[FileResult],
    depth: int,
    window: Callable[[FileResult], tuple[int, int] | None] | None = None,
) -> tuple[list[FileResult], list[list[FileResult]]]:
    """(files for one request each, batches to pipeline) in the given order: small files of
    known listed size go in batches of up to ``depth`` files and ``MAX_BATCH_BYTES``.

    With ``window`` (the sizes a file may have by its listing; None for a file whose answer
    names itself, a gzip file's), no two files of a batch have overlapping windows: a body's
    size (or name) then tells which file it is, so an answer given for another request of
    its pipeline (exchanged, shifted, given twice) shows before a byte is written."""
    singles: list[FileResult] = []
    done: list[_Filling] = []
    open_: list[_Filling] = []
    for fr in files:
        size = fr.size
        if depth < 2 or size is None or size > MAX_FILE_BYTES:
            singles.append(fr)
            continue
        span = window(fr) if window is not None else None
        into = next((b for b in open_ if b.takes(size, span)), None)
        if into is None:
            into = _Filling()
            open_.append(into)
        into.add(fr, size, span)
        if len(into.files) == depth:
            open_.remove(into)
            done.append(into)
    for b in open_:
        if not _into_another(b, done + open_):
            done.append(b)
    singles += [b.files[0] for b in done if len(b.files) == 1]
    return singles, [b.files for b in done if len(b.files) > 1]


def _into_another(lone: _Filling, batches: list[_Filling]) -> bool:
    """Move a batch's lone file into another batch that takes it (a lone file is no
    pipeline at all; one more than the depth goes in a second pipeline)."""
    if len(lone.files) != 1:
        return False
    fr, span = lone.files[0], (lone.spans[0] if lone.spans else None)
    size = fr.size or 0
    into = next((b for b in batches if b is not lone and b.files and b.takes(size, span)), None)
    if into is None:
        return False
    into.add(fr, size, span)
    lone.files.clear()
    return True


@dataclass
class _Filling:
    """A batch being filled: its files, their listed bytes and size windows."""

    files: list[FileResult] = field(default_factory=list)
    held: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)

    def takes(self, size: int, span: tuple[int, int] | None) -> bool:
        """Whether a file of this listed size (and window) may join."""
        if self.held + size > MAX_BATCH_BYTES:
            return False
        return span is None or all(span[1] < a or b < span[0] for a, b in self.spans)

    def add(self, fr: FileResult, size: int, span: tuple[int, int] | None) -> None:
        self.files.append(fr)
        self.held += size
        if span is not None:
            self.spans.append(span)


def disjoint_groups(
    files: Iterable[RemoteFile],
    window: Callable[[RemoteFile], tuple[int, int]],
    depth: int,
    adjacent: bool = False,
) -> list[list[RemoteFile]]:
    """Files in groups of up to ``depth``, in the order to send them, whose size windows
    (``window(f)``: the sizes the listing allows) do not overlap, so that no answer can pass
    for another file's: any two of a group, or with ``adjacent`` any two sent one after the
    other (an answer given for the request behind it shows). For ``adjacent`` the files are
    taken smallest and largest in turn, so that neighbours differ most."""
    todo = list(files)
    if adjacent:
        todo.sort(key=lambda f: sum(window(f)))
        half = (len(todo) + 1) // 2
        todo = [
            f
            for pair in itertools.zip_longest(todo[:half], todo[half:])
            for f in pair
            if f is not None
        ]
    groups: list[tuple[list[RemoteFile], list[tuple[int, int]]]] = []
    for f in todo:
        low, high = window(f)
        for members, spans in groups:
            near = spans[-1:] if adjacent else spans
            if len(members) < depth and all(high < a or b < low for a, b in near):
                members.append(f)
                spans.append((low, high))
                break
        else:
            groups.append(([f], [(low, high)]))
    return [members for members, _ in groups]


@dataclass
class Answer:
    """One pipelined answer, whole, in the shape the HTTP source reads a urllib3 response."""

    status: int
    headers: Heads
    url: str
    body: bytes
    closes: bool = False  # the server closes the connection after it
    waited: float = 0.0  # seconds until its headers came, from the end of the one before
    cut: str | None = None  # why the body stopped short, when it did
    _pos: int = 0

    def read1(self, n: int, decode_content: bool = False) -> bytes:  # noqa: D102 - urllib3's
        out = self.body[self._pos : self._pos + max(0, n)]
        self._pos += len(out)
        if not out and n > 0 and self.cut is not None:
            raise ConnectionError(self.cut)  # as the connection did: a broken transfer
        return out

    @property
    def size(self) -> int:
        """The body's size: as announced, else as received."""
        announced = content_length(self.headers)
        return len(self.body) if announced is None else announced

    def drain_conn(self) -> None:  # noqa: D102 - urllib3's; the connection is gone already
        pass

    def release_conn(self) -> None:  # noqa: D102
        pass

    def close(self) -> None:  # noqa: D102
        pass

    def geturl(self) -> str:  # noqa: D102
        return self.url


class _Cut(Exception):
    """The connection ended (or broke) before an answer was whole; ``silent``: because
    nothing came in time (a timeout, the header deadline)."""

    def __init__(self, why: str, silent: bool = False) -> None:
        super().__init__(why)
        self.silent = silent


_Known = dict[tuple[tuple[str, str], ...], Any]


class _Line:
    """One connection borrowed from the site's urllib3 pool, carrying one pipeline."""

    def __init__(self, source: HTTPSource, url: str, known: _Known) -> None:
        self.source, self.url = source, url
        #: The site's request headers h11 has validated already, by their text (the same
        #: for every request to a site: validated once, not per request).
        self.known = known
        self.pool = source._pool.connection_from_url(url)
        # The pool's own slot: blocks while all `jobs` connections are in use.
        self.conn: Any = self.pool._get_conn(timeout=None)
        self.fresh = getattr(self.conn, "sock", None) is None
        self.usable = False
        self._cycles: deque[h11.Connection] = deque()
        self._carry: tuple[bytes, bool] = (b"", False)

    @property
    def allowance(self) -> int:
        """Requests the server still takes on this connection (as far as we know)."""
        return 1 << 30 if self.fresh else _LEFT.get(self.conn, 1 << 30)

    def connect(self) -> None:
        """Connect if need be (TLS as the pool's settings say): the site's own error when
        that fails (a failed connect says nothing about pipelining)."""
        if self.conn.sock is None:
            try:
                self.conn.connect()
            except (HTTPError, OSError) as exc:
                raise self.source._connection_error(self.url, exc) from None
            self.fresh = True
        self.conn.sock.settimeout(self.source.config.timeout)

    def send(self, method: str, requests: list[tuple[str, dict[str, str]]]) -> None:
        """Send every request at once (connected already)."""
        data = bytearray()
        for target, headers in requests:
            cycle = h11.Connection(h11.CLIENT)
            data += cycle.send(self._request(method, target, headers))
            data += cycle.send(h11.EndOfMessage())
            self._cycles.append(cycle)
        self.conn.sock.sendall(bytes(data))

    def _request(self, method: str, target: str, headers: dict[str, str]) -> h11.Request:
        """h11's request; its headers validated by h11 once per site (the target always)."""
        key = tuple(headers.items())
        valid = self.known.get(key)
        if valid is not None:  # (h11 takes its own validated Headers as they are)
            return h11.Request(method=method, target=target, headers=valid)
        request = h11.Request(method=method, target=target, headers=list(key))
        if len(self.known) >= 8:  # (one or two per site: never a growing cache)
            self.known.clear()
        self.known[key] = request.headers
        return request

    def answer(self, url: str, cap: int) -> Answer:
        """The next answer; _Cut when the connection ends before its headers. A body cut
        short (the connection broke or stalled, or it passed ``cap`` bytes: more than the
        listing allows) comes as far as it came, marked ``cut``: its file's job takes those
        bytes and resumes on the normal path, as after any broken transfer."""
        cycle = self._cycles.popleft()
        data, closed = self._carry  # what came after the answer before: this one's start
        if data:
            cycle.receive_data(data)
        if closed:
            cycle.receive_data(b"")  # (h11's end of stream)
        t0 = time.monotonic()
        head = self._head(cycle)
        answer = Answer(head.status_code, _headers(head), url, b"")
        answer.waited = time.monotonic() - t0
        answer.body, answer.cut = self._body(cycle, cap)
        if answer.cut is None:
            self._carry = cycle.trailing_data
            self.usable = cycle.their_state is h11.DONE and not self._cycles
            answer.closes = cycle.their_state is not h11.DONE
        left = parse_keep_alive_max(answer.headers.get("Keep-Alive"))
        if left is not None:
            _LEFT[self.conn] = left
        return answer

    def _head(self, cycle: h11.Connection) -> h11.Response:
        try:  # already read with the answer before (pipelined answers come together)
            head = cycle.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Cut(str(exc)) from None
        if head is h11.NEED_DATA or isinstance(head, h11.InformationalResponse):
            head = self._head_in_time(cycle)  # (from the socket: under the header deadline)
        elif isinstance(head, h11.ConnectionClosed):
            raise _Cut("closed")
        if not isinstance(head, h11.Response):
            raise _Cut("closed before the answer")
        return head

    def _head_in_time(self, cycle: h11.Connection) -> Any:
        """The next head from the socket, within the header deadline (min_rate)."""
        cfg = self.source.config
        armed = arm_header_deadline(self.conn.sock, cfg.timeout) if cfg.min_rate > 0 else None
        try:
            head = self._event(cycle)
            while isinstance(head, h11.InformationalResponse):
                head = self._event(cycle)
        except _Cut:
            if armed is not None and armed.fired:  # (it shut the socket down)
                raise _Cut("headers too slow", silent=True) from None
            raise
        finally:
            if armed is not None:
                armed.disarm()
        if armed is not None and armed.fired:
            raise _Cut("headers too slow", silent=True)
        return head

    def _body(self, cycle: h11.Connection, cap: int) -> tuple[bytes, str | None]:
        """(the body, None) or (what came, why it stopped there)."""
        cfg = self.source.config
        guard = RateGuard(cfg.min_rate, cfg.timeout)
        body = bytearray()
        try:
            while not isinstance(event := self._event(cycle), h11.EndOfMessage):
                if not isinstance(event, h11.Data):
                    raise _Cut("closed during the answer")
                body += event.data
                if len(body) > cap:
                    return bytes(body[: cap + 1]), "more bytes than the listing allows"
                guard.tick(len(event.data))
        except (_Cut, TransientError) as exc:
            return bytes(body), str(exc)
        return bytes(body), None

    def _event(self, cycle: h11.Connection) -> Any:
        try:
            while (event := cycle.next_event()) is h11.NEED_DATA:
                cycle.receive_data(_received(self.conn.sock))
        except TimeoutError as exc:
            raise _Cut(str(exc), silent=True) from None
        except (h11.RemoteProtocolError, OSError) as exc:
            raise _Cut(str(exc)) from None
        if isinstance(event, h11.ConnectionClosed):
            raise _Cut("closed")
        return event

    def give_back(self) -> None:
        """To the pool: as it is when at a clean end between answers, else closed."""
        if not (self.usable and not self._carry[0] and not self._carry[1]):
            self.conn.close()
            _LEFT.pop(self.conn, None)
        self.pool._put_conn(self.conn)


class _Answered(WrappedSource):
    """The job's source for its first attempt: that attempt takes the pipelined answer; a
    retry asks the site itself, on a connection of its own (the pipeline's is back)."""

    def __init__(
        self, source: HTTPSource, answer: Answer, then: Source, waits: Callable[[], None]
    ) -> None:
        super().__init__(then)
        self._source, self._answer, self._waits = source, answer, waits

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:  # noqa: D102
        answer, self._answer = self._answer, None  # type: ignore[assignment]
        if answer is None or offset != 0 or end is not None:
            self._waits()  # (files gathered for the finisher are not held up meanwhile)
            return self.inner.open(f, offset, end)  # the job's own source, as it was
        return self._source.answer_body(answer, f, 0, None)


@dataclass
class Exchange:
    """What one pipeline on one connection brought: ``answers`` in order, for the first
    of the requests ``sent`` (the rest unanswered); ``timed_out``: not even the first."""

    answers: list[Answer] = field(default_factory=list)
    sent: int = 0
    timed_out: bool = False


@dataclass
class Batch:
    """What a batch leaves: ``ran`` (settled by their jobs) and ``whole`` (started, nothing
    written from the pipeline: to run whole on the normal path, on any worker)."""

    ran: list[FileJob] = field(default_factory=list)
    whole: list[FileJob] = field(default_factory=list)


class Pipeliner:
    """Pipelining state of one HTTP site: on until the site shows it answers wrongly."""

    def __init__(self, source: HTTPSource, depth: int) -> None:
        self.source, self.depth = source, depth
        self._strikes = 0
        self._slow_answers = 0
        self._trip = float("inf")  # the quickest first answer of a pipeline: a round trip
        #: The site answered a pipeline whose answers tell themselves apart (listing pages
        #: by their titles) in order: HEADs may then be told apart from their neighbours'.
        self.proven = False
        #: The site's gzip answers have named their files so far (RFC 1952's FNAME): such
        #: answers tell themselves apart, whatever their sizes (see split_batches).
        self.named = True
        #: Pipelining went off because the site answered wrongly (not only slowly or by
        #: closing): answers read on other connections meanwhile are not trusted either.
        self.wrong = False
        self._lock = threading.Lock()
        self._known: _Known = {}  # (see _Line.known)

    def off(self, why: str, wrong: bool = True) -> None:
        """Pipeline this site no more in this session; ``wrong``: because it answered wrongly."""
        with self._lock:
            self.wrong = self.wrong or wrong
            if self.depth > 1:
                self.depth = 1
                vlog(3, "%s: %s; requests go one at a time from now on", self.source.label, why)

    def run(self, jobs: list[FileJob], stop: threading.Event) -> Batch:
        """Fetch started jobs (each to be fetched whole) through pipelined GETs."""
        out = Batch()
        todo: deque[FileJob] = deque()
        for job in jobs:  # a file partly on disk resumes on the normal path (a Range)
            (todo if job.begins_at == 0 else out.whole).append(job)
        rounds = 0
        while todo and self.depth > 1 and rounds <= len(jobs) + MAX_STRIKES and not stop.is_set():
            if todo[0].ctx.disk_full.is_set():
                break  # nothing more asked for while the output disk is full
            rounds += 1
            self._one_connection(todo, out)
        out.whole += todo
        return out

    def exchange(self, method: str, urls: list[str], caps: list[int]) -> Exchange:
        """Send requests back to back on one connection of the pool (as many as the depth
        and the connection's last ``Keep-Alive: max=`` allow) and read their answers in
        order (bodies at most ``caps`` bytes). Raises the site's error when it cannot be
        connected to; answers a connection closed before are left out (sent again)."""
        out = Exchange()
        if self.depth < 2 or not urls:
            return out
        line = _Line(self.source, urls[0], self._known)
        try:
            line.connect()
            sent = urls[: min(len(urls), self.depth, line.allowance)]
            out.sent = len(sent)
            line.send(method, [self.source.pipelined_request(url) for url in sent])
            cut = self._read(line, sent, caps, out)
        except OSError as exc:  # (the send failed)
            vlog(5, "HTTP pipeline to %s failed: %s", self.source.label, exc)
            cut = True
        finally:
            line.give_back()
        answers = out.answers
        unannounced = not (answers and answers[-1].closes) and not out.timed_out
        if cut and len(answers) < out.sent and unannounced:
            self._strike(line, len(answers))
        return out

    def _one_connection(self, todo: deque[FileJob], out: Batch) -> None:
        jobs = list(itertools.islice(todo, self.depth))
        try:
            caps = [_cap(self.source, job) for job in jobs]
            got = self.exchange("GET", [job.remote.url for job in jobs], caps)
        except SourceError as exc:  # (connecting failed: the normal path says why)
            vlog(5, "HTTP pipeline to %s failed: %s", self.source.label, exc)
            out.whole += todo
            todo.clear()
            return
        answered = list(zip(jobs, got.answers, strict=False))
        for _ in answered:
            todo.popleft()  # the rest are sent again, on another connection
        problem = _disorder(self.source, answered)
        if problem is None and _untold(self.source, answered):
            self.named = False  # from now on sizes must tell gzip answers apart too
            out.whole += [job for job, _ in answered]
            return
        if problem is not None or (self.depth < 2 and self.wrong):
            # Wrong answers here, or found on another connection meanwhile (then these may
            # be wrong too, and the end of this pipeline, which would tell, is not read).
            # Off for slowness or closes only: the answers read are good, and written.
            if problem is not None:
                self.off(problem)
            out.whole += [job for job, _ in answered]  # none written: all go one at a time
            return
        self._write(answered, out)

    def _read(self, line: _Line, sent: list[str], caps: list[int], out: Exchange) -> bool:
        """Read the answers in order; True when the connection ended before the last."""
        got = out.answers
        for i, (url, cap) in enumerate(zip(sent, caps, strict=False)):
            if self.depth < 2:  # off meanwhile (here or on another connection): the rest
                return True  # go one at a time
            try:
                answer = line.answer(url, cap)
            except _Cut as exc:
                vlog(5, "HTTP pipeline to %s: %s", self.source.label, exc)
                out.timed_out = not got and exc.silent
                return True
            if not got:  # the first answer waited one round trip, at least
                self._trip = min(self._trip, answer.waited)
            elif answer.waited > max(SLOW_SECONDS, 3 * self._trip):
                self._slow(answer.waited)
            got.append(answer)
            if answer.cut is not None:
                vlog(5, "HTTP pipeline to %s: %s", self.source.label, answer.cut)
                return True
            if answer.closes:
                return i < len(sent) - 1
        return False

    def _slow(self, waited: float) -> None:
        """A pipelined answer came slowly: twice, and the site's pipelining is off (once may
        be this machine's own stall, under load, with the answer waiting in the socket)."""
        with self._lock:
            self._slow_answers += 1
            slow = self._slow_answers
        if slow >= MAX_STRIKES:
            self.off(
                f"pipelined answers came slowly ({waited:.1f} s after the one before, a "
                f"first answer in {self._trip:.2f} s)",
                wrong=False,
            )

    def _strike(self, line: _Line, answered: int) -> None:
        """A connection closed unannounced with requests unanswered: twice, and the site's
        pipelining is off (a reused connection closed before its first answer may just have
        been idle too long, and is not held against it)."""
        if answered == 0 and not line.fresh:
            return
        with self._lock:
            self._strikes += 1
            strikes = self._strikes
        if strikes >= MAX_STRIKES:
            self.off("it closed connections with pipelined requests unanswered", wrong=False)

    def _write(self, answered: list[tuple[FileJob, Answer]], out: Batch) -> None:
        """Each file through its job, the answer as its first attempt's (a 404 fails it, a
        503 is retried with its Retry-After, as on the normal path); a redirect is left to
        the normal path, which follows it."""
        finisher = answered[0][0].ctx.finisher if answered else None
        if finisher is None:
            return self._write_each(answered, out, lambda: None)
        with finisher.gathered():
            self._write_each(answered, out, finisher.flush_gathered)

    def _write_each(
        self, answered: list[tuple[FileJob, Answer]], out: Batch, waits: Callable[[], None]
    ) -> None:
        for job, answer in answered:
            if 300 <= answer.status < 400 or job.ctx.disk_full.is_set():
                out.whole.append(job)
                continue
            source = job.source
            job.source = _Answered(self.source, answer, source, waits)
            try:
                job.run_whole()
            except Interrupted:
                pass  # settled as interrupted; the rest see the stop in their turn
            finally:
                job.source = source
            out.ran.append(job)


#: Most bytes one read of a pipeline's socket takes.
RECV_BYTES = 256 * 1024
_buffers = threading.local()


def _received(sock: Any) -> bytes:
    """What the socket has (at most RECV_BYTES; b"" at its end), read into this thread's
    buffer: a fresh 256 KiB bytes object per read cost an mmap, page faults and a shrink
    (25-70 us a read against 13 us, for 30 kB)."""
    view = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(RECV_BYTES))
    return bytes(view[: sock.recv_into(view)])


def _cap(source: HTTPSource, job: FileJob) -> int:
    """Most body bytes a file's answer may hold: its exact size, else its listing ceiling."""
    if job.size is not None:
        return job.size
    return source.ceiling(job.remote.url) or 2 * MAX_FILE_BYTES


def _disorder(source: HTTPSource, answered: list[tuple[FileJob, Answer]]) -> str | None:
    """Why these answers cannot be the files asked for, in order; None when they can."""
    seen: dict[str, list[tuple[str, bytes]]] = {}  # ETag -> (url, body) of the answers
    for job, answer in answered:
        if answer.status != 200 or _error_page(answer, job.remote):
            continue  # (its job refuses an error page sent as 200, and asks again)
        size, remote = answer.size, job.remote
        # Two files may share an ETag (Apache's is size and time): the same bytes too, and
        # it is one file's answer given twice (bytes compared only then: no hash per body).
        etag = answer.headers.get("ETag") or ""
        alike = seen.setdefault(etag, []) if etag else []
        if any(url != remote.url and body == answer.body for url, body in alike):
            return f"it answered two pipelined requests with one file (ETag {etag[:40]})"
        alike.append((remote.url, answer.body))
        named = gzip_name(answer.body) if remote.relpath.endswith(".gz") else None
        if named is not None and named != _base(remote)[:-3]:
            return (
                f"it answered a pipelined request for {_base(remote)} with a gzip file of "
                f"{named[:80]!r} (answers out of order?)"
            )
        low, high = _window(source, job)
        if not low <= size <= high:
            name = urlsplit(remote.url).path.rsplit("/", 1)[-1]
            return (
                f"it answered a pipelined request for {name} with {size} bytes, which the "
                "listing rules out (answers out of order?)"
            )
    return None


def _untold(source: HTTPSource, answered: list[tuple[FileJob, Answer]]) -> bool:
    """Whether a gzip answer that names no file shares its size window with another answer
    of the pipeline (it went in on the promise that gzip answers name their files)."""
    spans = [_window(source, job) for job, _ in answered]
    for i, (job, answer) in enumerate(answered):
        gz = job.remote.relpath.endswith(".gz") and answer.status == 200
        if not gz or gzip_name(answer.body) is not None:
            continue
        low, high = spans[i]
        if any(j != i and not (b < low or high < a) for j, (a, b) in enumerate(spans)):
            return True
    return False


def gzip_name(body: bytes) -> str | None:
    """The file name a gzip member's header holds (RFC 1952 FNAME), None when it holds none
    or is not a gzip header."""
    if len(body) < 10 or body[:3] != b"\x1f\x8b\x08" or not body[3] & 0x08:
        return None
    at = 10
    if body[3] & 0x04:  # FEXTRA comes first: its two-byte length, then its bytes
        if len(body) < 12:
            return None
        at += 2 + int.from_bytes(body[10:12], "little")
    end = body.find(b"\0", at, at + 4096)
    return body[at:end].decode("latin-1") if end >= 0 else None


def _base(remote: RemoteFile) -> str:
    return remote.relpath.rsplit("/", 1)[-1]


def _error_page(answer: Answer, remote: RemoteFile) -> bool:
    """An HTML page answering for a file that is not one (a server's error page)."""
    html = "text/html" in answer.headers.get("Content-Type", "")
    return html and not remote.relpath.endswith((".html", ".htm"))


class Heads(dict[str, str]):
    """An answer's headers by lower-case name, a repeated one's values joined by ", " (as
    urllib3's HTTPHeaderDict gives them), looked up whatever the case (its readers only
    ``get``; HTTPHeaderDict's adds were a tenth of reading an answer)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


def _headers(head: h11.Response) -> Heads:
    headers = Heads()
    for name, value in head.headers:  # (h11 gives the names in lower case)
        key, text = name.decode("latin-1"), value.decode("latin-1")
        before = dict.get(headers, key)
        headers[key] = text if before is None else f"{before}, {text}"
    return headers


def _window(source: HTTPSource, job: FileJob) -> tuple[int, int]:
    """The sizes a file may have: exact when known, else its listed size's rounding."""
    if job.size is not None:
        return job.size, job.size
    approx, ceiling = job.remote.approx_size, source.ceiling(job.remote.url)
    if approx is None or ceiling is None:
        return 0, 1 << 62
    return max(0, approx - (ceiling - approx)), ceiling
