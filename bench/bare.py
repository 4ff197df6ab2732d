"""The same-run baseline: a bare ASGI app answering fixed bytes, on OpenTIM's uvicorn config.

It reads the request body and answers HTTP 200 with the bytes OpenTIM gave for the same
request (looked up by path and query string), with the same content-type: no routing, auth,
store or envelope. ``bench/suite.py`` writes the bodies file and starts it.

    python bench/bare.py --bodies FILE --port N --log-level warning
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

import uvicorn

_HEADERS = [(b"content-type", b"application/json; charset=utf-8")]


def make_app(bodies: dict[tuple[str, bytes], bytes]) -> Any:
    missing = b'{"ActionStatus":"FAIL","ErrorCode":-1,"ErrorInfo":"bare: no body for this URL"}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while (await receive()).get("more_body", False):
            pass
        body = bodies.get((scope["path"], scope["query_string"]), missing)
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bodies", required=True,
                        help='JSON list of {"path", "query", "body_b64"}')
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    with open(args.bodies) as f:
        entries = json.load(f)
    bodies = {(e["path"], e["query"].encode()): base64.b64decode(e["body_b64"])
              for e in entries}
    # The same call as `opentim serve` (src/opentim/cli.py): keep the two in step.
    uvicorn.run(make_app(bodies), host=args.host, port=args.port, log_level=args.log_level,
                lifespan="on")


if __name__ == "__main__":
    main()
