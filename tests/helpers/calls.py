"""What tests do through the public interfaces: REST calls, gateway sessions, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy import event

from opentim.client.rest import RestClient
from tests.helpers.servers import LiveServer, Server

SVC = "group_open_http_svc"
AV = "group_open_avchatroom_http_svc"


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     seconds: float = 10.0) -> None:
    """Wait until ``check()`` holds, polling; fail after ``seconds`` (a bound, not a pace)."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)


# --- REST ---------------------------------------------------------------------------------


async def import_accounts(tim: RestClient, *user_ids: str, nick: str = "") -> None:
    for start in range(0, len(user_ids), 100):
        chunk = user_ids[start:start + 100]
        await tim.ok("im_open_login_svc/multiaccount_import", {
            "AccountList": [{"UserID": u, "Nick": nick or f"nick-{u}",
                             "FaceUrl": f"http://img.test/{u}.png"} for u in chunk]
        })


async def create_group(tim: RestClient, group_type: str = "Public", **fields: object) -> str:
    body = {"Type": group_type, "Name": "g", **fields}
    reply = await tim.ok(f"{SVC}/create_group", body)
    return reply["GroupId"]


async def old_group(server: Server, tim: RestClient, group_type: str = "Public",
                    age: int = 3600, **fields: object) -> tuple[str, int]:
    """A group imported with a CreateTime ``age`` seconds ago: (GroupId, CreateTime)."""
    create_time = int(server.clock()) - age
    reply = await tim.ok(f"{SVC}/import_group", {"Type": group_type, "Name": "g",
                                                 "CreateTime": create_time, **fields})
    return reply["GroupId"], create_time


async def roster(tim: RestClient, group_id: str,
                 fields: tuple[str, ...] = ("Role", "JoinTime", "UnreadMsgNum"),
                 ) -> tuple[int, dict[str, dict[str, Any]]]:
    """(MemberNum, account -> row) of a group, every page read."""
    rows: dict[str, dict[str, Any]] = {}
    body: dict[str, Any] = {"GroupId": group_id, "Limit": 6000,
                            "MemberInfoFilter": list(fields)}
    while True:
        reply = await tim.ok(f"{SVC}/get_group_member_info", body)
        rows.update((r["Member_Account"], r) for r in reply["MemberList"])
        if not reply.get("Next"):
            return reply["MemberNum"], rows
        body["Next"] = reply["Next"]


async def members(tim: RestClient, group_id: str, **body: Any) -> tuple[list[dict], int]:
    """One page of a live group's online list: (MemberList, NextTimestamp)."""
    reply = await tim.ok(f"{AV}/get_members", {"GroupId": group_id, "Timestamp": 0, **body})
    return reply["MemberList"], reply["NextTimestamp"]


async def all_pages(tim: RestClient, group_id: str, **body: Any) -> list[str]:
    """Every account of a live group's online list, newest first, every page read."""
    seen: list[str] = []
    cursor = 0
    while True:
        reply = await tim.ok(f"{AV}/get_members",
                             {"GroupId": group_id, "Timestamp": cursor, **body})
        seen += [m["Member_Account"] for m in reply["MemberList"]]
        cursor = reply["NextTimestamp"]
        if not cursor:
            return seen


async def online_num(tim: RestClient, group_id: str) -> int:
    reply = await tim.ok(f"{SVC}/get_online_member_num", {"GroupId": group_id})
    return reply["OnlineMemberNum"]


async def modify(tim: RestClient, group_id: str, command_type: int,
                 *items: tuple[str, list[int]]) -> dict:
    """modify_user_info (1 sets marks, 2 clears them); the reply, OK or not."""
    return await tim.call(f"{AV}/modify_user_info", {
        "GroupId": group_id, "CommandType": command_type,
        "MemberList": [{"Member_Account": a, "Marks": m} for a, m in items]})


# --- gateway --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sessions(live: LiveServer, app, users, group_id: str | None = None  # type: ignore[no-untyped-def]
                   ) -> AsyncIterator[list[Any]]:
    """Open one session per user (joined to ``group_id`` if given), close them all after."""
    async with contextlib.AsyncExitStack() as stack:
        opened = []
        for user in users:
            session = await stack.enter_async_context(live.connect(app, user))
            if group_id is not None:
                await session.join_group(group_id)
            opened.append(session)
        yield opened


async def next_event(session, kind: str, timeout: float = 5.0) -> dict:  # type: ignore[no-untyped-def]
    """The next pushed event of ``kind`` on a gateway session, skipping other kinds."""
    async with asyncio.timeout(timeout):
        while True:
            pushed = await session.events.get()
            if pushed.get("event") == kind:
                return pushed


# --- the database ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def statements(server: Server) -> AsyncIterator[list[str]]:
    """Every SQL statement the server's engine runs inside the block."""
    seen: list[str] = []
    engine = server.runtime.db.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
