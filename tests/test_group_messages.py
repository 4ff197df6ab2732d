"""send_group_msg, import_group_msg and set_unread_msg_num: seqs, times and unread counts."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from opentim.client.rest import RestClient
from opentim.events import MembersJoined
from opentim.storage.schema import group_messages
from tests.helpers import Server, create_group, import_accounts, old_group, roster, statements

SVC = "group_open_http_svc"
SEND = f"{SVC}/send_group_msg"
IMPORT_MSG = f"{SVC}/import_group_msg"
SET_UNREAD = f"{SVC}/set_unread_msg_num"
HOUR = 3600


def text(value: str = "hi") -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


def msg(send_time: int, body: str = "hi", sender: str = "a") -> dict[str, Any]:
    return {"From_Account": sender, "SendTime": send_time, "Random": 1, "MsgBody": text(body)}


async def group_info(tim: RestClient, group_id: str) -> dict[str, Any]:
    reply = await tim.ok(f"{SVC}/get_group_info", {"GroupIdList": [group_id]})
    return reply["GroupInfo"][0]


async def unread(tim: RestClient, group_id: str) -> dict[str, int]:
    _, rows = await roster(tim, group_id, ("UnreadMsgNum",))
    return {a: r["UnreadMsgNum"] for a, r in rows.items()}


async def history_rows(server: Server, sdkappid: int, group_id: str) -> int:
    async with server.runtime.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(group_messages).where(
            group_messages.c.sdkappid == sdkappid, group_messages.c.group_id == group_id,
        ))).scalar_one()


# --- send_group_msg ---------------------------------------------------------------------


async def test_send_advances_seq_and_time(server: Server, app, tim) -> None:
    server.clock.pinned = float(int(server.clock()))
    group_id = await create_group(tim, "Public")
    server.events.clear()  # the GroupCreated of create_group
    assert (await group_info(tim, group_id))["NextMsgSeq"] == 1
    seqs = []
    for n in range(3):
        reply = await tim.ok(SEND, {"GroupId": group_id, "Random": n, "MsgBody": text()})
        assert reply["MsgTime"] == int(server.clock())
        seqs.append(reply["MsgSeq"])
        server.clock.advance(5)
    assert seqs == [1, 2, 3]
    info = await group_info(tim, group_id)
    assert info["NextMsgSeq"] == 4 and info["LastMsgTime"] == int(server.clock()) - 5
    assert await history_rows(server, app.sdkappid, group_id) == 3
    # each message is delivered (GroupPush) and announced to the after-callback
    assert [type(e).__name__ for e in server.events] == ["GroupPush", "GroupMessageSent"] * 3


async def test_unread_grows_for_everyone_but_the_sender(server: Server, tim) -> None:
    server.clock.pinned = float(int(server.clock()))
    await import_accounts(tim, "a", "b", "c")
    group_id = await create_group(tim, "Community", MemberList=[
        {"Member_Account": u} for u in ("a", "b", "c")])
    await tim.ok(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": text()})
    await tim.ok(SEND, {"GroupId": group_id, "From_Account": "a", "Random": 2,
                        "MsgBody": text()})
    assert await unread(tim, group_id) == {"a": 1, "b": 2, "c": 2}
    _, rows = await roster(tim, group_id, ("LastSendMsgTime", "MsgSeq"))
    assert rows["a"]["LastSendMsgTime"] == int(server.clock())
    assert rows["b"]["LastSendMsgTime"] == 0
    # MsgSeq is the read mark: (NextMsgSeq - 1) - MsgSeq is the unread count.
    assert (rows["a"]["MsgSeq"], rows["b"]["MsgSeq"]) == (1, 0)


async def test_members_added_later_start_with_nothing_unread(tim) -> None:
    await import_accounts(tim, "a", "b")
    group_id = await create_group(tim, "Public", MemberList=[{"Member_Account": "a"}])
    for n in range(4):
        await tim.ok(SEND, {"GroupId": group_id, "Random": n, "MsgBody": text()})
    await tim.ok(f"{SVC}/add_group_member",
                 {"GroupId": group_id, "MemberList": [{"Member_Account": "b"}]})
    assert await unread(tim, group_id) == {"a": 4, "b": 0}


async def test_the_admin_may_speak_as_any_existing_account(tim) -> None:
    """Tencent: From_Account lets the App admin set the sender; the account must exist
    (a client sending from the gateway must be a member: test_message_delivery)."""
    await import_accounts(tim, "member", "outsider")
    group_id = await create_group(tim, "Public", MemberList=[{"Member_Account": "member"}])
    reply = await tim.ok(SEND, {"GroupId": group_id, "From_Account": "outsider",
                                "Random": 1, "MsgBody": text()})
    assert reply["MsgSeq"] == 1
    reply = await tim.call(SEND, {"GroupId": group_id, "From_Account": "ghost",
                                  "Random": 2, "MsgBody": text()})
    assert reply["ErrorCode"] == 10019, reply
    info = await group_info(tim, group_id)
    assert info["NextMsgSeq"] == 2  # the refused one took nothing


async def test_avchatroom_messages_take_a_seq_but_are_not_kept(server: Server, app,
                                                               tim) -> None:
    await import_accounts(tim, "viewer", "anyone")
    group_id = await create_group(tim, "AVChatRoom")
    for expected, sender in enumerate(["viewer", None, "anyone"], start=1):
        body: dict[str, Any] = {"GroupId": group_id, "Random": 7, "MsgBody": text()}
        if sender:
            body["From_Account"] = sender
        assert (await tim.ok(SEND, body))["MsgSeq"] == expected
    assert (await group_info(tim, group_id))["NextMsgSeq"] == 4
    assert await history_rows(server, app.sdkappid, group_id) == 0


async def test_send_errors(tim) -> None:
    group_id = await create_group(tim, "Public")
    ok = {"GroupId": group_id, "Random": 1, "MsgBody": text()}
    cases: list[tuple[dict[str, Any], int]] = [
        ({**ok, "GroupId": "no-such-group"}, 10010),
        ({**ok, "GroupId": ""}, 10015),
        ({"GroupId": group_id, "MsgBody": text()}, 10004),
        ({"GroupId": group_id, "Random": 1}, 10004),
        ({**ok, "Random": -1}, 10004),
        ({**ok, "Random": 4294967296}, 10004),
        ({**ok, "MsgBody": []}, 10004),
        ({**ok, "MsgBody": [{"MsgType": "TIMNopeElem", "MsgContent": {}}]}, 10004),
        ({**ok, "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {}}]}, 10004),
        ({**ok, "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": 5}}]}, 10004),
        ({**ok, "MsgBody": [{"MsgType": "TIMTextElem"}]}, 10004),
        ({**ok, "MsgBody": text("x" * 12 * 1024)}, 80002),
    ]
    for body, code in cases:
        reply = await tim.call(SEND, body)
        assert reply["ErrorCode"] == code, (body, reply)
    assert (await group_info(tim, group_id))["NextMsgSeq"] == 1


async def test_body_up_to_12_kb_is_accepted(tim) -> None:
    group_id = await create_group(tim, "Public")
    envelope = len(b'[{"MsgType":"TIMTextElem","MsgContent":{"Text":""}}]')
    fits = "x" * (12 * 1024 - envelope)
    assert (await tim.call(SEND, {"GroupId": group_id, "Random": 1,
                                  "MsgBody": text(fits)}))["ErrorCode"] == 0
    assert (await tim.call(SEND, {"GroupId": group_id, "Random": 1,
                                  "MsgBody": text(fits + "x")}))["ErrorCode"] == 80002


async def test_other_element_types_are_kept(tim) -> None:
    group_id = await create_group(tim, "Public")
    body = [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": "d", "Desc": "x"}},
            {"MsgType": "TIMFaceElem", "MsgContent": {"Index": 1, "Data": "abc"}}]
    assert (await tim.ok(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": body}))[
        "MsgSeq"] == 1


async def test_send_cost_does_not_grow_with_the_group(server: Server, tim) -> None:
    users = [f"u{i:03d}" for i in range(300)]
    await import_accounts(tim, *users)
    small = await create_group(tim, "Community", MemberList=[{"Member_Account": "u000"}])
    large = await create_group(tim, "Community")
    await tim.ok(f"{SVC}/import_group_member", {
        "GroupId": large, "MemberList": [{"Member_Account": u} for u in users]})
    counts = []
    for group_id in (small, large):
        async with statements(server) as seen:
            await tim.ok(SEND, {"GroupId": group_id, "From_Account": "u000", "Random": 1,
                                "MsgBody": text()})
        counts.append(seen)
    assert len(counts[0]) == len(counts[1]) <= 4
    assert not any("UPDATE group_members" in s and "member =" not in s for s in counts[1])


# --- import_group_msg -------------------------------------------------------------------


async def test_import_msg_results_and_unread_reset(server: Server, app, tim) -> None:
    server.clock.pinned = float(int(server.clock()))
    now = int(server.clock())
    await import_accounts(tim, "a", "b")
    group_id, created = await old_group(server, tim, "Public", age=HOUR)
    await tim.ok(f"{SVC}/import_group_member", {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a", "JoinTime": created + 1},
        {"Member_Account": "b", "JoinTime": created + 1}]})
    await tim.ok(SET_UNREAD, {"GroupId": group_id, "Member_Account": "a", "UnreadMsgNum": 0})
    reply = await tim.ok(IMPORT_MSG, {"GroupId": group_id, "RecentContactFlag": 1,
                                      "MsgList": [
        msg(created + 10),
        msg(created + 5),  # older than the one just imported
        msg(created + 10),  # not later than the latest
        msg(created),  # not after CreateTime
        msg(created + 20, body="x" * 12 * 1024),  # too long
        msg(now),  # not before now
        msg(created + 30),
    ]})
    assert [(r["Result"], r["MsgSeq"]) for r in reply["ImportMsgResult"]] == [
        (0, 1), (10004, 0), (10004, 0), (10004, 0), (80002, 0), (10004, 0), (0, 2)]
    assert [r["MsgTime"] for r in reply["ImportMsgResult"]] == [
        created + 10, created + 5, created + 10, created, created + 20, now, created + 30]
    info = await group_info(tim, group_id)
    assert (info["NextMsgSeq"], info["LastMsgTime"]) == (3, created + 30)
    assert await history_rows(server, app.sdkappid, group_id) == 2
    assert await unread(tim, group_id) == {"a": 0, "b": 0}
    assert server.events == []
    # Later imports must come after the latest message, sent or imported.
    await tim.ok(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": text()})
    assert await unread(tim, group_id) == {"a": 1, "b": 1}
    reply = await tim.ok(IMPORT_MSG, {"GroupId": group_id, "MsgList": [msg(now - 1)]})
    assert reply["ImportMsgResult"][0]["Result"] == 10004
    assert await unread(tim, group_id) == {"a": 1, "b": 1}  # nothing imported, no reset
    server.clock.advance(10)
    reply = await tim.ok(IMPORT_MSG, {"GroupId": group_id, "MsgList": [msg(now + 1)]})
    assert reply["ImportMsgResult"][0] == {"MsgSeq": 4, "MsgTime": now + 1, "Result": 0}
    assert await unread(tim, group_id) == {"a": 0, "b": 0}


async def test_import_msg_then_members_keep_their_unread(server: Server, tim) -> None:
    """Tencent's migration order: messages first, then members with their unread counts."""
    await import_accounts(tim, "a")
    group_id, created = await old_group(server, tim, "Community")
    await tim.ok(IMPORT_MSG, {"GroupId": group_id,
                              "MsgList": [msg(created + i) for i in range(1, 8)]})
    await tim.ok(f"{SVC}/import_group_member", {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a", "UnreadMsgNum": 5}]})
    assert await unread(tim, group_id) == {"a": 5}


async def test_import_msg_errors(server: Server, tim) -> None:
    av = await create_group(tim, "AVChatRoom")
    group_id, created = await old_group(server, tim)
    one = [msg(created + 1)]
    cases: list[tuple[dict[str, Any], int]] = [
        ({"GroupId": av, "MsgList": one}, 10007),
        ({"GroupId": "no-such-group", "MsgList": one}, 10010),
        ({"GroupId": "", "MsgList": one}, 10015),
        ({"GroupId": group_id, "MsgList": []}, 10004),
        ({"GroupId": group_id, "MsgList": [msg(created + i) for i in range(1, 9)]}, 10004),
        ({"GroupId": group_id}, 10004),
        ({"GroupId": group_id, "MsgList": [{"From_Account": "a", "MsgBody": text()}]}, 10004),
        ({"GroupId": group_id, "MsgList": [{"SendTime": created + 1, "MsgBody": text()}]},
         10004),
        ({"GroupId": group_id, "MsgList": [{**one[0], "MsgBody": []}]}, 10004),
        ({"GroupId": group_id, "MsgList": one, "TopicId": "t"}, 10004),
    ]
    for body, code in cases:
        reply = await tim.call(IMPORT_MSG, body)
        assert reply["ErrorCode"] == code, (body, reply)
    assert (await group_info(tim, group_id))["NextMsgSeq"] == 1


async def test_seven_messages_is_the_limit(server: Server, tim) -> None:
    group_id, created = await old_group(server, tim)
    reply = await tim.ok(IMPORT_MSG, {"GroupId": group_id,
                                      "MsgList": [msg(created + i) for i in range(1, 8)]})
    assert [r["MsgSeq"] for r in reply["ImportMsgResult"]] == list(range(1, 8))


# --- set_unread_msg_num ----------------------------------------------------------------


async def test_set_unread(tim) -> None:
    await import_accounts(tim, "a", "b", "outsider")
    group_id = await create_group(tim, "Private", MemberList=[
        {"Member_Account": "a"}, {"Member_Account": "b"}])
    for n in range(3):
        await tim.ok(SEND, {"GroupId": group_id, "Random": n, "MsgBody": text()})
    await tim.ok(SET_UNREAD, {"GroupId": group_id, "Member_Account": "a", "UnreadMsgNum": 1})
    await tim.ok(SET_UNREAD, {"GroupId": group_id, "Member_Account": "b", "UnreadMsgNum": 99})
    assert await unread(tim, group_id) == {"a": 1, "b": 3}
    await tim.ok(SEND, {"GroupId": group_id, "Random": 9, "MsgBody": text()})
    assert await unread(tim, group_id) == {"a": 2, "b": 4}
    cases: list[tuple[dict[str, Any], int]] = [
        ({"GroupId": group_id, "Member_Account": "outsider", "UnreadMsgNum": 1}, 10007),
        ({"GroupId": group_id, "Member_Account": "ghost", "UnreadMsgNum": 1}, 10007),
        ({"GroupId": group_id, "Member_Account": "a", "UnreadMsgNum": -1}, 10004),
        ({"GroupId": group_id, "Member_Account": "a"}, 10004),
        ({"GroupId": group_id, "UnreadMsgNum": 1}, 10004),
        ({"GroupId": "no-such-group", "Member_Account": "a", "UnreadMsgNum": 1}, 10010),
        ({"GroupId": "", "Member_Account": "a", "UnreadMsgNum": 1}, 10015),
    ]
    for body, code in cases:
        reply = await tim.call(SET_UNREAD, body)
        assert reply["ErrorCode"] == code, (body, reply)


@pytest.mark.parametrize("group_type", ["ChatRoom", "AVChatRoom"])
async def test_set_unread_is_accepted_and_ignored_where_clients_keep_none(
        tim, group_type: str) -> None:
    await import_accounts(tim, "a")
    group_id = await create_group(tim, group_type)
    reply = await tim.call(SET_UNREAD, {"GroupId": group_id, "Member_Account": "a",
                                        "UnreadMsgNum": 3})
    assert reply["ErrorCode"] == 0, reply


# --- silence ----------------------------------------------------------------------------


async def test_imports_emit_nothing_while_add_group_member_does(server: Server, tim) -> None:
    await import_accounts(tim, "a", "b", "c")
    group_id, created = await old_group(server, tim, "Public", MemberList=[
        {"Member_Account": "a"}])
    await tim.ok(f"{SVC}/import_group_member", {"GroupId": group_id, "MemberList": [
        {"Member_Account": "b"}]})
    await tim.ok(IMPORT_MSG, {"GroupId": group_id, "MsgList": [msg(created + 1)]})
    await tim.ok(SET_UNREAD, {"GroupId": group_id, "Member_Account": "b", "UnreadMsgNum": 1})
    assert server.events == []
    await tim.ok(f"{SVC}/add_group_member",
                 {"GroupId": group_id, "MemberList": [{"Member_Account": "c"}]})
    [joined] = server.events
    assert isinstance(joined, MembersJoined) and joined.members == ("c",)


async def test_av_sender_must_be_an_imported_account(tim) -> None:
    group_id = await create_group(tim, "AVChatRoom")
    reply = await tim.call("group_open_http_svc/send_group_msg", {
        "GroupId": group_id, "From_Account": "ghost", "Random": 1,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]})
    assert reply["ErrorCode"] == 10019


# --- retention ------------------------------------------------------------------------------


async def test_expired_history_is_deleted_by_edition_or_setting(server: Server, app,
                                                                standard_app, tim) -> None:
    runtime = server.runtime
    day = 86400
    server.clock.pinned = float(int(server.clock()))
    async with server.client(standard_app) as std:
        groups = {}
        for name, client in (("premium", tim), ("standard", std)):
            groups[name] = await create_group(client, "Public")
            for age_days in (40, 10, 1):
                server.clock.pinned -= age_days * day
                await client.ok(SEND, {"GroupId": groups[name], "Random": age_days,
                                       "MsgBody": text()})
                server.clock.pinned += age_days * day
    # premium keeps 30 days, standard 7 (Tencent's roaming windows); at least these three
    # went (a shared PostgreSQL database may hold other tests' old messages too)
    assert await runtime.retention.run_once() >= 3
    assert await history_rows(server, app.sdkappid, groups["premium"]) == 2
    assert await history_rows(server, standard_app.sdkappid, groups["standard"]) == 1
    # seqs are not reused and nothing else changes: the next message continues the count
    reply = await tim.ok(SEND, {"GroupId": groups["premium"], "Random": 9, "MsgBody": text()})
    assert reply["MsgSeq"] == 4
