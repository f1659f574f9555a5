"""Stopping while transfers are stalled (issue 20.8): Ctrl-C ends the command within about 2 s,
not one worker's join timeout after another; and a body shorter than the listing allows fails."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from signal_support import sigint_as_default

from chandra_download import download
from chandra_download.results import Status
from chandra_download.simulator import generate_archive
from chandra_download.simulator.faults import Fault
from chandra_download.simulator.http import ArchiveHTTPServer

OBSID = 1843


def test_ctrl_c_ends_at_once_while_every_transfer_is_stalled(tmp_path: Path) -> None:
    root = generate_archive(tmp_path / "archive", {OBSID: "acis"}, scale=0.1)
    with ArchiveHTTPServer(root) as server:
        server.faults.add(Fault("stall", "*.gz", times=None, after_bytes=100, seconds=120))
        proc = subprocess.Popen(
            [sys.executable, "-m", "chandra_download", str(OBSID), "-m", server.base_url,
             "--outdir", str(tmp_path / "out"), "--no-status", "--timeout", "60", "-j", "8", "--pipeline-depth", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=sigint_as_default,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            # On a condition: every worker is in a stalled transfer.
            while server.stats.current_requests < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.stats.current_requests >= 8, "the transfers never stalled"
            proc.send_signal(signal.SIGINT)
            t0 = time.monotonic()
            proc.communicate(timeout=60)
            took = time.monotonic() - t0
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert took < 10, f"took {took:.1f} s to stop"  # 2 s by design; 40 s before (8 x 5 s)


LISTING = """<html><head><title>Index of /cdaftp/byobsid/3/1843</title></head><body><table>
<tr><td><a href="a.dat">a.dat</a></td><td align="right">2019-06-13 07:42  </td><td align="right">2.0M</td></tr>
</table></body></html>
"""  # fmt: skip


class _NoLength(BaseHTTPRequestHandler):
    """A listing of one 2.0M file whose body (no Content-Length, HTTP/1.0) has 10,000 bytes."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        page = self.path.endswith("/")
        body = LISTING.encode() if page else b"x" * 10_000
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if page else "application/octet-stream")
        if page:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_body_far_shorter_than_the_listing_is_a_failure(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoLength)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mirror = f"http://127.0.0.1:{server.server_address[1]}/cdaftp/"
        results = download(OBSID, mirror=mirror, outdir=tmp_path, retries=1, backoff=0.01)
    finally:
        server.shutdown()
        server.server_close()
    (fr,) = results.files
    assert fr.status is Status.FAILED and "10000 bytes" in fr.reason, fr.reason
    assert not (tmp_path / str(OBSID) / "a.dat").exists()
