"""Contract tests of PresenceStore; every test runs on the memory and the Redis backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opentim.presence import (
    RECOVER_WINDOW,
    InvalidCursorError,
    InvalidMarkError,
    Joined,
    MarkedMember,
    MarkLimitError,
    PresenceStore,
)

from .conftest import T0
from .helpers import is_online, marks_of

pytestmark = pytest.mark.asyncio(loop_scope="function")

APP = 1400000001
G = "@TGS#aLIVE"


async def joined(
    s: PresenceStore, acc: str, conn: str | None = None, *, now: float = T0
) -> Joined:
    return await s.join(APP, G, acc, conn or f"{acc}-c", nick=f"n-{acc}", avatar="", now=now)


async def join(s: PresenceStore, acc: str, conn: str | None = None, *, now: float = T0) -> bool:
    """Whether the account became online."""
    return (await joined(s, acc, conn, now=now)).became_online


async def leave(
    s: PresenceStore,
    acc: str,
    conn: str | None = None,
    *,
    now: float = T0,
    interrupted: bool = False,
) -> bool:
    return await s.leave(APP, G, acc, conn or f"{acc}-c", now=now, interrupted=interrupted)


async def all_pages(
    s: PresenceStore, *, mark: int | None = None, now: float = T0, limit: int = 500
) -> list[list[str]]:
    """Accounts of each page of one paging sequence."""
    pages: list[list[str]] = []
    cursor = 0
    while True:
        p = await s.page(APP, G, cursor=cursor, mark=mark, now=now, limit=limit)
        rows = json.loads(p.rows)
        assert p.count == len(rows)
        pages.append([r["Member_Account"] for r in rows])
        if not p.next_cursor:
            return pages
        assert p.next_cursor > 0
        cursor = p.next_cursor


async def listed(s: PresenceStore, *, mark: int | None = None, now: float = T0) -> list[str]:
    return [a for page in await all_pages(s, mark=mark, now=now) for a in page]


# --- the list ------------------------------------------------------------------------


async def test_row_bytes_are_exact(store: PresenceStore) -> None:
    joined = await store.join(APP, G, "u1", "c1", nick="n", avatar="a", now=1657773110.9)
    assert joined is Joined.ONLINE
    page = await store.page(APP, G, cursor=0, now=1657773111)
    assert (
        page.rows == b'[{"Member_Account":"u1","JoinTime":1657773110,"NickName":"n","Avatar":"a"}]'
    )
    assert (page.next_cursor, page.count) == (0, 1)


async def test_empty_group(store: PresenceStore) -> None:
    page = await store.page(APP, "nobody", cursor=0, now=T0)
    assert (page.rows, page.next_cursor, page.count) == (b"[]", 0, 0)
    assert await store.count(APP, "nobody", now=T0) == 0


async def test_newest_join_first(store: PresenceStore) -> None:
    for i in range(5):
        assert await join(store, f"u{i}", now=T0 + i)
    assert await listed(store) == ["u4", "u3", "u2", "u1", "u0"]


async def test_rejoin_gets_a_newer_place(store: PresenceStore) -> None:
    for acc in ("u1", "u2", "u3"):
        await join(store, acc)
    assert await leave(store, "u1")
    assert await join(store, "u1")
    assert await listed(store) == ["u1", "u3", "u2"]


async def test_groups_and_apps_are_separate(store: PresenceStore) -> None:
    await join(store, "u1")
    await store.join(APP + 1, G, "u2", "x", nick="", avatar="", now=T0)
    await store.join(APP, "other", "u3", "y", nick="", avatar="", now=T0)
    assert await listed(store) == ["u1"]
    assert await store.count(APP + 1, G, now=T0) == 1


async def test_1200_in_the_same_second_paged_exactly_once_and_capped(
    store: PresenceStore,
) -> None:
    for i in range(1200):
        await join(store, f"u{i:04d}")
    pages = await all_pages(store)
    assert [len(p) for p in pages] == [500, 500]
    expected = [f"u{i:04d}" for i in range(1199, 199, -1)]
    assert pages[0] + pages[1] == expected
    assert await store.count(APP, G, now=T0) == 1200


async def test_cap_cursor_after_cap_returns_nothing(store: PresenceStore) -> None:
    for i in range(6):
        await join(store, f"u{i}")
    p1 = await store.page(APP, G, cursor=0, limit=2, cap=4, now=T0)
    p2 = await store.page(APP, G, cursor=p1.next_cursor, limit=2, cap=4, now=T0)
    assert (p1.count, p2.count, p2.next_cursor) == (2, 2, 0)
    # exactly `limit` left: the last page says "done" instead of an empty extra page
    p3 = await store.page(APP, G, cursor=0, limit=3, cap=10, now=T0)
    p4 = await store.page(APP, G, cursor=p3.next_cursor, limit=3, cap=10, now=T0)
    assert (p3.count, p4.count, p4.next_cursor) == (3, 3, 0)


async def test_joins_and_leaves_between_pages(store: PresenceStore) -> None:
    for i in range(700):
        await join(store, f"u{i:03d}")
    p1 = await store.page(APP, G, cursor=0, now=T0)
    first = [r["Member_Account"] for r in json.loads(p1.rows)]
    assert first == [f"u{i:03d}" for i in range(699, 199, -1)]
    # newcomers, a served member leaving, unserved members leaving and one re-joining
    for i in range(50):
        await join(store, f"new{i}")
    await leave(store, "u650")
    for i in range(0, 100, 2):
        await leave(store, f"u{i:03d}")
    await join(store, "u010")
    p2 = await store.page(APP, G, cursor=p1.next_cursor, now=T0)
    second = [r["Member_Account"] for r in json.loads(p2.rows)]
    assert p2.next_cursor == 0
    assert second == [f"u{i:03d}" for i in range(199, -1, -1) if i >= 100 or i % 2]
    assert not set(first) & set(second)


async def test_bad_cursor_and_arguments(store: PresenceStore) -> None:
    await join(store, "u1")
    for bad in (-1, 5):
        with pytest.raises(InvalidCursorError):
            await store.page(APP, G, cursor=bad, now=T0)
    with pytest.raises(ValueError):
        await store.page(APP, G, cursor=0, limit=0, now=T0)
    with pytest.raises(InvalidMarkError):
        await store.page(APP, G, cursor=0, mark=999, now=T0)


# --- connections -----------------------------------------------------------------------


async def test_multi_connection_user(store: PresenceStore) -> None:
    assert await join(store, "u1", "a", now=T0)
    assert not await join(store, "u1", "b", now=T0 + 50)  # same seq and JoinTime
    assert not await join(store, "u1", "b", now=T0 + 60)  # duplicate conn: no-op
    assert not await leave(store, "u1", "a")
    assert await is_online(store, APP, G, "u1", now=T0)
    page = await store.page(APP, G, cursor=0, now=T0)
    assert json.loads(page.rows)[0]["JoinTime"] == int(T0)
    assert not await leave(store, "u1", "a")  # already gone
    assert not await leave(store, "u2", "b")  # not u2's connection
    assert await leave(store, "u1", "b")
    assert not await is_online(store, APP, G, "u1", now=T0)
    assert await store.count(APP, G, now=T0) == 0


async def test_leave_clears_marks_except_500(store: PresenceStore) -> None:
    await join(store, "u1")
    await join(store, "u2")
    await store.set_marks(APP, G, [("u1", [1000, 500, 600]), ("u2", [1000])], now=T0)
    assert not await leave(store, "u1")  # listed by its 500
    assert await leave(store, "u2")
    assert await listed(store, mark=500) == ["u1"]
    assert await listed(store, mark=1000) == []
    assert await listed(store, mark=600) == []
    assert await marks_of(store, APP, G, ["u1", "u2"], now=T0) == {"u1": (500,)}
    # re-joining does not bring marks back
    assert await join(store, "u2")
    assert await marks_of(store, APP, G, ["u2"], now=T0) == {"u2": ()}


# --- marks -----------------------------------------------------------------------------


async def test_set_and_delete_results(store: PresenceStore) -> None:
    await join(store, "teacher10")
    await join(store, "student9")
    res = await store.set_marks(
        APP, G, [("teacher10", [1000]), ("student9", [1001]), ("ghost", [1000])], now=T0
    )
    assert res.members == [MarkedMember("teacher10", (1000,)), MarkedMember("student9", (1001,))]
    assert res.went_online == [] and res.went_offline == []
    res = await store.set_marks(
        APP, G, [("teacher10", [1002, 1000]), ("teacher10", [1003])], now=T0
    )
    assert res.members == [MarkedMember("teacher10", (1000, 1002, 1003))]
    res = await store.delete_marks(APP, G, [("teacher10", [1000, 1005]), ("ghost", [1000])], now=T0)
    assert res.members == [MarkedMember("teacher10", (1002, 1003))]
    assert await listed(store, mark=1000) == []
    assert await listed(store, mark=1002) == ["teacher10"]


async def test_offline_accounts_left_out(store: PresenceStore) -> None:
    res = await store.set_marks(APP, G, [("a", [1000]), ("b", [600])], now=T0)
    assert res.members == []
    assert await store.count(APP, G, now=T0) == 0
    res = await store.set_marks(APP, G, [("a", [500])], now=T0, allow_offline_500=False)
    assert res.members == []


async def test_invalid_marks_rejected(store: PresenceStore) -> None:
    await join(store, "u1")
    for bad in (0, 999, 501, 700, -1000):
        with pytest.raises(InvalidMarkError):
            await store.set_marks(APP, G, [("u1", [1000, bad])], now=T0)
    assert await marks_of(store, APP, G, ["u1"], now=T0) == {"u1": ()}


async def test_mark_600_hidden_unless_asked(store: PresenceStore) -> None:
    for acc in ("u1", "u2", "u3"):
        await join(store, acc)
    await store.set_marks(APP, G, [("u2", [600])], now=T0)
    assert await listed(store) == ["u3", "u1"]
    assert await listed(store, mark=600) == ["u2"]
    assert await store.count(APP, G, now=T0) == 3
    await store.delete_marks(APP, G, [("u2", [600])], now=T0)
    assert await listed(store) == ["u3", "u2", "u1"]


async def test_mark_filter_pages(store: PresenceStore) -> None:
    for i in range(1100):
        await join(store, f"u{i:04d}")
    marked = [f"u{i:04d}" for i in range(0, 1100) if i % 3]
    await store.set_marks(APP, G, [(a, [1000]) for a in marked[:500]], now=T0)
    await store.set_marks(APP, G, [(a, [1000]) for a in marked[500:]], now=T0)
    pages = await all_pages(store, mark=1000)
    assert [len(p) for p in pages] == [500, len(marked) - 500]
    assert pages[0] + pages[1] == marked[::-1]
    assert await listed(store, mark=1001) == []


async def test_distinct_mark_limit_is_atomic(store: PresenceStore) -> None:
    for acc in ("u1", "u2", "u3"):
        await join(store, acc)
    await store.set_marks(APP, G, [("u1", list(range(1000, 1010)))], now=T0)
    with pytest.raises(MarkLimitError) as err:
        await store.set_marks(APP, G, [("u3", [1000]), ("u2", [1010])], now=T0)
    assert (err.value.kind, err.value.limit) == ("distinct_marks", 10)
    assert await marks_of(store, APP, G, ["u2", "u3"], now=T0) == {"u2": (), "u3": ()}
    # 500 and 600 don't count; re-using one of the 10 is fine
    res = await store.set_marks(APP, G, [("u2", [500, 600, 1009])], now=T0)
    assert res.members == [MarkedMember("u2", (500, 600, 1009))]
    # once a mark has no member left it no longer counts
    await store.delete_marks(APP, G, [("u1", [1000])], now=T0)
    await store.set_marks(APP, G, [("u3", [1010])], now=T0)


@pytest.mark.parametrize("mark", [1000, 500, 600])
async def test_per_mark_limit_is_atomic(store: PresenceStore, mark: int) -> None:
    accounts = [f"u{i:04d}" for i in range(1001)]
    for a in accounts:
        await join(store, a)
    await store.set_marks(APP, G, [(a, [mark]) for a in accounts[:500]], now=T0)
    await store.set_marks(APP, G, [(a, [mark]) for a in accounts[500:999]], now=T0)
    # re-marking holders is fine; one more new member is fine, two are not
    await store.set_marks(APP, G, [(accounts[0], [mark])], now=T0)
    with pytest.raises(MarkLimitError) as err:
        await store.set_marks(
            APP,
            G,
            [(accounts[999], [1005]), (accounts[999], [mark]), ("robot", [500, mark])],
            now=T0,
        )
    assert (err.value.kind, err.value.limit, err.value.mark) == ("members_per_mark", 1000, mark)
    assert await marks_of(store, APP, G, [accounts[999]], now=T0) == {accounts[999]: ()}
    assert not await is_online(store, APP, G, "robot", now=T0)
    await store.set_marks(APP, G, [(accounts[1000], [mark])], now=T0)
    assert len(await listed(store, mark=mark)) == 1000


# --- mark 500 and robots -----------------------------------------------------------------


async def test_mark_500_listed_without_connection_until_ttl(store: PresenceStore) -> None:
    await join(store, "u1")
    res = await store.set_marks(
        APP, G, [("vip", [500, 1000])], now=T0 + 10, mark500_ttl=100, profiles={"vip": ("V", "a")}
    )
    assert res.went_online == ["vip"]
    assert res.members == [MarkedMember("vip", (500, 1000))]
    rows = json.loads((await store.page(APP, G, cursor=0, now=T0 + 109)).rows)
    assert rows[0] == {
        "Member_Account": "vip",
        "JoinTime": int(T0) + 10,
        "NickName": "V",
        "Avatar": "a",
    }
    assert await store.count(APP, G, now=T0 + 109.9) == 2
    # lapsed at now >= until, before any sweep
    for now in (T0 + 110, T0 + 500):
        assert await listed(store, now=now) == ["u1"]
        assert await listed(store, mark=500, now=now) == []
        assert await listed(store, mark=1000, now=now) == []
        assert await store.count(APP, G, now=now) == 1
        assert not await is_online(store, APP, G, "vip", now=now)
    events = await store.sweep(T0 + 110)
    assert [(e.app, e.group, e.account, e.reason) for e in events] == [
        (APP, G, "vip", "mark500_expired")
    ]
    assert await store.sweep(T0 + 111) == []
    assert await store.count(APP, G, now=T0 + 110) == 1


async def test_lapsed_500_reported_by_next_mark_call(store: PresenceStore) -> None:
    await join(store, "u1")
    await store.set_marks(APP, G, [("vip", [500]), ("u1", [500])], now=T0, mark500_ttl=5)
    res = await store.set_marks(APP, G, [("u1", [1000])], now=T0 + 5)
    assert res.went_offline == ["vip"]
    assert res.members == [MarkedMember("u1", (1000,))]  # its 500 lapsed too


async def test_refreshing_500_extends_it(store: PresenceStore) -> None:
    await store.set_marks(APP, G, [("vip", [500])], now=T0, mark500_ttl=10)
    res = await store.set_marks(APP, G, [("vip", [500])], now=T0 + 9, mark500_ttl=10)
    assert res.went_online == []
    assert await is_online(store, APP, G, "vip", now=T0 + 18)
    assert await store.sweep(T0 + 12) == []


async def test_robots(store: PresenceStore) -> None:
    await join(store, "u1")
    res = await store.add_robots(
        APP, G, ["bot1", "bot2"], now=T0, profiles={"bot1": ("Bot One", "http://x/b1.png")}
    )
    assert res.went_online == ["bot1", "bot2"]
    assert await listed(store) == ["bot2", "bot1", "u1"]
    assert await listed(store, mark=500) == ["bot2", "bot1"]
    assert await store.count(APP, G, now=T0) == 3
    # a robot that connects keeps its place; leaving again keeps it listed
    assert not await join(store, "bot1", now=T0 + 1)
    assert not await leave(store, "bot1", now=T0 + 2)
    assert await listed(store) == ["bot2", "bot1", "u1"]
    # del_robots: unconnected goes offline, connected stays online
    await join(store, "bot2", now=T0 + 3)
    res = await store.del_robots(APP, G, ["bot1", "bot2", "nobot"], now=T0 + 4)
    assert res.went_offline == ["bot1"]
    assert res.members == [MarkedMember("bot1", ()), MarkedMember("bot2", ())]
    assert await listed(store) == ["bot2", "u1"]
    assert await leave(store, "bot2")
    assert await listed(store, mark=500) == []


async def test_join_after_lapsed_500_is_a_fresh_join(store: PresenceStore) -> None:
    await store.add_robots(APP, G, ["bot"], now=T0, ttl=10)
    await join(store, "u1", now=T0 + 1)
    # the join removed the lapsed entry, so it reports the lapse (AFTER_LAPSE), not the sweep
    assert await joined(store, "bot", now=T0 + 20) is Joined.AFTER_LAPSE
    assert await listed(store, now=T0 + 20) == ["bot", "u1"]
    rows = json.loads((await store.page(APP, G, cursor=0, now=T0 + 20)).rows)
    assert rows[0]["JoinTime"] == int(T0) + 20
    assert await marks_of(store, APP, G, ["bot"], now=T0 + 20) == {"bot": ()}
    assert await store.sweep(T0 + 30) == []
    # reads filter a lapsed 500 but never remove it: the sweep still reports that one
    await store.add_robots(APP, G, ["bot2"], now=T0 + 20, ttl=10)
    assert await listed(store, now=T0 + 31) == ["bot", "u1"]
    assert await store.count(APP, G, now=T0 + 31) == 2
    assert not await is_online(store, APP, G, "bot2", now=T0 + 31)
    assert [e.account for e in await store.sweep(T0 + 31)] == ["bot2"]
    assert await store.sweep(T0 + 32) == []


async def test_lapsed_500_set_again_goes_offline_then_online(store: PresenceStore) -> None:
    await store.set_marks(APP, G, [("vip", [500])], now=T0, mark500_ttl=5)
    res = await store.set_marks(APP, G, [("vip", [500])], now=T0 + 5, mark500_ttl=5)
    assert (res.went_offline, res.went_online) == (["vip"], ["vip"])
    assert res.members == [MarkedMember("vip", (500,))]
    assert await store.sweep(T0 + 6) == []


async def test_lapsed_500_reported_by_a_call_that_fails(store: PresenceStore) -> None:
    """A call naming no online account, or hitting a limit, still reports the lapse."""
    await join(store, "u1")
    await store.set_marks(APP, G, [("u1", list(range(1000, 1010)))], now=T0)
    await store.add_robots(APP, G, ["bot1", "bot2"], now=T0, ttl=5)
    res = await store.set_marks(APP, G, [("ghost", [1000])], now=T0 + 5)
    assert (res.members, sorted(res.went_offline)) == ([], ["bot1", "bot2"])
    await store.add_robots(APP, G, ["bot3"], now=T0 + 5, ttl=5)
    with pytest.raises(MarkLimitError) as err:
        await store.set_marks(APP, G, [("u1", [1010])], now=T0 + 10)
    assert err.value.went_offline == ["bot3"]
    assert await marks_of(store, APP, G, ["u1"], now=T0 + 10) == {"u1": tuple(range(1000, 1010))}
    assert await store.sweep(T0 + 20) == []
    assert await listed(store, now=T0 + 20) == ["u1"]


async def test_lapsed_robot_deleted_is_reported_once(store: PresenceStore) -> None:
    await store.add_robots(APP, G, ["bot"], now=T0, ttl=5)
    res = await store.del_robots(APP, G, ["bot"], now=T0 + 5)
    assert (res.members, res.went_offline) == ([], ["bot"])
    assert await store.sweep(T0 + 6) == []


# --- heartbeat interruptions (HeartbeatRecover) -------------------------------------------


async def test_interrupted_member_recovers_within_the_window(store: PresenceStore) -> None:
    await join(store, "u1")
    assert await leave(store, "u1", now=T0 + 1, interrupted=True)
    assert await joined(store, "u1", "again", now=T0 + 30) is Joined.RECOVERED
    # the recovery used the record up; a later plain quit and join is a plain join
    assert await leave(store, "u1", "again", now=T0 + 40)
    assert await joined(store, "u1", now=T0 + 41) is Joined.ONLINE
    # the window is inclusive
    assert await leave(store, "u1", now=T0 + 50, interrupted=True)
    assert await joined(store, "u1", now=T0 + 50 + RECOVER_WINDOW) is Joined.RECOVERED


async def test_interruption_forgotten_after_the_window(store: PresenceStore) -> None:
    await join(store, "u1")
    await join(store, "u2")
    assert await leave(store, "u1", now=T0, interrupted=True)
    assert await leave(store, "u2", now=T0 + 100, interrupted=True)
    assert await joined(store, "u1", now=T0 + RECOVER_WINDOW + 1) is Joined.ONLINE
    assert await joined(store, "u2", now=T0 + RECOVER_WINDOW + 1) is Joined.RECOVERED
    # a lapsed record is gone, not waiting for a later interruption
    assert await leave(store, "u1", now=T0 + RECOVER_WINDOW + 2)
    assert await joined(store, "u1", now=T0 + RECOVER_WINDOW + 3) is Joined.ONLINE


async def test_only_going_offline_is_an_interruption(store: PresenceStore) -> None:
    # another connection keeps the member online
    await join(store, "u1", "a")
    assert await joined(store, "u1", "b") is Joined.NO_CHANGE
    assert not await leave(store, "u1", "a", interrupted=True)
    assert await leave(store, "u1", "b")
    assert await joined(store, "u1", now=T0 + 1) is Joined.ONLINE
    # so does a valid mark 500; when that goes later, it is no interruption either
    await join(store, "vip")
    await store.set_marks(APP, G, [("vip", [500])], now=T0)
    assert not await leave(store, "vip", now=T0 + 1, interrupted=True)
    await store.del_robots(APP, G, ["vip"], now=T0 + 2)
    assert await joined(store, "vip", now=T0 + 3) is Joined.ONLINE
    # an unknown connection records nothing
    assert not await leave(store, "ghost", now=T0, interrupted=True)
    assert await joined(store, "ghost", now=T0 + 1) is Joined.ONLINE


async def test_mark_500_listing_forgets_an_interruption(store: PresenceStore) -> None:
    """Listed by 500 and unlisted again (Online/Join, Offline/Quit) since the timeout:
    the member's last way offline was no interruption, so its join is no recovery."""
    await join(store, "u1")
    assert await leave(store, "u1", now=T0, interrupted=True)
    assert (await store.add_robots(APP, G, ["u1"], now=T0 + 1)).went_online == ["u1"]
    assert (await store.del_robots(APP, G, ["u1"], now=T0 + 2)).went_offline == ["u1"]
    assert await joined(store, "u1", now=T0 + 3) is Joined.ONLINE


async def test_interruptions_are_per_group(store: PresenceStore) -> None:
    await join(store, "u1")
    assert await leave(store, "u1", interrupted=True)
    other = await store.join(APP, "other", "u1", "x", nick="", avatar="", now=T0 + 1)
    assert other is Joined.ONLINE
    elsewhere = await store.join(APP + 1, G, "u1", "y", nick="", avatar="", now=T0 + 1)
    assert elsewhere is Joined.ONLINE
    assert await joined(store, "u1", now=T0 + 1) is Joined.RECOVERED


async def test_drop_group_forgets_interruptions(store: PresenceStore) -> None:
    await join(store, "u1")
    assert await leave(store, "u1", interrupted=True)
    await store.drop_group(APP, G)
    assert await joined(store, "u1", now=T0 + 1) is Joined.ONLINE


async def test_memory_interruptions_are_trimmed() -> None:
    """The memory store keeps about one window of interruptions, not every one ever."""
    from opentim.presence.memory import MemoryPresenceStore

    store = MemoryPresenceStore()
    for i in range(100):
        await join(store, f"u{i}", now=T0 + i)
        assert await leave(store, f"u{i}", now=T0 + i, interrupted=True)
    assert store.remembered_interruptions(APP, G) == 100
    await join(store, "late")
    assert await leave(store, "late", now=T0 + 150, interrupted=True)  # trims before T0 + 30
    assert store.remembered_interruptions(APP, G) == 71  # u30..u99 and late
    await store.sweep(T0 + 1000)
    assert store.remembered_interruptions(APP, G) == 0


async def test_count_and_is_online(store: PresenceStore) -> None:
    await join(store, "u1")
    await join(store, "u2", "x")
    await join(store, "u2", "y")
    await store.set_marks(APP, G, [("u1", [600])], now=T0)
    await store.add_robots(APP, G, ["bot"], now=T0)
    assert await store.count(APP, G, now=T0) == 3
    assert await is_online(store, APP, G, "u1", now=T0)
    assert not await is_online(store, APP, G, "u3", now=T0)
    await leave(store, "u2", "x")
    assert await store.count(APP, G, now=T0) == 3
    await leave(store, "u2", "y")
    assert await store.count(APP, G, now=T0) == 2


async def test_drop_group(store: PresenceStore) -> None:
    await join(store, "u1")
    await store.set_marks(APP, G, [("u1", [1000])], now=T0)
    await store.add_robots(APP, G, ["bot"], now=T0)
    await store.join(APP, "keep", "k", "k1", nick="", avatar="", now=T0)
    await store.drop_group(APP, G)
    assert await listed(store) == []
    assert await store.count(APP, G, now=T0) == 0
    assert await store.count(APP, "keep", now=T0) == 1
    assert await store.sweep(T0 + 10 * 86400) == []
    assert await join(store, "u1", "fresh")
    assert await marks_of(store, APP, G, ["u1"], now=T0) == {"u1": ()}


async def test_drop_group_leaves_no_keys(redis_backend: Any) -> None:
    store = await redis_backend.make()
    await join(store, "u0")
    await leave(store, "u0", interrupted=True)  # remembered in G:hbi
    await join(store, "u1")
    await store.set_marks(APP, G, [("u1", [1000, 600])], now=T0)
    await store.add_robots(APP, G, ["bot"], now=T0)
    await store.drop_group(APP, G)
    tag = f"{{{APP}:{G}}}".encode()
    # only the page-cache version survives, and only for a minute
    left = [k for k in await redis_backend.keys() if tag in k]
    assert [k for k in left if not k.endswith(b":ver")] == []


async def test_factory(backend: Any) -> None:
    from opentim.presence import open_presence_store

    store = open_presence_store(backend.url, node_id="factory-node", **backend.factory_options)
    await store.start()
    try:
        assert await join(store, "u1")
        assert await listed(store) == ["u1"]
    finally:
        await store.close()


async def test_pages_stay_exact_with_caching(backend: Any) -> None:
    """Repeated reads may be served from a cache (Redis); every write must show at once."""
    store = await backend.make()
    await join(store, "u1")
    assert await listed(store) == ["u1"]
    assert await listed(store) == ["u1"]
    await join(store, "u2")
    assert await listed(store) == ["u2", "u1"]
    await store.set_marks(APP, G, [("u1", [600])], now=T0)
    assert await listed(store) == ["u2"]
    await store.add_robots(APP, G, ["bot"], now=T0, ttl=10)
    assert await listed(store) == ["bot", "u2"]
    assert await listed(store, now=T0 + 11) == ["u2"]  # the robot's 500 lapsed
    await store.drop_group(APP, G)
    assert await listed(store) == []


# --- gateway connections, in a group or not --------------------------------------------


async def test_connections_by_account(store: PresenceStore) -> None:
    await store.add_connection(APP, "u1", "c1", platform="iOS")
    await store.add_connection(APP, "u1", "c2", platform="Web")
    await store.add_connection(APP, "u2", "c3", platform="Web")
    await store.add_connection(APP + 1, "u3", "c4", platform="Android")
    found = await store.connections(APP, ["u1", "u2", "u3", "nobody", "u1"], now=T0)
    assert set(found) == {"u1", "u2"}  # other apps' and unconnected accounts left out
    assert sorted(found["u1"]) == ["Web", "iOS"]
    assert found["u2"] == ["Web"]
    await store.remove_connection(APP, "u1", "c1")
    await store.remove_connection(APP, "u1", "c1")  # again: a no-op
    await store.remove_connection(APP, "u2", "unknown")
    await store.remove_connection(APP, "u3", "c4")  # another app's account
    assert await store.connections(APP, ["u1", "u2"], now=T0) == {"u1": ["Web"], "u2": ["Web"]}
    assert await store.connections(APP + 1, ["u3"], now=T0) == {"u3": ["Android"]}
    await store.remove_connection(APP, "u1", "c2")
    assert await store.connections(APP, ["u1"], now=T0) == {}
    assert await store.connections(APP, [], now=T0) == {}


async def test_connections_are_apart_from_groups(store: PresenceStore) -> None:
    await join(store, "u1", "c1")  # a group join registers no gateway connection
    assert await store.connections(APP, ["u1"], now=T0) == {}
    await store.add_connection(APP, "u1", "c1", platform="Web")
    await leave(store, "u1", "c1")  # leaving the group keeps the connection
    assert await store.connections(APP, ["u1"], now=T0) == {"u1": ["Web"]}
    await store.drop_group(APP, G)
    assert await store.connections(APP, ["u1"], now=T0) == {"u1": ["Web"]}
