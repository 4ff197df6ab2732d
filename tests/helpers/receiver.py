"""A real HTTP receiver for webhooks: records every POST and answers as told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


async def read_body(receive) -> bytes:  # type: ignore[no-untyped-def]
    """The whole body of an ASGI HTTP request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


@dataclass
class Received:
    query: dict[str, str]
    body: dict


@dataclass
class Receiver:
    """Records every POST; answers with ``statuses`` in turn, then 200."""

    url: str = ""
    calls: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    hits: int = 0  # every request, answered 200 or not
    # The reply's JSON for a command and body (before-callbacks read it); None: plain OK.
    answer: Callable[[str, dict[str, Any]], dict[str, Any] | None] | None = None
    # Seconds to wait before answering, per CallbackCommand (on top of ``delay``).
    delays: dict[str, float] = field(default_factory=dict)

    def commands(self) -> list[str]:
        return [c.query["CallbackCommand"] for c in self.calls]

    def of(self, command: str) -> list[Received]:
        return [c for c in self.calls if c.query["CallbackCommand"] == command]

    async def wait_for(self, count: int, command: str | None = None,
                       seconds: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            got = self.of(command) if command else self.calls
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} {command or 'callbacks'}, got {self.commands()}")

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        from urllib.parse import parse_qsl

        import msgspec

        body = await read_body(receive)
        self.hits += 1
        status = self.statuses.pop(0) if self.statuses else 200
        query = dict(parse_qsl(scope["query_string"].decode()))
        command = query.get("CallbackCommand", "")
        wait = self.delay + self.delays.get(command, 0.0)
        if wait:
            await asyncio.sleep(wait)
        decoded = msgspec.json.decode(body)
        if status == 200:
            self.calls.append(Received(query, decoded))
        reply = self.answer(command, decoded) if self.answer is not None else None
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body",
                    "body": msgspec.json.encode(reply) if reply is not None else
                    b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'})
