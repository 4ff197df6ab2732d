"""The fan-out baseline: a bare WebSocket broadcast server on the gateway's own stack.

The gateway runs on uvicorn with its default WebSocket protocol (``websockets``' sans-I/O
implementation, ``ws="auto"``) under uvloop, behind Starlette's thin ``WebSocket``
wrapper. This server is a raw ASGI app on exactly that uvicorn configuration (so the same
handshake, framing, pings and write path), with nothing of OpenTIM's: no auth, no store,
no presence, no event bus, no per-connection outbox. The difference between the two is
what OpenTIM adds to each delivery.

* WebSocket (any path): sends a ``connected`` frame shaped like the gateway's, then
  answers every frame with ``{"id": <its id>, "ErrorCode": 0, "ErrorInfo": ""}``;
  ``join_group`` puts the connection in the room named by ``GroupId`` (the reply carries
  it, as the gateway's does).
* ``POST /broadcast?group=G``: the request body is a pre-encoded frame; it is written to
  every connection in room G, in one loop, before the answer (an OK envelope) goes back.
  ``&raw=1``: the floor instead of the baseline: the WebSocket frame is built once and its
  bytes written straight to each connection's transport (no ASGI send, no websockets
  framing per connection). With ``--redis``, the frame is also PUBLISHed (prefixed by
  this process's node id) on ``--channel``, and every other process started with the same
  channel writes it to its own connections in G: the two-process baseline, one hop
  through Redis pub/sub as OpenTIM's relay makes.

    python bench/bare_ws.py --port N [--redis URL --channel NAME] [--log-level warning]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs

import msgspec
import uvicorn

_HEADERS = [(b"content-type", b"application/json; charset=utf-8")]
_OK = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'
_FAIL = b'{"ActionStatus":"FAIL","ErrorCode":-1,"ErrorInfo":"bare_ws: unknown URL"}'
_HELLO = b'{"event":"connected","ConnectionId":"0","HeartbeatTimeout":30.0}'

Send = Any  # an ASGI send callable


def make_app(redis_url: str = "", channel: str = "") -> Any:
    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder().decode
    rooms: dict[str, dict[Send, Any]] = defaultdict(dict)  # send -> its asyncio transport
    node = os.urandom(8).hex().encode()
    state: dict[str, Any] = {}

    async def broadcast(group: str, frame: bytes, raw: bool = False) -> None:
        if raw:
            n = len(frame)
            head = bytes([0x82, n]) if n < 126 else (
                bytes([0x82, 126]) + n.to_bytes(2, "big") if n < 1 << 16
                else bytes([0x82, 127]) + n.to_bytes(8, "big"))
            data = head + frame
            for transport in list(rooms.get(group, {}).values()):
                if transport is not None and not transport.is_closing():
                    transport.write(data)
            return
        message = {"type": "websocket.send", "bytes": frame}
        for send in list(rooms.get(group, ())):
            with contextlib.suppress(Exception):  # gone meanwhile
                await send(message)

    async def listen(pubsub: Any) -> None:
        async for item in pubsub.listen():
            if item.get("type") != "message":
                continue
            data: bytes = item["data"]
            origin, group, raw, frame = data.split(b"\n", 3)
            if origin != node:
                await broadcast(group.decode(), frame, raw == b"1")

    async def lifespan(receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if redis_url:
                    import redis.asyncio as aioredis

                    client = aioredis.from_url(redis_url)
                    pubsub = client.pubsub()
                    await pubsub.subscribe(channel)
                    state.update(client=client, pubsub=pubsub,
                                 task=asyncio.create_task(listen(pubsub)))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if "task" in state:
                    state["task"].cancel()
                    await state["pubsub"].aclose()
                    await state["client"].aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def websocket(receive: Any, send: Any) -> None:
        joined: list[str] = []
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.connect":
                    await send({"type": "websocket.accept"})
                    await send({"type": "websocket.send", "bytes": _HELLO})
                    continue
                if kind == "websocket.disconnect":
                    return
                raw = message.get("bytes") or (message.get("text") or "").encode()
                try:
                    doc = decode(raw)
                except msgspec.DecodeError:
                    doc = {}
                reply: dict[str, Any] = {"id": doc.get("id"), "ErrorCode": 0,
                                         "ErrorInfo": ""}
                if doc.get("cmd") == "join_group":
                    group = str(doc.get("GroupId"))
                    # uvicorn's receive is a method of its protocol, which holds the
                    # transport (as src/opentim/gateway/transport.py finds it)
                    owner = getattr(receive, "__self__", None)
                    rooms[group][send] = getattr(owner, "transport", None)
                    joined.append(group)
                    reply["GroupId"] = group
                await send({"type": "websocket.send", "bytes": encode(reply)})
        finally:
            for group in joined:
                rooms[group].pop(send, None)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["type"] == "websocket":
            return await websocket(receive, send)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        answer = _FAIL
        if scope["path"] == "/broadcast":
            query = parse_qs(scope["query_string"].decode())
            group, raw = query.get("group", [""])[0], query.get("raw", [""])[0] == "1"
            frame = b"".join(chunks)
            await broadcast(group, frame, raw)
            if "client" in state:
                await state["client"].publish(channel, b"\n".join(
                    (node, group.encode(), b"1" if raw else b"0", frame)))
            answer = _OK
        elif scope["path"] == "/":
            answer = _OK
        await send({"type": "http.response.start", "status": 200, "headers": [
            *_HEADERS, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default="", help="relay broadcasts through this Redis")
    parser.add_argument("--channel", default="", help="the pub/sub channel (with --redis)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if bool(args.redis) != bool(args.channel):
        parser.error("--redis and --channel go together")
    # The gateway's listener (src/opentim/serving.py): uvicorn defaults (uvloop, websockets'
    # sans-I/O protocol, pings every 20 s), no access log, permessage-deflate off.
    uvicorn.run(make_app(args.redis, args.channel), host=args.host, port=args.port,
                log_level=args.log_level, lifespan="on", access_log=False,
                ws_per_message_deflate=False, ws_max_size=128 << 10)


if __name__ == "__main__":
    main()
