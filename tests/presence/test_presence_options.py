"""Both backends are built with the same options and use them the same way: the mark
limits they are given (``domain.marks.MARK_LIMITS`` by default, never their own), and
their own background sweep reporting to ``on_offline``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from opentim.domain.marks import MARK_LIMITS, MarkLimits, broken_limit, is_valid_mark
from opentim.presence import MarkLimitError, Offline

from .conftest import T0

pytestmark = pytest.mark.asyncio(loop_scope="function")

APP = 1400000002
G = "@TGS#aOPTS"


async def test_limits_are_the_ones_passed_in(backend: Any) -> None:
    store = await backend.make(limits=MarkLimits(max_distinct=2, max_per_mark=3,
                                                 min_custom=1000))
    for i in range(4):
        await store.join(APP, G, f"u{i}", f"c{i}", nick="", avatar="", now=T0)
    await store.set_marks(APP, G, [("u0", [1000, 1001])], now=T0)
    with pytest.raises(MarkLimitError) as err:
        await store.set_marks(APP, G, [("u1", [1002])], now=T0)
    assert (err.value.kind, err.value.limit) == ("distinct_marks", 2)
    await store.set_marks(APP, G, [(f"u{i}", [1000]) for i in range(1, 3)], now=T0)
    with pytest.raises(MarkLimitError) as err:
        await store.set_marks(APP, G, [("u3", [1000])], now=T0)
    assert (err.value.kind, err.value.limit, err.value.mark) == ("members_per_mark", 3, 1000)


async def test_min_custom_is_passed_to_the_limit_check(backend: Any) -> None:
    # With min_custom raised, marks 1000..1999 are not "custom" for the distinct limit:
    # the store (Lua included) counts with the value it was given, not a literal 1000.
    store = await backend.make(limits=MarkLimits(max_distinct=1, min_custom=2000))
    await store.join(APP, G, "u0", "c0", nick="", avatar="", now=T0)
    res = await store.set_marks(APP, G, [("u0", [1000, 1001, 2000])], now=T0)
    assert res.members[0].marks == (1000, 1001, 2000)
    with pytest.raises(MarkLimitError):
        await store.set_marks(APP, G, [("u0", [2001])], now=T0)


async def test_each_backend_sweeps_in_the_background(backend: Any) -> None:
    now = [T0]
    seen: list[Offline] = []
    got = asyncio.Event()

    async def on_offline(events: list[Offline]) -> None:
        seen.extend(events)
        got.set()

    store = await backend.make(clock=lambda: now[0], background=True, sweep_interval=0.02,
                               on_offline=on_offline)
    await store.add_robots(APP, G, ["bot"], now=T0, ttl=10)
    await asyncio.sleep(0.1)  # sweeps ran meanwhile, before the robot lapsed
    assert seen == []
    now[0] = T0 + 11
    # generous: the sweep runs every 20 ms; this only guards against a stall
    await asyncio.wait_for(got.wait(), 10)
    assert seen == [Offline(APP, G, "bot", "mark500_expired")]
    await store.close()


async def test_mark_rules() -> None:
    assert [m for m in (True, 0, 499, 500, 600, 601, 999, 1000, 10**9) if is_valid_mark(m)] \
        == [500, 600, 1000, 10**9]
    assert not is_valid_mark(500, allow_special=False)
    assert not is_valid_mark("1000")
    sizes = {1000: 999}.get
    assert broken_limit(set(range(1000, 1010)), {1010: 1}, lambda m: sizes(m, 0)) == (
        "distinct_marks", MARK_LIMITS.max_distinct, None)
    # 500 and 600 never count as distinct marks, but do count members
    assert broken_limit(set(range(1000, 1010)), {500: 1, 600: 1}, lambda m: 0) is None
    assert broken_limit(set(), {1000: 2, 600: 1001}, lambda m: sizes(m, 0)) == (
        "members_per_mark", MARK_LIMITS.max_per_mark, 600)
