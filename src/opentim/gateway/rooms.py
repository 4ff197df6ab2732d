"""Which of this process's client connections are in which group, to push group events.

Pushes reach the connections held by this process. With several processes sharing
presence through Redis, each process pushes to its own connections of an event it
handled (documented as a current limit in docs/client-protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from opentim.events import (
    Event,
    EventBus,
    GroupDestroyed,
    MarksChanged,
    MembersExited,
    MemberStateChanged,
)

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode

# Join/leave pushes to a group are coalesced: at most one batch per group per interval, so
# a 100k-member room sees one frame a second, not one per viewer.
BATCH_INTERVAL = 1.0


class Pushable(Protocol):
    account: str

    async def send_raw(self, data: bytes) -> None: ...

    async def removed_from(self, group_id: str, reason: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class _Batch:
    __slots__ = ("offline", "online", "task")

    def __init__(self) -> None:
        self.online: dict[str, None] = {}
        self.offline: dict[str, None] = {}
        self.task: asyncio.Task[None] | None = None


class LocalRooms:
    def __init__(self, events: EventBus, clock: Callable[[], float] = time.time,
                 batch_interval: float = BATCH_INTERVAL) -> None:
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._rooms: dict[tuple[int, str], set[Pushable]] = defaultdict(set)
        self._batches: dict[tuple[int, str], _Batch] = {}
        self._last_flush: dict[tuple[int, str], float] = {}
        self._interval = batch_interval
        events.subscribe(self._on_event)

    def enter(self, sdkappid: int, group_id: str, conn: Pushable) -> None:
        self._rooms[(sdkappid, group_id)].add(conn)

    def leave(self, sdkappid: int, group_id: str, conn: Pushable) -> None:
        room = self._rooms.get((sdkappid, group_id))
        if room is not None:
            room.discard(conn)
            if not room:
                del self._rooms[(sdkappid, group_id)]

    def size(self, sdkappid: int, group_id: str) -> int:
        return len(self._rooms.get((sdkappid, group_id), ()))

    async def push(self, sdkappid: int, group_id: str, doc: dict[str, Any]) -> None:
        room = self._rooms.get((sdkappid, group_id))
        if not room:
            return
        data = _encode(doc)  # once, not once per connection
        for conn in list(room):
            try:
                await conn.send_raw(data)
            except Exception:  # that client is going away; the others still get it
                log.debug("push to a closing connection failed", exc_info=True)

    def _push_soon(self, sdkappid: int, group_id: str, doc: dict[str, Any]) -> None:
        """Push in the background: a slow client must not delay the call that changed things."""
        task = asyncio.create_task(self.push(sdkappid, group_id, doc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _member_state(self, event: MemberStateChanged) -> None:
        key = (event.sdkappid, event.group_id)
        if key not in self._rooms:
            return
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch()
        # The latest state of an account in this batch wins.
        (batch.online if event.online else batch.offline)[event.account] = None
        (batch.offline if event.online else batch.online).pop(event.account, None)
        if batch.task is None:
            since = time.monotonic() - self._last_flush.get(key, 0.0)
            delay = max(0.0, self._interval - since)
            batch.task = asyncio.create_task(self._flush(key, delay))
            self._tasks.add(batch.task)
            batch.task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: tuple[int, str], delay: float) -> None:
        await asyncio.sleep(delay)
        batch = self._batches.pop(key)
        self._last_flush[key] = time.monotonic()
        if len(self._last_flush) > 10_000:  # keep only recent groups
            self._last_flush = {k: t for k, t in self._last_flush.items()
                                if time.monotonic() - t < self._interval}
        await self.push(key[0], key[1], {
            "event": "members_changed", "GroupId": key[1],
            "Online": list(batch.online), "Offline": list(batch.offline),
            "EventTime": int(self._clock() * 1000),
        })

    async def _removed(self, sdkappid: int, group_id: str, accounts: set[str] | None,
                       reason: str) -> None:
        """Connections of removed members (or all, for a dismissed group) leave the room."""
        for conn in list(self._rooms.get((sdkappid, group_id), ())):
            if accounts is None or conn.account in accounts:
                self.leave(sdkappid, group_id, conn)
                try:
                    await conn.removed_from(group_id, reason)
                except Exception:  # one closing socket must not keep the others in the room
                    log.warning("telling a connection it left %s failed", group_id,
                                exc_info=True)

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, GroupDestroyed):
            await self._removed(event.sdkappid, event.group_id, None, "GroupDestroyed")
        elif isinstance(event, MembersExited):
            await self._removed(event.sdkappid, event.group_id, set(event.members),
                                event.exit_type)
        elif isinstance(event, MemberStateChanged):
            self._member_state(event)
        elif isinstance(event, MarksChanged):
            self._push_soon(event.sdkappid, event.group_id, {
                "event": "marks_changed",
                "GroupId": event.group_id,
                "CommandType": event.command_type,
                "Operator_Account": event.operator,
                "MemberList": [{"Member_Account": a, "Marks": list(m)}
                               for a, m in event.members],
                "EventTime": event.event_time_ms,
            })

    def connections(self) -> set[Pushable]:
        return {conn for room in self._rooms.values() for conn in room}

    async def close_all(self, code: int, reason: str) -> None:
        for conn in self.connections():
            await conn.close(code, reason)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
