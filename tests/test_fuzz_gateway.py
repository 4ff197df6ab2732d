"""Generated frames for every gateway command, over real WebSockets.

For each command the gateway knows (the session's own, ``frames.COMMANDS``, and those the
services registered in ``gateway.commands.REGISTRY``), hypothesis sends frames built from
the command's Struct with the IDs of a small world (tests/helpers/strategies.py): mostly
well typed, the rest mutated (wrong types, NUL, huge integers, deep nesting, long strings,
unknown or missing fields, ids the server does not echo) or not a JSON object at all
(binary junk, cut-off JSON, 100,000 levels of nesting, more than 128 KiB). Each frame goes
as a text or a binary WebSocket message.

Every frame gets exactly one reply carrying an ErrorCode that is never an internal error,
with the frame's id echoed when the server echoes ids, or the connection is closed with
the code docs/client-protocol.md §7 gives for it (1009 for a frame past 128 KiB, 1000
after a logout). Nothing logs an error or a traceback, and another connection of the app
keeps answering throughout. On both presence backends and both databases.
``OPENTIM_FUZZ_EXAMPLES`` (default 100) frames per command and configuration: 400 per
command in all, 20 s on an idle 2-core machine, 80 s on a busy one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from opentim.domain.apps import App
from opentim.gateway import commands, endpoint, frames
from opentim.protocol import dispatch
from tests.helpers import LiveServer, live_server
from tests.helpers.strategies import (
    World,
    build_world,
    encoded,
    failure_text,
    fuzz,
    raw_garbage,
)
from tests.helpers.strategies import frames as frame_strategy

dispatch.load_services()  # the services register their gateway commands on import

EXAMPLES = int(os.environ.get("OPENTIM_FUZZ_EXAMPLES", "100"))
INTERNAL = frozenset({10002, 70500, 91000} |
                     {svc.internal_error.code for svc in dispatch.SERVICES.values()})
RAW = "(not a command)"  # frames that are not a JSON object at all
COMMAND_TYPES: dict[str, type[msgspec.Struct]] = {
    **{name: frames.Frame for name in frames.COMMANDS},
    **{name: command.request for name, command in sorted(commands.REGISTRY.items())},
}
KINDS = (*COMMAND_TYPES, RAW)
REPLY_TIMEOUT = 10.0

FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
pytestmark = [
    pytest.mark.timeout(max(600, EXAMPLES * 3)),
    # Hypothesis generates in a worker thread while the server's own code on the event
    # loop's thread uses `random` (RestClient's random=, jitter): not the strategies.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]


@pytest.fixture
async def gw(db_url: str, presence_backend: str) -> AsyncIterator[LiveServer]:
    async with live_server(db_url, presence_backend) as srv:
        yield srv


@dataclass
class Clients:
    """One open raw WebSocket per account, reopened after the server closed it."""

    live: LiveServer
    app: App
    stack: contextlib.AsyncExitStack
    open: dict[str, Any] = field(default_factory=dict)

    async def get(self, account: str) -> Any:
        ws = self.open.get(account)
        if ws is None:
            ws = self.open[account] = await self.stack.enter_async_context(
                self.live.raw_connect(self.app, account))
        return ws

    def closed(self, account: str) -> None:
        self.open.pop(account, None)

    async def drop(self, account: str) -> None:
        """After a failed check: the next example starts on a fresh connection (a reply
        left unread would be taken for the next frame's, and shrinking would wander)."""
        ws = self.open.pop(account, None)
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()


@pytest.fixture
async def setup(gw: LiveServer) -> AsyncIterator[tuple[World, Clients]]:
    app = await gw.new_app(rate_limit=0, group_msg_rate=0)
    async with gw.client(app) as tim, contextlib.AsyncExitStack() as stack:
        yield await build_world(tim, int(gw.clock())), Clients(gw, app, stack)


def _expected_id(payload: Any) -> Any:
    """The id a reply must carry: the frame's, when the server echoes it (§2)."""
    if isinstance(payload, bytes):
        try:
            payload = msgspec.json.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            return None
    if not isinstance(payload, dict):
        return None
    value = payload.get("id")
    if type(value) is int and -(2**63) <= value < 2**63:
        return value
    if type(value) is str and len(value) <= frames.MAX_ID_CHARS:
        return value
    return None


async def _reply(ws: Any) -> dict[str, Any] | None:
    """The next reply (pushed events are skipped), or None once the server closed."""
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT)
        except ConnectionClosed:
            return None
        doc = msgspec.json.decode(raw)
        assert isinstance(doc, dict), raw[:200]
        if "event" not in doc:
            return doc


def _logged_errors(caplog: pytest.LogCaptureFixture, since: int) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()[:300]}" +
            (" (with a traceback)" if r.exc_info else "")
            for r in caplog.records[since:] if r.levelno >= logging.ERROR or r.exc_info]


class FrameCheck:
    """One frame's round trip, and what must hold of it."""

    def __init__(self, clients: Clients, caplog: pytest.LogCaptureFixture) -> None:
        self.clients = clients
        self.caplog = caplog
        self.sent = 0

    async def __call__(self, example: tuple[Any, str, bool]) -> None:
        payload, account, as_text = example
        self.sent += 1
        try:
            await self._round_trip(payload, account, as_text)
        except BaseException:
            await self.clients.drop(account)
            await self.clients.drop("c")
            raise

    async def _round_trip(self, payload: Any, account: str, as_text: bool) -> None:
        clients = self.clients
        message: bytes | str = encoded(payload)
        if as_text:
            with contextlib.suppress(UnicodeDecodeError):
                message = encoded(payload).decode()
        since = len(self.caplog.records)
        ws = await clients.get(account)
        try:
            await ws.send(message)
        except ConnectionClosed:  # closed (1009) while a large frame was still going out
            reply = None
        else:
            reply = await _reply(ws)
        too_big = len(encoded(payload)) > clients.live.runtime.settings.max_frame_bytes
        if reply is None:
            clients.closed(account)
            assert too_big and ws.close_code == 1009, (ws.close_code, ws.close_reason)
        else:
            assert not too_big, reply
            assert set(reply) >= {"id", "ErrorCode", "ErrorInfo"}, reply
            code = reply["ErrorCode"]
            assert type(code) is int and isinstance(reply["ErrorInfo"], str), reply
            assert code not in INTERNAL, reply
            assert reply["id"] == (None if code == 60003 else _expected_id(payload)), reply
            if isinstance(payload, dict) and payload.get("cmd") == "logout" and code == 0:
                assert await _reply(ws) is None  # logged out: the server closes
                assert ws.close_code == endpoint.CLOSE_NORMAL, ws.close_code
                clients.closed(account)
        # Another connection of the app is unaffected.
        observer = await clients.get("c")
        await observer.send(b'{"id":"observer","cmd":"heartbeat"}')
        assert await _reply(observer) == {"id": "observer", "ErrorCode": 0, "ErrorInfo": ""}
        assert _logged_errors(self.caplog, since) == []


async def test_generated_frames(setup: tuple[World, Clients],
                                caplog: pytest.LogCaptureFixture) -> None:
    """A hypothesis search per command (and one of frames that are no JSON object), on
    one server per configuration: a server per command would start more than it fuzzes."""
    world, clients = setup
    failures: dict[str, str] = {}
    for kind in KINDS:
        frames_of_kind = raw_garbage({"cmd": "heartbeat", "id": 1}) if kind == RAW \
            else frame_strategy(kind, COMMAND_TYPES[kind], world)
        # a owns the world's groups (modify_marks), b is a member; either as text or binary
        examples = st.tuples(frames_of_kind, st.sampled_from(("a", "b")), st.booleans())
        check = FrameCheck(clients, caplog)
        started = time.monotonic()
        try:
            await fuzz(examples, check, FUZZ)
        except Exception as exc:
            failures[kind] = failure_text(exc)
        print(f"{kind}: {check.sent} frames in {time.monotonic() - started:.1f} s")
    assert not failures, "\n\n".join(f"{kind}:\n{text}" for kind, text in failures.items())


def test_every_gateway_command_is_fuzzed() -> None:
    assert set(COMMAND_TYPES) == set(frames.all_commands())
    assert {"send_group_msg", "send_c2c_msg"} <= set(COMMAND_TYPES)
