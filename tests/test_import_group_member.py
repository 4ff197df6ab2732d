"""v4/group_open_http_svc/import_group_member, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event

from opentim.events import MembersJoined
from tests.helpers import Server, create_group, import_accounts, old_group, roster, statements

SVC = "group_open_http_svc"
IMPORT = f"{SVC}/import_group_member"
HOUR = 3600


def results(reply: dict[str, Any]) -> list[tuple[str, int]]:
    assert reply["ErrorCode"] == 0, reply
    return [(m["Member_Account"], m["Result"]) for m in reply["MemberList"]]


# --- applicability and request errors ---------------------------------------------------


@pytest.mark.parametrize("group_type",
                         ["Private", "Public", "ChatRoom", "Community", "Work", "Meeting"])
async def test_applicable_group_types(tim, group_type: str) -> None:
    await import_accounts(tim, "a", "b")
    group_id = await create_group(tim, group_type)
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a"}, {"Member_Account": "b", "Role": "Admin"}]})
    assert results(reply) == [("a", 1), ("b", 1)]
    member_num, rows = await roster(tim, group_id)
    assert member_num == 2
    assert {a: r["Role"] for a, r in rows.items()} == {"a": "Member", "b": "Admin"}


async def test_request_errors(tim) -> None:
    await import_accounts(tim, "a")
    av = await create_group(tim, "AVChatRoom")
    public = await create_group(tim, "Public")
    one = [{"Member_Account": "a"}]
    cases: list[tuple[Any, int]] = [
        ({"GroupId": av, "MemberList": one}, 10007),
        ({"GroupId": "no-such-group", "MemberList": one}, 10010),
        ({"GroupId": "", "MemberList": one}, 10015),
        ({"GroupId": "x" * 49, "MemberList": one}, 10015),
        ({"GroupId": "grüppe", "MemberList": one}, 10015),
        ({"MemberList": one}, 10004),
        ({"GroupId": public}, 10004),
        ({"GroupId": public, "MemberList": []}, 10004),
        ({"GroupId": public, "MemberList": {"Member_Account": "a"}}, 10004),
        ({"GroupId": 42, "MemberList": one}, 10004),
        ({"GroupId": public, "MemberList": [{}]}, 10004),
        ({"GroupId": public, "MemberList": [{"Member_Account": 7}]}, 10004),
        ({"GroupId": public, "MemberList": [{"Member_Account": "a", "JoinTime": "1"}]}, 10004),
        ({"GroupId": public, "MemberList": [{"Member_Account": "a", "JoinTime": 1.5}]}, 10004),
        ({"GroupId": public, "MemberList": [{"Member_Account": "a", "UnreadMsgNum": -1}]},
         10004),
        ({"GroupId": public, "MemberList": [{"Member_Account": "a", "UnreadMsgNum": "2"}]},
         10004),
        ({"GroupId": public, "MemberList": [{"Member_Account": "a", "Role": 1}]}, 10004),
        ({"GroupId": public, "MemberList": [{"Member_Account": f"u{i}"} for i in range(301)]},
         10005),
    ]
    for body, code in cases:
        reply = await tim.call(IMPORT, body)
        assert reply["ErrorCode"] == code, (body, reply)
        assert reply["ActionStatus"] == "FAIL" and reply["ErrorInfo"]
    assert (await roster(tim, public))[0] == 0


async def test_300_members_is_the_limit(tim) -> None:
    users = [f"u{i:03d}" for i in range(300)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Community")
    reply = await tim.call(IMPORT, {"GroupId": group_id,
                                    "MemberList": [{"Member_Account": u} for u in users]})
    assert results(reply) == [(u, 1) for u in users]
    assert (await roster(tim, group_id))[0] == 300


@pytest.mark.parametrize("role", ["Member", "Owner", "admin", ""])
async def test_role_other_than_admin_fails_the_whole_request(tim, role: str) -> None:
    await import_accounts(tim, "a", "b")
    group_id = await create_group(tim, "Public")
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a"}, {"Member_Account": "b", "Role": role}]})
    assert reply["ErrorCode"] == 10004, reply
    assert (await roster(tim, group_id))[0] == 0  # "a" was not imported either


# --- per-member results -----------------------------------------------------------------


async def test_unknown_accounts_fail_and_members_answer_2(tim) -> None:
    await import_accounts(tim, "owner", "a", "b")
    group_id = await create_group(tim, "Public", Owner_Account="owner")
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a"}, {"Member_Account": "ghost"}, {"Member_Account": "owner"},
        {"Member_Account": ""}, {"Member_Account": "x" * 40}, {"Member_Account": "b"}]})
    assert results(reply) == [("a", 1), ("ghost", 0), ("owner", 2), ("", 0), ("x" * 40, 0),
                              ("b", 1)]
    member_num, rows = await roster(tim, group_id)
    assert member_num == 3 and set(rows) == {"owner", "a", "b"}
    assert rows["owner"]["Role"] == "Owner"  # an existing member is left as it was


async def test_account_ids_that_need_escaping(tim) -> None:
    odd = ['quo"te', "back\\slash", "用户一", "emoji🙂", "sp ace", "[1,2]", "'; --"]
    await import_accounts(tim, *odd)
    group_id = await create_group(tim, "Community")
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": a, "UnreadMsgNum": 1} for a in [*odd, "用户二"]]})
    assert results(reply) == [(a, 1) for a in odd] + [("用户二", 0)]
    reply = await tim.call(IMPORT, {"GroupId": group_id,
                                    "MemberList": [{"Member_Account": a} for a in odd]})
    assert results(reply) == [(a, 2) for a in odd]
    member_num, rows = await roster(tim, group_id)
    assert member_num == len(odd) and set(rows) == set(odd)


async def test_join_time_bounds(server: Server, tim) -> None:
    server.clock.pinned = float(int(server.clock()))
    now = int(server.clock.pinned)
    users = ["before", "at_create", "just_after", "at_now", "future", "absent", "negative"]
    await import_accounts(tim, *users)
    group_id, created = await old_group(server, tim)
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "before", "JoinTime": created - 1},
        {"Member_Account": "at_create", "JoinTime": created},
        {"Member_Account": "just_after", "JoinTime": created + 1},
        {"Member_Account": "at_now", "JoinTime": now},
        {"Member_Account": "future", "JoinTime": now + 1},
        {"Member_Account": "absent"},
        {"Member_Account": "negative", "JoinTime": -5},
    ]})
    assert results(reply) == [("before", 0), ("at_create", 0), ("just_after", 1),
                              ("at_now", 1), ("future", 0), ("absent", 1), ("negative", 0)]
    _, rows = await roster(tim, group_id)
    assert {a: r["JoinTime"] for a, r in rows.items()} == {
        "just_after": created + 1, "at_now": now, "absent": now}


async def test_absent_join_time_in_the_group_s_first_second(server: Server, tim) -> None:
    server.clock.pinned = float(int(server.clock()))
    await import_accounts(tim, "a", "b")
    group_id = await create_group(tim, "Public")  # CreateTime == now
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a"}, {"Member_Account": "b", "JoinTime": int(server.clock())}]})
    assert results(reply) == [("a", 1), ("b", 0)]  # a sent JoinTime must be after CreateTime
    _, rows = await roster(tim, group_id)
    assert rows["a"]["JoinTime"] == int(server.clock())


async def test_unread_is_clamped_to_the_group_s_message_count(tim) -> None:
    await import_accounts(tim, "s", "none", "zero", "two", "many")
    group_id = await create_group(tim, "Public", Owner_Account="s")
    for n in range(3):
        await tim.ok(f"{SVC}/send_group_msg", {"GroupId": group_id, "Random": n, "MsgBody": [
            {"MsgType": "TIMTextElem", "MsgContent": {"Text": f"m{n}"}}]})
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "none"}, {"Member_Account": "zero", "UnreadMsgNum": 0},
        {"Member_Account": "two", "UnreadMsgNum": 2},
        {"Member_Account": "many", "UnreadMsgNum": 10**12}]})
    assert [r for _, r in results(reply)] == [1, 1, 1, 1]
    _, rows = await roster(tim, group_id)
    assert {a: r["UnreadMsgNum"] for a, r in rows.items()} == {
        "s": 3, "none": 0, "zero": 0, "two": 2, "many": 3}


async def test_unread_on_a_group_without_messages_is_zero(tim) -> None:
    await import_accounts(tim, "a")
    group_id = await create_group(tim, "Community")
    assert results(await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a", "UnreadMsgNum": 5}]})) == [("a", 1)]
    _, rows = await roster(tim, group_id)
    assert rows["a"]["UnreadMsgNum"] == 0


async def test_unread_is_listed_only_when_asked(tim) -> None:
    await import_accounts(tim, "a")
    group_id = await create_group(tim, "Public")
    await tim.ok(IMPORT, {"GroupId": group_id, "MemberList": [{"Member_Account": "a"}]})
    reply = await tim.ok(f"{SVC}/get_group_member_info", {"GroupId": group_id})
    assert "UnreadMsgNum" not in reply["MemberList"][0]
    info = await tim.ok(f"{SVC}/get_group_info", {"GroupIdList": [group_id], "ResponseFilter": {
        "MemberInfoFilter": ["UnreadMsgNum"]}})
    assert info["GroupInfo"][0]["MemberList"][0]["UnreadMsgNum"] == 0


async def test_duplicates_first_entry_decides(server: Server, tim) -> None:
    """The documented rule: later entries repeat 2 if the account is a member, else 0."""
    await import_accounts(tim, "a", "b", "c", "owner")
    group_id, created = await old_group(server, tim, Owner_Account="owner")
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a", "Role": "Admin", "JoinTime": created + 10},
        {"Member_Account": "b", "JoinTime": created},  # fails on its JoinTime...
        {"Member_Account": "a", "JoinTime": created + 20},
        {"Member_Account": "b"},  # ...so this later, valid entry is not applied
        {"Member_Account": "ghost"}, {"Member_Account": "ghost"},
        {"Member_Account": "owner"}, {"Member_Account": "owner"},
        {"Member_Account": "a"},
    ]})
    assert results(reply) == [("a", 1), ("b", 0), ("a", 2), ("b", 0), ("ghost", 0),
                              ("ghost", 0), ("owner", 2), ("owner", 2), ("a", 2)]
    member_num, rows = await roster(tim, group_id)
    assert member_num == 2 and set(rows) == {"owner", "a"}
    assert (rows["a"]["Role"], rows["a"]["JoinTime"]) == ("Admin", created + 10)


async def test_cap_fails_the_later_members_in_request_order(tim) -> None:
    await import_accounts(tim, "owner", "old", *[f"n{i}" for i in range(6)])
    group_id = await create_group(tim, "Public", Owner_Account="owner", MaxMemberCount=5,
                                  MemberList=[{"Member_Account": "old"}])
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "n0"}, {"Member_Account": "old"}, {"Member_Account": "ghost"},
        {"Member_Account": "n1"}, {"Member_Account": "n2"}, {"Member_Account": "n3"},
        {"Member_Account": "n4"}, {"Member_Account": "n0"}]})
    # Room for 3: n0, n1, n2. "old" is already in and takes no room; the rest fail.
    assert results(reply) == [("n0", 1), ("old", 2), ("ghost", 0), ("n1", 1), ("n2", 1),
                              ("n3", 0), ("n4", 0), ("n0", 2)]
    member_num, rows = await roster(tim, group_id)
    assert member_num == 5 and set(rows) == {"owner", "old", "n0", "n1", "n2"}
    # A full group is not an error: every new member answers 0.
    reply = await tim.call(IMPORT, {"GroupId": group_id, "MemberList": [
        {"Member_Account": "n5"}, {"Member_Account": "n1"}]})
    assert results(reply) == [("n5", 0), ("n1", 2)]


async def test_retry_answers_2_and_nothing_doubles(tim) -> None:
    users = [f"u{i}" for i in range(50)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Community")
    body = {"GroupId": group_id, "MemberList": [
        {"Member_Account": u, "UnreadMsgNum": 1} for u in [*users, "ghost"]]}
    assert [r for _, r in results(await tim.call(IMPORT, body))] == [1] * 50 + [0]
    for _ in range(2):
        assert [r for _, r in results(await tim.call(IMPORT, body))] == [2] * 50 + [0]
    member_num, rows = await roster(tim, group_id)
    assert member_num == len(rows) == 50
    info = await tim.ok(f"{SVC}/get_group_info", {"GroupIdList": [group_id]})
    assert info["GroupInfo"][0]["MemberNum"] == 50


async def test_member_num_after_imports_and_deletes(tim) -> None:
    users = [f"u{i}" for i in range(20)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Public")
    await tim.ok(IMPORT, {"GroupId": group_id,
                          "MemberList": [{"Member_Account": u} for u in users[:15]]})
    await tim.ok(f"{SVC}/delete_group_member",
                 {"GroupId": group_id, "MemberToDel_Account": users[10:20]})
    await tim.ok(IMPORT, {"GroupId": group_id,
                          "MemberList": [{"Member_Account": u} for u in users[5:20]]})
    member_num, rows = await roster(tim, group_id)
    assert member_num == len(rows) == 20


# --- silence, atomicity, concurrency, statement count ------------------------------------


async def test_import_is_silent_add_is_not(server: Server, tim) -> None:
    await import_accounts(tim, "a", "b")
    group_id = await create_group(tim, "Public")
    server.events.clear()
    await tim.ok(IMPORT, {"GroupId": group_id, "MemberList": [{"Member_Account": "a"}]})
    assert server.events == []
    await tim.ok(f"{SVC}/add_group_member",
                 {"GroupId": group_id, "MemberList": [{"Member_Account": "b"}]})
    assert [type(e) for e in server.events] == [MembersJoined]


async def test_a_request_is_one_transaction(server: Server, tim, monkeypatch) -> None:
    """A failure after the insert (here: the member_num update) rolls the insert back."""
    users = [f"u{i}" for i in range(10)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Public")
    engine = server.runtime.db.engine.sync_engine

    def fail_counter_update(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE GROUPS"):
            raise RuntimeError("simulated crash between the insert and the counter update")

    event.listen(engine, "before_cursor_execute", fail_counter_update)
    try:
        reply = await tim.call(IMPORT, {"GroupId": group_id,
                                        "MemberList": [{"Member_Account": u} for u in users]})
    finally:
        event.remove(engine, "before_cursor_execute", fail_counter_update)
    assert reply["ErrorCode"] == 10002, reply
    member_num, rows = await roster(tim, group_id)
    assert (member_num, rows) == (0, {})
    reply = await tim.call(IMPORT, {"GroupId": group_id,
                                    "MemberList": [{"Member_Account": u} for u in users]})
    assert [r for _, r in results(reply)] == [1] * 10


async def test_statement_count_does_not_grow_with_the_batch(server: Server, tim) -> None:
    users = [f"u{i:03d}" for i in range(301)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Community")
    async with statements(server) as one:
        await tim.ok(IMPORT, {"GroupId": group_id, "MemberList": [{"Member_Account": "u300"}]})
    async with statements(server) as many:
        await tim.ok(IMPORT, {"GroupId": group_id,
                              "MemberList": [{"Member_Account": u} for u in users[:300]]})
    # The group read under its lock, one query for the exceptions (unknown accounts and
    # members), one multi-row insert, one counter update.
    assert len(one) == len(many) == 4, many
    assert sum(s.lstrip().upper().startswith("INSERT") for s in many) == 1


async def test_concurrent_imports_keep_member_num_exact(server: Server, tim) -> None:
    users = [f"u{i:03d}" for i in range(200)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Community")
    # Overlapping batches: every account is offered by several requests at once.
    batches = [users[start:start + 100] for start in range(0, 200, 20)]
    replies = await asyncio.gather(*[
        tim.call(IMPORT, {"GroupId": group_id,
                          "MemberList": [{"Member_Account": u} for u in batch]})
        for batch in batches])
    imported: dict[str, int] = {}
    for reply in replies:
        for account, result in results(reply):
            assert result in (1, 2)
            imported[account] = imported.get(account, 0) + (result == 1)
    assert imported == {u: 1 for u in users}  # exactly one request imported each account
    member_num, rows = await roster(tim, group_id)
    assert member_num == len(rows) == 200


async def test_concurrent_imports_respect_the_cap(tim) -> None:
    users = [f"u{i:03d}" for i in range(120)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Public", MaxMemberCount=50)
    replies = await asyncio.gather(*[
        tim.call(IMPORT, {"GroupId": group_id,
                          "MemberList": [{"Member_Account": u} for u in users[i:i + 30]]})
        for i in range(0, 120, 30)])
    ones = sum(r == 1 for reply in replies for _, r in results(reply))
    member_num, rows = await roster(tim, group_id)
    assert ones == member_num == len(rows) == 50


async def test_concurrent_imports_respect_the_cap_exactly(tim, server) -> None:
    """Imports into one group run concurrently; the cap and MemberNum stay exact."""
    users = [f"cc{i:03d}" for i in range(120)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Public", MaxMemberCount=50)
    # overlapping batches: every account appears in two requests
    batches = [users[i:i + 24] for i in range(0, 120, 12)]

    async def one(batch: list[str]) -> list[dict]:
        reply = await tim.ok("group_open_http_svc/import_group_member", {
            "GroupId": group_id, "MemberList": [{"Member_Account": u} for u in batch]})
        return reply["MemberList"]

    replies = await asyncio.gather(*(one(b) for b in batches))
    added = [m["Member_Account"] for r in replies for m in r if m["Result"] == 1]
    assert len(added) == 50 and len(set(added)) == 50
    info = await tim.ok("group_open_http_svc/get_group_member_info", {"GroupId": group_id})
    assert info["MemberNum"] == 50 == len(info["MemberList"])
    assert {m["Member_Account"] for m in info["MemberList"]} == set(added)
