"""plan.decide, table-driven: every decision from every kind of local state (issue 18.4).

Each row is what :func:`plan.look` could find on disk (final file, ``.part``, split state)
and the archive's exact size, with the action and offset the plan must choose; a row whose
on-disk state is discarded also says why (the ``note`` the log shows)."""

from __future__ import annotations

import pytest

from chandra_download.plan import Action, OnDisk, decide, needs_size
from chandra_download.results import LocalState
from chandra_download.split import Part, PartsState

SIZE = 1000


def parts(*spans: tuple[int, int, int]) -> PartsState:
    return PartsState(SIZE, [Part(s, e, d) for s, e, d in spans])


HALF_DONE = parts((0, 500, 500), (500, 1000, 200))  # 700 bytes done, furthest byte 700
ALL_DONE = parts((0, 500, 500), (500, 1000, 500))

ROWS = [
    # (what is on disk, archive size, action, offset, a note mentioning)
    ("nothing", OnDisk(None, None), None, Action.FETCH, 0, None),
    ("nothing, size known", OnDisk(None, None), SIZE, Action.FETCH, 0, None),
    ("final complete", OnDisk(SIZE, None), SIZE, Action.PRESENT, SIZE, None),
    ("final complete, stale .part", OnDisk(SIZE, 10), SIZE, Action.PRESENT, SIZE, None),
    ("final larger", OnDisk(SIZE + 1, None), SIZE, Action.LARGER, SIZE + 1, None),
    ("final shorter (CIAO's partial)", OnDisk(400, None), SIZE, Action.ADOPT, 400, None),
    ("empty final (CIAO's partial)", OnDisk(0, None), SIZE, Action.ADOPT, 0, None),
    (".part shorter", OnDisk(None, 300), SIZE, Action.RESUME, 300, None),
    (".part full size", OnDisk(None, SIZE), SIZE, Action.FINISH, SIZE, None),
    (".part larger", OnDisk(None, SIZE + 5), SIZE, Action.FETCH, 0, "more than the file"),
    ("empty .part", OnDisk(None, 0), SIZE, Action.FETCH, 0, None),
    (
        "state and its .part",
        OnDisk(None, 700, HALF_DONE, None, True),
        SIZE,
        Action.PARTS,
        700,
        None,
    ),
    (
        "state all done (a crash before the rename)",
        OnDisk(None, SIZE, ALL_DONE, None, True),
        SIZE,
        Action.PARTS,
        SIZE,
        None,
    ),
    (
        "state unusable",
        OnDisk(None, 700, None, "not JSON", True),
        SIZE,
        Action.FETCH,
        0,
        "not JSON",
    ),
    (
        "state for another size",
        OnDisk(None, 700, HALF_DONE, None, True),
        SIZE + 1,
        Action.FETCH,
        0,
        "another version",
    ),
    (
        "state claims more than the .part holds",
        OnDisk(None, 600, HALF_DONE, None, True),
        SIZE,
        Action.FETCH,
        0,
        "does not hold",
    ),
    (
        "state with a .part larger than the file",
        OnDisk(None, SIZE + 1, HALF_DONE, None, True),
        SIZE,
        Action.FETCH,
        0,
        "does not hold",
    ),
    (
        "state without its .part",
        OnDisk(None, None, HALF_DONE, None, True),
        SIZE,
        Action.FETCH,
        0,
        "does not hold",
    ),
]


@pytest.mark.parametrize(
    ("disk", "size", "action", "offset", "note"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_decide(
    disk: OnDisk, size: int | None, action: Action, offset: int, note: str | None
) -> None:
    d = decide(disk, size)
    assert (d.action, d.offset) == (action, offset)
    if note is None:
        assert d.note is None
    else:
        assert d.note is not None and note in d.note


def test_every_action_has_a_row() -> None:
    assert {row[3] for row in ROWS} == set(Action)


@pytest.mark.parametrize(
    ("action", "local"),
    [
        (Action.FETCH, LocalState.MISSING),
        (Action.RESUME, LocalState.PARTIAL),
        (Action.ADOPT, LocalState.PARTIAL),
        (Action.PARTS, LocalState.PARTIAL),
        (Action.FINISH, LocalState.PARTIAL),
        (Action.PRESENT, LocalState.COMPLETE),
        (Action.LARGER, LocalState.LARGER),
    ],
)
def test_what_each_decision_says_of_the_local_copy(action: Action, local: LocalState) -> None:
    row = next(r for r in ROWS if r[3] is action)
    assert decide(row[1], row[2]).local is local


def test_the_size_is_needed_only_when_something_is_on_disk() -> None:
    assert not needs_size(OnDisk(None, None))
    assert not needs_size(OnDisk(None, 0))  # an empty .part holds nothing to judge
    assert needs_size(OnDisk(None, 1))
    assert needs_size(OnDisk(0, None))
    assert needs_size(OnDisk(None, None, None, "garbage", True))
