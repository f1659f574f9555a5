"""A pipelined answer's headers (issue 19.4: a plain dict by lower-case name instead of
urllib3's HTTPHeaderDict), read as the HTTP source reads them: whatever the case, a
repeated header's values joined by ", " as HTTPHeaderDict joins them."""

from __future__ import annotations

import h11
from urllib3 import HTTPHeaderDict

from chandra_download.sources.pipeline import _headers

_RAW = [
    (b"Content-Type", b"application/x-gzip"),
    (b"ETag", b'"2a7-58b2faa462200"'),
    (b"Via", b"1.1 one"),
    (b"via", b"1.1 two"),
    (b"Content-Length", b"679"),
]


def test_an_answers_headers_read_as_urllib3_reads_them() -> None:
    head = h11.Response(status_code=200, headers=_RAW)
    got, want = _headers(head), HTTPHeaderDict()
    for name, value in _RAW:
        want.add(name.decode(), value.decode())
    for name in ("content-type", "Content-Type", "ETAG", "Via", "content-length", "Age"):
        assert got.get(name) == want.get(name), name
        assert (name in got) == (name in want), name
    assert got["etag"] == want["ETag"] and got.get("Age", "-") == "-"
