"""Tencent's unmodified web SDK (@tencentcloud/chat, pinned in tests/sdk) against OpenTIM.

Each test runs tests/sdk/driver.mjs under Node.js: the SDK with ``proxyServer`` pointed at
a live server's ``/sdk``, driven one call at a time over the driver's stdin, its answers
and SDK events read from its stdout. Effects are checked through REST and through
OpenTIM's own gateway client, on both presence backends. A headless-Chromium test loads
the SDK's browser build in a page and does the core path.

Needs ``node`` and ``npm ci`` in tests/sdk (and Chromium for the browser test); without
them the tests skip, or fail with OPENTIM_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from TLSSigAPIv2 import TLSSigAPIv2

from opentim import errors
from opentim.domain.apps import App
from opentim.events import MemberStateChanged
from tests.helpers import (
    LiveServer,
    Receiver,
    create_group,
    eventually,
    import_accounts,
    live_server,
    members,
    unavailable,
)

SDK_DIR = Path(__file__).parent / "sdk"
DRIVER = SDK_DIR / "driver.mjs"
SDK_BUILD = SDK_DIR / "node_modules" / "@tencentcloud" / "chat" / "index.js"
CHROMIUM = os.environ.get("OPENTIM_TEST_CHROMIUM", "/usr/bin/chromium")
SVC = "group_open_http_svc"
MEMBER_STATE = "Group.CallbackOnMemberStateChange"


def require_sdk() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("Node.js", "no `node` on PATH (the web SDK tests need Node.js 20)")
    if not SDK_BUILD.exists():
        unavailable("@tencentcloud/chat", f"{SDK_BUILD} is missing: run `npm ci` in {SDK_DIR}")
    assert node is not None
    return node


def sig(app: App, user: str) -> str:
    return TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(user)


def text(words: str) -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": words}}]


class Sdk:
    """One SDK instance in its own Node.js process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if "event" in doc:
                await self.events.put(doc)
            elif (answer := self._answers.pop(doc.get("id"), None)) is not None:
                answer.set_result(doc)

    async def call(self, call: str, args: Any = None, *, argv: list[Any] | None = None,
                   timeout: float = 15.0) -> dict[str, Any]:
        """The SDK call's outcome: {"ok": True, "data": …} or {"ok": False, "code": …}."""
        self._next += 1
        answer = self._answers[self._next] = asyncio.get_running_loop().create_future()
        cmd: dict[str, Any] = {"id": self._next, "call": call}
        if argv is not None:
            cmd["argv"] = argv
        elif args is not None:
            cmd["args"] = args
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(answer, timeout)

    async def ok(self, call: str, args: Any = None, **kwargs: Any) -> Any:
        result = await self.call(call, args, **kwargs)
        assert result["ok"], (call, result)
        return result.get("data")

    async def event(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next SDK event called ``name`` (onMessageReceived, kickedOut, …)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event["event"] == name:
                    return event

    async def message(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message of a MESSAGE_RECEIVED event."""
        return (await self.event("onMessageReceived", timeout))["data"][0]

    async def login(self, app: App, user: str) -> Any:
        data = await self.ok("login", {"userID": user, "userSig": sig(app, user)})
        await self.event("sdkStateReady")
        return data


@contextlib.asynccontextmanager
async def sdk(live: LiveServer, app: App) -> AsyncIterator[Sdk]:
    node = require_sdk()
    proc = await asyncio.create_subprocess_exec(
        node, str(DRIVER), live.url.replace("http://", "ws://") + "/sdk", str(app.sdkappid),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, cwd=SDK_DIR)
    client = Sdk(proc)
    try:
        yield client
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        client._reader.cancel()


async def online(live: LiveServer, app: App, group_id: str) -> list[str]:
    async with live.client(app) as tim:
        return [m["Member_Account"] for m in (await members(tim, group_id))[0]]


async def setup(live: LiveServer, app: App, *users: str) -> str:
    """Accounts (and host) imported, an AVChatRoom owned by host: its GroupId."""
    async with live.client(app) as tim:
        await import_accounts(tim, "host", *users)
        return await create_group(tim, "AVChatRoom", Owner_Account="host")


# --- logging in ---------------------------------------------------------------------------


async def test_login_logout_and_presence(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice")
    async with sdk(live, app) as alice:
        data = await alice.login(app, "alice")
        assert data["tinyID"] and data["a2Key"]
        async with live.client(app) as tim:
            state = await tim.ok("openim/query_online_status", {"To_Account": ["alice"]})
            assert state["QueryResult"][0]["Status"] == "Online"
            await alice.ok("logout")
            state = await tim.ok("openim/query_online_status", {"To_Account": ["alice"]})
            assert state["QueryResult"][0]["Status"] == "Offline"


async def test_a_bad_usersig_fails_the_login_with_its_code(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice")
    async with sdk(live, app) as alice:
        bad = await alice.call("login", {"userID": "alice", "userSig": "not-a-sig"})
        assert (bad["ok"], bad["code"]) == (False, 70003)
        wrong_user = await alice.call("login", {"userID": "alice", "userSig": sig(app, "bob")})
        assert (wrong_user["ok"], wrong_user["code"]) == (False, 70013)
        other_key = TLSSigAPIv2(app.sdkappid, "0" * 64).gen_sig("alice")
        forged = await alice.call("login", {"userID": "alice", "userSig": other_key})
        assert (forged["ok"], forged["code"]) == (False, 70009)
        await alice.login(app, "alice")  # the same socket, now a good sig


async def test_heartbeats_keep_the_user_online(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice")
    # The live server's heartbeat timeout is 30 s; the SDK pings every few seconds.
    async with sdk(live, app) as alice:
        await alice.login(app, "alice")
        await alice.ok("joinGroup", {"groupID": group_id})
        await asyncio.sleep(8)
        assert await online(live, app, group_id) == ["alice"]


# --- groups -------------------------------------------------------------------------------


async def test_join_lists_and_quit_an_avchatroom(live: LiveServer, receiver: Receiver) -> None:
    app = await live.new_app(rate_limit=0, callback_url=receiver.url)
    group_id = await setup(live, app, "alice")
    async with sdk(live, app) as alice, live.connect(app, "host") as host:
        await alice.login(app, "alice")
        joined = await alice.ok("joinGroup", {"groupID": group_id})
        assert joined["status"] == "JoinedSuccess"
        assert joined["group"]["type"] == "AVChatRoom"
        assert await online(live, app, group_id) == ["alice"]
        states = await receiver.wait_for(1, MEMBER_STATE)
        assert states[0].body["EventType"] == "Online"
        assert states[0].body["MemberList"] == [{"Member_Account": "alice"}]

        profile = (await alice.ok("getGroupProfile", {"groupID": group_id}))["group"]
        assert (profile["groupID"], profile["type"], profile["ownerID"]) == \
            (group_id, "AVChatRoom", "host")

        await host.join_group(group_id)
        listed = await alice.ok("getGroupMemberList", {"groupID": group_id, "count": 100})
        assert {m["userID"] for m in listed["memberList"]} == {"alice", "host"}

        await alice.ok("quitGroup", argv=[group_id])
        assert await online(live, app, group_id) == ["host"]
        states = await receiver.wait_for(3, MEMBER_STATE)
        assert [s.body["EventType"] for s in states] == ["Online", "Online", "Offline"]


async def test_joining_a_missing_group_fails_with_10010(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice")
    async with sdk(live, app) as alice:
        await alice.login(app, "alice")
        refused = await alice.call("joinGroup", {"groupID": "no-such-group"})
        assert (refused["ok"], refused["code"]) == (False, 10010)


async def test_online_count_and_marks(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice")
    async with sdk(live, app) as alice, sdk(live, app) as host, live.client(app) as tim:
        await alice.login(app, "alice")
        await host.login(app, "host")
        await alice.ok("joinGroup", {"groupID": group_id})
        await host.ok("joinGroup", {"groupID": group_id})
        count = await alice.ok("getGroupOnlineMemberCount", argv=[group_id])
        assert count["memberCount"] == 2
        # the owner marks a viewer: REST get_members filters by it
        marked = await host.ok("markGroupMemberList", {
            "groupID": group_id, "userIDList": ["alice"], "markType": 1000,
            "enableMark": True})
        assert marked["successUserIDList"] == ["alice"]
        rows, _ = await members(tim, group_id, Mark=1000)
        assert [r["Member_Account"] for r in rows] == ["alice"]
        filtered = await host.ok("getGroupMemberList", {"groupID": group_id, "count": 100,
                                                        "filter": 1000})
        assert [m["userID"] for m in filtered["memberList"]] == ["alice"]
        # a viewer may not mark
        refused = await alice.call("markGroupMemberList", {
            "groupID": group_id, "userIDList": ["host"], "markType": 1000,
            "enableMark": True})
        assert (refused["ok"], refused["code"]) == (False, errors.NoPermission.code)


async def test_roster_groups_are_listed_and_not_joined_by_the_sdk(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice", "bob")
    async with live.client(app) as tim:
        mine = await create_group(tim, "Public", Owner_Account="host",
                                  MemberList=[{"Member_Account": "alice"}])
        other = await create_group(tim, "Public", Owner_Account="host")
    async with sdk(live, app) as alice, live.connect(app, "bob") as bob:
        await alice.login(app, "alice")
        listed = await alice.ok("getGroupList")
        assert [g["groupID"] for g in listed["groupList"]] == [mine]
        refused = await alice.call("joinGroup", {"groupID": other})
        assert (refused["ok"], refused["code"]) == (False, errors.NoPermission.code)
        # a member hears the group without joining it
        async with live.client(app) as tim:
            await tim.ok(f"{SVC}/send_group_msg", {"GroupId": mine, "From_Account": "host",
                                                   "Random": 9, "MsgBody": text("members")})
        heard = await alice.message()
        assert (heard["to"], heard["payload"]["text"]) == (mine, "members")
        del bob


async def test_a_reconnecting_sdk_is_put_back_in_its_rooms(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice")
    async with sdk(live, app) as alice:
        await alice.login(app, "alice")
        await alice.ok("joinGroup", {"groupID": group_id})
        # the server drops every connection (as when its presence lease is lost)
        await live.asgi.state.rooms.close_all(4009, "presence lease lost: reconnect")

        async def back() -> bool:  # online, offline (the old socket), online again
            changes = [e.online for e in live.events if isinstance(e, MemberStateChanged)
                       and e.group_id == group_id]
            return changes == [True, False, True]

        await eventually(back, "alice back in the room")
        assert await online(live, app, group_id) == ["alice"]
        async with live.client(app) as tim:
            await tim.ok(f"{SVC}/send_group_msg", {"GroupId": group_id, "From_Account": "host",
                                                   "Random": 1, "MsgBody": text("still here?")})
        heard = await alice.message()
        assert heard["payload"]["text"] == "still here?"


async def test_logout_then_login_on_the_same_socket(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice")
    async with sdk(live, app) as alice:
        await alice.login(app, "alice")
        await alice.ok("joinGroup", {"groupID": group_id})
        await alice.ok("logout")
        assert await online(live, app, group_id) == []  # logging out leaves every room
        await alice.login(app, "alice")
        assert await online(live, app, group_id) == []  # and a new login is in none
        await alice.ok("joinGroup", {"groupID": group_id})
        assert await online(live, app, group_id) == ["alice"]


async def test_a_dismissed_room_is_announced_and_left(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice")
    async with sdk(live, app) as alice, live.client(app) as tim:
        await alice.login(app, "alice")
        await alice.ok("joinGroup", {"groupID": group_id})
        await tim.ok(f"{SVC}/destroy_group", {"GroupId": group_id})
        notice = await alice.message()
        assert (notice["type"], notice["payload"]["operationType"]) == \
            ("TIMGroupSystemNoticeElem", 5)
        assert notice["payload"]["groupProfile"]["groupID"] == group_id, notice


async def test_a_banned_viewer_is_taken_out_and_told(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice")
    async with sdk(live, app) as alice, live.client(app) as tim:
        await alice.login(app, "alice")
        await alice.ok("joinGroup", {"groupID": group_id})
        await tim.ok(f"{SVC}/ban_group_member", {"GroupId": group_id,
                                                 "Members_Account": ["alice"],
                                                 "Duration": 600})
        notice = await alice.message()
        assert (notice["type"], notice["payload"]["operationType"]) == \
            ("TIMGroupSystemNoticeElem", 4)
        assert await online(live, app, group_id) == []
        # the SDK still thinks it is in the room (joinGroup answers AlreadyInGroup by
        # itself) until it quits it; joining again is then refused
        await alice.ok("quitGroup", argv=[group_id])
        refused = await alice.call("joinGroup", {"groupID": group_id})
        assert (refused["ok"], refused["code"]) == (False, errors.NoPermission.code), refused


async def test_one_web_connection_too_many_kicks_the_oldest(presence_backend: str,
                                                           tmp_path: Path) -> None:
    async with live_server(f"sqlite:///{tmp_path}/live.db", presence_backend,
                           max_web_connections_per_account=1) as live:
        app = await live.new_app(rate_limit=0)
        await setup(live, app, "alice")
        async with sdk(live, app) as first, sdk(live, app) as second:
            await first.login(app, "alice")
            await second.login(app, "alice")
            kicked = await first.event("kickedOut")
            assert kicked["data"]["type"] == "multipleAccount"
            sent = await second.ok("sendText", {"to": "alice", "type": "C2C", "text": "me"})
            assert sent["message"]["status"] == "success"


# --- messages -----------------------------------------------------------------------------


async def test_group_messages_both_ways(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice", "bob")
    async with sdk(live, app) as alice, sdk(live, app) as bob, \
            live.connect(app, "host") as host, live.client(app) as tim:
        await alice.login(app, "alice")
        await bob.login(app, "bob")
        await alice.ok("joinGroup", {"groupID": group_id})
        await bob.ok("joinGroup", {"groupID": group_id})
        await host.join_group(group_id)

        # SDK -> gateway client and the other SDK client
        sent = await alice.ok("sendText", {"to": group_id, "type": "GROUP", "text": "hi all"})
        assert sent["message"]["status"] == "success"
        got = await host.next_message()
        assert (got["From_Account"], got["MsgBody"]) == ("alice", text("hi all"))
        assert got["MsgSeq"] == sent["message"]["sequence"]
        heard = await bob.message()
        assert (heard["from"], heard["to"], heard["payload"]["text"]) == \
            ("alice", group_id, "hi all")

        # gateway client -> SDK
        await host.send_group_message(group_id, text("welcome"), MsgPriority="High")
        heard = await alice.message()
        assert (heard["from"], heard["payload"]["text"], heard["conversationType"]) == \
            ("host", "welcome", "GROUP")
        assert heard["priority"] == "High"

        # REST send_group_msg -> SDK
        await tim.ok(f"{SVC}/send_group_msg", {"GroupId": group_id, "From_Account": "host",
                                               "Random": 7, "MsgBody": text("from REST")})
        heard = await alice.message()
        assert (heard["from"], heard["payload"]["text"]) == ("host", "from REST")


async def test_sending_to_a_group_as_a_non_member_is_refused(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice")
    async with live.client(app) as tim:
        group_id = await create_group(tim, "Public", Owner_Account="host")
    async with sdk(live, app) as alice:
        await alice.login(app, "alice")
        refused = await alice.call("sendText", {"to": group_id, "type": "GROUP", "text": "x"})
        assert (refused["ok"], refused["code"]) == (False, errors.NoPermission.code)
        # an AVChatRoom not joined: the SDK refuses by itself (2101), nothing is sent
        room = await setup(live, app)
        refused = await alice.call("sendText", {"to": room, "type": "GROUP", "text": "x"})
        assert refused["ok"] is False


async def test_c2c_messages_both_ways(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice", "bob", "carol")
    async with sdk(live, app) as alice, sdk(live, app) as bob, \
            live.connect(app, "carol") as carol, live.client(app) as tim:
        await alice.login(app, "alice")
        await bob.login(app, "bob")

        # SDK -> SDK
        sent = await alice.ok("sendText", {"to": "bob", "type": "C2C", "text": "hi bob"})
        assert sent["message"]["status"] == "success"
        heard = await bob.message()
        assert (heard["from"], heard["to"], heard["payload"]["text"], heard["conversationType"]) \
            == ("alice", "bob", "hi bob", "C2C")

        # SDK -> gateway client
        await alice.ok("sendText", {"to": "carol", "type": "C2C", "text": "hi carol"})
        got = await carol.next_message()
        assert (got["event"], got["From_Account"], got["MsgBody"]) == \
            ("c2c_message", "alice", text("hi carol"))

        # gateway client -> SDK
        await carol.send_c2c_message("alice", text("hello alice"))
        heard = await alice.message()
        assert (heard["from"], heard["payload"]["text"]) == ("carol", "hello alice")

        # REST openim/sendmsg -> SDK
        await tim.ok("openim/sendmsg", {"From_Account": "carol", "To_Account": "alice",
                                        "MsgRandom": 5, "MsgBody": text("from REST")})
        heard = await alice.message()
        assert (heard["from"], heard["payload"]["text"]) == ("carol", "from REST")

        # kept like any other message: REST reads the conversation
        roam = await tim.ok("openim/admin_getroammsg", {
            "Operator_Account": "alice", "Peer_Account": "bob", "MaxCnt": 10,
            "MinTime": 0, "MaxTime": int(time.time()) + 60})
        assert [m["MsgBody"] for m in roam["MsgList"]] == [text("hi bob")]


async def test_c2c_to_a_missing_account_is_refused(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice")
    async with sdk(live, app) as alice:
        await alice.login(app, "alice")
        refused = await alice.call("sendText", {"to": "nobody", "type": "C2C", "text": "x"})
        assert (refused["ok"], refused["code"]) == (False, errors.OpenimToAccountInvalid.code)


# --- kicks and profiles -------------------------------------------------------------------


async def test_rest_kick_kicks_the_sdk_out(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice")
    async with sdk(live, app) as alice, live.client(app) as tim:
        await alice.login(app, "alice")
        await alice.ok("joinGroup", {"groupID": group_id})
        await tim.ok("im_open_login_svc/kick", {"UserID": "alice"})
        kicked = await alice.event("kickedOut")
        assert kicked["data"]["type"] == "REST_API_Kick"

        async def gone() -> bool:
            return await online(live, app, group_id) == []

        await eventually(gone, "alice left the room")


async def test_my_profile_is_the_portrait(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice")
    async with sdk(live, app) as alice, live.client(app) as tim:
        await tim.ok("profile/portrait_set", {"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            {"Tag": "Tag_Profile_IM_SelfSignature", "Value": "hello"}]})
        await alice.login(app, "alice")
        mine = await alice.ok("getMyProfile")
        assert (mine["userID"], mine["nick"], mine["selfSignature"]) == \
            ("alice", "Alice", "hello")

        await alice.ok("updateMyProfile", {"nick": "Al", "avatar": "http://img.test/al.png"})
        got = await tim.ok("profile/portrait_get", {
            "To_Account": ["alice"], "TagList": ["Tag_Profile_IM_Nick", "Tag_Profile_IM_Image"]})
        assert got["UserProfileItem"][0]["ProfileItem"] == [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Al"},
            {"Tag": "Tag_Profile_IM_Image", "Value": "http://img.test/al.png"}]


# --- the frames, raw (what the SDK never sends) ---------------------------------------------


@contextlib.asynccontextmanager
async def raw_socket(live: LiveServer) -> AsyncIterator[Any]:
    from websockets.asyncio.client import connect as ws_connect

    url = live.url.replace("http://", "ws://") + "/sdk/binfo?sdkappid=1&platform=7"
    async with ws_connect(url, ping_interval=None) as ws:
        yield ws


async def call_raw(ws: Any, servcmd: str, body: dict[str, Any], **head: Any) -> dict[str, Any]:
    seq = int(time.monotonic() * 1000)
    await ws.send(json.dumps({"head": {"servcmd": servcmd, "seq": seq, **head},
                              "body": body}).encode())
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(raw, bytes)  # the SDK reads binary frames only
        frame = json.loads(raw)
        if frame["head"]["seq"] == seq:
            assert frame["head"]["servcmd"] == servcmd
            return frame["body"]


async def test_raw_frames_and_their_refusals(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    await setup(live, app, "alice")
    async with live.client(app) as tim:
        roster_group = await create_group(tim, "Public", Owner_Account="host")
    async with live.http() as http:
        page = await http.get("/sdk/binfo")
        assert page.status_code == 426 and "proxyServer" in page.text
    async with raw_socket(live) as ws:
        await ws.send(b"not json")  # no servcmd to answer with: ignored
        body = await call_raw(ws, "group_open_http_svc.apply_join_group", {"GroupId": "g"})
        assert body["ErrorCode"] == errors.UserSigEmpty.code  # not logged in
        body = await call_raw(ws, "im_open_status.wslogin", {}, sdkappid=1,
                              identifier="alice", usersig=sig(app, "alice"))
        assert body["ErrorCode"] == errors.SdkAppIdNotFound.code
        body = await call_raw(ws, "im_open_status.wslogin", {}, sdkappid=app.sdkappid,
                              a2="not-an-a2key")
        assert body["ErrorCode"] == errors.UserSigUndecodable.code
        login = await call_raw(ws, "im_open_status.wslogin", {}, sdkappid=app.sdkappid,
                               identifier="alice", usersig=sig(app, "alice"))
        assert login["ErrorCode"] == 0 and login["InstId"] > 0
        again = await call_raw(ws, "im_open_status.wslogin", {}, sdkappid=app.sdkappid,
                               a2=login["A2Key"], tinyid=login["TinyId"])
        assert (again["ErrorCode"], again["InstId"]) == (0, login["InstId"])
        other = await call_raw(ws, "im_open_status.wslogin", {}, sdkappid=app.sdkappid,
                               identifier="host", usersig=sig(app, "host"))
        assert other["ErrorCode"] == errors.IdentifierInvalid.code
        body = await call_raw(ws, "openim.getroammsg", {})
        assert body["ErrorCode"] == errors.InvalidCommand.code
        body = await call_raw(ws, "group_open_http_svc.get_group_member_info",
                              {"GroupId": roster_group})
        assert body["ErrorCode"] == errors.NoPermission.code
        body = await call_raw(ws, "group_open_http_svc.quit_group", {"GroupId": roster_group})
        assert body["ErrorCode"] == errors.NoPermission.code
        body = await call_raw(ws, "group_open_avchatroom_http_svc.get_members",
                              {"GroupId": roster_group})
        assert body["ErrorCode"] == errors.InvalidParameter.code
        body = await call_raw(ws, "group_open_http_svc.get_group_self_member_info",
                              {"GroupIdList": [f"g{i}" for i in range(51)]})
        assert body["ErrorCode"] == errors.InvalidParameter.code
        body = await call_raw(ws, "group_open_http_svc.get_group_self_member_info",
                              {"GroupIdList": ["no-such-group"]})
        assert body["GroupInfo"][0]["ErrorCode"] == errors.GroupNotFound.code
        body = await call_raw(ws, "group_open_http_svc.apply_join_group", {"GroupId": 5})
        assert body["ErrorCode"] == errors.InvalidParameter.code
        body = await call_raw(ws, "profile.portrait_set", {"ProfileItem": [
            {"Tag": "Tag_Profile_Custom_Nope", "Value": "x"}]})
        assert body["ErrorCode"] == errors.ProfileTagNotFound.code
        body = await call_raw(ws, "profile.portrait_get_all", {"UserItem": [
            {"To_Account": f"u{i}"} for i in range(101)]})
        assert body["ErrorCode"] == errors.ProfileInvalidParams.code
        body = await call_raw(ws, "im_open_status.wslogout", {})
        assert body["ErrorCode"] == 0
        body = await call_raw(ws, "openim.sendmsg", {"To_Account": "host"})
        assert body["ErrorCode"] == errors.UserSigEmpty.code  # logged out


# --- the browser build in headless Chromium ----------------------------------------------

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>OpenTIM and @tencentcloud/chat</title>
<script src="/chat.js"></script>
<script>
window.received = [];
window.start = async (sdkappid, proxyServer, userID, userSig, groupID) => {
  const chat = TencentCloudChat.create({ SDKAppID: sdkappid, proxyServer });
  chat.setLogLevel(4);
  chat.on(TencentCloudChat.EVENT.MESSAGE_RECEIVED, (event) => {
    for (const m of event.data) {
      window.received.push({ from: m.from, to: m.to, text: m.payload.text });
    }
  });
  const ready = new Promise((resolve) => chat.on(TencentCloudChat.EVENT.SDK_READY, resolve));
  await chat.login({ userID, userSig });
  await ready;
  const joined = await chat.joinGroup({ groupID });
  window.chat = chat;
  return joined.data.status;
};
window.say = async (groupID, text) => {
  const message = window.chat.createTextMessage({
    to: groupID, conversationType: TencentCloudChat.TYPES.CONV_GROUP, payload: { text } });
  const sent = await window.chat.sendMessage(message);
  return sent.data.message.sequence;
};
</script>
"""


async def page_server(receive: Any, send: Any, scope: dict[str, Any]) -> None:
    body, kind = (SDK_BUILD.read_bytes(), b"text/javascript") \
        if scope["path"] == "/chat.js" else (PAGE.encode(), b"text/html; charset=utf-8")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": body})


async def test_the_browser_build_logs_in_joins_and_receives(live: LiveServer) -> None:
    require_sdk()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("Playwright", "the `playwright` package is not installed "
                    "(pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        unavailable("Chromium", f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from tests.helpers import serve_asgi

    async def pages(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await page_server(receive, send, scope)

    app = await live.new_app(rate_limit=0)
    group_id = await setup(live, app, "alice")
    async with serve_asgi(pages) as page_url, async_playwright() as pw, \
            live.connect(app, "host") as host, live.client(app) as tim:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = await browser.new_page()
            await page.goto(page_url + "/")
            status = await page.evaluate(
                "([a, p, u, s, g]) => window.start(a, p, u, s, g)",
                [app.sdkappid, live.url.replace("http://", "ws://") + "/sdk", "alice",
                 sig(app, "alice"), group_id])
            assert status == "JoinedSuccess"
            assert await online(live, app, group_id) == ["alice"]

            await tim.ok(f"{SVC}/send_group_msg", {"GroupId": group_id, "From_Account": "host",
                                                   "Random": 3, "MsgBody": text("to the page")})
            await page.wait_for_function("window.received.length > 0", timeout=10_000)
            assert await page.evaluate("window.received") == [
                {"from": "host", "to": group_id, "text": "to the page"}]

            await host.join_group(group_id)
            seq = await page.evaluate("([g, t]) => window.say(g, t)", [group_id, "from the page"])
            got = await host.next_message()
            assert (got["From_Account"], got["MsgSeq"], got["MsgBody"]) == \
                ("alice", seq, text("from the page"))
        finally:
            await browser.close()
