"""CIAO-style verbosity (0-5) on top of the standard ``logging`` module."""

from __future__ import annotations

import logging
import sys
from typing import IO

LOGGER = logging.getLogger("chandra_download")
LOGGER.addHandler(logging.NullHandler())  # a library prints nothing unless asked

#: logging level of each CIAO verbose level: 1 is the normal table, 2-5 ever more detail.
LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: 15, 3: logging.DEBUG, 4: 7, 5: 5}
for _v, _lvl in LEVELS.items():
    if _v >= 2:
        logging.addLevelName(_lvl, f"VERBOSE{_v}")

_handler: logging.Handler | None = None


class _LiveStreamHandler(logging.StreamHandler):
    """Writes to whatever ``sys.<_stream_name>`` is at the time of each record, not the stream
    there was when the handler was made."""

    _stream_name = "stdout"

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


class _StdoutHandler(_LiveStreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time, so a live progress display that
    redirects stdout keeps log lines above its bars."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        # A reader that went away (``| head``) is not an error to report line by line; nor
        # is a full disk (``> /dev/full``): the command line says it once, at its end.
        exc = sys.exc_info()[1]
        if isinstance(exc, BrokenPipeError):
            stdout_closed()
            return
        if isinstance(exc, OSError):
            stdout_failed(exc)
            return
        super().handleError(record)


_stdout_error: list[OSError] = []


def stdout_failed(exc: OSError) -> None:
    """Standard output cannot be written (a full disk, ``> /dev/full``): remember why (see
    :func:`stdout_error`) and send the rest of the output nowhere."""
    if not _stdout_error:
        _stdout_error.append(exc)
    stdout_closed()


class GuardedStdout:
    """Standard output whose write errors, other than a reader gone (BrokenPipeError), are
    remembered once (:func:`stdout_error`) rather than raised mid-run: the output goes
    nowhere after, and the command line ends with one line saying why."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            stdout_failed(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            stdout_failed(exc)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def stdout_error() -> OSError | None:
    """Why standard output could not be written in this process, or None."""
    return _stdout_error[0] if _stdout_error else None


def stdout_closed() -> None:
    """Standard output's reader has gone (``| head``): send the rest of the output nowhere,
    so neither later lines nor the interpreter's final flush raise BrokenPipeError."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def vlog(verbose: int, msg: str, *args: object) -> None:
    """Log a message shown at CIAO verbose level ``verbose`` and above."""
    LOGGER.log(LEVELS[verbose], msg, *args)


def set_verbosity(verbose: int, stream: IO[str] | None = None) -> None:
    """Show this package's messages up to a CIAO verbose level (0-5), like CIAO's
    ``lw.initialize_logger("download", verbose=N)``.

    Parameters
    ----------
    verbose : int
        0 shows only warnings and errors, 1 the per-ObsId table (the command line's default),
        2 to 5 ever more detail (requests, retries, checks).
    stream : file-like, optional
        Where to write (default: standard output, as CIAO does).
    """
    global _handler
    if not 0 <= int(verbose) <= 5:
        raise ValueError(f"verbose must be between 0 and 5, not {verbose}")
    if _handler is not None:
        LOGGER.removeHandler(_handler)
    while _extra:
        LOGGER.removeHandler(_extra.pop())
    _handler = logging.StreamHandler(stream) if stream is not None else _StdoutHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(_handler)
    LOGGER.setLevel(LEVELS[int(verbose)])
    LOGGER.propagate = False


class _StderrHandler(_LiveStreamHandler):
    """Warnings and errors of the command line: on whatever ``sys.stderr`` is, prefixed."""

    _stream_name = "stderr"


def command_line_output(verbose: int, prefix: str, stdout_taken: bool = False) -> None:
    """The command line's logging: messages on standard output (standard error when a report
    takes standard output), warnings and errors on standard error as ``{prefix} WARNING
    message`` (CIAO's form), each exactly once."""
    global _handler
    set_verbosity(verbose, sys.stderr if stdout_taken else None)
    assert _handler is not None
    _handler.addFilter(lambda record: record.levelno < logging.WARNING)
    err = _StderrHandler()
    err.setFormatter(logging.Formatter(f"{prefix} %(levelname)s %(message)s"))
    err.addFilter(lambda record: record.levelno >= logging.WARNING)
    # Warnings the command line's block and final summary already carry (one fact, once).
    err.addFilter(lambda record: not getattr(record, "in_summary", False))
    LOGGER.addHandler(err)
    _extra.append(err)


_extra: list[logging.Handler] = []


def verbosity() -> int:
    """The current CIAO verbose level implied by the logger's level."""
    level = LOGGER.getEffectiveLevel()
    return max((v for v, lvl in LEVELS.items() if lvl >= level), default=0)
