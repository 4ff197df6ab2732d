"""PostgreSQL reads on asyncpg (``pg_reader.PgReader``) answer exactly as SQLAlchemy's path does.

Every read method of the SQL store runs twice over the same rows: through the new reader, and
through SQLAlchemy (``Database(direct_reads=False)``, the path reads took before), including
JSON columns, None values, empty lists and rows that do not exist.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, select, text, tuple_
from sqlalchemy.exc import MultipleResultsFound, NoResultFound

from opentim.domain.apps import App, Edition, new_secret_key
from opentim.domain.groups import Group, GroupType, Member, Role
from opentim.storage import database
from opentim.storage.base import AccountProfile, GroupMessage
from opentim.storage.database import Database, prebuilt
from opentim.storage.schema import accounts, apps
from opentim.storage.sql import SqlStore
from tests.helpers import PG_URL, ensure_pg_database, sdkappids, unavailable


@pytest.fixture
async def dbs() -> AsyncIterator[tuple[Database, Database]]:
    """(the database as the server runs it, one whose reads all go through SQLAlchemy)."""
    error = await ensure_pg_database(PG_URL)
    if error:
        unavailable("PostgreSQL", error)
    fast, ref = Database(PG_URL), Database(PG_URL, direct_reads=False)
    await fast.migrate()
    try:
        yield fast, ref
    finally:
        await fast.close()
        await ref.close()


async def _fill(store: SqlStore) -> dict[str, Any]:
    """Two apps, accounts, three groups (JSON data, None values, members), one message."""
    now = int(time.time())
    app = App(sdkappid=next(sdkappids), secret_key=new_secret_key(),
              admins=frozenset({"administrator", "ops"}), callback_url="http://h/cb",
              callback_token="tok", callback_commands=frozenset({"Group.CallbackAfterSendMsg"}),
              rate_limit=0)
    other = App(sdkappid=next(sdkappids), secret_key=new_secret_key(),
                edition=Edition.STANDARD, online_member_list=False)
    await store.apps.create(app, now=now)
    await store.apps.create(other, now=now)
    a = app.sdkappid
    await store.accounts.import_profiles(a, [AccountProfile("u0", "零", "http://f/0"),
                                    *(AccountProfile(f"u{i}", f"n{i}") for i in range(1, 6))],
                                now=now)
    g1 = Group(sdkappid=a, group_id="@TGS#2READS1", type=GroupType.PUBLIC, name="one",
               owner="u0", create_time=now - 100, max_member_num=6000,
               app_defined_data={"k": "值", "empty": ""}, introduction="intro")
    members = [
        Member("u0", Role.OWNER, join_time=now - 100,
               app_member_defined_data={"x": "y", "ü": "ß"}),
        Member("u1", Role.ADMIN, join_time=now - 90, name_card="card"),
        *(Member(f"u{i}", Role.MEMBER, join_time=now - 80) for i in (2, 3, 4)),
    ]
    await store.groups.create(g1, members)
    g2 = Group(sdkappid=a, group_id="@TGS#1READS2", type=GroupType.PRIVATE, name="two",
               owner=None, create_time=now - 50, max_member_num=None, shut_up_all=True)
    await store.groups.create(g2, [])
    g3 = Group(sdkappid=a, group_id="@TGS#3READS3", type=GroupType.CHATROOM, name="three",
               owner="u1", create_time=now - 40, max_member_num=10)
    await store.groups.create(g3, [Member("u1", Role.OWNER, join_time=now - 40)])
    for sender in ("u1", None):
        await store.messages.append(a, g1.group_id, GroupMessage(sender, now, 1, [
            {"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]),
            keep=True, sender_must_be_member=False)
    await store.members.set_unread(a, g1.group_id, "u3", 0)
    return {"app": app, "other": other, "g1": g1.group_id, "g2": g2.group_id,
            "g3": g3.group_id, "now": now}


async def test_every_read_matches_sqlalchemy(dbs: tuple[Database, Database]) -> None:
    fast_db, ref_db = dbs
    fast, ref = SqlStore(fast_db), SqlStore(ref_db)
    d = await _fill(fast)
    fallbacks = fast_db.fallback_reads
    a, g1, g2, g3, now = d["app"].sdkappid, d["g1"], d["g2"], d["g3"], d["now"]
    missing_app = next(sdkappids)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("apps.get", (a,), {}),
        ("apps.get", (d["other"].sdkappid,), {}),
        ("apps.get", (missing_app,), {}),
        ("accounts.existing", (a, ["u0", "u1", "nobody", "u1"]), {}),
        ("accounts.existing", (a, ["nobody"]), {}),
        ("accounts.existing", (a, []), {}),
        ("accounts.existing", (missing_app, ["u0"]), {}),
        ("accounts.profiles", (a, ["u0", "u3", "nobody", "u0"]), {}),
        ("accounts.profiles", (a, ["nobody"]), {}),
        ("accounts.profiles", (a, []), {}),
        ("groups.get", (a, [g1]), {}),
        ("groups.get", (a, [g2]), {}),
        ("groups.get", (a, [g1, g2, g3, "nope", g1]), {}),
        ("groups.get", (a, ["nope"]), {}),
        ("groups.get", (a, ["nope", "nope2"]), {}),
        ("groups.get", (a, []), {}),
        ("groups.list_page", (a,), {"limit": 2, "offset": 0, "group_type": None}),
        ("groups.list_page", (a,), {"limit": 2, "offset": 2, "group_type": None}),
        ("groups.list_page", (a,), {"limit": 10, "offset": 0, "group_type": GroupType.PUBLIC}),
        ("groups.list_page", (a,), {"limit": 10, "offset": 5, "group_type": GroupType.COMMUNITY}),
        ("groups.list_page", (missing_app,), {"limit": 10, "offset": 0, "group_type": None}),
        ("members.get", (a, g1), {"limit": None}),
        ("members.get", (a, g1), {"limit": 2}),
        ("members.get", (a, g1), {"limit": 2, "offset": 2}),
        ("members.get", (a, g1), {"limit": None, "offset": 1}),
        ("members.get", (a, g1), {"limit": 2, "after": (now - 80, "u2")}),
        ("members.get", (a, g1), {"limit": None, "roles": ["Owner", "Admin"]}),
        ("members.get", (a, g1), {"limit": 1, "offset": 1, "after": (now - 95, ""),
                                  "roles": ("Member",)}),
        ("members.get", (a, g1), {"limit": None, "roles": ["Nobody"]}),
        ("members.get", (a, g2), {"limit": None}),
        ("members.get", (a, "nope"), {"limit": 10}),
        ("members.roles", (a, g1, ["u0", "u1", "u4", "nobody", "u0"]), {}),
        ("members.roles", (a, g1, ["nobody"]), {}),
        ("members.roles", (a, g1, []), {}),
        ("members.roles", (a, "nope", ["u0"]), {}),
    ]
    for name, args, kwargs in calls:
        concept, method = name.split(".")
        got = await getattr(getattr(fast, concept), method)(*args, **kwargs)
        want = await getattr(getattr(ref, concept), method)(*args, **kwargs)
        assert got == want, (name, args, kwargs)
    ours = {a, d["other"].sdkappid}
    assert [x for x in await fast.apps.list_all() if x.sdkappid in ours] == \
        [x for x in await ref.apps.list_all() if x.sdkappid in ours] == \
        sorted([d["app"], d["other"]], key=lambda x: x.sdkappid)

    # The values themselves, JSON columns and None included.
    assert await fast.apps.get(a) == d["app"]
    assert (await fast.apps.get(d["other"].sdkappid)).callback_commands is None  # type: ignore[union-attr]
    groups = await fast.groups.get(a, [g1, g2])
    assert groups[g1].app_defined_data == {"k": "值", "empty": ""}
    assert groups[g1].next_msg_seq == 3 and groups[g1].member_num == 5
    assert groups[g2].owner is None and groups[g2].max_member_num is None
    assert groups[g2].shut_up_all is True and groups[g2].app_defined_data == {}
    members = {m.account: m for m in await fast.members.get(a, g1, limit=None)}
    assert list(members) == ["u0", "u1", "u2", "u3", "u4"]
    assert members["u0"].app_member_defined_data == {"x": "y", "ü": "ß"}
    assert members["u1"].app_member_defined_data == {}
    assert members["u1"].name_card == "card" and members["u1"].unread_msg_num == 1
    assert members["u2"].unread_msg_num == 2 and members["u3"].unread_msg_num == 0
    assert await fast.accounts.profiles(a, ["u0", "nobody"]) == {"u0": ("零", "http://f/0")}
    assert await fast.accounts.existing(a, ["u5", "u6"]) == {"u5"}
    assert await fast.members.roles(a, g1, ["u0", "u1"]) == {"u0": "Owner", "u1": "Admin"}
    # Every store read ran on asyncpg, each statement compiled once; none fell back.
    plans = fast_db.compiled_plans()
    assert plans and None not in plans.values()
    assert fast_db.fallback_reads == fallbacks
    assert ref_db.compiled_plans() == {}  # (and the reference never took the asyncpg path)


async def test_statements_not_prebuilt_run_through_sqlalchemy(
        dbs: tuple[Database, Database]) -> None:
    fast_db, _ = dbs
    store = SqlStore(fast_db)
    d = await _fill(store)
    a = d["app"].sdkappid
    per_call = select(accounts.c.user_id).where(accounts.c.sdkappid == a,
                                                 accounts.c.user_id.in_(["u0", "u1"]))
    literal = prebuilt(select(apps.c.rate_limit).where(apps.c.sdkappid == a))
    not_in = prebuilt(select(accounts.c.user_id).where(
        accounts.c.sdkappid == bindparam("app"),
        accounts.c.user_id.not_in(bindparam("skip", expanding=True))))
    pairs = prebuilt(select(accounts.c.user_id).where(
        tuple_(accounts.c.sdkappid, accounts.c.user_id).in_(bindparam("keys", expanding=True))))
    async with fast_db.read() as conn:
        assert sorted((await conn.execute(per_call)).scalars()) == ["u0", "u1"]
        assert (await conn.execute(literal)).scalar_one() == 0
        rows = await conn.execute(not_in, {"app": a, "skip": ["u0", "u1", "u2"]})
        assert sorted(rows.scalars()) == ["u3", "u4", "u5"]
        rows = await conn.execute(not_in, {"app": a, "skip": []})
        assert len(rows.all()) == 6
        rows = await conn.execute(pairs, {"keys": [(a, "u2"), (a, "nobody")]})
        assert rows.scalars().all() == ["u2"]
    plans = fast_db.compiled_plans()
    assert id(per_call) not in plans  # built per call: never compiled here
    assert [plans[id(s)] for s in (literal, not_in, pairs)] == [None, None, None]


async def test_result_api(dbs: tuple[Database, Database]) -> None:
    fast_db, _ = dbs
    store = SqlStore(fast_db)
    d = await _fill(store)
    a = d["app"].sdkappid
    users = prebuilt(select(accounts.c.user_id, accounts.c.nick).where(
        accounts.c.sdkappid == bindparam("app"),
        accounts.c.user_id.in_(bindparam("ids", expanding=True))).order_by(accounts.c.user_id))
    async with fast_db.read() as conn:
        none = await conn.execute(users, {"app": a, "ids": []})
        assert none.first() is None and none.all() == [] and none.scalar() is None
        with pytest.raises(NoResultFound):
            none.scalar_one()
        two = await conn.execute(users, {"app": a, "ids": ["u1", "u0"]})
        with pytest.raises(MultipleResultsFound):
            two.one()
        assert list(two.scalars()) == two.scalars().all() == ["u0", "u1"]
        assert two.scalar() == "u0" and two.scalars().first() == "u0"
        row = two.first()
        assert (row.user_id, row.nick) == ("u0", "零") == tuple(row)
        assert row["nick"] == row[1] == "零"
        with pytest.raises(AttributeError):
            _ = row.no_such_column
        user_id, nick = (await conn.execute(users, {"app": a, "ids": ["u2"]})).one()
        assert (user_id, nick) == ("u2", "n2")
        assert [r.user_id for r in await conn.execute(users, {"app": a, "ids": ["u3"]})] \
            == ["u3"]
    assert " = ANY($" in fast_db.compiled_plans()[id(users)].sql  # type: ignore[union-attr]


async def test_connections_go_back_to_the_pool(dbs: tuple[Database, Database]) -> None:
    """Failed and cancelled reads return their connection: more of them than the pool
    holds, then reads still work."""
    fast_db, _ = dbs
    store = SqlStore(fast_db)
    d = await _fill(store)
    a = d["app"].sdkappid
    broken = prebuilt(text("SELECT 1 / (CAST(:n AS INTEGER) - 1)"))
    slow = prebuilt(text("SELECT pg_sleep(CAST(:s AS FLOAT8))"))

    async def read_slow() -> None:
        async with fast_db.read() as conn:
            await conn.execute(slow, {"s": 10})

    for _ in range(database.READ_POOL_SIZE + 2):
        with pytest.raises(Exception, match="division by zero"):
            async with fast_db.read() as conn:
                await conn.execute(broken, {"n": 1})
    for _ in range(database.READ_POOL_SIZE + 2):
        task = asyncio.create_task(read_slow())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with asyncio.timeout(10):
        assert await store.accounts.existing(a, ["u0"]) == {"u0"}
        async with fast_db.read() as conn:
            assert (await conn.execute(broken, {"n": 3})).scalar_one() == 0


async def test_connections_the_server_closed_are_replaced(
        dbs: tuple[Database, Database]) -> None:
    """Read connections ended by the server (a restart, an administrator) are noticed while
    idle and reopened: reads keep working."""
    fast_db, _ = dbs
    store = SqlStore(fast_db)
    d = await _fill(store)
    a = d["app"].sdkappid
    pid = prebuilt(text("SELECT pg_backend_pid()"))

    async def read_pid() -> int:
        async with fast_db.read() as conn:
            backend = (await conn.execute(pid)).scalar_one()
            await asyncio.sleep(0.05)  # (held, so that several connections open)
            return int(backend)

    pids = set(await asyncio.gather(*(read_pid() for _ in range(4))))
    assert len(pids) > 1
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute("SELECT pg_terminate_backend(p) FROM unnest($1::int[]) AS p",
                            list(pids))
    finally:
        await admin.close()
    await asyncio.sleep(0.5)
    for _ in range(len(pids) + 1):
        assert await store.accounts.existing(a, ["u0", "nobody"]) == {"u0"}
    assert not pids & set(await asyncio.gather(*(read_pid() for _ in range(4))))
