"""Login state: ``im_open_login_svc/kick`` and ``openim/query_online_status`` (``querystate``).

Kicks and statuses come from real gateway connections (``opentim.client.connect``), on
both presence backends, and on two server processes sharing one database and one Redis;
a server process killed with SIGKILL is a real ``opentim serve`` subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.client import GatewayError, connect
from opentim.client.rest import RestClient
from opentim.domain.login import MAX_QUERY_ACCOUNTS
from opentim.events import ConnectionStateChanged, MemberStateChanged
from opentim.gateway import endpoint
from tests.helpers import (
    REDIS_URL,
    LiveServer,
    Receiver,
    Server,
    all_pages,
    create_group,
    drop_redis_keys,
    eventually,
    free_port,
    import_accounts,
    live_server,
    live_servers,
    next_event,
    require_redis,
)

KICK = "im_open_login_svc/kick"
QUERY = "openim/query_online_status"
OLD_QUERY = "openim/querystate"
MEMBER_STATE = "Group.CallbackOnMemberStateChange"
STATE = "State.StateChange"
BOUND = 10.0
OPENTIM = Path(sys.executable).with_name("opentim")


async def closed_with(session: Any, code: int) -> None:
    await asyncio.wait_for(session.wait_closed(), BOUND)
    assert session.close_code == code


async def kicked(session: Any) -> None:
    """The session was told it was kicked, then closed with 4013."""
    assert await next_event(session, "kicked", BOUND) == {"event": "kicked", "Reason": "Kicked"}
    await closed_with(session, endpoint.CLOSE_KICKED)


async def statuses(tim: RestClient, *accounts: str, path: str = QUERY,
                   field: str = "Status") -> dict[str, str]:
    reply = await tim.ok(path, {"To_Account": list(accounts)})
    return {r["To_Account"]: r[field] for r in reply["QueryResult"]}


async def detail(tim: RestClient, account: str) -> list[dict[str, str]]:
    reply = await tim.ok(QUERY, {"To_Account": [account], "IsNeedDetail": 1})
    return reply["QueryResult"][0].get("Detail", [])


# --- kick ----------------------------------------------------------------------------------


async def test_a_kick_closes_every_connection_and_the_user_may_come_back(
        live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "u", "other")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "u", platform="iOS") as phone, \
                live.connect(app, "u", platform="Web") as web, \
                live.connect(app, "other") as other:
            await phone.join_group(group_id)  # in a group, and web in none
            await other.join_group(group_id)
            assert await statuses(tim, "u") == {"u": "Online"}
            old_sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig("u")
            await asyncio.sleep(1.05)  # the kick comes a second after that sig was made
            assert await tim.ok(KICK, {"UserID": "u"}) == {
                "ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}
            # this process took the account out before answering
            assert await all_pages(tim, group_id) == ["other"]
            assert await statuses(tim, "u", "other") == {"u": "Offline", "other": "Online"}
            for session in (phone, web):
                await kicked(session)
            await other.heartbeat()  # the others stay connected
            # Tencent: a UserSig made before the kick no longer logs in; a new one does
            with pytest.raises(GatewayError) as refused:
                async with connect(live.url, sdkappid=app.sdkappid, identifier="u",
                                   usersig=old_sig):
                    pass
            assert refused.value.code == 70001
            async with live.connect(app, "u", platform="Web") as again:
                await again.join_group(group_id)
                assert sorted(await all_pages(tim, group_id)) == ["other", "u"]
                assert await statuses(tim, "u") == {"u": "Online"}
    offline = [(e.group_id, e.cause) for e in live.events
               if isinstance(e, MemberStateChanged) and e.account == "u" and not e.online]
    assert offline[0] == (group_id, "LinkClose")  # the kick; then the second visit's end


async def test_a_kick_accepts_the_old_field_name_and_an_unconnected_user(
        live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "u", "idle")
        await tim.ok(KICK, {"UserID": "idle"})  # nobody connected: nothing to do
        async with live.connect(app, "u") as session:
            await tim.ok(KICK, {"Identifier": "u", "Unknown": [1]})
            await kicked(session)


async def test_a_kick_fires_tencents_callbacks(live: LiveServer, receiver: Receiver) -> None:
    app = await live.new_app(rate_limit=0, callback_url=receiver.url)
    async with live.client(app) as tim:
        await import_accounts(tim, "u")
        group_id = await create_group(tim, "AVChatRoom")
        async with live.connect(app, "u") as session:
            await session.join_group(group_id)
            await receiver.wait_for(1, MEMBER_STATE)
            await tim.ok(KICK, {"UserID": "u"})
            await kicked(session)
    _joined, left = await receiver.wait_for(2, MEMBER_STATE)
    assert (left.body["EventType"], left.body["EventCause"]) == ("Offline", "Quit")
    assert left.body["MemberList"] == [{"Member_Account": "u"}]
    login, logout = await receiver.wait_for(2, STATE)
    assert login.body["Info"] == {"Action": "Login", "To_Account": "u", "Reason": "Register"}
    assert logout.body["Info"] == {"Action": "Disconnect", "To_Account": "u",
                                   "Reason": "LinkClose"}


@pytest.mark.parametrize(("body", "code"), [
    ({"UserID": "ghost"}, 70107),  # not imported
    ({"UserID": ""}, 70402),
    ({"UserID": "x" * 33}, 70402),  # longer than a UserID can be
    ({"UserID": 7}, 70402),
    ({}, 70402),
    ({"Identifier": ["u"]}, 70402),
])
async def test_kick_errors(tim: RestClient, body: dict[str, Any], code: int) -> None:
    await import_accounts(tim, "u")
    reply = await tim.call(KICK, body)
    assert (reply["ActionStatus"], reply["ErrorCode"]) == ("FAIL", code), reply


async def test_kick_and_query_need_an_app_admin(server: Server, tim: RestClient) -> None:
    await import_accounts(tim, "u")
    app = server.runtime.apps.get(tim.sdkappid)
    assert app is not None
    async with server.client(app, identifier="u") as user:
        for path, body in ((KICK, {"UserID": "u"}), (QUERY, {"To_Account": ["u"]}),
                           (OLD_QUERY, {"To_Account": ["u"]})):
            assert (await user.call(path, body))["ErrorCode"] == 60010


# --- query_online_status / querystate ------------------------------------------------------


async def test_online_offline_and_the_detail_per_connection(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "u1", "u2")
        async with live.connect(app, "u1", platform="iOS"), \
                live.connect(app, "u1", platform="Web"), \
                live.connect(app, "u1", platform="Web"):
            reply = await tim.ok(QUERY, {"To_Account": ["u1", "u2", "ghost", "u1"]})
            assert reply["QueryResult"] == [{"To_Account": "u1", "Status": "Online"},
                                            {"To_Account": "u2", "Status": "Offline"}]
            assert reply["ErrorList"] == [{"To_Account": "ghost", "ErrorCode": 70107}]
            reply = await tim.ok(QUERY, {"To_Account": ["u1", "u2"], "IsNeedDetail": 1,
                                         "IsReturnInstid": 1, "IsReturnCustomStatus": 1})
            assert reply["QueryResult"] == [
                {"To_Account": "u1", "Status": "Online", "Detail": [
                    {"Platform": "Web", "Status": "Online"},
                    {"Platform": "Web", "Status": "Online"},
                    {"Platform": "iPhone", "Status": "Online"}]},
                {"To_Account": "u2", "Status": "Offline"}]
            assert "ErrorList" not in reply
        # closed connections are gone at once
        await eventually(lambda: _is(tim, "u1", "Offline"), "u1 goes offline")


async def _is(tim: RestClient, account: str, status: str) -> bool:
    return (await statuses(tim, account)).get(account) == status


async def test_querystate_answers_with_the_old_field_name(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "u1", "u2")
        async with live.connect(app, "u1", platform="Android"):
            reply = await tim.ok(OLD_QUERY, {"To_Account": ["u1", "u2", "ghost"],
                                             "IsNeedDetail": 1})
            assert reply["QueryResult"] == [
                {"To_Account": "u1", "State": "Online",
                 "Detail": [{"Platform": "Android", "Status": "Online"}]},
                {"To_Account": "u2", "State": "Offline"}]
            assert reply["ErrorList"] == [{"To_Account": "ghost", "ErrorCode": 70107}]


async def test_500_accounts_per_query(tim: RestClient) -> None:
    accounts = [f"a{i}" for i in range(MAX_QUERY_ACCOUNTS)]
    await import_accounts(tim, *accounts[:250])
    reply = await tim.ok(QUERY, {"To_Account": accounts})
    assert [r["To_Account"] for r in reply["QueryResult"]] == accounts[:250]
    assert {r["Status"] for r in reply["QueryResult"]} == {"Offline"}
    assert [e["To_Account"] for e in reply["ErrorList"]] == accounts[250:]
    for path in (QUERY, OLD_QUERY):
        over = await tim.call(path, {"To_Account": [*accounts, "one-more"]})
        assert over["ErrorCode"] == 90011, over


@pytest.mark.parametrize(("body", "code"), [
    ({"To_Account": []}, 90001),  # Tencent's code for an empty To_Account
    ({}, 90001),
    ({"To_Account": "u"}, 90001),  # not an array
    ({"To_Account": ["u", 7]}, 90003),
    ({"To_Account": ["u", None]}, 90003),
    ({"To_Account": ["u"], "IsNeedDetail": "1"}, 90001),
])
async def test_query_errors(tim: RestClient, body: dict[str, Any], code: int) -> None:
    for path in (QUERY, OLD_QUERY):
        reply = await tim.call(path, body)
        assert (reply["ActionStatus"], reply["ErrorCode"]) == ("FAIL", code), (path, reply)


# --- two server processes sharing Redis ------------------------------------------------------


async def test_a_kick_through_one_process_reaches_every_process(
        db_url: str, receiver: Receiver) -> None:
    async with live_servers(2, db_url) as (a, b):
        app = await a.new_app(rate_limit=0, callback_url=receiver.url)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "u", "stays")
            group_id = await create_group(tim_a, "AVChatRoom")
            async with a.connect(app, "u", platform="iOS") as on_a, \
                    b.connect(app, "u", platform="Web") as on_b, \
                    b.connect(app, "u", platform="Android") as idle_b, \
                    b.connect(app, "stays") as stays:
                for session in (on_a, on_b, stays):
                    await session.join_group(group_id)
                assert sorted(await all_pages(tim_b, group_id)) == ["stays", "u"]
                assert len(await detail(tim_a, "u")) == 3  # every process's connections
                await tim_a.ok(KICK, {"UserID": "u"})
                for session in (on_a, on_b, idle_b):
                    await kicked(session)
                for tim in (tim_a, tim_b):
                    await eventually(lambda t=tim: _listed_only(t, group_id, ["stays"]),
                                     "u leaves the online list")
                    await eventually(lambda t=tim: _is(t, "u", "Offline"), "u is offline")
                await stays.heartbeat()
        await receiver.wait_for(4, MEMBER_STATE)  # u and stays online, then offline
        offline = [c.body["EventCause"] for c in receiver.of(MEMBER_STATE)
                   if c.body["EventType"] == "Offline"
                   and c.body["MemberList"] == [{"Member_Account": "u"}]]
        assert offline == ["Quit"]  # once: the account, not each connection
    for server in (a, b):  # each process reported its own connections' end
        ends = [e for e in server.events if isinstance(e, ConnectionStateChanged)
                and e.account == "u" and e.action == "Disconnect"]
        assert ends and all(e.reason == "LinkClose" for e in ends), server.events


async def _listed_only(tim: RestClient, group_id: str, accounts: list[str]) -> bool:
    return sorted(await all_pages(tim, group_id)) == accounts


async def test_the_status_counts_every_processs_connections(tmp_path: Path) -> None:
    async with live_servers(2, f"sqlite:///{tmp_path}/shared.db") as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "u")
            async with a.connect(app, "u", platform="iOS"):
                async with b.connect(app, "u", platform="Web"):
                    for tim in (tim_a, tim_b):
                        assert await detail(tim, "u") == [
                            {"Platform": "Web", "Status": "Online"},
                            {"Platform": "iPhone", "Status": "Online"}]
                await eventually(lambda: _platforms(tim_a, "u", ["iPhone"]),
                                 "b's connection is gone")
                assert await statuses(tim_b, "u") == {"u": "Online"}
            await eventually(lambda: _is(tim_b, "u", "Offline"), "u is offline")


async def _platforms(tim: RestClient, account: str, platforms: list[str]) -> bool:
    return [d["Platform"] for d in await detail(tim, account)] == platforms


@contextlib.asynccontextmanager
async def serve_subprocess(db_url: str, prefix: str, log: Path
                           ) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """``opentim serve`` as a real process sharing the database and Redis."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([str(OPENTIM), "serve", "--db", db_url, "--port", str(port),
                                 "--redis", REDIS_URL, "--redis-prefix", prefix,
                                 "--log-level", "warning"], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"server exited: {log.read_text()[-2000:]}"
            try:
                async with httpx.AsyncClient() as probe:
                    await probe.post(f"{url}/v4/x/y", content=b"{}")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start in 30 s"
                await asyncio.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def test_a_killed_processs_users_go_offline_within_the_lease_time(
        tmp_path: Path) -> None:
    await require_redis(REDIS_URL)
    db_url = f"sqlite:///{tmp_path}/shared.db"
    prefix = f"opentim-test-{uuid.uuid4().hex[:12]}"
    try:
        async with live_server(db_url, "redis", shared_prefix=prefix) as a:
            app = await a.new_app(rate_limit=0)
            async with a.client(app) as tim:
                await import_accounts(tim, "u", "v")
                async with serve_subprocess(db_url, prefix, tmp_path / "b.log") as (b, url):
                    sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig("u")
                    async with connect(url, sdkappid=app.sdkappid, identifier="u",
                                       usersig=sig, platform="iOS", heartbeat_interval=0), \
                            a.connect(app, "v"):
                        assert await statuses(tim, "u", "v") == {"u": "Online", "v": "Online"}
                        b.kill()  # SIGKILL: no cleanup at all
                        b.wait(timeout=10)
                        assert await statuses(tim, "u") == {"u": "Online"}  # its lease holds
                        # Past the lease (15 s after b's last refresh) it reads offline,
                        # before any sweep removed its connections; a's clock moves, not
                        # the test's. (Which node's connections count: the crashed-node
                        # cases of tests/presence/test_presence_redis.py.)
                        a.clock.advance(16)
                        assert await statuses(tim, "u") == {"u": "Offline"}
    finally:
        await drop_redis_keys(REDIS_URL, prefix)
