"""The same-run baselines: bare ASGI apps on OpenTIM's uvicorn config.

One app, four behaviours (no routing framework, auth, store or envelope in any of them):

* HTTP, a URL listed in ``--bodies``: answers 200 with the bytes OpenTIM gave for the same
  request, looked up by path, query string and (when listed) request body. An entry with
  ``"reencode": true`` is decoded once at start and re-encoded with msgspec on every
  request, as a server that builds the document per call would.
* HTTP ``/callback``: a webhook receiver; answers 200 with Tencent's OK body, counts the
  requests (``GET /count`` tells how many).
* WebSocket (any path): sends a ``connected`` frame shaped like the gateway's (so
  ``opentim.client.connect`` works against it), then echoes every frame back.
* anything else: 200 with a FAIL body, which makes a wrk run against it fail.

The suite (``bench/harness.py``) writes the bodies file and starts it:

    python bench/bare.py [--bodies FILE] --port N --log-level warning
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

import msgspec
import uvicorn

_HEADERS = [(b"content-type", b"application/json; charset=utf-8")]
_MISSING = b'{"ActionStatus":"FAIL","ErrorCode":-1,"ErrorInfo":"bare: no body for this URL"}'
_CALLBACK_OK = b'{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}'
_HELLO = b'{"event":"connected","ConnectionId":"0","HeartbeatTimeout":30.0}'

Key = tuple[str, bytes, bytes | None]  # path, query string, request body (None: any)


def make_app(fixed: dict[Key, bytes], reencode: dict[Key, Any]) -> Any:
    encode = msgspec.json.Encoder().encode
    received = [0]

    async def lifespan(receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def echo(receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "bytes": _HELLO})
            elif message["type"] == "websocket.receive":
                data = message.get("bytes")
                if data is None:
                    data = (message.get("text") or "").encode()
                await send({"type": "websocket.send", "bytes": data})
            else:  # websocket.disconnect
                return

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["type"] == "websocket":
            return await echo(receive, send)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        path, query, body = scope["path"], scope["query_string"], b"".join(chunks)
        if path == "/callback":
            received[0] += 1
            answer = _CALLBACK_OK
        elif path == "/count":
            answer = str(received[0]).encode()
        else:
            answer = fixed.get((path, query, body)) or fixed.get((path, query, None), b"")
            if not answer:
                doc = reencode.get((path, query, body), reencode.get((path, query, None)))
                answer = _MISSING if doc is None else encode(doc)
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": answer})

    return app


def load(path: str | None) -> tuple[dict[Key, bytes], dict[Key, Any]]:
    """The bodies file: a JSON list of {"path", "query", "body_b64", optional
    "request_b64" (match this request body only), optional "reencode": true}."""
    fixed: dict[Key, bytes] = {}
    reencode: dict[Key, Any] = {}
    if path is None:
        return fixed, reencode
    with open(path) as f:
        for e in json.load(f):
            request = e.get("request_b64")
            key = (e["path"], e["query"].encode(),
                   None if request is None else base64.b64decode(request))
            body = base64.b64decode(e["body_b64"])
            if e.get("reencode"):
                reencode[key] = msgspec.json.decode(body)
            else:
                fixed[key] = body
    return fixed, reencode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bodies", help="JSON list of URL -> answer entries (see load())")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    # The same call as `opentim serve` (src/opentim/cli.py): keep the two in step.
    uvicorn.run(make_app(*load(args.bodies)), host=args.host, port=args.port,
                log_level=args.log_level, lifespan="on", access_log=False)


if __name__ == "__main__":
    main()
