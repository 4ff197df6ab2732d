"""Which of this process's client connections are in which group, to push group events.

Pushes reach the connections held by this process. With several processes sharing
presence through Redis, each process pushes to its own connections of an event it
handled (documented as a current limit in docs/client-protocol.md).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol

from opentim.events import Event, EventBus, MarksChanged


class Pushable(Protocol):
    async def send(self, doc: dict[str, Any]) -> None: ...


class LocalRooms:
    def __init__(self, events: EventBus) -> None:
        self._rooms: dict[tuple[int, str], set[Pushable]] = defaultdict(set)
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
        for conn in list(self._rooms.get((sdkappid, group_id), ())):
            await conn.send(doc)

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, MarksChanged):
            await self.push(event.sdkappid, event.group_id, {
                "event": "marks_changed",
                "GroupId": event.group_id,
                "CommandType": event.command_type,
                "Operator_Account": event.operator,
                "MemberList": [{"Member_Account": a, "Marks": list(m)}
                               for a, m in event.members],
                "EventTime": event.event_time_ms,
            })
