"""An FTP listing trickled a byte at a time (issue 20.4: every listing has a total deadline
that --timeout and --retries bound). One byte every 0.2 s never trips a 1 s socket timeout:
the listing's own deadline does, its lines are not taken, and the control connection is
dropped (it was shut down mid-transfer). Assertions count bytes, never seconds."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chandra_download import cli

BODY = b"type=file;size=10;modify=20200101000000; oif.fits\r\n" * 3


class TrickleFTP:
    """A minimal FTP server on 127.0.0.1 whose every listing (MLSD, LIST) trickles."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.sent = self.listings = 0
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        passive: list[socket.socket] = []

        def say(text: str) -> None:
            conn.sendall(text.encode() + b"\r\n")

        try:
            say("220 hostile")
            for raw in conn.makefile("rb"):
                cmd = raw.decode(errors="replace").strip().split(" ")[0].upper()
                if cmd == "QUIT":
                    return say("221 bye")
                if cmd == "PASV":
                    passive.append(socket.create_server(("127.0.0.1", 0)))
                    p = passive[-1].getsockname()[1]
                    say(f"227 Entering Passive Mode (127,0,0,1,{p >> 8},{p & 255})")
                elif cmd in ("MLSD", "LIST"):
                    say("150 here it comes")
                    self._trickle(passive.pop())
                    say("226 done")
                else:
                    say({"USER": "331 ok", "PASS": "230 ok", "PWD": '257 "/"'}.get(cmd, "200 ok"))
        except OSError:
            pass
        finally:
            conn.close()

    def _trickle(self, passive: socket.socket) -> None:
        data, _ = passive.accept()
        passive.close()
        self.listings += 1
        try:
            for i in range(len(BODY)):
                if self.stop.wait(0.2):
                    return
                data.sendall(BODY[i : i + 1])
                self.sent += 1
        except OSError:
            pass  # the client hung up
        finally:
            data.close()

    def close(self) -> None:
        self.stop.set()
        self.srv.close()
        self.thread.join(5)


@pytest.fixture
def trickle_ftp() -> Iterator[TrickleFTP]:
    server = TrickleFTP()
    yield server
    server.close()


def test_a_trickled_ftp_listing_ends_within_the_timeout(
    trickle_ftp: TrickleFTP, tmp_path: Path, capsys
) -> None:
    mirror = f"ftp://127.0.0.1:{trickle_ftp.port}/pub/"
    argv = ["1843", "--mirror", mirror, "--outdir", str(tmp_path / "o"), "--no-progress"]
    assert cli.main([*argv, "--timeout", "1", "--retries", "1"]) == 1
    err = capsys.readouterr().err.replace("\n    ", " ")
    assert "Traceback" not in err
    assert "could not be listed" in err and "not complete within 1 s" in err, err
    # About 5 bytes a listing (timeout / 0.2 s), one retry: never the listing's whole length.
    assert 1 <= trickle_ftp.listings <= 3
    assert trickle_ftp.sent < len(BODY) // 2, trickle_ftp.sent
    assert not (tmp_path / "o" / "1843" / "oif.fits").exists()
