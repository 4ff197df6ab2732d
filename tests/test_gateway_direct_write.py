"""Pushed frames written straight to the socket (gateway/transport.py ``DirectWrite``), and
the queued path they fall back to: same frames, same order, on the server `opentim serve`
runs (uvicorn's websockets sans-I/O protocol, configured by serving.uvicorn_config).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from opentim.gateway import transport
from opentim.gateway.outbox import WriteCounts
from tests.helpers import LiveServer, create_group, eventually, import_accounts, live_server

SEND = "group_open_http_svc/send_group_msg"


def text(value: str) -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


def test_a_built_frame_is_what_websockets_itself_sends() -> None:
    from websockets.frames import Frame, Opcode

    for size in (0, 125, 126, 65535, 65536, 200_000):
        data = b"x" * size
        assert transport.binary_frame(data) == \
            Frame(Opcode.BINARY, data).serialize(mask=False, extensions=[])
    assert transport.binary_frame(b"ab")[:2] == b"\x82\x02"  # FIN, binary, unmasked


def counts(live: LiveServer) -> WriteCounts:
    return live.asgi.state.rooms.write_counts  # type: ignore[attr-defined,no-any-return]


async def _metric(live: LiveServer, path: str) -> int:
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{live.asgi.state.metrics_url}/metrics")).text  # type: ignore[attr-defined]
    line = next(ln for ln in body.splitlines()
                if ln.startswith(f'opentim_gateway_frames_total{{path="{path}"}}'))
    return int(line.split()[-1])


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
async def test_room_messages_go_straight_to_the_socket_unless_deflate_is_on(
        tmp_path, compression: bool) -> None:  # type: ignore[no-untyped-def]
    async with live_server(f"sqlite+aiosqlite:///{tmp_path}/d.db", "memory",
                           ws_compression=compression, metrics_port=0) as live:
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "host", "v1", "v2")
            group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
            async with live.connect(app, "v1") as v1, live.connect(app, "v2") as v2:
                for session in (v1, v2):
                    await session.join_group(group_id)
                before = counts(live).direct
                seqs = [(await tim.ok(SEND, {"GroupId": group_id, "Random": i,
                                             "MsgBody": text(f"m{i}")}))["MsgSeq"]
                        for i in range(20)]
                for session in (v1, v2):
                    got = [await session.next_message() for _ in seqs]
                    assert [m["MsgSeq"] for m in got] == seqs
                    assert [m["MsgBody"] for m in got] == [text(f"m{i}") for i in range(20)]
                direct = counts(live).direct - before
                if compression:  # permessage-deflate: every frame through websockets
                    assert direct == 0
                else:
                    assert direct >= 2 * len(seqs)
                    assert await _metric(live, "direct") == counts(live).direct


async def test_a_client_that_stops_reading_then_resumes_gets_every_message_in_order(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The socket fills (the transport pauses writing), so later frames queue behind it in
    the outbox; once the client reads again they arrive after the direct ones, none lost,
    none overtaken."""
    async with live_server(f"sqlite+aiosqlite:///{tmp_path}/d.db", "memory",
                           push_backlog_bytes=64 << 20) as live:
        app = await live.new_app(rate_limit=0, group_msg_rate=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "host", "reader")
            group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
            async with live.raw_connect(app, "reader", receive_buffer=1 << 16) as ws:
                await ws.send(msgspec.json.encode({"id": 1, "cmd": "join_group",
                                                   "GroupId": group_id}))
                assert msgspec.json.decode(await ws.recv())["ErrorCode"] == 0
                queued_before = counts(live).queued
                body = text("x" * 11_000)
                sent = 0
                # Until the server's transport has paused and frames queue in the outbox.
                while counts(live).queued == queued_before or sent < 50:
                    await tim.ok(SEND, {"GroupId": group_id, "Random": sent, "MsgBody": body})
                    sent += 1
                    assert sent < 3000, "the socket never filled"
                for _ in range(10):  # a few more behind the queued ones
                    await tim.ok(SEND, {"GroupId": group_id, "Random": sent, "MsgBody": body})
                    sent += 1
                seqs = []
                async with asyncio.timeout(60):
                    while len(seqs) < sent:
                        doc = msgspec.json.decode(await ws.recv())
                        if doc.get("event") == "group_message":
                            seqs.append(doc["MsgSeq"])
                assert seqs == list(range(seqs[0], seqs[0] + sent))
                assert counts(live).queued > queued_before


# --- messages wait for the coalescer; any other frame takes them out first ---------------


async def _frames(ws: Any, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        return [msgspec.json.decode(await ws.recv()) for _ in range(count)]


async def test_a_reply_or_a_kick_goes_out_after_the_messages_waiting_before_it(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A coalescing delay far longer than the test: the messages go out only because a
    # later frame for the same connection takes them out ahead of itself.
    async with live_server(f"sqlite+aiosqlite:///{tmp_path}/d.db", "memory",
                           gateway_write_delay=1.0) as live:
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "host", "v")
            group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
            async with live.raw_connect(app, "v") as ws:
                await ws.send(msgspec.json.encode({"id": 1, "cmd": "join_group",
                                                   "GroupId": group_id}))
                assert (await _frames(ws, 1))[0]["id"] == 1
                await _frames(ws, 1)  # members_changed: the room was quiet
                rooms = live.asgi.state.rooms  # type: ignore[attr-defined]
                # The group's first message waits rooms.FIRST_HOLD for predecessors; the
                # ones after it are handed to the connection (to wait in its outbox) at once.
                await tim.ok(SEND, {"GroupId": group_id, "Random": 100, "MsgBody": text("m")})
                assert (await _frames(ws, 1))[0]["event"] == "group_message"
                handed = rooms.messages_delivered + 2
                seqs = [(await tim.ok(SEND, {"GroupId": group_id, "Random": i,
                                             "MsgBody": text(f"m{i}")}))["MsgSeq"]
                        for i in range(2)]

                async def handed_out() -> bool:
                    return rooms.messages_delivered == handed

                await eventually(handed_out, "the messages reach the connection's outbox")
                await ws.send(msgspec.json.encode({"id": 2, "cmd": "heartbeat"}))
                got = await _frames(ws, 3)
                assert [f.get("MsgSeq") for f in got[:2]] == seqs, got
                assert got[2]["id"] == 2 and got[2]["ErrorCode"] == 0

                last = (await tim.ok(SEND, {"GroupId": group_id, "Random": 9,
                                            "MsgBody": text("last")}))["MsgSeq"]
                await tim.ok("im_open_login_svc/kick", {"UserID": "v"})
                got = await _frames(ws, 2)
                assert got[0]["MsgSeq"] == last
                assert got[1] == {"event": "kicked", "Reason": "Kicked"}
                with pytest.raises(ConnectionClosed):
                    await _frames(ws, 1)
                assert ws.close_code == 4013


def test_the_write_delay_is_a_setting_with_bounds() -> None:
    from opentim.ops.config import ConfigError, resolve

    env = {"OPENTIM_GATEWAY_WRITE_DELAY": "0"}
    assert resolve({}, None, env).settings.gateway_write_delay == 0
    with pytest.raises(ConfigError, match="OPENTIM_GATEWAY_WRITE_DELAY"):
        resolve({}, None, {"OPENTIM_GATEWAY_WRITE_DELAY": "2"})
