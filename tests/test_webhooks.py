"""Webhooks, delivered to a real local HTTP receiver, and the room's pushed events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time

import pytest

from opentim.domain.apps import App
from opentim.events import MemberStateChanged
from opentim.webhooks.delivery import sign
from tests.helpers import (
    LiveServer,
    Receiver,
    create_group,
    import_accounts,
    live_server,
    live_servers,
    next_event,
    sessions,
)

SVC = "group_open_http_svc"
AV = "group_open_avchatroom_http_svc"
MEMBER_STATE = "Group.CallbackOnMemberStateChange"
STATE = "State.StateChange"
JOIN = "Group.CallbackAfterNewMemberJoin"
EXIT = "Group.CallbackAfterMemberExit"


async def webhook_app(live: LiveServer, receiver: Receiver, **settings) -> App:
    return await live.new_app(rate_limit=0, callback_url=receiver.url, **settings)


def causes(server: LiveServer) -> list[tuple[str, bool, str]]:
    """(account, online, cause) of the member-state events one server emitted."""
    return [(e.account, e.online, e.cause) for e in server.events
            if isinstance(e, MemberStateChanged)]


def test_sign_matches_tencents_example() -> None:
    assert sign("xxxxyyyy", 1669872112) == \
        "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"


async def test_add_and_delete_member_callbacks(live: LiveServer, receiver: Receiver) -> None:
    app = await webhook_app(live, receiver)
    async with live.client(app) as tim:
        await import_accounts(tim, "o", "a", "b")
        group_id = await create_group(tim, "Public", Owner_Account="o")
        await tim.ok(f"{SVC}/add_group_member", {"GroupId": group_id, "MemberList": [
            {"Member_Account": "a"}, {"Member_Account": "b"}]})
        await tim.ok(f"{SVC}/delete_group_member",
                     {"GroupId": group_id, "MemberToDel_Account": ["a"]})
    joined, = await receiver.wait_for(1, JOIN)
    exited, = await receiver.wait_for(1, EXIT)
    assert joined.query == {"SdkAppid": str(app.sdkappid), "CallbackCommand": JOIN,
                            "contenttype": "json", "ClientIP": "127.0.0.1",
                            "OptPlatform": "RESTAPI"}
    body = joined.body
    assert body["GroupId"] == group_id and body["Type"] == "Public"
    assert body["JoinType"] == "Invited" and body["Operator_Account"] == "administrator"
    assert body["NewMemberList"] == [{"Member_Account": "a"}, {"Member_Account": "b"}]
    assert abs(body["EventTime"] / 1000 - time.time()) < 30
    assert exited.body["ExitType"] == "Kicked"
    assert exited.body["ExitMemberList"] == [{"Member_Account": "a"}]


async def test_imports_are_silent(live: LiveServer, receiver: Receiver) -> None:
    app = await webhook_app(live, receiver)
    async with live.client(app) as tim:
        await tim.ok("im_open_login_svc/account_import", {"UserID": "o"})
        await import_accounts(tim, "a", "b")
        group_id = (await tim.ok(f"{SVC}/import_group", {
            "Type": "Public", "Name": "old", "Owner_Account": "o",
            "CreateTime": int(time.time()) - 3600}))["GroupId"]
        await tim.ok(f"{SVC}/import_group_msg", {"GroupId": group_id, "MsgList": [{
            "From_Account": "o", "SendTime": int(time.time()) - 60, "Random": 1,
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]}]})
        await tim.ok(f"{SVC}/import_group_member", {"GroupId": group_id,
                                                    "MemberList": [{"Member_Account": "a"}]})
        await asyncio.sleep(0.3)
        assert receiver.calls == []
        assert live.events == []
        # the non-silent counterpart, side by side
        await tim.ok(f"{SVC}/add_group_member", {"GroupId": group_id,
                                                 "MemberList": [{"Member_Account": "b"}]})
    await receiver.wait_for(1, JOIN)
    assert receiver.commands() == [JOIN]


async def test_av_member_state_and_login_state(live: LiveServer, receiver: Receiver) -> None:
    app = await webhook_app(live, receiver)
    async with live.client(app) as tim:
        await import_accounts(tim, "u1")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "u1", platform="Android") as phone, \
                live.connect(app, "u1", platform="iOS") as pad:
            await phone.join_group(group_id)
            await pad.join_group(group_id)  # same user: counted once
            await phone.quit_group(group_id)
            await pad.quit_group(group_id)
            await pad.logout()
            await pad.wait_closed()
    states = await receiver.wait_for(2, MEMBER_STATE)
    assert [(s.body["EventType"], s.body["EventCause"]) for s in states] == [
        ("Online", "Join"), ("Offline", "Quit")]
    assert set(states[0].query) == {"SdkAppid", "CallbackCommand", "contenttype"}
    assert states[0].body["MemberList"] == [{"Member_Account": "u1"}]
    assert states[0].body["Type"] == "AVChatRoom" and isinstance(states[0].body["EventTime"], str)
    logins = await receiver.wait_for(4, STATE)
    infos = [(c.body["Info"]["Action"], c.body["Info"]["Reason"], c.query["OptPlatform"])
             for c in logins]
    assert sorted(infos) == sorted([("Login", "Register", "Android"), ("Login", "Register", "IOS"),
                                    ("Logout", "Unregister", "IOS"),
                                    ("Disconnect", "LinkClose", "Android")])
    assert all(c.body["Info"]["To_Account"] == "u1" for c in logins)
    assert logins[0].query["ClientIP"] == "127.0.0.1"


async def test_heartbeat_interrupt_and_recover(presence_backend, tmp_path,
                                               receiver: Receiver) -> None:
    async with live_server(f"sqlite:///{tmp_path}/hb.db", presence_backend,
                           heartbeat_timeout=0.5) as live:
        app = await webhook_app(live, receiver)
        async with live.client(app) as tim:
            await import_accounts(tim, "u1")
            group_id = await create_group(tim, "AVChatRoom")
            async with live.connect(app, "u1", heartbeat_interval=0) as session:
                await session.join_group(group_id)
                await asyncio.wait_for(session.wait_closed(), 5)
            async with live.connect(app, "u1") as session:
                await session.join_group(group_id)
                states = await receiver.wait_for(3, MEMBER_STATE)
    assert [s.body["EventCause"] for s in states] == ["Join", "HeartbeatInterrupt",
                                                      "HeartbeatRecover"]
    timeouts = [c for c in receiver.of(STATE) if c.body["Info"]["Reason"] == "TimeOut"]
    assert len(timeouts) == 1 and timeouts[0].body["Info"]["Action"] == "Disconnect"


async def test_heartbeat_recover_through_another_process(tmp_path, receiver: Receiver) -> None:
    """Timed out on server A, back through server B within the window: B reports the
    recovery, because the interruption is remembered in the shared Redis."""
    async with live_servers(2, f"sqlite:///{tmp_path}/two.db", heartbeat_timeout=0.5) as (a, b):
        app = await webhook_app(a, receiver, callback_commands=frozenset({MEMBER_STATE}))
        await b.runtime.apps.refresh()
        async with a.client(app) as tim:
            await import_accounts(tim, "u1")
            group_id = await create_group(tim, "AVChatRoom")
        async with a.connect(app, "u1", heartbeat_interval=0) as session:
            await session.join_group(group_id)
            await asyncio.wait_for(session.wait_closed(), 5)
        await receiver.wait_for(2, MEMBER_STATE)
        async with b.connect(app, "u1") as session:
            await session.join_group(group_id)
            states = await receiver.wait_for(3, MEMBER_STATE)
        assert [(s.body["EventType"], s.body["EventCause"]) for s in states] == [
            ("Online", "Join"), ("Offline", "HeartbeatInterrupt"), ("Online", "HeartbeatRecover")]
        assert states[2].body["MemberList"] == [{"Member_Account": "u1"}]
        assert causes(a) == [("u1", True, "Join"), ("u1", False, "HeartbeatInterrupt")]
        assert causes(b)[0] == ("u1", True, "HeartbeatRecover")


async def test_signed_deliveries(live: LiveServer, receiver: Receiver) -> None:
    app = await webhook_app(live, receiver, callback_token="s3cret")
    async with live.client(app) as tim:
        await import_accounts(tim, "u1")
        async with live.connect(app, "u1"):
            pass
    call = (await receiver.wait_for(1, STATE))[0]
    request_time = int(call.query["RequestTime"])
    assert abs(request_time - time.time()) < 30
    assert call.query["Sign"] == hashlib.sha256(f"s3cret{request_time}".encode()).hexdigest()


async def test_callback_switches(live: LiveServer, receiver: Receiver) -> None:
    app = await webhook_app(live, receiver, callback_commands=frozenset({MEMBER_STATE}))
    async with live.client(app) as tim:
        await import_accounts(tim, "u1", "o")
        group_id = await create_group(tim, "AVChatRoom")
        public = await create_group(tim, "Public")
        await tim.ok(f"{SVC}/add_group_member", {"GroupId": public,
                                                 "MemberList": [{"Member_Account": "o"}]})
        async with live.connect(app, "u1") as session:
            await session.join_group(group_id)
            await receiver.wait_for(1, MEMBER_STATE)
    await asyncio.sleep(0.2)
    assert set(receiver.commands()) == {MEMBER_STATE}


async def test_retries_after_receiver_errors(live: LiveServer, receiver: Receiver) -> None:
    app = await webhook_app(live, receiver)
    receiver.statuses = [500, 503]
    async with live.client(app) as tim:
        await import_accounts(tim, "u1")
        async with live.connect(app, "u1", heartbeat_interval=0):
            pass
    await receiver.wait_for(2, STATE)
    await live.runtime.webhooks.drain()
    metrics = live.runtime.webhooks.metrics
    assert metrics[(app.sdkappid, "retried")] == 2
    assert metrics[(app.sdkappid, "sent")] == 2
    assert metrics[(app.sdkappid, "failed")] == 0
    assert "outcome=\"retried\"} 2" in live.runtime.webhooks.prometheus()


async def test_failures_are_counted(presence_backend, tmp_path, receiver: Receiver) -> None:
    async with live_server(f"sqlite:///{tmp_path}/f.db", presence_backend,
                           webhook_retries=1) as live:
        app = await webhook_app(live, receiver)
        receiver.statuses = [500] * 4
        async with live.client(app) as tim:
            await import_accounts(tim, "u1")
            async with live.connect(app, "u1", heartbeat_interval=0):
                pass
        await asyncio.sleep(0.1)
        await live.runtime.webhooks.drain()
        metrics = live.runtime.webhooks.metrics
        assert metrics[(app.sdkappid, "failed")] == 2  # Login and Disconnect
        assert receiver.calls == []


async def test_per_group_ordering(live: LiveServer, receiver: Receiver) -> None:
    receiver.delay = 0.01  # a slow receiver must not reorder a group's callbacks
    app = await webhook_app(live, receiver, callback_commands=frozenset({MEMBER_STATE}))
    async with live.client(app) as tim:
        await import_accounts(tim, "u1")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "u1") as session:
            for _ in range(10):
                await session.join_group(group_id)
                await session.quit_group(group_id)
    states = await receiver.wait_for(20, MEMBER_STATE)
    assert [s.body["EventType"] for s in states] == ["Online", "Offline"] * 10
    times = [int(s.body["EventTime"]) for s in states]
    assert times == sorted(times)


async def test_full_queue_drops_and_counts(presence_backend, tmp_path,
                                           receiver: Receiver) -> None:
    receiver.delay = 0.2
    async with live_server(f"sqlite:///{tmp_path}/q.db", presence_backend,
                           webhook_queue_size=4) as live:
        app = await webhook_app(live, receiver, callback_commands=frozenset({MEMBER_STATE}))
        async with live.client(app) as tim:
            await import_accounts(tim, "u1")
            group_id = await create_group(tim, "AVChatRoom")
            async with live.connect(app, "u1") as session:
                started = time.monotonic()
                for _ in range(10):
                    await session.join_group(group_id)
                    await session.quit_group(group_id)
                # delivery never slowed the connection down
                assert time.monotonic() - started < 2.0
        await live.runtime.webhooks.drain()
        metrics = live.runtime.webhooks.metrics
        dropped, sent = metrics[(app.sdkappid, "dropped")], metrics[(app.sdkappid, "sent")]
        assert dropped > 0 and dropped + sent == 20
        assert f'outcome="dropped"}} {dropped}' in live.runtime.webhooks.prometheus()


async def test_room_hears_coalesced_joins_and_leaves(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        users = [f"v{i}" for i in range(20)]
        await import_accounts(tim, "host", *users)
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "host") as host:
            await host.join_group(group_id)
            async with sessions(live, app, users, group_id):
                # The host's own join may come first (the operator's connection is
                # included); the others' joins come coalesced, each once.
                joined: list[str] = []
                while len(joined) < 20:
                    batch = (await next_event(host, "members_changed"))["Online"]
                    joined += [a for a in batch if a != "host"]
                assert sorted(joined) == sorted(users)
            left = []
            while len(left) < 20:
                left += (await next_event(host, "members_changed"))["Offline"]
            assert sorted(left) == sorted(users)


@pytest.mark.parametrize("waves", [3])
async def test_batches_are_at_most_one_per_interval(live: LiveServer, waves: int) -> None:
    """Each wave of joins starts only once the previous wave's last join was pushed, so
    every wave needs a batch of its own: at least ``waves`` batches, each flushed a full
    interval (1 s) after the one before."""
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        users = [f"w{i}" for i in range(waves * 10)]
        await import_accounts(tim, "host", *users)
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "host") as host:
            await host.join_group(group_id)
            stamps: list[int] = []
            seen: set[str] = set()
            async with contextlib.AsyncExitStack() as stack:
                for wave in range(waves):
                    wave_users = users[wave * 10:(wave + 1) * 10]
                    await stack.enter_async_context(sessions(live, app, wave_users, group_id))
                    while not seen >= set(wave_users):
                        event = await next_event(host, "members_changed")
                        stamps.append(event["EventTime"])
                        seen.update(event["Online"])
            assert seen - {"host"} == set(users)
            assert len(stamps) >= waves, stamps
            gaps = [b - a for a, b in itertools.pairwise(stamps)]
            assert all(gap >= 950 for gap in gaps), gaps  # ms, server-side flush times


async def test_lapsed_robots_go_offline_with_a_callback(presence_backend, tmp_path,
                                                        receiver: Receiver) -> None:
    async with live_server(f"sqlite:///{tmp_path}/r.db", presence_backend,
                           mark500_ttl=0.5, sweep_interval=0.2) as live:
        app = await webhook_app(live, receiver, callback_commands=frozenset({MEMBER_STATE}))
        async with live.client(app) as tim:
            await import_accounts(tim, "bot")
            group_id = await create_group(tim, "AVChatRoom")
            await tim.ok("group_open_avchatroom_http_svc/add_robots",
                         {"GroupId": group_id, "Member_Account": ["bot"]})
            states = await receiver.wait_for(2, MEMBER_STATE, seconds=10)
            assert [s.body["EventType"] for s in states] == ["Online", "Offline"]
            assert states[1].body["MemberList"] == [{"Member_Account": "bot"}]
            reply = await tim.ok("group_open_http_svc/get_online_member_num",
                                 {"GroupId": group_id})
            assert reply["OnlineMemberNum"] == 0


async def test_retries_are_signed_afresh(live: LiveServer, receiver: Receiver) -> None:
    app = await webhook_app(live, receiver, callback_token="tok",
                            callback_commands=frozenset({STATE}))
    receiver.statuses = [500]
    live.clock.pinned = float(int(time.time()))
    async with live.client(app) as tim:
        await import_accounts(tim, "u1")
    async with live.connect(app, "u1", heartbeat_interval=0):
        while receiver.hits == 0:
            await asyncio.sleep(0.01)
        live.clock.advance(100)  # the retry happens "100 s later"
        call = (await receiver.wait_for(1, STATE))[0]
    assert int(call.query["RequestTime"]) == int(live.clock.pinned)
    assert call.query["Sign"] == sign("tok", int(live.clock.pinned))


async def test_a_broken_url_does_not_stop_delivery(live: LiveServer, receiver: Receiver) -> None:
    import dataclasses

    app = await webhook_app(live, receiver, callback_commands=frozenset({STATE}))
    broken = dataclasses.replace(app, callback_url="http://[::1/x")
    await live.runtime.store.apps.save(broken, now=0)
    await live.runtime.apps.refresh()
    async with live.client(app) as tim:
        await import_accounts(tim, "u1")
    async with live.connect(app, "u1", heartbeat_interval=0):
        pass
    async with asyncio.timeout(10):
        await live.runtime.webhooks.drain()
    assert live.runtime.webhooks.metrics[(app.sdkappid, "failed")] == 2
    await live.runtime.store.apps.save(app, now=0)
    await live.runtime.apps.refresh()
    async with live.connect(app, "u1", heartbeat_interval=0):
        pass
    await receiver.wait_for(2, STATE)


async def test_robots_come_and_go_with_callbacks(live: LiveServer, receiver: Receiver) -> None:
    app = await webhook_app(live, receiver, callback_commands=frozenset({MEMBER_STATE}))
    async with live.client(app) as tim:
        await import_accounts(tim, "bot")
        group_id = await create_group(tim, "AVChatRoom")
        body = {"GroupId": group_id, "Member_Account": ["bot"]}
        await tim.ok("group_open_avchatroom_http_svc/add_robots", body)
        await tim.ok("group_open_avchatroom_http_svc/del_robots", body)
    states = await receiver.wait_for(2, MEMBER_STATE)
    assert [(s.body["EventType"], s.body["EventCause"]) for s in states] == [
        ("Online", "Join"), ("Offline", "Quit")]


async def test_lapsed_500_goes_offline_once_when_noticed_before_the_sweep(
        presence_backend, tmp_path, receiver: Receiver) -> None:
    """A lapsed mark 500 found first by the account's join, or by a mark call that fails,
    is reported Offline there (before the new Online), and the sweep does not repeat it."""
    async with live_server(f"sqlite:///{tmp_path}/lapse.db", presence_backend,
                           sweep_interval=3600) as live:  # no background sweep meanwhile
        app = await webhook_app(live, receiver, callback_commands=frozenset({MEMBER_STATE}))
        async with live.client(app) as tim:
            await import_accounts(tim, "bot", "vip", "u1")
            group_id = await create_group(tim, "AVChatRoom")
            await tim.ok(f"{AV}/add_robots", {"GroupId": group_id, "Member_Account": ["bot"]})
            await tim.ok(f"{AV}/modify_user_info", {
                "GroupId": group_id, "CommandType": 1,
                "MemberList": [{"Member_Account": "vip", "Marks": [500]}]})
            await receiver.wait_for(2, MEMBER_STATE)
            live.clock.advance(live.runtime.settings.mark500_ttl + 1)
            async with live.connect(app, "bot") as session:
                await session.join_group(group_id)  # notices its own lapsed 500
                reply = await tim.call(f"{AV}/modify_user_info", {  # notices vip's
                    "GroupId": group_id, "CommandType": 1,
                    "MemberList": [{"Member_Account": "u1", "Marks": [1000]}]})
                assert reply["ErrorCode"] == 10004
                await session.quit_group(group_id)
            states = await receiver.wait_for(6, MEMBER_STATE)
            now = live.clock()
            assert await live.runtime.presence.sweep(now) == []
    assert [(s.body["MemberList"][0]["Member_Account"], s.body["EventType"],
             s.body["EventCause"]) for s in states] == [
        ("bot", "Online", "Join"), ("vip", "Online", "Join"),
        ("bot", "Offline", "Quit"), ("bot", "Online", "Join"),
        ("vip", "Offline", "Quit"), ("bot", "Offline", "Quit")]
    await asyncio.sleep(0.2)
    assert len(receiver.of(MEMBER_STATE)) == 6
