"""Who a roster group's messages go to on this process: its members, read from storage.

A message to a Private/Public/ChatRoom/Community group reaches every connection of every
member (members hear their groups without joining a room). The sending process does not
ship the member list (a 100k-member Community would make every relayed message megabytes);
each process resolves it from this per-process copy instead, and only if it holds
connections at all.

Each group's set is read once per ``ttl`` at most (concurrent misses share one read) and
forgotten as soon as its membership changes through a call this process hears of
(``rooms.Joined`` / ``rooms.Removed``, relayed from every process). Imports are silent:
their members hear messages within ``ttl``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Load = Callable[[int, str], Awaitable[list[str]]]

DEFAULT_TTL = 5.0
MAX_GROUPS = 10_000  # sets kept at once; the oldest go first


class GroupMembers:
    def __init__(self, load: Load, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._sets: dict[tuple[int, str], tuple[frozenset[str], float]] = {}
        self._loading: dict[tuple[int, str], asyncio.Future[frozenset[str]]] = {}
        self.loads = 0

    async def get(self, sdkappid: int, group_id: str) -> frozenset[str]:
        key = (sdkappid, group_id)
        found = self._sets.get(key)
        if found is not None and found[1] > self._clock():
            return found[0]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            self.loads += 1
            members = frozenset(await self._load(sdkappid, group_id))
            if len(self._sets) >= MAX_GROUPS:
                del self._sets[next(iter(self._sets))]
            self._sets[key] = (members, self._clock() + self._ttl)
            future.set_result(members)
            return members
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            del self._loading[key]

    def forget(self, sdkappid: int, group_id: str) -> None:
        self._sets.pop((sdkappid, group_id), None)
