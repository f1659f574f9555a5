"""Less CPU per file (issue 19.4): the shortcuts taken must give what the long way gives."""

from __future__ import annotations

import io
import random
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from astropy.io import fits

from chandra_download import verify
from chandra_download.errors import VerificationError
from chandra_download.sources.http_body import _Watchdog


def _card(key: str, value: str) -> bytes:
    return f"{key:<8}= {value}".ljust(80)[:80].encode("ascii")


def _astropy(card: bytes) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fits.Card.fromstring(card.decode("ascii")).value
        except Exception as exc:  # noqa: BLE001 - any failure is "not a value"
            return exc


PLAIN = ["10", "+10", "-3", "0010", "T", "F", "'abc'", "'abc  '", "'  abc'", "''", "' '",
         "'it''s'", "'a/b'", "10 / a comment", "T/c", "'x' /", "'''a'''", "''''"]  # fmt: skip
ODD = ["1.5", "1e3", "- 5", "'unterminated", "10 10", "'a' 'b'", "t", "0x10", "10.", "(1, 2)"]


@pytest.mark.parametrize("value", PLAIN + ODD + [" " * 15 + v for v in PLAIN])
def test_a_card_reads_as_astropy_reads_it(value):
    card = _card("NAXIS1", value)
    expected = _astropy(card)
    try:
        got = verify._card_value(card, "NAXIS1", ValueError)
    except ValueError:
        assert isinstance(expected, Exception)
        return
    assert type(got) is type(expected) and got == expected


def test_random_cards_read_as_astropy_reads_them():
    rng = random.Random(7)
    alphabet = " 0123456789+-TF'/.EeDabc=\x7f\t"
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        card = f"NAXIS   = {value}".ljust(80)[:80].encode("latin-1")
        try:
            got: object = verify._card_value(card, "NAXIS", ValueError)
        except ValueError:
            continue  # astropy refused it too, or it is not ASCII (refused before astropy)
        expected = _astropy(card)
        assert type(got) is type(expected) and got == expected, card


def test_a_non_ascii_card_is_refused():
    assert verify._card_value(_card("NAXIS", "2 / x"), "NAXIS", ValueError) == 2
    card = _card("NAXIS", "2 / x")[:-1] + b"\xe9"
    with pytest.raises(ValueError, match="bad NAXIS card"):
        verify._card_value(card, "NAXIS", ValueError)


def test_checking_a_plain_fits_file_imports_no_astropy(tmp_path):
    path = tmp_path / "x.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("a", "J", array=list(range(100)))])]).writeto(path, checksum=True)  # fmt: skip
    code = (
        "import sys; from pathlib import Path; from chandra_download import verify; "
        f"print(verify.check_file(Path({str(path)!r}), 'x.fits')); "
        "print('astropy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['fits']", "False"]


def test_a_damaged_datasum_still_fails_on_the_plain_path(tmp_path):
    path = tmp_path / "x.fits"
    hdu = fits.BinTableHDU.from_columns([fits.Column("a", "J", array=list(range(100)))])
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, checksum=True)
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="DATASUM mismatch in HDU 1"):
        verify.check_file(path, "x.fits")


def _fires_within(armed, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while not armed.fired and time.monotonic() < end:
        time.sleep(0.01)
    return armed.fired


def test_an_earlier_deadline_armed_later_still_fires_on_time():
    """The watchdog is woken only for a deadline earlier than the one it sleeps to."""
    dog = _Watchdog()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        late = dog.arm(a, 60.0)
        time.sleep(0.1)  # the thread now sleeps until the late deadline
        soon = dog.arm(c, 0.2)
        assert _fires_within(soon, 10.0)
        assert c.recv(1) == b""  # shut down: a read blocked on it returns
        assert not late.fired
        late.disarm()
        again = dog.arm(a, 0.2)  # after a disarmed one at the top
        assert _fires_within(again, 10.0)
    finally:
        for s in (a, b, c, d):
            s.close()


def test_a_disarmed_deadline_never_fires():
    dog = _Watchdog()
    a, b = socket.socketpair()
    try:
        armed = dog.arm(a, 0.2)
        armed.disarm()
        time.sleep(0.5)
        assert not armed.fired
        a.sendall(b"x")  # still usable
        assert b.recv(1) == b"x"
    finally:
        a.close()
        b.close()


def _header(*cards: str) -> bytes:
    raw = b"".join(c.ljust(80).encode("ascii") for c in (*cards, "END"))
    return raw.ljust(-(-len(raw) // 2880) * 2880, b" ")


def test_the_end_card_is_found_only_at_a_cards_start():
    # "END" closing a COMMENT card, then a blank card: "END" + 77 spaces, but not a card.
    data = np.arange(720, dtype=">i4").tobytes()  # 2880 bytes: one block
    head = ["SIMPLE  =                    T", "BITPIX  =                   32",
            "NAXIS   =                    1", "NAXIS1  =                  720",
            "COMMENT " + "x" * 69 + "END", ""]  # fmt: skip
    raw = _header(*head, *["HISTORY more"] * 36) + data  # the real END in the second block
    assert raw.find(verify._END_CARD) < 2880 and raw.find(verify._END_CARD) % 80  # off a card
    stream = verify.FitsStream("odd.fits")
    for i in range(0, len(raw), 1000):  # in pieces, as the bytes come
        stream.feed(raw[i : i + 1000])
    stream.close()
    assert stream.hdus == 1
    with fits.open(io.BytesIO(raw)) as hdul:
        assert len(hdul) == 1 and hdul[0].data.size == 720


def test_only_the_sizing_and_sum_cards_are_read():
    head = ["SIMPLE  =                    T", "BITPIX  =                  -32",
            "NAXIS   =                    2", "NAXIS1  =                    3",
            "NAXIS2  =                    4", "NAXISX  = 'not an axis'", "OBJECT  = 'a star'",
            "DATASUM = '0       '", " BITPIX =                    8"]  # fmt: skip
    cards = verify._cards(_header(*head), ValueError)
    assert cards == {"BITPIX": -32, "NAXIS": 2, "NAXIS1": 3, "NAXIS2": 4, "DATASUM": "0"}


def test_a_command_does_not_import_what_a_download_never_uses():
    # Checked in a fresh interpreter: what the package's import pulls in is every run's cost.
    code = (
        "import sys, chandra_download\n"
        "print(sorted(m for m in ('chandra_download.find', 'chandra_download.services',"
        " 'xml.etree.ElementTree', 'astropy') if m in sys.modules))\n"
        "from chandra_download import find_chandra_obsids\n"
        "print(find_chandra_obsids.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "chandra_download.find"]


@pytest.mark.parametrize("n", [0, 4, 2880, 28800, 300_000])
def test_the_python_sum_of_words_is_numpys(n):
    data = random.Random(n).randbytes(n)
    expected = int(np.frombuffer(data, dtype=">u4").sum(dtype=np.uint64))
    for form in (data, bytearray(data), memoryview(data)):
        assert verify._python_sum(form) == expected
    for acc in (0, 1, 0xFFFFFFFF, 7 << 40):  # the fold, as the FITS standard's
        total = acc + expected
        while total >> 32:
            total = (total & 0xFFFFFFFF) + (total >> 32)
        assert verify.ones_sum(data, acc) == total


_NUMPY_AFTER = """
import sys
from chandra_download import download
from chandra_download.simulator.http import ArchiveHTTPServer
from chandra_download.verify import ones_sum
with ArchiveHTTPServer(sys.argv[1]) as http:
    res = download(1843, mirror=http.base_url, outdir=sys.argv[2], progress=False, status=False)
assert res.ok and sum(f.relpath.endswith(".fits.gz") for r in res for f in r.files) > 5
print("numpy" in sys.modules)
ones_sum(bytes(300_000))  # a large piece: numpy's at once
print("numpy" in sys.modules)
"""


def test_small_fits_files_are_checked_without_importing_numpy(tmp_path):
    from chandra_download.simulator import generate_archive

    root = generate_archive(tmp_path / "archive", {1843: "acis"}, scale=0.02)
    cmd = [sys.executable, "-c", _NUMPY_AFTER, str(root), str(tmp_path / "out")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]
