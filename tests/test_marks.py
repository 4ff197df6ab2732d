"""Marks and robots: modify_user_info, add_robots, del_robots and the gateway's modify_marks.

Runs on both presence backends through the `live` fixture, over real connections.
"""

from __future__ import annotations

import asyncio

import pytest

from opentim.client import GatewayError
from opentim.domain.apps import Edition
from tests.helpers import (
    LiveServer,
    all_pages,
    create_group,
    eventually,
    import_accounts,
    live_server,
    members,
    modify,
    next_event,
    online_num,
    sessions,
)

AV = "group_open_avchatroom_http_svc"


async def listed(tim, group_id: str, **body) -> list[str]:
    return await all_pages(tim, group_id, **body)


@pytest.fixture
async def room(live: LiveServer):
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "owner", *[f"u{i}" for i in range(6)], "bot1", "bot2")
        group_id = await create_group(tim, "AVChatRoom", Owner_Account="owner")
        yield live, app, tim, group_id


async def test_set_and_filter_by_mark(room) -> None:
    live, app, tim, group_id = room
    async with sessions(live, app, ["u0", "u1", "u2"], group_id):
        reply = await modify(tim, group_id, 1, ("u0", [1000]), ("u1", [1001, 1000]))
        assert reply["ActionStatus"] == "OK" and reply["CommandType"] == 1
        assert reply["MemberList"] == [{"Member_Account": "u0", "Marks": [1000]},
                                       {"Member_Account": "u1", "Marks": [1000, 1001]}]
        assert await listed(tim, group_id, Mark=1000) == ["u1", "u0"]
        assert await listed(tim, group_id, Mark=1001) == ["u1"]
        assert await listed(tim, group_id, Mark=1002) == []
        reply = await modify(tim, group_id, 2, ("u1", [1000]))
        assert reply["CommandType"] == 2
        assert reply["MemberList"] == [{"Member_Account": "u1", "Marks": [1001]}]
        assert await listed(tim, group_id, Mark=1000) == ["u0"]


async def test_offline_and_unknown_accounts_are_left_out(room) -> None:
    live, app, tim, group_id = room
    async with sessions(live, app, ["u0"], group_id):
        reply = await modify(tim, group_id, 1, ("u0", [1000]), ("u1", [1000]), ("ghost", [1000]))
        assert [m["Member_Account"] for m in reply["MemberList"]] == ["u0"]
        reply = await modify(tim, group_id, 1, ("u1", [1000]), ("ghost", [1000]))
        assert reply["ActionStatus"] == "FAIL" and reply["ErrorCode"] == 10004


async def test_marks_vanish_when_the_member_leaves(room) -> None:
    live, app, tim, group_id = room
    async with live.connect(app, "u0") as session:
        await session.join_group(group_id)
        await modify(tim, group_id, 1, ("u0", [1000, 600]))
        await session.quit_group(group_id)
        await session.join_group(group_id)
        assert await listed(tim, group_id, Mark=1000) == []
        assert await listed(tim, group_id) == ["u0"]  # no longer hidden either


async def test_marks_vanish_on_heartbeat_timeout(presence_backend, tmp_path) -> None:
    async with live_server(f"sqlite:///{tmp_path}/hb.db", presence_backend,
                           heartbeat_timeout=0.5) as live:
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "u0")
            group_id = await create_group(tim, "AVChatRoom")
            async with live.connect(app, "u0", heartbeat_interval=0) as session:
                await session.join_group(group_id)
                await modify(tim, group_id, 1, ("u0", [1000]))
                await asyncio.wait_for(session.wait_closed(), 5)
            assert await listed(tim, group_id, Mark=1000) == []
            assert await online_num(tim, group_id) == 0


async def test_hidden_600(room) -> None:
    live, app, tim, group_id = room
    async with sessions(live, app, ["u0", "u1"], group_id):
        await modify(tim, group_id, 1, ("u0", [600]))
        assert await listed(tim, group_id) == ["u1"]
        assert await listed(tim, group_id, Mark=600) == ["u0"]
        assert await online_num(tim, group_id) == 2


async def test_500_survives_disconnect_then_expires(room) -> None:
    live, app, tim, group_id = room
    async with live.connect(app, "u0") as session:
        await session.join_group(group_id)
        await modify(tim, group_id, 1, ("u0", [500, 1000]))
        assert await listed(tim, group_id, Mark=1000) == ["u0"]

    async def close_seen() -> bool:  # the server drops the other marks when it sees the close
        return await listed(tim, group_id, Mark=1000) == []

    await eventually(close_seen, "the server handled u0's close")
    assert await listed(tim, group_id) == ["u0"]
    assert await listed(tim, group_id, Mark=500) == ["u0"]
    assert await listed(tim, group_id, Mark=1000) == []  # only 500 survives
    live.clock.advance(3 * 86400 - 60)
    assert await online_num(tim, group_id) == 1
    live.clock.advance(120)
    assert await listed(tim, group_id) == []
    assert await online_num(tim, group_id) == 0


async def test_500_on_an_offline_account(room) -> None:
    _live, _app, tim, group_id = room
    reply = await modify(tim, group_id, 1, ("u3", [500]), ("ghost", [500]))
    assert reply["MemberList"] == [{"Member_Account": "u3", "Marks": [500]}]
    rows, _ = await members(tim, group_id)
    assert rows[0]["Member_Account"] == "u3" and rows[0]["NickName"] == "nick-u3"
    reply = await modify(tim, group_id, 2, ("u3", [500]))
    assert reply["ActionStatus"] == "OK"
    assert await listed(tim, group_id) == []


async def test_robots(room) -> None:
    live, app, tim, group_id = room
    reply = await tim.call(f"{AV}/add_robots", {"GroupId": group_id,
                                                "Member_Account": ["bot1", "bot2"]})
    assert reply == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
    assert await listed(tim, group_id, Mark=500) == ["bot2", "bot1"]
    assert await online_num(tim, group_id) == 2
    async with sessions(live, app, ["u0"], group_id):
        assert await listed(tim, group_id) == ["u0", "bot2", "bot1"]
    reply = await tim.call(f"{AV}/del_robots", {"GroupId": group_id, "Member_Account": ["bot1"]})
    assert reply == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
    assert await listed(tim, group_id, Mark=500) == ["bot2"]
    # robots that are not accounts fail the call, and nothing is applied
    reply = await tim.call(f"{AV}/add_robots", {"GroupId": group_id,
                                                "Member_Account": ["bot1", "nobody"]})
    assert reply["ErrorCode"] == 10004 and "nobody" in reply["ErrorInfo"]
    assert await listed(tim, group_id, Mark=500) == ["bot2"]


async def test_ten_distinct_marks(room) -> None:
    live, app, tim, group_id = room
    async with sessions(live, app, ["u0", "u1"], group_id):
        reply = await modify(tim, group_id, 1, ("u0", [*list(range(1000, 1010)), 500, 600]))
        assert reply["ErrorCode"] == 0
        reply = await modify(tim, group_id, 1, ("u1", [1010]))
        assert reply["ErrorCode"] == 10004 and "10 distinct marks" in reply["ErrorInfo"]
        assert await listed(tim, group_id, Mark=1010) == []
        # reusing one of the ten is fine
        assert (await modify(tim, group_id, 1, ("u1", [1009])))["ErrorCode"] == 0


async def test_thousand_members_per_mark(room) -> None:
    _live, _app, tim, group_id = room
    users = [f"m{i}" for i in range(1001)]
    await import_accounts(tim, *users)
    for start in (0, 500):
        reply = await modify(tim, group_id, 1, *[(u, [500]) for u in users[start:start + 500]])
        assert reply["ErrorCode"] == 0
    reply = await modify(tim, group_id, 1, (users[1000], [500]))
    assert reply["ErrorCode"] == 10004 and "1000 members" in reply["ErrorInfo"]
    assert await online_num(tim, group_id) == 1000


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        ({"CommandType": 3}, 10004),
        ({"CommandType": "1"}, 10004),
        ({"MemberList": []}, 10004),
        ({"MemberList": [{"Member_Account": "u0", "Marks": []}]}, 10004),
        ({"MemberList": [{"Member_Account": "u0", "Marks": [999]}]}, 10004),
        ({"MemberList": [{"Member_Account": "u0"}]}, 10004),
        ({"MemberList": [{"Member_Account": f"x{i}", "Marks": [1000]} for i in range(501)]},
         10005),
        ({"GroupId": "nope"}, 10010),
        ({"GroupId": "x" * 49}, 10015),
    ],
)
async def test_modify_user_info_errors(room, mutate: dict, code: int) -> None:
    _live, _app, tim, group_id = room
    body = {"GroupId": group_id, "CommandType": 1,
            "MemberList": [{"Member_Account": "u0", "Marks": [1000]}], **mutate}
    reply = await tim.call(f"{AV}/modify_user_info", body)
    assert reply["ErrorCode"] == code, reply
    assert reply["ErrorInfo"]


async def test_only_av_groups(room) -> None:
    _live, _app, tim, _ = room
    for group_type in ("Private", "Public", "ChatRoom", "Community"):
        group_id = await create_group(tim, group_type)
        assert (await modify(tim, group_id, 1, ("u0", [1000])))["ErrorCode"] == 10007
        for command in ("add_robots", "del_robots"):
            reply = await tim.call(f"{AV}/{command}",
                                   {"GroupId": group_id, "Member_Account": ["bot1"]})
            assert reply["ErrorCode"] == 10007


async def test_edition_gating(live: LiveServer) -> None:
    cases = {
        "Premium edition": await live.new_app(rate_limit=0, edition=Edition.STANDARD),
        "online member list switch": await live.new_app(rate_limit=0, online_member_list=False),
    }
    for missing, app in cases.items():
        async with live.client(app) as tim:
            await import_accounts(tim, "bot1")
            group_id = await create_group(tim, "AVChatRoom")
            replies = [
                await modify(tim, group_id, 1, ("bot1", [500])),
                await tim.call(f"{AV}/add_robots", {"GroupId": group_id,
                                                    "Member_Account": ["bot1"]}),
                await tim.call(f"{AV}/del_robots", {"GroupId": group_id,
                                                    "Member_Account": ["bot1"]}),
            ]
            for reply in replies:
                assert reply["ErrorCode"] == 10007 and missing in reply["ErrorInfo"]


async def test_robot_request_errors(room) -> None:
    _live, _app, tim, group_id = room
    for command in ("add_robots", "del_robots"):
        for body, code in (({"GroupId": group_id, "Member_Account": []}, 10004),
                           ({"GroupId": group_id}, 10004),
                           ({"GroupId": group_id, "Member_Account": [f"b{i}" for i in range(501)]},
                            10005),
                           ({"GroupId": "nope", "Member_Account": ["bot1"]}, 10010)):
            assert (await tim.call(f"{AV}/{command}", body))["ErrorCode"] == code, body


async def test_owner_sets_marks_through_the_gateway_and_the_room_hears(room) -> None:
    live, app, tim, group_id = room
    async with live.connect(app, "owner") as owner, live.connect(app, "u0") as viewer, \
            live.connect(app, "u1") as other:
        for session in (owner, viewer, other):
            await session.join_group(group_id)
        reply = await owner.request("modify_marks", GroupId=group_id, CommandType=1,
                                    MemberList=[{"Member_Account": "u0", "Marks": [1000]}])
        assert reply["MemberList"] == [{"Member_Account": "u0", "Marks": [1000]}]
        assert await listed(tim, group_id, Mark=1000) == ["u0"]
        for session in (owner, viewer, other):
            event = await next_event(session, "marks_changed")
            assert event["GroupId"] == group_id
            assert event["MemberList"] == [{"Member_Account": "u0", "Marks": [1000]}]
        with pytest.raises(GatewayError) as refused:
            await viewer.request("modify_marks", GroupId=group_id, CommandType=1,
                                 MemberList=[{"Member_Account": "u1", "Marks": [1000]}])
        assert refused.value.code == 10007
        with pytest.raises(GatewayError) as refused:
            await owner.request("modify_marks", GroupId=group_id, CommandType=1,
                                MemberList=[{"Member_Account": "u1", "Marks": [500]}])
        assert refused.value.code == 10004
        # REST changes reach the room too
        await modify(tim, group_id, 2, ("u0", [1000]))
        event = await next_event(viewer, "marks_changed")
        assert event["MemberList"] == [{"Member_Account": "u0", "Marks": []}]
