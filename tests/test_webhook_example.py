"""docs/examples/reapply_marks.py against a real OpenTIM: marks come back through a webhook.

The app is configured the way an operator would (``opentim app create --callback-url
--callback-token``), the member connects through the real gateway, and the receiver makes
its admin sig with Tencent's own library from the app's key.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import msgspec
import pytest
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.client.rest import RestClient
from opentim.domain.apps import App
from tests.helpers import (
    LiveServer,
    create_group,
    eventually,
    free_port,
    import_accounts,
    serve_asgi,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "reapply_marks.py"
MEMBER_STATE = "Group.CallbackOnMemberStateChange"
AV_SVC = "group_open_avchatroom_http_svc"
TOKEN = "s3cret-token"
SDKAPPID = 1_400_424_242  # every test has a database of its own


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reapply_marks", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


async def marked(tim: RestClient, group_id: str, mark: int = 1000) -> list[str]:
    reply = await tim.ok(f"{AV_SVC}/get_members",
                         {"GroupId": group_id, "Timestamp": 0, "Mark": mark})
    return [m["Member_Account"] for m in reply["MemberList"]]


async def opentim_cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opentim", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_marks_come_back_when_the_member_reconnects(
        live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # no secret at any level
    key = secrets.token_hex(32)
    desired: dict[str, dict[str, list[int]]] = {}
    receiver = example.create_receiver(opentim_url=live.url, sdkappid=SDKAPPID,
                                       desired=desired, secret_key=key, token=TOKEN)
    reapplier = receiver.state.reapplier
    async with serve_asgi(receiver) as receiver_url:
        try:
            printed = await opentim_cli(
                "app", "create", "--sdkappid", str(SDKAPPID), "--key", key,
                "--rate-limit", "0", "--callback-url", f"{receiver_url}/im-callback",
                "--callback-token", TOKEN, "--db", live.runtime.settings.db)
            assert "callbacks:     all" in printed
            app = App(sdkappid=SDKAPPID, secret_key=key)
            async with live.client(app) as tim:
                await import_accounts(tim, "alice", "bob")
                group_id = await create_group(tim, "AVChatRoom")
                # What the app's backend knows: alice is a teacher (1000) in this room.
                desired[group_id] = {"alice": [1000]}

                async with live.connect(app, "alice", platform="Android") as session:
                    await session.join_group(group_id)
                    await tim.ok(f"{AV_SVC}/modify_user_info", {
                        "GroupId": group_id, "CommandType": 1,
                        "MemberList": [{"Member_Account": "alice", "Marks": [1000]}]})
                    assert await marked(tim, group_id) == ["alice"]
                    # The receiver heard this first join too; let its call finish so it
                    # cannot be mistaken for the re-application checked below.
                    await eventually(lambda: _at_least(reapplier.counts, "applied", 1),
                                     "the receiver applied alice's marks on her first join")

                async def gone() -> bool:
                    return await marked(tim, group_id) == []

                await eventually(gone, "alice's mark vanished when she disconnected")
                assert reapplier.counts == {"applied": 1}

                async with live.connect(app, "alice", platform="iOS") as session, \
                        live.connect(app, "bob") as bystander:
                    await session.join_group(group_id)
                    await bystander.join_group(group_id)  # no desired marks: left alone

                    async def back() -> bool:
                        return await marked(tim, group_id) == ["alice"]

                    await eventually(back, "the receiver put mark 1000 back on alice")
                    await settle(live, reapplier)
                    assert reapplier.counts == {"applied": 2}
                    assert await marked(tim, group_id) == ["alice"]
            await settle(live, reapplier)  # before the receiver goes away
            # (the `live` fixture has no metrics listener: one on a free port, as
            # `opentim serve --metrics-port 0` would start)
            from opentim.app import metrics_app
            from opentim.serving import metrics_listener
            from opentim.startup import listen_socket

            async with metrics_listener(metrics_app(live.asgi.state), live.runtime.settings,
                                        listen_socket("127.0.0.1", 0)) as metrics_url, \
                    httpx.AsyncClient() as http:
                metrics = (await http.get(f"{metrics_url}/metrics")).text
            assert f'{{sdkappid="{SDKAPPID}",outcome="sent"}}' in metrics
            assert f'{{sdkappid="{SDKAPPID}",outcome="failed"}}' not in metrics  # none refused
        finally:
            await reapplier.aclose()
    admin_sig = reapplier.sig.get()
    logged = [(r.name, logging.Formatter().format(r)) for r in caplog.records]
    assert any("marks re-applied" in line for _, line in logged)  # the receiver did log
    assert [line for _, line in logged if admin_sig in line] == []
    # Nothing logs a sig: not the receiver, not the server, not the test's own gateway
    # clients (opentim.client keeps websockets' DEBUG handshake lines out of the log).
    assert [line for _, line in logged if "usersig=" in line.lower()] == []


async def settle(live: LiveServer, reapplier: Any) -> None:
    """Wait (boundedly) until OpenTIM has sent its callbacks and the receiver has acted."""
    async with asyncio.timeout(10):
        await live.runtime.webhooks.drain()
        await reapplier.drain()


async def _at_least(counts: Any, key: str, n: int) -> bool:
    return bool(counts[key] >= n)


# --- the receiver on its own: what it refuses, and that it answers at once -------------


class FakeOpenTim:
    """Records modify_user_info calls; answers once ``release`` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = msgspec.json.decode(request.content)
        self.calls.append((dict(request.url.params), body))
        await self.release.wait()
        return httpx.Response(200, json={
            "ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
            "CommandType": body["CommandType"], "MemberList": body["MemberList"]})


NOW = 1_700_000_000


def receiver_for(fake: FakeOpenTim, token: str | None = TOKEN) -> tuple[Any, httpx.AsyncClient]:
    app = example.create_receiver(
        opentim_url="http://opentim.test", sdkappid=SDKAPPID,
        desired={"@TGS#aROOM": {"alice": [1000, 1001]}}, usersig="admin-sig",
        token=token, clock=lambda: float(NOW), transport=httpx.MockTransport(fake))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="http://receiver.test")
    return app, client


def query(*, sdkappid: int = SDKAPPID, request_time: int = NOW, sign: str | None = None,
          token: str = TOKEN) -> dict[str, str | int]:
    q: dict[str, str | int] = {"SdkAppid": sdkappid, "CallbackCommand": MEMBER_STATE,
                               "contenttype": "json", "RequestTime": request_time}
    q["Sign"] = sign if sign is not None else \
        hashlib.sha256(f"{token}{request_time}".encode()).hexdigest()
    return q


ONLINE = {"CallbackCommand": MEMBER_STATE, "GroupId": "@TGS#aROOM", "Type": "AVChatRoom",
          "EventType": "Online", "EventCause": "Join",
          "MemberList": [{"Member_Account": "alice"}], "EventTime": str(NOW * 1000)}


async def test_receiver_refuses_forged_or_stale_callbacks() -> None:
    fake = FakeOpenTim()
    app, client = receiver_for(fake)
    async with client:
        refused = {
            "wrong SdkAppid": query(sdkappid=SDKAPPID + 1),
            "bad Sign": query(sign="0" * 64),
            "other token": query(token="guessed"),
            "stale RequestTime": query(request_time=NOW - 61),
            "future RequestTime": query(request_time=NOW + 61),
        }
        unsigned = {"SdkAppid": SDKAPPID, "CallbackCommand": MEMBER_STATE, "contenttype": "json"}
        for name, params in [*refused.items(), ("no Sign", unsigned)]:
            response = await client.post("/im-callback", params=params, json=ONLINE)
            assert response.status_code == 403, name
            assert response.json()["ActionStatus"] == "FAIL", name
        async with asyncio.timeout(5):
            await app.state.reapplier.drain()
        assert fake.calls == []

        # Within the minute and correctly signed: accepted, and the marks go back.
        response = await client.post("/im-callback", params=query(request_time=NOW - 59),
                                     json=ONLINE)
        assert response.status_code == 200
        assert response.json() == {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}
        async with asyncio.timeout(5):
            await app.state.reapplier.drain()
    params, body = fake.calls[0]
    assert len(fake.calls) == 1
    assert params["sdkappid"] == str(SDKAPPID) and params["identifier"] == "administrator"
    assert params["usersig"] == "admin-sig" and params["contenttype"] == "json"
    assert body == {"GroupId": "@TGS#aROOM", "CommandType": 1,
                    "MemberList": [{"Member_Account": "alice", "Marks": [1000, 1001]}]}
    await app.state.reapplier.aclose()


async def test_without_a_token_only_sdkappid_is_checked() -> None:
    fake = FakeOpenTim()
    app, client = receiver_for(fake, token=None)
    bare = {"SdkAppid": SDKAPPID, "CallbackCommand": MEMBER_STATE, "contenttype": "json"}
    async with client:
        assert (await client.post("/im-callback", params=bare, json=ONLINE)).status_code == 200
        other = {**bare, "SdkAppid": 1}
        assert (await client.post("/im-callback", params=other, json=ONLINE)).status_code == 403
        async with asyncio.timeout(5):
            await app.state.reapplier.drain()
    assert len(fake.calls) == 1
    await app.state.reapplier.aclose()


async def test_answers_before_the_rest_call_and_ignores_the_rest() -> None:
    fake = FakeOpenTim()
    fake.release.clear()  # OpenTIM's REST API is slow today
    app, client = receiver_for(fake)
    async with client:
        async with asyncio.timeout(1):  # far below OpenTIM's 2 s per attempt
            response = await client.post("/im-callback", params=query(), json=ONLINE)
        assert response.status_code == 200
        # Offline, members without desired marks, other commands: acknowledged, no call.
        for body in [{**ONLINE, "EventType": "Offline", "EventCause": "Quit"},
                     {**ONLINE, "MemberList": [{"Member_Account": "bob"}]},
                     {**ONLINE, "GroupId": "@TGS#aOTHER"}]:
            response = await client.post("/im-callback", params=query(), json=body)
            assert response.status_code == 200
        state = {**query(), "CallbackCommand": "State.StateChange"}
        response = await client.post("/im-callback", params=state, json={"Info": {}})
        assert response.status_code == 200
        await eventually(lambda: _at_least_calls(fake, 1), "the REST call was made")
        fake.release.set()
        async with asyncio.timeout(5):
            await app.state.reapplier.drain()
    assert len(fake.calls) == 1
    assert app.state.reapplier.counts == {"applied": 1}
    await app.state.reapplier.aclose()


async def _at_least_calls(fake: FakeOpenTim, n: int) -> bool:
    return len(fake.calls) >= n


# --- the receiver as a program: what it writes to its log --------------------------------


async def test_the_program_logs_no_usersig_and_no_sign(live: LiveServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``python reapply_marks.py`` as its docstring runs it, at its own log level (INFO):
    a signed callback comes in, the REST call goes out, and neither the admin's UserSig
    nor the callback's Sign appears in what it prints."""
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "alice")
        group_id = await create_group(tim, "AVChatRoom")
    admin_sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig("administrator")
    marks = tmp_path / "marks.json"
    marks.write_text(msgspec.json.encode({group_id: {"alice": [1000]}}).decode())
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--marks-file", str(marks), "--port", str(port),
        env={**os.environ, "OPENTIM_URL": live.url, "OPENTIM_SDKAPPID": str(app.sdkappid),
             "OPENTIM_ADMIN_USERSIG": admin_sig, "OPENTIM_CALLBACK_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        now = int(time.time())
        params = {**query(sdkappid=app.sdkappid, request_time=now), "SdkAppid": app.sdkappid}
        body = {**ONLINE, "GroupId": group_id}
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    response = await http.post(f"http://127.0.0.1:{port}/im-callback",
                                               params=params, json=body)
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "the receiver did not start"
                    await asyncio.sleep(0.1)
        assert response.status_code == 200
        # alice is not online: modify_user_info answers 10004, and the receiver logs it.
        output = b""
        async with asyncio.timeout(30):
            while b"could not re-apply marks" not in output:
                output += await proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    printed = (output + rest).decode()
    assert "10004" in printed
    for secret in (admin_sig, "usersig=", params["Sign"], "Sign="):
        assert secret not in printed, (secret, printed)
