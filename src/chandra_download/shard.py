"""Job arrays without a scheduler of ours: the K-th of N stable parts of an ObsId list.

Part K of N holds the ObsIds at positions K, K+N, K+2N... of the list as given (1-based,
repeats counted), so the same list gives the same parts on every run and every machine, the
parts together are the list exactly once, and they differ in length by at most one. A job
array passes each task the same list (a file, ``@obsids.txt``) and its own index as K.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Shard = tuple[int, int]


def check_shard(shard: object) -> Shard:
    """``shard`` as a ``(K, N)`` pair of ints with ``1 <= K <= N``.

    Raises
    ------
    ValueError
        One line naming what is wrong.
    """
    if (
        not isinstance(shard, tuple | list)
        or len(shard) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
    ):
        raise ValueError(f"shard must be a pair (K, N) of whole numbers, not {shard!r}")
    k, n = shard
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: K must be between 1 and N (N at least 1)")
    return k, n


def parse_shard(text: str) -> Shard:
    """``"K/N"`` (the command line's ``--shard``) as ``(K, N)``.

    Raises
    ------
    ValueError
        One line naming what is wrong.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--shard {text}: expected K/N, e.g. --shard 3/10")
    return check_shard((int(m[1]), int(m[2])))


def select(obsids: Sequence[int], shard: Shard | None) -> list[int]:
    """The ObsIds of part ``shard`` (all of them for None)."""
    if shard is None:
        return list(obsids)
    k, n = check_shard(shard)
    return list(obsids[k - 1 :: n])
