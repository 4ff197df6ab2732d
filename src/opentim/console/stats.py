"""The overview's numbers: connections, online members and messages per second, per app.

Counted from this process's event bus (connections logging in and out, members going
online and offline in live groups, group and one-to-one messages sent), one sample per
second kept for the chart. With several processes sharing presence through Redis each
process counts what it handled (docs/console.md#overview).

Samples are filled in when an event arrives or the overview is read, never by a timer:
between two events the gauges do not change, so the seconds in between repeat them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from opentim.events import (
    C2CMessageSent,
    ConnectionStateChanged,
    Event,
    EventBus,
    GroupMessageSent,
    MemberStateChanged,
)

HISTORY_SECONDS = 300  # samples kept per app (five minutes of the chart)

Sample = tuple[int, int, int, int]  # (second, connections, online members, messages)


class AppStats:
    __slots__ = ("connections", "history", "messages", "online", "second")

    def __init__(self, now: float) -> None:
        self.connections = 0
        self.online = 0
        self.messages = 0  # sent during ``second``
        self.second = int(now)
        self.history: deque[Sample] = deque(maxlen=HISTORY_SECONDS)

    def advance(self, now: float) -> None:
        """Close the seconds that ended before ``now`` (at most HISTORY_SECONDS of them)."""
        second = int(now)
        if second <= self.second:
            return
        start = max(self.second, second - HISTORY_SECONDS)
        for s in range(start, second):
            self.history.append((s, self.connections, self.online,
                                 self.messages if s == self.second else 0))
        self.second = second
        self.messages = 0


class ConsoleStats:
    def __init__(self, events: EventBus, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._apps: dict[int, AppStats] = {}
        events.subscribe(self.on_event)

    def of(self, sdkappid: int) -> AppStats:
        stats = self._apps.get(sdkappid)
        if stats is None:
            stats = self._apps[sdkappid] = AppStats(self._clock())
        stats.advance(self._clock())
        return stats

    def on_event(self, event: Event) -> None:
        if isinstance(event, ConnectionStateChanged):
            stats = self.of(event.sdkappid)
            if event.action == "Login":
                stats.connections += 1
            elif event.action in ("Logout", "Disconnect"):
                stats.connections = max(0, stats.connections - 1)
        elif isinstance(event, MemberStateChanged):
            stats = self.of(event.sdkappid)
            stats.online = stats.online + 1 if event.online else max(0, stats.online - 1)
        elif isinstance(event, GroupMessageSent | C2CMessageSent):
            self.of(event.sdkappid).messages += 1
