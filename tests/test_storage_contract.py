"""The SQL store's contract, the same assertions on SQLite and PostgreSQL (``db_url``).

One section per concept store (apps, accounts, groups, members, messages), through the
public methods only: create / read / update / delete, imports, the member cap, unread
counts. Plus the import rules themselves (``domain/imports.py``), as pure functions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from opentim import errors
from opentim.domain import imports
from opentim.domain.apps import App, Edition, new_secret_key
from opentim.domain.groups import Group, GroupType, Member, MemberResult, Role
from opentim.storage.base import AccountProfile, GroupMessage, NewMembers
from opentim.storage.database import Database
from opentim.storage.sql import SqlStore
from tests.helpers import sdkappids

ADDED, ALREADY, FAILED = MemberResult.ADDED, MemberResult.ALREADY_MEMBER, MemberResult.FAILED
NOW = int(time.time())


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlStore]:
    db = Database(db_url)
    await db.migrate()
    try:
        yield SqlStore(db)
    finally:
        await db.close()


async def _app(store: SqlStore, *users: str) -> int:
    """A fresh app with these accounts."""
    sdkappid = next(sdkappids)
    await store.apps.create(App(sdkappid=sdkappid, secret_key=new_secret_key()), now=NOW)
    await store.accounts.import_profiles(sdkappid, [AccountProfile(u) for u in users], now=NOW)
    return sdkappid


def _group(sdkappid: int, group_id: str = "@TGS#2CONTRACT", *, cap: int | None = 500,
           owner: str | None = None, group_type: GroupType = GroupType.PUBLIC,
           create_time: int = NOW - 1000) -> Group:
    return Group(sdkappid=sdkappid, group_id=group_id, type=group_type, name="g",
                 owner=owner, create_time=create_time, max_member_num=cap)


def _msg(sender: str | None, send_time: int = NOW) -> GroupMessage:
    return GroupMessage(sender, send_time, 7, [{"MsgType": "TIMTextElem",
                                                 "MsgContent": {"Text": "hi"}}])


async def _unread(store: SqlStore, sdkappid: int, group_id: str) -> dict[str, int]:
    return {m.account: m.unread_msg_num
            for m in await store.members.get(sdkappid, group_id, limit=None)}


async def _member_num(store: SqlStore, sdkappid: int, group_id: str) -> int:
    return (await store.groups.get(sdkappid, [group_id]))[group_id].member_num


# --- apps -------------------------------------------------------------------------------


async def test_apps_create_read_update(store: SqlStore) -> None:
    sdkappid = next(sdkappids)
    app = App(sdkappid=sdkappid, secret_key=new_secret_key(), admins=frozenset({"ops"}),
              edition=Edition.STANDARD, callback_url="http://h/cb", callback_token="t",
              callback_commands=frozenset({"Group.CallbackAfterSendMsg"}), rate_limit=5)
    assert await store.apps.get(sdkappid) is None
    await store.apps.create(app, now=NOW)
    assert await store.apps.get(sdkappid) == app
    with pytest.raises(KeyError):
        await store.apps.create(replace(app, secret_key=new_secret_key()), now=NOW)
    assert await store.apps.get(sdkappid) == app  # the failed create changed nothing
    changed = replace(app, callback_commands=None, rate_limit=0, online_member_list=False)
    await store.apps.save(changed, now=NOW + 1)
    assert await store.apps.get(sdkappid) == changed
    listed = [a for a in await store.apps.list_all() if a.sdkappid == sdkappid]
    assert listed == [changed]
    ids = [a.sdkappid for a in await store.apps.list_all()]
    assert ids == sorted(ids)


# --- accounts ---------------------------------------------------------------------------


async def test_accounts_import_update_and_profiles(store: SqlStore) -> None:
    a = await _app(store)
    await store.accounts.import_profiles(a, [
        AccountProfile("x", "X", "http://f/x"), AccountProfile("y", nick="Y"),
        AccountProfile("y", face_url="http://f/y"),  # same new account: field by field
        AccountProfile("z", nick="first"), AccountProfile("z", nick="second"),
    ], now=NOW)
    assert await store.accounts.profiles(a, ["x", "y", "z", "nobody", "x"]) == {
        "x": ("X", "http://f/x"), "y": ("Y", "http://f/y"), "z": ("second", "")}
    # Re-importing updates only the fields given.
    await store.accounts.import_profiles(a, [AccountProfile("x", nick="X2"),
                                             AccountProfile("y")], now=NOW)
    assert await store.accounts.profiles(a, ["x", "y"]) == {
        "x": ("X2", "http://f/x"), "y": ("Y", "http://f/y")}
    await store.accounts.import_profiles(a, [], now=NOW)
    assert await store.accounts.existing(a, ["x", "nobody", "x", "z"]) == {"x", "z"}
    assert await store.accounts.existing(a, []) == set()
    assert await store.accounts.profiles(a, []) == {}
    other = await _app(store)  # tenants never see each other's accounts
    assert await store.accounts.existing(other, ["x"]) == set()


async def test_accounts_delete_takes_memberships_and_ownerships(store: SqlStore) -> None:
    a = await _app(store, "owner", "gone", "stay")
    g1 = _group(a, "@TGS#2DEL1", owner="gone")
    g2 = _group(a, "@TGS#2DEL2", owner="owner")
    await store.groups.create(g1, [Member("gone", Role.OWNER, join_time=NOW),
                                   Member("stay", join_time=NOW)])
    await store.groups.create(g2, [Member("owner", Role.OWNER, join_time=NOW),
                                   Member("gone", join_time=NOW), Member("stay", join_time=NOW)])
    assert await store.accounts.delete(a, ["gone", "never", "gone"]) == {"gone"}
    assert await store.accounts.existing(a, ["gone", "stay"]) == {"stay"}
    found = await store.groups.get(a, [g1.group_id, g2.group_id])
    assert found[g1.group_id].owner is None and found[g2.group_id].owner == "owner"
    assert found[g1.group_id].member_num == 1 and found[g2.group_id].member_num == 2
    assert [m.account for m in await store.members.get(a, g2.group_id, limit=None)] == \
        ["owner", "stay"]
    assert await store.accounts.delete(a, ["gone"]) == set()  # again: nothing left
    assert await _member_num(store, a, g2.group_id) == 2


# --- groups -----------------------------------------------------------------------------


async def test_groups_create_read_list_destroy(store: SqlStore) -> None:
    a = await _app(store, "o", "m")
    group = replace(_group(a, "@TGS#2GRP1", owner="o", cap=None),
                    app_defined_data={"k": "值"}, introduction="intro", shut_up_all=True)
    await store.groups.create(group, [Member("o", Role.OWNER, join_time=NOW),
                                      Member("m", join_time=NOW)])
    assert group.member_num == 2
    got = (await store.groups.get(a, [group.group_id]))[group.group_id]
    assert got == group
    with pytest.raises(errors.GroupIdInUse):
        await store.groups.create(replace(group, name="again"), [])
    assert (await store.groups.get(a, [group.group_id]))[group.group_id].name == "g"
    private = _group(a, "@TGS#1GRP2", group_type=GroupType.PRIVATE)
    await store.groups.create(private, [])
    assert set(await store.groups.get(a, [group.group_id, private.group_id, "nope",
                                          group.group_id])) == {group.group_id,
                                                                private.group_id}
    assert await store.groups.get(a, ["nope"]) == {}
    assert await store.groups.get(a, []) == {}

    first = await store.groups.list_page(a, limit=1, offset=0, group_type=None)
    assert (first.group_ids, first.total, first.next) == (["@TGS#1GRP2"], 2, 1)
    last = await store.groups.list_page(a, limit=1, offset=1, group_type=None)
    assert (last.group_ids, last.total, last.next) == (["@TGS#2GRP1"], 2, 0)
    typed = await store.groups.list_page(a, limit=10, offset=0, group_type=GroupType.PUBLIC)
    assert (typed.group_ids, typed.total, typed.next) == (["@TGS#2GRP1"], 1, 0)

    await store.messages.append(a, group.group_id, _msg("o"), keep=True,
                                sender_must_be_member=True)
    assert await store.groups.destroy(a, group.group_id) is True
    assert await store.groups.destroy(a, group.group_id) is False
    assert await store.groups.get(a, [group.group_id]) == {}
    assert await store.members.get(a, group.group_id, limit=None) == []
    # The ID is free again, with nothing left of the old group (seq, members, history).
    await store.groups.create(_group(a, "@TGS#2GRP1"), [])
    again = (await store.groups.get(a, ["@TGS#2GRP1"]))["@TGS#2GRP1"]
    assert (again.next_msg_seq, again.member_num) == (1, 0)
    assert await store.messages.append(a, "@TGS#2GRP1", _msg(None), keep=True,
                                       sender_must_be_member=False) == 1


# --- members ----------------------------------------------------------------------------


async def test_members_pages_roles_and_delete(store: SqlStore) -> None:
    a = await _app(store, "o", "b", "c", "d")
    g = _group(a, owner="o")
    await store.groups.create(g, [Member("o", Role.OWNER, join_time=NOW - 30),
                                  Member("c", Role.ADMIN, join_time=NOW - 20),
                                  Member("b", join_time=NOW - 20),
                                  Member("d", join_time=NOW - 10, name_card="card",
                                         app_member_defined_data={"x": "y"})])
    gid = g.group_id

    async def accounts(**kw: object) -> list[str]:
        return [m.account for m in await store.members.get(a, gid, **kw)]  # type: ignore[arg-type]

    assert await accounts(limit=None) == ["o", "b", "c", "d"]  # join order, then account
    assert await accounts(limit=2) == ["o", "b"]
    assert await accounts(limit=2, offset=2) == ["c", "d"]
    assert await accounts(limit=None, after=(NOW - 20, "b")) == ["c", "d"]
    assert await accounts(limit=None, roles=["Owner", "Admin"]) == ["o", "c"]
    assert await accounts(limit=None, roles=["Nobody"]) == []
    d = (await store.members.get(a, gid, limit=None))[-1]
    assert (d.name_card, d.app_member_defined_data, d.role) == ("card", {"x": "y"},
                                                                Role.MEMBER)
    assert await store.members.get(a, "nope", limit=10) == []
    assert await store.members.roles(a, gid, ["o", "c", "b", "nobody", "o"]) == {
        "o": "Owner", "c": "Admin", "b": "Member"}
    assert await store.members.roles(a, gid, []) == {}

    assert sorted(await store.members.delete(a, gid, ["b", "d", "nobody", "b"])) == ["b", "d"]
    assert await store.members.delete(a, gid, ["b"]) == []
    assert await accounts(limit=None) == ["o", "c"]
    assert await _member_num(store, a, gid) == 2
    with pytest.raises(errors.GroupNotFound):
        await store.members.delete(a, "nope", ["o"])


async def test_members_add_results_and_cap(store: SqlStore) -> None:
    a = await _app(store, "o", "m1", "m2", "n1", "n2", "n3")
    g = _group(a, cap=4, owner="o")
    await store.groups.create(g, [Member("o", Role.OWNER, join_time=NOW),
                                  Member("m1", join_time=NOW)])
    new = NewMembers(["n1", "ghost", "m1", "n2", "n3"], [Role.ADMIN, "Member", "Member",
                                                         "Member", "Member"],
                     [NOW - 5, NOW, NOW, NOW - 3, NOW], [0] * 5)
    seen: list[Group] = []

    def prepare(group: Group) -> NewMembers:
        seen.append(group)
        return new

    results = await store.members.add(a, g.group_id, prepare)
    # Two places left: the first two new ones in request order; the last is past the cap.
    assert list(results.items()) == [("n1", ADDED), ("ghost", FAILED), ("m1", ALREADY),
                                     ("n2", ADDED), ("n3", FAILED)]
    assert seen[0].group_id == g.group_id and seen[0].member_num == 2
    assert await _member_num(store, a, g.group_id) == 4
    members = {m.account: m for m in await store.members.get(a, g.group_id, limit=None)}
    assert set(members) == {"o", "m1", "n1", "n2"}
    assert (members["n1"].role, members["n1"].join_time) == (Role.ADMIN, NOW - 5)
    # Full: member by member, or the whole request with full_error.
    assert await store.members.add(a, g.group_id, lambda _: NewMembers.joining(
        ["n3"], Role.MEMBER, NOW)) == {"n3": FAILED}
    with pytest.raises(errors.GroupFull):
        await store.members.add(a, g.group_id, lambda _: NewMembers.joining(
            ["n3"], Role.MEMBER, NOW), full_error=True)
    assert await _member_num(store, a, g.group_id) == 4
    assert await store.members.add(a, g.group_id, lambda _: NewMembers.joining(
        [], Role.MEMBER, NOW)) == {}


async def test_members_add_prepare_aborts_and_gone_group(store: SqlStore) -> None:
    a = await _app(store, "x")
    g = _group(a)
    await store.groups.create(g, [])

    def refuse(_: Group) -> NewMembers:
        raise errors.NoPermission("not this group")

    with pytest.raises(errors.NoPermission):
        await store.members.add(a, g.group_id, refuse)
    assert await store.members.get(a, g.group_id, limit=None) == []
    with pytest.raises(errors.GroupNotFound):
        await store.members.add(a, "nope", lambda _: NewMembers.joining(["x"], "Member", NOW))
    uncapped = _group(a, "@TGS#2NOCAP", cap=None)
    await store.groups.create(uncapped, [])
    assert await store.members.add(a, uncapped.group_id, lambda _: NewMembers.joining(
        ["x"], Role.MEMBER, NOW)) == {"x": ADDED}


async def test_unread_counts_clamp_and_follow_messages(store: SqlStore) -> None:
    a = await _app(store, "s", "r", "late", "many")
    g = _group(a)
    await store.groups.create(g, [Member("s", join_time=NOW), Member("r", join_time=NOW)])
    for _ in range(3):
        await store.messages.append(a, g.group_id, _msg("s"), keep=True,
                                    sender_must_be_member=True)
    # The sender's own messages are not unread for it; everyone else's count grows.
    assert await _unread(store, a, g.group_id) == {"s": 0, "r": 3}
    # Imported members: the requested unread count, clamped to the message count.
    results = await store.members.add(a, g.group_id, lambda _: NewMembers(
        ["late", "many"], ["Member", "Member"], [NOW, NOW], [2, 99]))
    assert results == {"late": ADDED, "many": ADDED}
    assert await _unread(store, a, g.group_id) == {"s": 0, "r": 3, "late": 2, "many": 3}
    assert await store.members.set_unread(a, g.group_id, "r", 1) is True
    assert await store.members.set_unread(a, g.group_id, "s", 50) is True
    assert await store.members.set_unread(a, g.group_id, "nobody", 1) is False
    assert await _unread(store, a, g.group_id) == {"s": 3, "r": 1, "late": 2, "many": 3}
    with pytest.raises(errors.GroupNotFound):
        await store.members.set_unread(a, "nope", "r", 0)


# --- messages ---------------------------------------------------------------------------


async def test_messages_append(store: SqlStore) -> None:
    a = await _app(store, "in", "out")
    g = _group(a)
    await store.groups.create(g, [Member("in", join_time=NOW)])
    gid = g.group_id
    assert await store.messages.append(a, gid, _msg("in"), keep=True,
                                       sender_must_be_member=True) == 1
    assert await store.messages.append(a, gid, _msg("out"), keep=True,
                                       sender_must_be_member=True) is None
    assert await store.messages.append(a, gid, _msg("out", NOW + 1), keep=False,
                                       sender_must_be_member=False) == 2
    assert await store.messages.append(a, gid, _msg(None, NOW + 2), keep=True,
                                       sender_must_be_member=False) == 3
    group = (await store.groups.get(a, [gid]))[gid]
    assert (group.next_msg_seq, group.last_msg_time) == (4, NOW + 2)
    assert await _unread(store, a, gid) == {"in": 2}
    with pytest.raises(errors.GroupNotFound):
        await store.messages.append(a, "nope", _msg(None), keep=True,
                                    sender_must_be_member=False)


async def test_messages_import_history(store: SqlStore) -> None:
    a = await _app(store, "m", "n")
    created = NOW - 1000
    g = _group(a, create_time=created)
    await store.groups.create(g, [Member("m", join_time=created + 1),
                                  Member("n", join_time=created + 1)])
    gid = g.group_id
    await store.messages.append(a, gid, _msg("m", created + 10), keep=True,
                                sender_must_be_member=True)
    times = [created,        # not after CreateTime
             created + 10,   # not after the latest message
             created + 20,   # taken
             created + 15,   # before the one just taken
             created + 30,   # taken
             NOW]            # not before now
    seqs = await store.messages.import_history(
        a, gid, [_msg("m", t) for t in times], now=NOW)
    assert seqs == [None, None, 2, None, 3, None]
    group = (await store.groups.get(a, [gid]))[gid]
    assert (group.next_msg_seq, group.last_msg_time) == (4, created + 30)
    assert await _unread(store, a, gid) == {"m": 0, "n": 0}  # importing leaves none unread
    assert await store.messages.import_history(a, gid, [_msg("m", created)], now=NOW) == \
        [None]
    with pytest.raises(errors.GroupNotFound):
        await store.messages.import_history(a, "nope", [_msg("m", created + 40)], now=NOW)


# --- the import rules (domain/imports.py), as functions of their inputs -------------------


def test_import_rules() -> None:
    assert [imports.read_mark(u, 5) for u in (0, 2, 5, 9)] == [5, 3, 0, 0]
    assert imports.read_mark(3, 0) == 0
    results, take = imports.screen(["a", "b", "c", "d"], {"b": False, "c": True})
    assert (results, take) == ({"b": FAILED, "c": ALREADY}, [0, 3])
    assert imports.room(None, 10_000, 5) is None
    assert imports.room(10, 10, 3) is None
    assert imports.room(10, 12, 3) == 1
    assert imports.room(10, 15, 3) == 0
    assert imports.full_refusal(True, 0) and not imports.full_refusal(False, 0)
    assert not imports.full_refusal(True, 1) and not imports.full_refusal(True, None)
    assert imports.settle(["a", "b", "c", "d"], {"b": FAILED}, [0, 2, 3], {"a", "c"},
                          {"a"}) == {"a": ADDED, "b": FAILED, "c": FAILED, "d": ALREADY}
    accepted = [imports.message_accepted(t, create_time=10, last_time=20, now=30)
                for t in (10, 15, 20, 21, 29, 30)]
    assert accepted == [False, False, False, True, True, False]
