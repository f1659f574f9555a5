"""Fall back instead of failing (issue 20.5): a file above the split size whose HEAD states no
size, or whose ranged answers are ``multipart/byteranges``, is taken whole on one connection."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chandra_download import download
from chandra_download.results import Status

OBSID = 1843
DATA = hashlib.sha256(b"seed").digest() * (3_000_000 // 32)  # 3 MB, shown as 2.9M
LISTING = """<html><head><title>Index of /cdaftp/byobsid/3/1843</title></head><body><table>
<tr><td><a href="big.dat">big.dat</a></td><td align="right">2019-06-13 07:42  </td><td align="right">2.9M</td></tr>
</table></body></html>
"""  # fmt: skip
SPLIT = dict(split_threshold=1_000_000, jobs=4, retries=2, backoff=0.01, timeout=5.0)


class _Quirky(BaseHTTPRequestHandler):
    mode = ""  # "no-length": HTTP/1.0 without Content-Length; "multipart": ranges as multipart
    protocol_version = "HTTP/1.0"
    ranged: list[str] = []

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        if self.path.endswith("/"):
            return self._send(200, LISTING.encode(), "text/html", head, length=True)
        rng = self.headers.get("Range")
        if rng and self.mode == "multipart":
            type(self).ranged.append(rng)
            first, last = rng.split("=")[1].split("-")
            part = DATA[int(first) : int(last) + 1 if last else None]
            body = (
                b"--SEP\r\nContent-Type: application/octet-stream\r\n"
                + f"Content-Range: bytes {first}-{int(first) + len(part) - 1}/{len(DATA)}".encode()
                + b"\r\n\r\n" + part + b"\r\n--SEP--\r\n"
            )  # fmt: skip
            return self._send(206, body, "multipart/byteranges; boundary=SEP", head, length=True)
        self._send(200, DATA, "application/octet-stream", head, length=self.mode != "no-length")

    def _send(self, status: int, body: bytes, ctype: str, head: bool, length: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def quirky(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_Quirky,), {"mode": request.param, "ranged": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cdaftp/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("quirky", ["no-length", "multipart"], indirect=True)
def test_a_large_file_is_taken_whole_when_parts_cannot_work(quirky: str, tmp_path: Path) -> None:
    results = download(OBSID, mirror=quirky, outdir=tmp_path, **SPLIT)
    (fr,) = results.files
    assert fr.status is Status.DOWNLOADED, fr.reason
    assert (tmp_path / str(OBSID) / "big.dat").read_bytes() == DATA
    assert fr.sha256 == hashlib.sha256(DATA).hexdigest()
