"""The gateway and the online member list, end to end over real connections.

Every test runs on both presence backends (memory and Redis) through the `live` fixture.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.client import GatewayError, connect
from opentim.domain.apps import Edition
from opentim.events import MemberStateChanged
from tests.helpers import (
    LiveServer,
    all_pages,
    create_group,
    import_accounts,
    live_server,
    members,
    next_event,
    online_num,
    sessions,
)

AV = "group_open_avchatroom_http_svc"


@pytest.fixture
async def room(live: LiveServer):
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, *[f"u{i}" for i in range(8)])
        group_id = await create_group(tim, "AVChatRoom")
        yield live, app, tim, group_id


async def test_join_is_visible_to_the_next_rest_call(room) -> None:
    live, app, tim, group_id = room
    assert await members(tim, group_id) == ([], 0)
    async with live.connect(app, "u1") as alice:
        await alice.join_group(group_id)
        rows, cursor = await members(tim, group_id)
        assert cursor == 0
        assert rows == [{"Member_Account": "u1", "JoinTime": rows[0]["JoinTime"],
                         "NickName": "nick-u1", "Avatar": "http://img.test/u1.png"}]
        assert abs(rows[0]["JoinTime"] - time.time()) < 5
        assert await online_num(tim, group_id) == 1
        await alice.quit_group(group_id)
        assert await members(tim, group_id) == ([], 0)
        assert await online_num(tim, group_id) == 0


async def test_newest_join_first(room) -> None:
    live, app, tim, group_id = room
    async with sessions(live, app, ["u1", "u2", "u3"], group_id):
        rows, _ = await members(tim, group_id)
        assert [r["Member_Account"] for r in rows] == ["u3", "u2", "u1"]


async def test_close_takes_effect_at_once(room) -> None:
    live, app, tim, group_id = room
    async with live.connect(app, "u1") as alice:
        await alice.join_group(group_id)
    for _ in range(100):  # the server learns of the close asynchronously
        if await online_num(tim, group_id) == 0:
            break
        await asyncio.sleep(0.01)
    assert await members(tim, group_id) == ([], 0)


async def test_several_connections_count_once(room) -> None:
    live, app, tim, group_id = room
    async with live.connect(app, "u1") as phone, live.connect(app, "u1") as laptop:
        await phone.join_group(group_id)
        await laptop.join_group(group_id)
        assert [r["Member_Account"] for r in (await members(tim, group_id))[0]] == ["u1"]
        assert await online_num(tim, group_id) == 1
        await phone.quit_group(group_id)
        assert await online_num(tim, group_id) == 1
        await laptop.quit_group(group_id)
        assert await online_num(tim, group_id) == 0
    states = [e for e in live.events if isinstance(e, MemberStateChanged)]
    assert [(e.online, e.cause) for e in states] == [(True, "Join"), (False, "Quit")]


async def test_paging_with_same_second_joins(room) -> None:
    live, app, tim, group_id = room
    users = [f"p{i}" for i in range(620)]
    await import_accounts(tim, *users)
    live.clock.pinned = float(int(time.time()))  # every join in the same second
    async with sessions(live, app, users, group_id):
        first = await tim.ok(f"{AV}/get_members", {"GroupId": group_id, "Timestamp": 0})
        assert len(first["MemberList"]) == 500 and first["NextTimestamp"] > 0
        # churn between pages: newcomers and leavers must not shift the cursor
        async with sessions(live, app, ["u1", "u2"], group_id):
            second = await tim.ok(f"{AV}/get_members",
                                  {"GroupId": group_id, "Timestamp": first["NextTimestamp"]})
        assert second["NextTimestamp"] == 0
        seen = [m["Member_Account"] for m in first["MemberList"] + second["MemberList"]]
        assert seen == list(reversed(users))
        assert {m["JoinTime"] for m in first["MemberList"]} == {int(live.clock())}


async def test_list_is_capped_at_the_newest_1000(room) -> None:
    live, app, tim, group_id = room
    users = [f"c{i}" for i in range(1005)]
    await import_accounts(tim, *users)
    async with sessions(live, app, users, group_id):
        seen = await all_pages(tim, group_id)
        assert seen == list(reversed(users))[:1000]
        assert await online_num(tim, group_id) == 1005


async def test_standard_edition_gets_the_newest_30(live: LiveServer) -> None:
    for app in (await live.new_app(rate_limit=0, edition=Edition.STANDARD),
                await live.new_app(rate_limit=0, online_member_list=False)):
        async with live.client(app) as tim:
            users = [f"s{i}" for i in range(35)]
            await import_accounts(tim, *users)
            group_id = await create_group(tim, "AVChatRoom")
            async with sessions(live, app, users, group_id):
                rows, cursor = await members(tim, group_id)
                assert cursor == 0
                assert [r["Member_Account"] for r in rows] == list(reversed(users))[:30]


async def test_heartbeat_timeout_drops_a_silent_connection(presence_backend, tmp_path) -> None:
    async with live_server(f"sqlite:///{tmp_path}/hb.db", presence_backend,
                           heartbeat_timeout=0.6) as live:
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "quiet", "chatty")
            group_id = await create_group(tim, "AVChatRoom")
            async with live.connect(app, "quiet", heartbeat_interval=0) as quiet, \
                    live.connect(app, "chatty", heartbeat_interval=0.15) as chatty:
                await quiet.join_group(group_id)
                await chatty.join_group(group_id)
                await asyncio.wait_for(quiet.wait_closed(), 5)
                assert quiet.close_code == 4008
                assert [r["Member_Account"] for r in (await members(tim, group_id))[0]] == [
                    "chatty"]
                await chatty.quit_group(group_id)
        causes = [(e.account, e.cause) for e in live.events
                  if isinstance(e, MemberStateChanged) and not e.online]
        assert ("quiet", "HeartbeatInterrupt") in causes


async def test_community_members_only(room) -> None:
    live, app, tim, _ = room
    group_id = await create_group(tim, "Community", MemberList=[{"Member_Account": "u1"}])
    async with live.connect(app, "u1") as member, live.connect(app, "u2") as stranger:
        await member.join_group(group_id)
        with pytest.raises(GatewayError) as refused:
            await stranger.join_group(group_id)
        assert refused.value.code == 10007
        assert [r["Member_Account"] for r in (await members(tim, group_id))[0]] == ["u1"]


async def test_join_errors(room) -> None:
    live, app, tim, group_id = room
    private = await create_group(tim, "Private")
    cases = {private: 10007, "no-such-group": 10010, "x" * 49: 10015, "": 10015}
    async with live.connect(app, "u1") as session, live.connect(app, "ghost") as ghost:
        for target, code in cases.items():
            with pytest.raises(GatewayError) as refused:
                await session.join_group(target)
            assert refused.value.code == code, target
        with pytest.raises(GatewayError) as refused:
            await ghost.join_group(group_id)
        assert refused.value.code == 10019
        with pytest.raises(GatewayError) as refused:
            await session.quit_group(group_id)
        assert refused.value.code == 10007
        with pytest.raises(GatewayError) as refused:
            await session.request("fly")
        assert refused.value.code == 10003
        await session.heartbeat()


async def test_gateway_refuses_bad_sigs(room) -> None:
    live, app, _, _ = room
    forged = TLSSigAPIv2(app.sdkappid, "0" * 64).gen_sig("u1")
    with pytest.raises(GatewayError) as refused:
        async with connect(live.url, sdkappid=app.sdkappid, identifier="u1", usersig=forged):
            pass
    assert refused.value.code == 70009
    with pytest.raises(GatewayError) as refused:
        async with connect(live.url, sdkappid=999, identifier="u1", usersig=forged):
            pass
    assert refused.value.code == 70020


async def test_get_members_errors(room) -> None:
    _live, _app, tim, group_id = room
    private = await create_group(tim, "Private")
    cases = [
        ({"GroupId": private, "Timestamp": 0}, 10007),
        ({"GroupId": "nope", "Timestamp": 0}, 10010),
        ({"GroupId": "x" * 49, "Timestamp": 0}, 10015),
        ({"GroupId": group_id}, 10004),
        ({"GroupId": group_id, "Timestamp": -1}, 10004),
        ({"GroupId": group_id, "Timestamp": "0"}, 10004),
        ({"GroupId": group_id, "Timestamp": 0, "Mark": 999}, 10004),
    ]
    for body, code in cases:
        assert (await tim.call(f"{AV}/get_members", body))["ErrorCode"] == code, body


async def test_online_member_num_errors(room) -> None:
    _live, _app, tim, _group_id = room
    private = await create_group(tim, "Private")
    for body, code in (({"GroupId": private}, 10007), ({"GroupId": "nope"}, 10010),
                       ({"GroupId": ""}, 10015), ({}, 10004)):
        reply = await tim.call("group_open_http_svc/get_online_member_num", body)
        assert reply["ErrorCode"] == code, body


async def test_destroyed_group_empties_its_list(room) -> None:
    live, app, tim, group_id = room
    async with live.connect(app, "u1") as alice:
        await alice.join_group(group_id)
        await tim.ok("group_open_http_svc/destroy_group", {"GroupId": group_id})
        assert (await tim.call(f"{AV}/get_members",
                               {"GroupId": group_id, "Timestamp": 0}))["ErrorCode"] == 10010


async def test_bad_frames_keep_their_id(room) -> None:
    live, app, _tim, _group_id = room
    async with live.connect(app, "u1") as session:
        with pytest.raises(GatewayError) as refused:
            await session.request("join_group", GroupId=123)
        assert refused.value.code == 10004
        with pytest.raises(GatewayError) as refused:
            await session.request("modify_marks", GroupId="g", CommandType="1")
        assert refused.value.code == 10004
    # frames no client library sends, on a bare WebSocket: their replies cannot carry an id
    async with live.raw_connect(app, "u1") as raw:
        await raw.send(b"[1,2]")
        await raw.send(b"{not json")
        for _ in range(2):
            event = msgspec.json.decode(await asyncio.wait_for(raw.recv(), 5))
            assert event["ErrorCode"] == 60003 and event["id"] is None
        # and the connection still serves well-formed requests
        await raw.send(b'{"id":7,"cmd":"heartbeat"}')
        reply = msgspec.json.decode(await asyncio.wait_for(raw.recv(), 5))
        assert reply["id"] == 7 and reply["ErrorCode"] == 0, reply


async def test_logout_is_applied_before_its_reply(room) -> None:
    live, app, tim, group_id = room
    async with live.connect(app, "u1") as session:
        await session.join_group(group_id)
        await session.logout()
        assert await online_num(tim, group_id) == 0
        await asyncio.wait_for(session.wait_closed(), 5)
        assert session.close_code == 1000


async def test_removed_community_member_leaves_the_list(room) -> None:
    live, app, tim, _ = room
    group_id = await create_group(tim, "Community", MemberList=[
        {"Member_Account": "u1"}, {"Member_Account": "u2"}])
    async with live.connect(app, "u1") as kicked, live.connect(app, "u2") as stays:
        await kicked.join_group(group_id)
        await stays.join_group(group_id)
        await tim.ok("group_open_http_svc/delete_group_member",
                     {"GroupId": group_id, "MemberToDel_Account": ["u1"]})
        assert [r["Member_Account"] for r in (await members(tim, group_id))[0]] == ["u2"]
        event = await next_event(kicked, "removed_from_group")
        assert event == {"event": "removed_from_group", "GroupId": group_id,
                         "Reason": "Kicked"}
        with pytest.raises(GatewayError):
            await kicked.quit_group(group_id)


async def test_dismissed_group_tells_its_connections(room) -> None:
    live, app, tim, group_id = room
    async with live.connect(app, "u1") as session:
        await session.join_group(group_id)
        await tim.ok("group_open_http_svc/destroy_group", {"GroupId": group_id})
        event = await next_event(session, "removed_from_group")
        assert event["Reason"] == "GroupDestroyed"
        with pytest.raises(GatewayError) as refused:
            await session.quit_group(group_id)
        assert refused.value.code == 10007
