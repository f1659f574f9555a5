"""One forwarding base for source wrappers (issue 15): every wrapper forwards the whole
Source contract, so a member added to Source cannot be silently hidden by a wrapper."""

from __future__ import annotations

import threading

import pytest

from chandra_download.budget import BudgetedSource, LocalBudget
from chandra_download.frozen import _Only
from chandra_download.health import SiteHealth, WatchedSource
from chandra_download.sources.base import (
    Body,
    ListingPage,
    PageRef,
    RemoteFile,
    Source,
    WrappedSource,
)

F = RemoteFile("primary/a.fits", 3, "mem://a", etag='"x"')
G = RemoteFile("primary/b.fits", 4, "mem://b")


class _Bytes(Body):
    def __init__(self) -> None:
        self.total, self.data = 3, b"abc"

    def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


class _Inner(Source):
    """A source that says which of its members were called."""

    label = "mem://site/"
    pipeline_depth = 5
    extra = "inner's own attribute"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def list_obsid(self, obsid: int) -> list[RemoteFile]:
        self.calls.append("list_obsid")
        return [F, G]

    def list_page(self, obsid: int, ref: PageRef) -> ListingPage:
        self.calls.append("list_page")
        return ListingPage([F, G], [PageRef("sub/", depth=1)], 10)

    def open(self, f: RemoteFile, offset: int = 0, end: int | None = None) -> Body:
        self.calls.append("open")
        return _Bytes()

    def size(self, f: RemoteFile) -> int:
        self.calls.append("size")
        return 3

    def identity(self, f: RemoteFile) -> tuple[str | None, str | None]:
        self.calls.append("identity")
        return ("then", '"x"')

    def close(self) -> None:
        self.calls.append("close")


def _wrappers(inner: Source) -> dict[str, Source]:
    health = SiteHealth(inner.label, 60.0, threading.Event())
    return {
        "watched": WatchedSource(inner, health),
        "budgeted": BudgetedSource(inner, LocalBudget()),
        "only": _Only(inner, {1843: {F.relpath, G.relpath}}),
    }


def test_the_base_forwards_every_member_of_the_source_contract() -> None:
    contract = {
        n
        for n, v in vars(Source).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, property))
    }
    own = set(vars(WrappedSource))
    assert contract <= own, f"WrappedSource does not forward {sorted(contract - own)}"


@pytest.mark.parametrize("kind", ["watched", "budgeted", "only"])
def test_each_wrapper_reaches_the_inner_source_for_every_call(kind: str) -> None:
    inner = _Inner()
    src = _wrappers(inner)[kind]
    assert isinstance(src, WrappedSource)
    assert src.list_obsid(1843) == [F, G]
    page = src.list_page(1843, PageRef())
    assert page.files == [F, G] and page.more == [PageRef("sub/", depth=1)]
    with src.open(F) as body:
        assert body.read(10) == b"abc" and body.total == 3
    assert src.size(F) == 3
    assert src.identity(F) == ("then", '"x"')
    assert src.extra == "inner's own attribute"  # type: ignore[attr-defined]
    src.close()
    assert inner.calls == ["list_obsid", "list_page", "open", "size", "identity", "close"]
    assert src.label == inner.label


def test_the_pipeline_depth_is_the_inner_sources_as_it_changes() -> None:
    inner = _Inner()
    src = _wrappers(inner)["watched"]
    assert src.pipeline_depth == 5
    inner.pipeline_depth = 1  # the site's pipelining turned off during the session
    assert src.pipeline_depth == 1


def test_a_manifests_filter_holds_on_listing_pages_too() -> None:
    inner = _Inner()
    only = _Only(inner, {1843: {G.relpath}})
    page = only.list_page(1843, PageRef())
    assert page.files == [G]
    assert page.more == [PageRef("sub/", depth=1)]  # its sub-directories are still walked
    assert only.list_obsid(1843) == [G]
