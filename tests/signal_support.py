"""Children that get Ctrl-C as a terminal would give it, however the tests were started."""

from __future__ import annotations

import signal


def sigint_as_default() -> None:
    """A ``preexec_fn``: the child starts with SIGINT at its default disposition.

    A background job of a script (``bash -c 'python -m pytest ... &'``) starts with SIGINT
    ignored, and children inherit that: Python then installs no KeyboardInterrupt handler, so
    a test's SIGINT would do nothing. Restored in the child only; the test run is unchanged.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
