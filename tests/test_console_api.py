"""The web console's API (docs/console.md), against real servers over loopback sockets.

Logins use sigs made by Tencent's own ``tls-sig-api-v2``; the live room is fed by real
gateway clients (``opentim.client.connect``) and read through the console's WebSocket; the
webhook page by a real HTTP receiver. The pages themselves are tested in a browser
elsewhere; these tests hold the API to the REST codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from TLSSigAPIv2 import TLSSigAPIv2
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from opentim.console.auth import LOGIN_CODES
from opentim.domain.apps import App
from tests.helpers import (
    LiveServer,
    Receiver,
    create_group,
    eventually,
    import_accounts,
    live_server,
    members,
)

SVC = "group_open_http_svc"
BOUND = 10.0


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[LiveServer]:
    """A live server on SQLite and on PostgreSQL (memory presence)."""
    async with live_server(db_url, "memory") as srv:
        yield srv


def sig(app: App, identifier: str = "administrator", expire: int = 180 * 86400) -> str:
    return TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(identifier, expire)


async def login(http: httpx.AsyncClient, app: App, identifier: str = "administrator",
                usersig: str | None = None) -> httpx.Response:
    return await http.post("/console/api/login", json={
        "SDKAppID": str(app.sdkappid), "Identifier": identifier,
        "UserSig": usersig if usersig is not None else sig(app, identifier)})


@contextlib.asynccontextmanager
async def console(live: LiveServer, app: App) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An HTTP client logged in to the console: (client, CSRF token)."""
    async with live.http() as http:
        reply = await login(http, app)
        doc = reply.json()
        assert doc["ErrorCode"] == 0, doc
        yield http, doc["CSRFToken"]


async def bridge(http: httpx.AsyncClient, csrf: str, command: str,
                 body: dict[str, Any]) -> dict[str, Any]:
    reply = await http.post(f"/console/api/v4/{command}", json=body,
                            headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 200, reply.text
    return reply.json()


# --- logging in -----------------------------------------------------------------------------


async def test_a_tls_sig_api_v2_sig_logs_in_with_a_strict_http_only_cookie(
        server: LiveServer) -> None:
    app = await server.new_app()
    async with server.http() as http:
        reply = await login(http, app)
        doc = reply.json()
        assert doc["ActionStatus"] == "OK" and doc["ErrorCode"] == 0
        assert doc["SDKAppID"] == app.sdkappid and doc["Identifier"] == "administrator"
        assert doc["CSRFToken"]
        cookie = reply.headers["set-cookie"]
        assert cookie.startswith("opentim_console=")
        parts = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
        assert {"httponly", "path", "samesite", "max-age"} <= parts
        assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
        assert "secure" not in parts  # plain http here; https gets Secure
        # the session's expiry is the sig's (TLS.time + TLS.expire)
        assert abs(doc["ExpireTime"] - (time.time() + 180 * 86400)) < 60
        session = (await http.get("/console/api/session")).json()
        assert session["ErrorCode"] == 0 and session["CSRFToken"] == doc["CSRFToken"]
        assert "get_members" in session["Commands"]["group_open_avchatroom_http_svc"]


async def test_a_refused_login_answers_the_rest_code(server: LiveServer) -> None:
    app = await server.new_app()
    other = await server.new_app()
    async with server.http() as http, server.client(app) as tim:
        wrong_key = TLSSigAPIv2(app.sdkappid, other.secret_key).gen_sig("administrator")
        cases = {
            70009: wrong_key,  # HMAC does not verify
            70003: "not-a-sig",
            70002: "",
            70001: sig(app, expire=-10),  # expired 10 s ago
        }
        for code, usersig in cases.items():
            reply = await login(http, app, usersig=usersig)
            assert reply.status_code == 200
            assert reply.json()["ErrorCode"] == code, (code, reply.json())
            assert "set-cookie" not in reply.headers
            rest = await tim.raw("im_open_login_svc/account_check", b"{}", usersig=usersig)
            assert rest["ErrorCode"] == code
        # an identifier that does not match its sig, an unknown app, a bad SDKAppID
        reply = await login(http, app, "administrator", sig(app, "alice"))
        assert reply.json()["ErrorCode"] == 70013
        reply = await http.post("/console/api/login", json={
            "SDKAppID": "999999999", "Identifier": "administrator", "UserSig": sig(app)})
        assert reply.json()["ErrorCode"] == 70020
        reply = await http.post("/console/api/login", json={
            "SDKAppID": "abc", "Identifier": "administrator", "UserSig": sig(app)})
        assert reply.json()["ErrorCode"] == 60006
        assert (await http.get("/console/api/session")).status_code == 401


async def test_a_user_who_is_not_an_app_admin_is_refused(server: LiveServer) -> None:
    app = await server.new_app()
    async with server.http() as http, server.client(app, "alice") as alice:
        reply = await login(http, app, "alice")
        assert reply.json()["ErrorCode"] == 60010
        assert "set-cookie" not in reply.headers
        assert (await alice.call("im_open_login_svc/account_check", {}))["ErrorCode"] == 60010


async def test_login_needs_a_json_body(server: LiveServer) -> None:
    """A cross-site form cannot log a browser in (it cannot send application/json)."""
    app = await server.new_app()
    async with server.http() as http:
        reply = await http.post("/console/api/login", data={
            "SDKAppID": str(app.sdkappid), "Identifier": "administrator", "UserSig": sig(app)})
        assert reply.status_code == 403 and reply.json()["ErrorCode"] == 60002
        reply = await http.post("/console/api/login", content=b"[1]",
                                headers={"content-type": "application/json"})
        assert reply.json()["ErrorCode"] == 60003


async def test_the_one_time_link_logs_in_once(server: LiveServer) -> None:
    app = await server.new_app()
    code = LOGIN_CODES.issue(app.sdkappid, "administrator")
    async with server.http() as http:
        doc = (await http.post("/console/api/login", json={"Code": code})).json()
        assert doc["ErrorCode"] == 0 and doc["Identifier"] == "administrator"
        assert (await http.get("/console/api/app")).json()["SDKAppID"] == app.sdkappid
    async with server.http() as http:
        doc = (await http.post("/console/api/login", json={"Code": code})).json()
        assert doc["ErrorCode"] == 70009
        doc = (await http.post("/console/api/login", json={"Code": "x" * 40})).json()
        assert doc["ErrorCode"] == 70009


# --- sessions -------------------------------------------------------------------------------


async def test_every_change_needs_the_csrf_header(server: LiveServer) -> None:
    app = await server.new_app()
    async with console(server, app) as (http, csrf):
        body = {"Type": "Public", "Name": "g"}
        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
            reply = await http.post(f"/console/api/v4/{SVC}/create_group", json=body,
                                    headers=headers)
            assert reply.status_code == 403
            assert reply.json() == {"ActionStatus": "FAIL", "ErrorCode": 60002,
                                    "ErrorInfo": reply.json()["ErrorInfo"]}
            for path in ("app", "app/reveal-key", "logout"):
                refused = await http.post(f"/console/api/{path}", json={}, headers=headers)
                assert refused.status_code == 403, path
        # the right token, but not JSON (a form post): refused as well
        reply = await http.post(f"/console/api/v4/{SVC}/create_group", data=body,
                                headers={"X-CSRF-Token": csrf})
        assert reply.status_code == 403
        # nothing was created
        async with server.client(app) as tim:
            assert (await tim.ok(f"{SVC}/get_appid_group_list", {}))["TotalCount"] == 0
        ok = await bridge(http, csrf, f"{SVC}/create_group", body)
        assert ok["ErrorCode"] == 0


async def test_without_a_session_the_api_answers_401(server: LiveServer) -> None:
    app = await server.new_app()
    async with server.http() as http:
        for method, path in (("GET", "session"), ("GET", "app"), ("GET", "overview"),
                             ("GET", "webhooks"), ("POST", f"v4/{SVC}/create_group")):
            reply = await http.request(method, f"/console/api/{path}", json={})
            assert reply.status_code == 401, path
            assert reply.json()["ErrorCode"] == 70002
        # a token that is not ours, or tampered with
        async with console(server, app) as (logged_in, _csrf):
            token = logged_in.cookies["opentim_console"]
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        for bad in ("garbage", forged, "v1.x.y", "v1." + "A" * 3000 + ".x"):
            http.cookies.set("opentim_console", bad)
            reply = await http.get("/console/api/session")
            assert reply.status_code == 401 and reply.json()["ErrorCode"] == 70002


async def test_logout_ends_the_session_at_once(server: LiveServer) -> None:
    app = await server.new_app()
    async with console(server, app) as (http, csrf):
        token = http.cookies["opentim_console"]
        reply = await http.post("/console/api/logout", json={}, headers={"X-CSRF-Token": csrf})
        assert reply.json()["ErrorCode"] == 0
        assert "max-age=0" in reply.headers["set-cookie"].lower()
        assert (await http.get("/console/api/session")).status_code == 401
        # the old token, kept by someone, no longer works either
        http.cookies.set("opentim_console", token)
        reply = await http.get("/console/api/app")
        assert reply.status_code == 401 and reply.json()["ErrorCode"] == 70002
        reply = await http.post(f"/console/api/v4/{SVC}/create_group",
                                json={"Type": "Public", "Name": "g"},
                                headers={"X-CSRF-Token": csrf})
        assert reply.status_code == 401


async def test_the_session_ends_when_its_usersig_expires(server: LiveServer) -> None:
    app = await server.new_app()
    async with server.http() as http:
        doc = (await login(http, app, usersig=sig(app, expire=120))).json()
        assert doc["ErrorCode"] == 0
        assert (await http.get("/console/api/app")).status_code == 200
        server.clock.advance(121)
        reply = await http.get("/console/api/app")
        assert reply.status_code == 401 and reply.json()["ErrorCode"] == 70001


async def test_a_key_change_or_losing_admin_rights_ends_the_session(server: LiveServer) -> None:
    app = await server.new_app(admins=frozenset({"administrator", "ops"}))
    async with console(server, app) as (http, csrf):
        # ops removes "administrator" from the admins: its session ends (60010)
        reply = await http.post("/console/api/app", json={"Admins": ["ops"]},
                                headers={"X-CSRF-Token": csrf})
        assert reply.json()["ErrorCode"] == 0 and reply.json()["Admins"] == ["ops"]
        reply = await http.get("/console/api/app")
        assert reply.status_code == 401 and reply.json()["ErrorCode"] == 60010
    async with server.http() as http:
        assert (await login(http, app, "ops")).json()["ErrorCode"] == 0
        updated = await server.runtime.store.apps.get(app.sdkappid)
        assert updated is not None
        await server.runtime.store.apps.save(
            dataclasses.replace(updated, secret_key="f" * 64), now=int(time.time()))
        await server.runtime.apps.refresh()
        reply = await http.get("/console/api/app")
        assert reply.status_code == 401 and reply.json()["ErrorCode"] == 70002


# --- the REST bridge ------------------------------------------------------------------------


async def test_the_bridge_answers_exactly_what_rest_answers(server: LiveServer) -> None:
    app = await server.new_app()
    async with console(server, app) as (http, csrf), server.client(app) as tim:
        cases: list[tuple[str, dict[str, Any]]] = [
            (f"{SVC}/create_group", {"Type": "NoSuchType", "Name": "g"}),
            (f"{SVC}/create_group", {"Type": "Public"}),
            (f"{SVC}/get_group_info", {"GroupIdList": []}),
            (f"{SVC}/destroy_group", {"GroupId": "@TGS#nope"}),
            ("group_open_avchatroom_http_svc/get_members", {"GroupId": "nope", "Timestamp": 0}),
            ("im_open_login_svc/account_import", {"UserID": ""}),
            ("im_open_login_svc/account_check", {"CheckItem": [{"UserID": "ghost"}]}),
            (f"{SVC}/no_such_command", {}),
            ("no_such_service/x", {}),
            (f"{SVC}/get_appid_group_list", {"Limit": -1}),
            (f"{SVC}/create_group", {"Type": "Public", "Name": "a\u0000b"}),
        ]
        for command, body in cases:
            via_console = await bridge(http, csrf, command, body)
            via_rest = await tim.call(command, body)
            assert via_console == via_rest, command
        # bodies REST refuses before decoding
        for raw in (b"", b"[]", b"{", b"{\"Type\": 1"):
            reply = await http.post(f"/console/api/v4/{SVC}/create_group", content=raw,
                                    headers={"X-CSRF-Token": csrf,
                                             "content-type": "application/json"})
            assert reply.json() == await tim.raw(f"{SVC}/create_group", raw), raw
        # a change made through the console is the change REST sees, made by the admin
        made = await bridge(http, csrf, f"{SVC}/create_group",
                            {"Type": "Public", "Name": "from the console"})
        assert made["ErrorCode"] == 0
        info = await tim.ok(f"{SVC}/get_group_info", {"GroupIdList": [made["GroupId"]]})
        assert info["GroupInfo"][0]["Name"] == "from the console"


async def test_the_bridge_counts_against_the_apps_rate_limit(server: LiveServer) -> None:
    app = await server.new_app(rate_limit=2)
    async with console(server, app) as (http, csrf):
        codes = [(await bridge(http, csrf, "im_open_login_svc/account_check",
                               {"CheckItem": [{"UserID": "a"}]}))["ErrorCode"]
                 for _ in range(6)]
        assert 60007 in codes and codes[0] == 0


async def test_a_body_past_the_limit_is_refused_as_rest_refuses_it(
        tmp_path: Any) -> None:
    async with live_server(f"sqlite:///{tmp_path}/small.db", "memory",
                           max_body_bytes=1000) as srv:
        app = await srv.new_app()
        async with console(srv, app) as (http, csrf):
            raw = b'{"Type":"Public","Name":"' + b"x" * 2000 + b'"}'
            reply = await http.post(f"/console/api/v4/{SVC}/create_group", content=raw,
                                    headers={"X-CSRF-Token": csrf,
                                             "content-type": "application/json"})
            assert reply.json()["ErrorCode"] == 60002


async def test_group_profiles_come_without_their_member_lists(server: LiveServer) -> None:
    """get_group_info reads every member; the console's group pages read a page of them."""
    app = await server.new_app()
    async with console(server, app) as (http, _csrf), server.client(app) as tim:
        await import_accounts(tim, "owner", "bob")
        public = await create_group(tim, "Public", Owner_Account="owner",
                                    MemberList=[{"Member_Account": "bob"}],
                                    AppDefinedData=[{"Key": "k", "Value": "v"}])
        room = await create_group(tim, "AVChatRoom")
        reply = (await http.get("/console/api/groups", params=[
            ("id", public), ("id", room), ("id", "@TGS#nope"), ("id", "bad id\u0001")])).json()
        assert reply["ErrorCode"] == 0
        rest = (await tim.ok(f"{SVC}/get_group_info", {
            "GroupIdList": [public, room, "@TGS#nope", "bad id\u0001"]}))["GroupInfo"]
        for mine, theirs in zip(reply["GroupInfo"], rest, strict=True):
            theirs.pop("MemberList", None)
            assert mine == theirs
        assert reply["GroupInfo"][0]["MemberNum"] == 2
        assert [i["ErrorCode"] for i in reply["GroupInfo"][2:]] == [10010, 10015]
        for bad, code in (([], 10004), ([("id", public)] * 51, 10005)):
            refused = (await http.get("/console/api/groups", params=bad)).json()
            assert refused["ErrorCode"] == code
            assert refused["ErrorCode"] == (await tim.call(f"{SVC}/get_group_info", {
                "GroupIdList": [v for _, v in bad]}))["ErrorCode"]


# --- the app's settings ---------------------------------------------------------------------


async def test_the_settings_hide_the_key_until_it_is_revealed(server: LiveServer) -> None:
    app = await server.new_app(callback_token="tok-123")
    async with console(server, app) as (http, csrf):
        settings = (await http.get("/console/api/app")).json()
        assert settings["ErrorCode"] == 0
        assert app.secret_key not in str(settings) and "tok-123" not in str(settings)
        assert settings["CallbackTokenSet"] is True
        assert settings["Admins"] == ["administrator"]
        reply = await http.post("/console/api/app/reveal-key", json={},
                                headers={"X-CSRF-Token": csrf})
        assert reply.json()["SecretKey"] == app.secret_key
        assert reply.json()["CallbackToken"] == "tok-123"
        assert reply.headers["cache-control"] == "no-store"
        # a GET never reveals it
        assert (await http.get("/console/api/app/reveal-key")).status_code == 405


async def test_settings_changes_are_saved_and_bad_ones_refused(server: LiveServer,
                                                              receiver: Receiver) -> None:
    app = await server.new_app()
    async with console(server, app) as (http, csrf):
        async def change(**fields: Any) -> dict[str, Any]:
            reply = await http.post("/console/api/app", json=fields,
                                    headers={"X-CSRF-Token": csrf})
            return reply.json()

        doc = await change(Edition="standard", OnlineMemberList=False, RateLimit=7,
                           GroupMsgRate=0, CallbackUrl=receiver.url, CallbackToken="t",
                           CallbackCommands=["State.StateChange"])
        assert doc["ErrorCode"] == 0, doc
        stored = await server.runtime.store.apps.get(app.sdkappid)
        assert stored is not None
        assert (stored.edition.value, stored.online_member_list, stored.rate_limit,
                stored.group_msg_rate, stored.callback_token, stored.callback_commands) == (
            "standard", False, 7, 0, "t", frozenset({"State.StateChange"}))
        assert stored.callback_url == receiver.url
        assert server.runtime.apps.get(app.sdkappid) == stored  # this process has it at once
        assert (await change(CallbackCommands=None, CallbackToken=""))["CallbackTokenSet"] \
            is False
        for bad in ({"Edition": "gold"}, {"CallbackUrl": "ftp://x"},
                    {"CallbackUrl": "http://169.254.169.254/"},
                    {"CallbackCommands": ["Nope"]}, {"RateLimit": -1}, {"Admins": []},
                    {"Admins": ["x" * 40]}, {"RateLimit": "many"}):
            doc = await change(**bad)
            assert doc["ErrorCode"] == 10004, bad
        unchanged = await server.runtime.store.apps.get(app.sdkappid)
        assert unchanged is not None and unchanged.edition.value == "standard"


# --- the live room --------------------------------------------------------------------------


def live_url(live: LiveServer, group_id: str) -> str:
    return live.url.replace("http://", "ws://") + f"/console/api/live?group={quote(group_id)}"


@contextlib.asynccontextmanager
async def watch(live: LiveServer, http: httpx.AsyncClient, group_id: str,
                **headers: str) -> AsyncIterator[Any]:
    cookie = f"opentim_console={http.cookies['opentim_console']}"
    async with ws_connect(live_url(live, group_id), ping_interval=None,
                          additional_headers={"Cookie": cookie, **headers}) as ws:
        yield ws


async def frame_of(ws: Any, kind: str, seconds: float = BOUND) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            frame = msgspec.json.decode(await ws.recv())
            if frame.get("event") == kind:
                return frame


async def test_the_live_socket_sees_members_join_and_leave(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim, console(live, app) as (http, _csrf):
        await import_accounts(tim, "host", "alice")
        group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
        async with watch(live, http, group_id) as ws:
            hello = await frame_of(ws, "hello")
            assert hello["GroupId"] == group_id and hello["Type"] == "AVChatRoom"
            assert hello["Online"] == 0
            async with live.connect(app, "alice") as alice:
                started = time.monotonic()
                await alice.join_group(group_id)
                joined = await frame_of(ws, "members_changed")
                assert joined["Online"] == ["alice"] and joined["Offline"] == []
                assert time.monotonic() - started < 1.5
                tick = await frame_of(ws, "tick", 3)
                assert tick["Online"] == 1  # the console itself is not counted
                # nor listed
                listed, _ = await members(tim, group_id)
                assert [m["Member_Account"] for m in listed] == ["alice"]
                await tim.ok(f"{SVC}/send_group_msg", {
                    "GroupId": group_id, "Random": 7,
                    "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]})
                message = await frame_of(ws, "group_message")
                assert message["MsgBody"][0]["MsgContent"]["Text"] == "hi"
                assert message["From_Account"] == ""  # an App admin's, without a sender
            left = await frame_of(ws, "members_changed")
            assert left["Offline"] == ["alice"]
            await tim.ok("group_open_avchatroom_http_svc/add_robots",
                         {"GroupId": group_id, "Member_Account": ["host"]})
            robot = await frame_of(ws, "members_changed")
            assert robot["Online"] == ["host"]
            await tim.ok("group_open_avchatroom_http_svc/modify_user_info", {
                "GroupId": group_id, "CommandType": 1,
                "MemberList": [{"Member_Account": "host", "Marks": [1001]}]})
            marks = await frame_of(ws, "marks_changed")
            if marks["MemberList"] == [{"Member_Account": "host", "Marks": [500]}]:
                marks = await frame_of(ws, "marks_changed")  # (the robot's own, first)
            assert marks["MemberList"] == [{"Member_Account": "host", "Marks": [500, 1001]}]
            await tim.ok(f"{SVC}/destroy_group", {"GroupId": group_id})
            gone = await frame_of(ws, "removed_from_group")
            assert gone["Reason"] == "GroupDestroyed"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), BOUND)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004


async def test_the_live_socket_is_refused_without_a_session_or_a_live_group(
        live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim, console(live, app) as (http, csrf):
        public = await create_group(tim, "Public")
        for group_id, code, close in (("@TGS#nope", 10010, 4004), (public, 10007, 4004)):
            async with watch(live, http, group_id) as ws:
                error = await frame_of(ws, "error")
                assert error["ErrorCode"] == code
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == close
        room = await create_group(tim, "AVChatRoom")
        # another site's page may not open it (cross-site WebSocket hijacking)
        with pytest.raises(InvalidStatus) as refused:
            async with watch(live, http, room, Origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        # no cookie
        async with ws_connect(live_url(live, room), ping_interval=None) as ws:
            error = await frame_of(ws, "error")
            assert error["ErrorCode"] == 70002
        # logging out closes an open socket within a tick
        async with watch(live, http, room) as ws:
            await frame_of(ws, "hello")
            await http.post("/console/api/logout", json={}, headers={"X-CSRF-Token": csrf})
            ended = await frame_of(ws, "session_ended", 3)
            assert ended["Reason"] == "logged out"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), BOUND)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


# --- overview and webhooks ------------------------------------------------------------------


async def test_the_overview_counts_connections_members_and_messages(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim, console(live, app) as (http, _csrf):
        await import_accounts(tim, "alice", "bob")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "alice") as alice, live.connect(app, "bob") as bob:
            await alice.join_group(group_id)
            await bob.join_group(group_id)
            await tim.ok(f"{SVC}/send_group_msg", {
                "GroupId": group_id, "Random": 1,
                "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x"}}]})

            async def counted() -> bool:
                doc = (await http.get("/console/api/overview")).json()
                return (doc["Connections"], doc["OnlineMembers"]) == (2, 2) and \
                    any(s[3] >= 1 for s in doc["History"])

            await eventually(counted, "2 connections, 2 online, a message in the history")
        doc = (await http.get("/console/api/overview?seconds=5")).json()
        await eventually(lambda: _zero(http), "connections back to 0")
        assert len(doc["History"]) <= 5
        assert set(doc["Webhooks"]) == {"Sent", "Failed", "Retried", "Dropped"}


async def _zero(http: httpx.AsyncClient) -> bool:
    doc = (await http.get("/console/api/overview")).json()
    return doc["Connections"] == 0 and doc["OnlineMembers"] == 0


async def test_the_webhook_page_lists_recent_deliveries(live: LiveServer,
                                                       receiver: Receiver) -> None:
    app = await live.new_app(rate_limit=0, callback_url=receiver.url,
                             callback_commands=frozenset({"State.StateChange"}))
    receiver.statuses = [500]  # the first attempt fails, the retry succeeds
    async with live.client(app) as tim, console(live, app) as (http, _csrf):
        await import_accounts(tim, "alice")
        async with live.connect(app, "alice"):
            await receiver.wait_for(1, "State.StateChange")

        async def listed() -> list[dict[str, Any]]:
            return (await http.get("/console/api/webhooks")).json()["Deliveries"]

        async def has_two() -> bool:
            return len(await listed()) >= 2

        await eventually(has_two, "two deliveries listed")
        newest, oldest = (await listed())[:2]
        assert oldest["Command"] == "State.StateChange"
        assert (oldest["Outcome"], oldest["HttpStatus"], oldest["Attempts"]) == ("sent", 200, 2)
        assert oldest["LatencyMs"] >= 0 and newest["Time"] >= oldest["Time"]
        counters = (await http.get("/console/api/webhooks")).json()["Counters"]
        assert counters["Sent"] == 2 and counters["Retried"] == 1
    # another app sees none of them
    other = await live.new_app()
    async with console(live, other) as (http, _csrf):
        assert (await http.get("/console/api/webhooks")).json()["Deliveries"] == []


async def test_the_ring_buffer_keeps_the_newest_deliveries(live: LiveServer,
                                                          receiver: Receiver) -> None:
    from opentim.webhooks import delivery

    app = await live.new_app(rate_limit=0, callback_url=receiver.url,
                             callback_commands=frozenset({"State.StateChange"}))
    async with live.client(app) as tim:
        await import_accounts(tim, "alice")
    total = delivery.RECENT_DELIVERIES // 2 + 5
    for _ in range(total):  # each connection: a Login and a Disconnect callback
        async with live.connect(app, "alice"):
            pass
    await receiver.wait_for(2 * total, "State.StateChange", seconds=30)
    await live.runtime.webhooks.drain()
    recent = live.runtime.webhooks.recent(app.sdkappid)
    assert len(recent) == delivery.RECENT_DELIVERIES
    assert all(d.outcome == "sent" for d in recent)
    assert [d.time for d in recent] == sorted((d.time for d in recent), reverse=True)


# --- the page -------------------------------------------------------------------------------


async def test_the_page_and_its_assets_carry_a_strict_csp(server: LiveServer) -> None:
    async with server.http() as http:
        redirect = await http.get("/console")
        assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"
        page = await http.get("/console/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<script" in page.text and "http://" not in page.text.replace(
            'rel="icon" href="data:,"', "")
        for name in ("main.js", "console.css", "room.js"):
            asset = await http.get(f"/console/static/{name}")
            assert asset.status_code == 200 and "content-security-policy" in asset.headers
            assert "innerHTML" not in asset.text and "cdn" not in asset.text.lower()
            again = await http.get(f"/console/static/{name}",
                                   headers={"if-none-match": asset.headers["etag"]})
            assert again.status_code == 304
        for missing in ("nope.js", "..%2fauth.py", "../auth.py"):
            assert (await http.get(f"/console/static/{missing}")).status_code == 404
        unauthorized = await http.get("/console/api/app")
        assert "content-security-policy" in unauthorized.headers


async def test_the_console_can_be_switched_off(tmp_path: Any) -> None:
    async with live_server(f"sqlite:///{tmp_path}/off.db", "memory", console=False) as srv, \
            srv.http() as http:
        assert (await http.get("/console/")).status_code == 404
        assert (await http.post("/console/api/login", json={})).status_code == 404


# --- `opentim serve`: the one-time link ------------------------------------------------------


def _serve(tmp_path: Any, *flags: str) -> tuple[Any, int, Any]:
    import socket
    import subprocess
    import sys

    from tests.helpers import free_port

    port = free_port()
    banner = tmp_path / "banner.txt"
    with banner.open("w") as out:  # (the server writes to its own copy of the descriptor)
        proc = subprocess.Popen([sys.executable, "-m", "opentim", "serve", "--db",
                                 f"sqlite:///{tmp_path}/fresh.db", "--port", str(port),
                                 *flags], stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port, banner
        except OSError:
            assert proc.poll() is None, banner.read_text()
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("opentim serve did not start")


def _stop(proc: Any) -> None:
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_serve_on_a_fresh_database_prints_a_link_that_logs_in_once(tmp_path: Any) -> None:
    import re

    proc, port, banner = _serve(tmp_path)
    try:
        text = banner.read_text()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/console/#login=([A-Za-z0-9_-]+)", text)
        assert found is not None, text
        assert int(found.group(1)) == port
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url) as http:
            doc = http.post("/console/api/login", json={"Code": found.group(2)}).json()
            assert doc["ErrorCode"] == 0 and doc["Identifier"] == "administrator"
            assert doc["SDKAppID"] == 1400000000
            settings = http.get("/console/api/app").json()
            assert settings["ErrorCode"] == 0 and settings["Admins"] == ["administrator"]
        with httpx.Client(base_url=url) as http:
            again = http.post("/console/api/login", json={"Code": found.group(2)}).json()
            assert again["ErrorCode"] == 70009
    finally:
        _stop(proc)


def test_serve_no_console_prints_no_link_and_serves_none(tmp_path: Any) -> None:
    proc, port, banner = _serve(tmp_path, "--no-console")
    try:
        text = banner.read_text()
        assert "Empty database" in text and "/console" not in text
        assert httpx.get(f"http://127.0.0.1:{port}/console/").status_code == 404
    finally:
        _stop(proc)
