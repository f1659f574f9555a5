"""The FITS sums' numpy path: words byte-swapped into a per-thread buffer, then summed; the
same sums as the plain sum of big-endian words, for any piece size and from many threads."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from chandra_download import verify


def _plain(data: bytes) -> int:
    return int(np.frombuffer(data, dtype=">u4").astype(np.uint64).sum())


@pytest.mark.parametrize("words", [1, 1000, verify._SCRATCH_WORDS, verify._SCRATCH_WORDS + 1])
def test_numpy_sum_is_the_sum_of_big_endian_words(words: int) -> None:
    import sys

    assert "numpy" in sys.modules  # (so _words_sum takes numpy's path for large pieces)
    data = random.Random(words).randbytes(4 * words)
    assert verify._words_sum(data) == _plain(data)
    assert verify._words_sum(memoryview(data)) == _plain(data)
    ones = b"\xff" * 4 * words  # the largest words: the uint64 sum must not overflow
    assert verify._words_sum(ones) == words * 0xFFFFFFFF


def test_a_short_piece_after_a_long_one_sums_only_its_own_words() -> None:
    long = random.Random(1).randbytes(4 * verify._SCRATCH_WORDS)
    short = b"\x00\x00\x00\x01" * 3
    assert verify._words_sum(long) == _plain(long)
    assert verify._words_sum(short) == 3  # (the buffer's older words are not summed)


def test_threads_summing_at_once_each_get_their_own_sum() -> None:
    pieces = [random.Random(i).randbytes(2**20) for i in range(8)]
    expected = [_plain(p) for p in pieces]
    got: list[list[int]] = [[] for _ in pieces]

    def run(i: int) -> None:
        for _ in range(20):
            got[i].append(verify._words_sum(pieces[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pieces))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [[e] * 20 for e in expected]
