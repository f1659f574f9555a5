"""FTP's REST is parsed in sources/wire.py like HTTP's Range (issue 18.5)."""

from __future__ import annotations

import pytest

from chandra_download.sources import wire


def test_rest_command_only_for_a_resume():
    assert wire.rest_command(0) is None
    assert wire.rest_command(12345) == "REST 12345"


@pytest.mark.parametrize(
    ("offset", "reply", "start"),
    [
        (1000, "350 Restarting at 1000. Send STORE or RETRIEVE.", 1000),
        (1000, "350 ok", 1000),
        (1000, None, 0),  # 5xx: refused with an error
        (1000, "200 Command okay.", 0),  # not "pending": the data starts at 0
        (1000, "", 0),
        (0, "350 Restarting at 0", 0),
    ],
)
def test_rest_start_trusts_only_a_pending_reply(offset, reply, start):
    assert wire.rest_start(offset, reply) == start
