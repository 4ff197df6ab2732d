"""Group history and what is said beside it: send_group_system_notification,
group_msg_recall, group_msg_get_simple, delete_group_msg_by_sender.

REST tests run on SQLite and PostgreSQL; pushes are read from real gateway connections,
on SQLite with in-process presence and on PostgreSQL with Redis.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from opentim.client.rest import RestClient
from opentim.events import GroupMessagesRecalled, GroupPush
from opentim.storage.schema import group_messages
from opentim.webhooks.payloads import callback_for
from tests.helpers import (
    LiveServer,
    Server,
    create_group,
    import_accounts,
)

SVC = "group_open_http_svc"
SEND = f"{SVC}/send_group_msg"
NOTIFY = f"{SVC}/send_group_system_notification"
RECALL = f"{SVC}/group_msg_recall"
HISTORY = f"{SVC}/group_msg_get_simple"
DELETE_BY_SENDER = f"{SVC}/delete_group_msg_by_sender"


def text(value: str = "hi") -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


async def public_group(tim: RestClient, *members: str) -> str:
    await import_accounts(tim, "owner", *members)
    return await create_group(tim, "Public", Owner_Account="owner",
                              MemberList=[{"Member_Account": m} for m in members])


_randoms = itertools.count(1000)


async def say(tim: RestClient, group_id: str, *lines: str, sender: str = "a") -> list[int]:
    """Send each line (each with its own Random: a repeated one is a duplicate)."""
    seqs = []
    for line in lines:
        reply = await tim.ok(SEND, {"GroupId": group_id, "From_Account": sender,
                                    "Random": next(_randoms), "MsgBody": text(line)})
        seqs.append(reply["MsgSeq"])
    return seqs


async def history(tim: RestClient, group_id: str, number: int = 20, **body: Any) -> dict:
    return await tim.ok(HISTORY, {"GroupId": group_id, "ReqMsgNumber": number, **body})


def seqs_of(reply: dict) -> list[int]:
    return [m["MsgSeq"] for m in reply["RspMsgList"]]


# --- group_msg_get_simple ---------------------------------------------------------------


async def test_history_pages_newest_first_with_tencents_fields(server: Server, tim) -> None:
    server.clock.pinned = float(int(server.clock()))
    group_id = await public_group(tim, "a")
    await tim.ok(SEND, {"GroupId": group_id, "From_Account": "a", "Random": 77,
                        "MsgBody": text("first"), "MsgPriority": "High",
                        "CloudCustomData": "cc"})
    await say(tim, group_id, *[f"m{n}" for n in range(2, 26)])
    reply = await history(tim, group_id, 3)
    assert reply["GroupId"] == group_id and reply["IsFinished"] == 1
    assert seqs_of(reply) == [25, 24, 23]
    newest = reply["RspMsgList"][0]
    assert newest == {
        "From_Account": "a", "IsPlaceMsg": 0, "MsgBody": text("m25"), "MsgPriority": 2,
        "MsgRandom": newest["MsgRandom"], "MsgSeq": 25, "MsgTimeStamp": int(server.clock())}
    # ReqMsgSeq: that seq and older; paging from the smallest seq returned minus one
    page = await history(tim, group_id, 20, ReqMsgSeq=22)
    assert seqs_of(page) == list(range(22, 2, -1))
    page = await history(tim, group_id, 20, ReqMsgSeq=2)
    assert seqs_of(page) == [2, 1]
    first = page["RspMsgList"][1]
    assert first["MsgBody"] == text("first") and first["MsgRandom"] == 77
    assert first["CloudCustomData"] == "cc" and first["MsgPriority"] == 1
    # more than 20 asked: the newest 20 of the range, and IsFinished 0
    big = await history(tim, group_id, 30)
    assert seqs_of(big) == list(range(25, 5, -1)) and big["IsFinished"] == 0
    # a ReqMsgSeq past the newest message reads from the newest
    assert seqs_of(await history(tim, group_id, 2, ReqMsgSeq=10_000)) == [25, 24]


async def test_seqs_with_nothing_stored_are_holes(server: Server, app, tim) -> None:
    """Tencent: IsPlaceMsg 1 marks a seq whose message expired or was not stored. A row
    taken away (as retention would) is listed as such a hole."""
    from sqlalchemy import delete

    group_id = await public_group(tim, "a")
    await say(tim, group_id, "one", "two", "three")
    async with server.runtime.db.write() as conn:
        await conn.execute(delete(group_messages).where(
            group_messages.c.sdkappid == app.sdkappid, group_messages.c.group_id == group_id,
            group_messages.c.msg_seq == 2))
    reply = await history(tim, group_id)
    assert seqs_of(reply) == [3, 2, 1]
    assert reply["RspMsgList"][1] == {"From_Account": "", "IsPlaceMsg": 1, "MsgBody": [],
                                      "MsgPriority": 2, "MsgRandom": 0, "MsgSeq": 2,
                                      "MsgTimeStamp": 0}


async def test_history_of_an_empty_group(tim) -> None:
    group_id = await public_group(tim, "a")
    reply = await history(tim, group_id, 5)
    assert reply == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
                     "GroupId": group_id, "IsFinished": 1, "RspMsgList": []}


async def test_a_history_page_is_one_primary_key_range_read(server: Server, tim) -> None:
    """group_msg_get_simple's read is a range of the primary key (sdkappid, group_id,
    msg_seq), read backwards: its cost does not grow with the group's history."""
    if not server.runtime.db.is_sqlite:
        pytest.skip("the plan is checked on SQLite (PostgreSQL plans tiny tables apart)")
    from sqlalchemy.dialects import sqlite

    from opentim.storage.moderation import _HISTORY

    compiled = _HISTORY.compile(dialect=sqlite.dialect())
    values = {"app": 1, "grp": "g", "lo": 1, "hi": 20}
    params = tuple(values[name] for name in compiled.positiontup or ())
    async with server.runtime.db.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in await conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", params))
    assert "USING PRIMARY KEY" in plan or "sqlite_autoindex_group_messages" in plan, plan
    assert "msg_seq>? AND msg_seq<?" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the order


@pytest.mark.parametrize(("body", "code"), [
    ({"ReqMsgNumber": 0}, 10004),
    ({"ReqMsgNumber": -3}, 10004),
    ({}, 10004),
    ({"ReqMsgNumber": 5, "ReqMsgSeq": -1}, 10004),
    ({"ReqMsgNumber": 5, "TopicId": "t"}, 10004),
])
async def test_history_refuses_bad_requests(tim, body: dict, code: int) -> None:
    group_id = await public_group(tim, "a")
    reply = await tim.call(HISTORY, {"GroupId": group_id, **body})
    assert reply["ErrorCode"] == code, reply


async def test_avchatrooms_keep_no_history(tim) -> None:
    await import_accounts(tim, "a")
    group_id = await create_group(tim, "AVChatRoom")
    await tim.ok(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": text()})
    reply = await tim.call(HISTORY, {"GroupId": group_id, "ReqMsgNumber": 5})
    assert reply["ErrorCode"] == 10007, reply


async def test_history_commands_on_groups_that_are_not_there(tim) -> None:
    for command, body in [(HISTORY, {"ReqMsgNumber": 1}),
                          (RECALL, {"MsgSeqList": [{"MsgSeq": 1}]}),
                          (DELETE_BY_SENDER, {"Sender_Account": "a"}),
                          (NOTIFY, {"Content": "x"})]:
        reply = await tim.call(command, {"GroupId": "no-such-group", **body})
        assert reply["ErrorCode"] == 10010, (command, reply)
        reply = await tim.call(command, {"GroupId": "", **body})
        assert reply["ErrorCode"] == 10015, (command, reply)


# --- group_msg_recall -------------------------------------------------------------------


async def test_recall_answers_per_seq_and_history_hides_the_recalled(server: Server,
                                                                     tim) -> None:
    group_id = await public_group(tim, "a")
    await say(tim, group_id, "one", "two", "three")
    server.events.clear()
    reply = await tim.ok(RECALL, {"GroupId": group_id, "Reason": "oops",
                                  "MsgSeqList": [{"MsgSeq": 2}, {"MsgSeq": 99}]})
    assert reply["RecallRetList"] == [{"MsgSeq": 2, "RetCode": 0},
                                      {"MsgSeq": 99, "RetCode": 10030}]
    # recalled messages are left out of history unless asked for, then without a body
    assert seqs_of(await history(tim, group_id)) == [3, 1]
    with_recalled = await history(tim, group_id, WithRecalledMsg=1)
    assert seqs_of(with_recalled) == [3, 2, 1]
    recalled = with_recalled["RspMsgList"][1]
    assert recalled["IsPlaceMsg"] == 2 and recalled["MsgBody"] == []
    # recalled once only
    again = await tim.ok(RECALL, {"GroupId": group_id, "MsgSeqList": [{"MsgSeq": 2}]})
    assert again["RecallRetList"] == [{"MsgSeq": 2, "RetCode": 10030}]
    # the members are told, and the app's after-callback hears of it
    pushes = [e for e in server.events if isinstance(e, GroupPush)]
    assert [p.frame["event"] for p in pushes] == ["group_message_recalled"]
    assert pushes[0].frame["MsgSeqList"] == [{"MsgSeq": 2}]
    assert not pushes[0].room and pushes[0].accounts is None  # every member
    recalls = [e for e in server.events if isinstance(e, GroupMessagesRecalled)]
    assert len(recalls) == 1
    callback = callback_for(recalls[0])
    assert callback is not None and callback.command == "Group.CallbackAfterRecallMsg"
    assert callback.body == {
        "CallbackCommand": "Group.CallbackAfterRecallMsg", "Operator_Account": "administrator",
        "Type": "Public", "GroupId": group_id, "MsgSeqList": [{"MsgSeq": 2}],
        "EventTime": recalls[0].event_time_ms}


async def test_a_recall_of_nothing_tells_no_one(server: Server, tim) -> None:
    group_id = await public_group(tim, "a")
    server.events.clear()
    reply = await tim.ok(RECALL, {"GroupId": group_id, "MsgSeqList": [{"MsgSeq": 1}]})
    assert reply["RecallRetList"] == [{"MsgSeq": 1, "RetCode": 10030}]
    assert not [e for e in server.events if isinstance(e, GroupPush | GroupMessagesRecalled)]


@pytest.mark.parametrize(("seqs", "code"), [
    ([], 10004),
    ([{"MsgSeq": n} for n in range(1, 12)], 10004),
    ([{"MsgSeq": 0}], 10004),
    ([{"MsgSeq": -1}], 10004),
    ([{}], 10004),
])
async def test_recall_refuses_bad_lists(tim, seqs: list, code: int) -> None:
    group_id = await public_group(tim, "a")
    reply = await tim.call(RECALL, {"GroupId": group_id, "MsgSeqList": seqs})
    assert reply["ErrorCode"] == code, reply


# --- delete_group_msg_by_sender ---------------------------------------------------------


async def test_deleting_a_senders_messages_hides_only_theirs(server: Server, tim) -> None:
    group_id = await public_group(tim, "a", "b")
    await say(tim, group_id, "a1", sender="a")
    await say(tim, group_id, "b1", "b2", sender="b")
    await say(tim, group_id, "a2", sender="a")
    server.events.clear()
    reply = await tim.ok(DELETE_BY_SENDER, {"GroupId": group_id, "Sender_Account": "b"})
    assert reply == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
    assert seqs_of(await history(tim, group_id)) == [4, 1]
    assert not [e for e in server.events if isinstance(e, GroupPush)]  # silent (Tencent)
    # and gone for good: the bodies are not kept
    async with server.runtime.db.read() as conn:
        from sqlalchemy import select
        rows = list(await conn.execute(select(group_messages.c.msg_seq,
                                              group_messages.c.msg_body).where(
            group_messages.c.group_id == group_id).order_by(group_messages.c.msg_seq)))
    assert [(r.msg_seq, r.msg_body) for r in rows] == [
        (1, text("a1")), (2, []), (3, []), (4, text("a2"))]
    # an account with nothing to delete is not an error
    await tim.ok(DELETE_BY_SENDER, {"GroupId": group_id, "Sender_Account": "nobody"})


async def test_deleting_in_an_avchatroom_does_nothing(tim) -> None:
    """Tencent: an AVChatRoom keeps no history, and the call is no error."""
    await import_accounts(tim, "a")
    group_id = await create_group(tim, "AVChatRoom")
    await tim.ok(DELETE_BY_SENDER, {"GroupId": group_id, "Sender_Account": "a"})


@pytest.mark.parametrize(("body", "code"), [
    ({"Sender_Account": ""}, 10004),
    ({}, 10004),
    ({"Sender_Account": "a", "TopicId": "t"}, 10004),
])
async def test_delete_by_sender_refuses_bad_requests(tim, body: dict, code: int) -> None:
    group_id = await public_group(tim, "a")
    reply = await tim.call(DELETE_BY_SENDER, {"GroupId": group_id, **body})
    assert reply["ErrorCode"] == code, reply


# --- send_group_system_notification: REST -----------------------------------------------


@pytest.mark.parametrize(("body", "code"), [
    ({"Content": ""}, 10004),
    ({}, 10004),
    ({"Content": "x", "TopicId": "t"}, 10004),
    ({"Content": "x" * (12 * 1024 + 1)}, 80002),
    ({"Content": "x", "ToMembers_Account": [f"u{i}" for i in range(51)]}, 10005),
])
async def test_system_notifications_refuse_bad_requests(tim, body: dict, code: int) -> None:
    group_id = await public_group(tim, "a")
    reply = await tim.call(NOTIFY, {"GroupId": group_id, **body})
    assert reply["ErrorCode"] == code, reply


async def test_an_avchatroom_notification_goes_to_the_whole_room_only(tim) -> None:
    await import_accounts(tim, "a")
    group_id = await create_group(tim, "AVChatRoom")
    reply = await tim.call(NOTIFY, {"GroupId": group_id, "Content": "x",
                                    "ToMembers_Account": ["a"]})
    assert reply["ErrorCode"] == 10004, reply
    await tim.ok(NOTIFY, {"GroupId": group_id, "Content": "x", "ToMembers_Account": []})


async def test_a_notification_to_non_members_reaches_no_one(server: Server, tim) -> None:
    group_id = await public_group(tim, "a")
    await import_accounts(tim, "outsider")
    server.events.clear()
    await tim.ok(NOTIFY, {"GroupId": group_id, "Content": "x",
                          "ToMembers_Account": ["outsider"]})
    assert not [e for e in server.events if isinstance(e, GroupPush)]


# --- pushes on real gateway connections -------------------------------------------------


@pytest.fixture
def live(live_both: LiveServer) -> LiveServer:
    """A live server on SQLite with memory presence, then on PostgreSQL with Redis."""
    return live_both


async def no_message(session: Any, wait: float = 0.3) -> bool:
    try:
        await session.next_message(timeout=wait)
    except TimeoutError:
        return True
    return False


async def test_system_notifications_reach_the_members_named(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        live.clock.pinned = float(int(live.clock()))
        group_id = await public_group(tim, "a", "b")
        await import_accounts(tim, "outsider")
        async with live.connect(app, "a") as a, live.connect(app, "b") as b, \
                live.connect(app, "outsider") as outsider:
            # members hear it without joining anything
            await tim.ok(NOTIFY, {"GroupId": group_id, "Content": "to all"})
            for session in (a, b):
                frame = await session.next_message()
                assert frame == {"event": "group_system_notification", "GroupId": group_id,
                                 "Content": "to all", "MsgTime": int(live.clock())}
                assert "MsgSeq" not in frame
            await tim.ok(NOTIFY, {"GroupId": group_id, "Content": "to b",
                                  "ToMembers_Account": ["b", "outsider"]})
            assert (await b.next_message())["Content"] == "to b"
            assert await no_message(a)
            assert await no_message(outsider)


async def test_an_avchatroom_notification_reaches_the_room(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "viewer", "away")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "viewer") as viewer, live.connect(app, "away") as away:
            await viewer.join_group(group_id)
            await tim.ok(NOTIFY, {"GroupId": group_id, "Content": "live"})
            frame = await viewer.next_message()
            assert frame["event"] == "group_system_notification"
            assert frame["Content"] == "live"
            assert await no_message(away)  # not in the room


async def test_members_online_are_told_of_a_recall(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        group_id = await public_group(tim, "a", "b")
        async with live.connect(app, "b") as b:
            seqs = await say(tim, group_id, "keep", "oops")
            assert [(await b.next_message())["MsgSeq"] for _ in seqs] == seqs
            await tim.ok(RECALL, {"GroupId": group_id, "Reason": "typo",
                                  "MsgSeqList": [{"MsgSeq": seqs[1]}]})
            frame = await b.next_message()
            assert frame["event"] == "group_message_recalled"
            assert frame["GroupId"] == group_id
            assert frame["MsgSeqList"] == [{"MsgSeq": seqs[1]}]
            assert frame["Reason"] == "typo"


async def test_an_avchatroom_recall_tells_the_room(live: LiveServer) -> None:
    """No history: any seq the room handed out is recalled from its online members."""
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "viewer")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "viewer") as viewer:
            await viewer.join_group(group_id)
            seq = (await tim.ok(SEND, {"GroupId": group_id, "Random": 1,
                                       "MsgBody": text()}))["MsgSeq"]
            assert (await viewer.next_message())["MsgSeq"] == seq
            reply = await tim.ok(RECALL, {"GroupId": group_id,
                                          "MsgSeqList": [{"MsgSeq": seq},
                                                         {"MsgSeq": seq + 5}]})
            assert reply["RecallRetList"] == [{"MsgSeq": seq, "RetCode": 0},
                                              {"MsgSeq": seq + 5, "RetCode": 10030}]
            frame = await asyncio.wait_for(viewer.next_message(), 5)
            assert frame["event"] == "group_message_recalled"
            assert frame["MsgSeqList"] == [{"MsgSeq": seq}]
