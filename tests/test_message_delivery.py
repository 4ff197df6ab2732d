"""Group messages delivered over the gateway: who hears them, in which order, and what is
refused before anyone does. Real gateway connections, on both presence backends and both
databases, and across two processes sharing Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from opentim.client import GatewayError
from tests.helpers import (
    LiveServer,
    create_group,
    import_accounts,
    live_servers,
)

SVC = "group_open_http_svc"
SEND = f"{SVC}/send_group_msg"


def text(value: str = "hi") -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


EVERY_ELEM = [
    {"MsgType": "TIMTextElem", "MsgContent": {"Text": "hello 🌍"}},
    {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "{\"gift\":7}", "Desc": "gift",
                                                "Ext": "e", "Sound": ""}},
    {"MsgType": "TIMFaceElem", "MsgContent": {"Index": 6, "Data": "abc"}},
    {"MsgType": "TIMLocationElem", "MsgContent": {"Desc": "here", "Latitude": 22.5,
                                                  "Longitude": 113.9}},
    {"MsgType": "TIMImageElem", "MsgContent": {"UUID": "img1", "ImageFormat": 1,
                                               "ImageInfoArray": [{"Type": 1, "Size": 10,
                                                                   "Width": 1, "Height": 1,
                                                                   "URL": "https://x/i"}]}},
    {"MsgType": "TIMSoundElem", "MsgContent": {"Url": "https://x/s", "Size": 1, "Second": 1,
                                               "Download_Flag": 2}},
    {"MsgType": "TIMVideoFileElem", "MsgContent": {"VideoUrl": "https://x/v", "VideoSize": 1,
                                                   "VideoSecond": 1, "VideoFormat": "mp4",
                                                   "Download_Flag": 2}},
    {"MsgType": "TIMFileElem", "MsgContent": {"Url": "https://x/f", "FileSize": 1,
                                              "FileName": "f.txt", "Download_Flag": 2}},
]


@pytest.fixture
def live(live_both: LiveServer) -> LiveServer:
    """A live server on SQLite with memory presence, then on PostgreSQL with Redis."""
    return live_both


@contextlib.asynccontextmanager
async def room(live: LiveServer, group_type: str, users: list[str], *, join: bool = True,
               members: list[str] | None = None, **app_settings: Any
               ) -> AsyncIterator[tuple[Any, str, list[Any]]]:
    """An app, a group and one open session per user (joined to the group if asked)."""
    app = await live.new_app(rate_limit=0, **app_settings)
    async with live.client(app) as tim:
        await import_accounts(tim, "host", *users)
        fields: dict[str, Any] = {"Owner_Account": "host"}
        if members is not None:
            fields["MemberList"] = [{"Member_Account": m} for m in members]
        group_id = await create_group(tim, group_type, **fields)
        async with contextlib.AsyncExitStack() as stack:
            opened = []
            for user in users:
                session = await stack.enter_async_context(live.connect(app, user))
                if join:
                    await session.join_group(group_id)
                opened.append(session)
            yield tim, group_id, opened


async def nothing_more(session: Any, wait: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await session.next_message(timeout=wait)


# --- who hears a message ----------------------------------------------------------------


async def test_an_avchatroom_message_reaches_every_connection_that_joined(live) -> None:
    async with room(live, "AVChatRoom", ["u1", "u2", "u3", "u4"]) as (
            tim, group_id, (u1, u2, u3, outsider)):
        await outsider.quit_group(group_id)  # connected, not in the room
        reply = await tim.ok(SEND, {"GroupId": group_id, "Random": 7, "MsgBody": EVERY_ELEM,
                                    "From_Account": "u1", "CloudCustomData": "ccd",
                                    "MsgPriority": "High"})
        for session in (u1, u2, u3):
            got = await session.next_message()
            assert got["event"] == "group_message"
            assert got["GroupId"] == group_id and got["Type"] == "AVChatRoom"
            assert (got["MsgSeq"], got["MsgTime"]) == (reply["MsgSeq"], reply["MsgTime"])
            assert got["MsgRandom"] == 7 and got["From_Account"] == "u1"
            assert got["MsgBody"] == EVERY_ELEM  # every element kept as sent
            assert got["CloudCustomData"] == "ccd" and got["MsgPriority"] == "High"
        await nothing_more(outsider)


def tim_app(live: LiveServer, tim: Any) -> Any:
    return live.runtime.apps.get(tim.sdkappid)


async def test_members_of_a_roster_group_hear_its_messages_without_joining(live) -> None:
    async with room(live, "Public", ["m1", "m2", "stranger"], join=False,
                    members=["m1", "m2"]) as (tim, group_id, (m1, m2, stranger)):
        await tim.ok(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": text("to members")})
        for session in (m1, m2):
            got = await session.next_message()
            assert got["MsgBody"] == text("to members") and got["From_Account"] == ""
        await nothing_more(stranger)


async def test_the_connected_frame_comes_first_while_messages_flow(live) -> None:
    """Found by test_fuzz_gateway on Redis presence: a member connecting while its group's
    messages flowed could get one before ``connected`` (the connection was indexed, then
    awaited presence, then said hello)."""
    async with room(live, "Public", [], join=False, members=["host"]) as (tim, group_id, _):
        stop = asyncio.Event()

        async def flood() -> None:
            n = 0
            while not stop.is_set():
                await tim.ok(SEND, {"GroupId": group_id, "Random": n, "MsgBody": text()})
                n += 1

        flooding = asyncio.create_task(flood())
        try:
            for _ in range(30):
                app = tim_app(live, tim)
                async with live.raw_connect(app, "host"):  # asserts the first frame
                    pass
        finally:
            stop.set()
            await flooding


async def test_a_targeted_message_reaches_only_its_receivers(live) -> None:
    async with room(live, "Public", ["m1", "m2"], join=False,
                    members=["m1", "m2"]) as (tim, group_id, (m1, m2)):
        reply = await tim.ok(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": text(),
                                    "To_Account": ["m2"]})
        assert reply["MsgSeq"] == 0  # neither stored nor counted as unread
        assert (await m2.next_message())["MsgBody"] == text()
        await nothing_more(m1)
    async with room(live, "AVChatRoom", ["v"]) as (tim, group_id, _):
        error = await tim.call(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": text(),
                                       "To_Account": ["v"]})
        assert error["ErrorCode"] == 10004


async def test_the_gateway_sends_to_the_others_with_the_same_rules(live) -> None:
    async with room(live, "AVChatRoom", ["a", "b"]) as (_, group_id, (a, b)):
        reply = await a.send_group_message(group_id, text("from a"), MsgPriority="Low")
        assert reply["GroupId"] == group_id and reply["MsgSeq"] >= 1
        got = await b.next_message()
        assert got["From_Account"] == "a" and got["MsgSeq"] == reply["MsgSeq"]
        assert got["MsgPriority"] == "Low" and got["MsgRandom"] == reply["MsgRandom"]
        await nothing_more(a)  # the sending connection has it in its reply
        with pytest.raises(GatewayError) as refused:
            await a.send_group_message(group_id, [])
        assert refused.value.code == 10004
        with pytest.raises(GatewayError) as refused:
            await a.send_group_message(group_id, text("x" * (13 * 1024)))
        assert refused.value.code == 80002
        await a.quit_group(group_id)
        with pytest.raises(GatewayError) as refused:
            await a.send_group_message(group_id, text())
        assert refused.value.code == 10007  # left the room: no longer in its audience
        await nothing_more(b)


async def test_a_non_member_cannot_send_to_a_roster_group_from_the_gateway(live) -> None:
    async with room(live, "Private", ["m", "x"], join=False, members=["m"]) as (
            tim, group_id, (m, x)):
        for fields in ({}, {"OnlineOnlyFlag": 1}, {"To_Account": ["m"]}):
            with pytest.raises(GatewayError) as refused:
                await x.send_group_message(group_id, text(), **fields)
            assert refused.value.code == 10007, fields  # stored or not, members only
        await nothing_more(m)
        await m.send_group_message(group_id, text("ok"))
        await asyncio.sleep(0.2)  # "ok" has gone out (a group's first message waits 50 ms)
        # the sender's other connections hear it (the sending one has its reply)
        async with live.connect(tim_app(live, tim), "m") as m2:
            await m.send_group_message(group_id, text("again"))
            assert (await m2.next_message())["MsgBody"] == text("again")


async def test_refused_messages_reach_no_one(live) -> None:
    async with room(live, "AVChatRoom", ["v"]) as (tim, group_id, (v,)):
        cases = [
            ({"MsgBody": []}, 10004),
            ({"MsgBody": text("x" * (12 * 1024 + 1))}, 80002),
            ({"MsgBody": [{"MsgType": "TIMBogusElem", "MsgContent": {}}]}, 10004),
            ({"MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": 5}}]}, 10004),
            ({"MsgBody": text(), "MsgPriority": "Urgent"}, 10004),
            ({"MsgBody": text(), "From_Account": "nobody"}, 10019),
            ({"MsgBody": text(), "CloudCustomData": "x" * (12 * 1024 + 1)}, 80002),
            ({"MsgBody": text(), "TopicId": "t"}, 10004),
        ]
        for fields, code in cases:
            error = await tim.call(SEND, {"GroupId": group_id, "Random": 1, **fields})
            assert error["ErrorCode"] == code, (fields, error)
        assert (await tim.call(SEND, {"GroupId": "@TGS#2NOSUCHGROUP", "Random": 1,
                                       "MsgBody": text()}))["ErrorCode"] == 10010
        await nothing_more(v)


# --- duplicates, order, rate --------------------------------------------------------------


async def test_a_retried_send_with_the_same_random_is_delivered_once(live) -> None:
    async with room(live, "AVChatRoom", ["v"]) as (tim, group_id, (v,)):
        first = await tim.ok(SEND, {"GroupId": group_id, "Random": 42, "MsgBody": text()})
        again = await tim.ok(SEND, {"GroupId": group_id, "Random": 42, "MsgBody": text()})
        assert (again["MsgSeq"], again["MsgTime"]) == (first["MsgSeq"], first["MsgTime"])
        assert (await v.next_message())["MsgSeq"] == first["MsgSeq"]
        await nothing_more(v)
        # another Random, or another sender with the same Random, is another message
        other = await tim.ok(SEND, {"GroupId": group_id, "Random": 43, "MsgBody": text()})
        assert other["MsgSeq"] == first["MsgSeq"] + 1
        await tim.ok(SEND, {"GroupId": group_id, "Random": 42, "From_Account": "v",
                            "MsgBody": text()})
        assert [(await v.next_message())["MsgRandom"] for _ in range(2)] == [43, 42]


async def test_every_client_sees_a_groups_messages_in_msgseq_order(live) -> None:
    async with room(live, "AVChatRoom", ["a", "b", "c"]) as (tim, group_id, sessions):
        n = 30
        sends = [tim.ok(SEND, {"GroupId": group_id, "Random": i, "MsgBody": text(str(i))})
                 for i in range(n)]
        sends += [s.send_group_message(group_id, text("gw")) for s in sessions]
        await asyncio.gather(*sends)
        for session in sessions:
            seqs = [(await session.next_message())["MsgSeq"] for _ in range(n + 2)]
            assert seqs == sorted(seqs) and len(set(seqs)) == n + 2, seqs


async def test_a_group_over_its_message_rate_is_refused_with_10023(live) -> None:
    async with room(live, "AVChatRoom", ["v"], group_msg_rate=3) as (tim, group_id, _):
        live.clock.pinned = float(int(live.clock()))
        # Seven at once: the window is real time, and however a boundary splits them, one
        # side holds four or more (a refusal) and each side's first three go through.
        replies = await asyncio.gather(*(tim.call(SEND, {
            "GroupId": group_id, "Random": i, "MsgBody": text()}) for i in range(7)))
        codes = [r["ErrorCode"] for r in replies]
        assert codes.count(10023) >= 1 and codes.count(0) >= 3, codes
        assert set(codes) == {0, 10023}, codes
        await asyncio.sleep(1.0)  # a later window (every attempt counts, refused ones too)
        normal = await asyncio.gather(*(tim.call(SEND, {
            "GroupId": group_id, "Random": 10 + i, "MsgBody": text()}) for i in range(4)))
        high = await tim.call(SEND, {"GroupId": group_id, "Random": 99, "MsgBody": text(),
                                     "MsgPriority": "High"})
        assert [r["ErrorCode"] for r in normal].count(0) >= 3
        assert high["ErrorCode"] == 0  # the host's messages have headroom
        # a retry is answered as the first send was, never refused for the rate
        again = await tim.call(SEND, {"GroupId": group_id, "Random": 99, "MsgBody": text(),
                                      "MsgPriority": "High"})
        assert (again["ErrorCode"], again["MsgSeq"]) == (0, high["MsgSeq"])


# --- several processes ----------------------------------------------------------------------


async def test_a_message_sent_through_one_process_reaches_connections_of_another(
        tmp_path, shared_redis: str) -> None:
    async with live_servers(2, f"sqlite:///{tmp_path}/shared.db", redis=shared_redis) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim:
            await import_accounts(tim, "host", "on_a", "on_b")
            group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
            async with a.connect(app, "on_a") as sa, b.connect(app, "on_b") as sb:
                await sa.join_group(group_id)
                await sb.join_group(group_id)
                sends = [tim.ok(SEND, {"GroupId": group_id, "Random": i, "MsgBody": text()})
                         for i in range(10)]
                sends.append(sb.send_group_message(group_id, text("from b")))
                await asyncio.gather(*sends)
                got_a = [(await sa.next_message())["MsgSeq"] for _ in range(11)]
                got_b = [(await sb.next_message())["MsgSeq"] for _ in range(10)]
                assert got_a == sorted(got_a) and len(set(got_a)) == 11
                assert got_b == sorted(got_b) and len(set(got_b)) == 10
                # a retry through the other process is still a duplicate (shared guards)
                async with b.client(app) as tim_b:
                    first = await tim.ok(SEND, {"GroupId": group_id, "Random": 500,
                                                "MsgBody": text()})
                    again = await tim_b.ok(SEND, {"GroupId": group_id, "Random": 500,
                                                  "MsgBody": text()})
                assert again["MsgSeq"] == first["MsgSeq"]


async def test_roster_changes_reach_the_audience_at_once(tmp_path, shared_redis: str
                                                        ) -> None:
    """Each process resolves a roster group's members itself (cached): an added member
    hears the next message and a removed one does not, whichever process changed them."""
    async with live_servers(2, f"sqlite:///{tmp_path}/shared.db", redis=shared_redis) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "host", "m1", "m2")
            group_id = await create_group(tim_a, "Public", Owner_Account="host",
                                          MemberList=[{"Member_Account": "m1"}])
            async with b.connect(app, "m1") as m1, b.connect(app, "m2") as m2:
                await tim_a.ok(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": text("1")})
                assert (await m1.next_message())["MsgBody"] == text("1")  # b read the set
                await nothing_more(m2)
                await tim_a.ok(f"{SVC}/add_group_member", {
                    "GroupId": group_id, "MemberList": [{"Member_Account": "m2"}]})
                await tim_b.ok(SEND, {"GroupId": group_id, "Random": 2, "MsgBody": text("2")})
                for session in (m1, m2):
                    assert (await session.next_message())["MsgBody"] == text("2")
                await tim_a.ok(f"{SVC}/delete_group_member", {
                    "GroupId": group_id, "MemberToDel_Account": ["m1"]})
                await tim_b.ok(SEND, {"GroupId": group_id, "Random": 3, "MsgBody": text("3")})
                assert (await m2.next_message())["MsgBody"] == text("3")
                await nothing_more(m1)
                error = await tim_a.call(SEND, {"GroupId": group_id, "Random": 4,
                                                "MsgBody": text(), "To_Account": ["m1"]})
                assert error["ErrorCode"] == 10004  # a targeted receiver must be a member
