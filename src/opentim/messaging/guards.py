"""Send guards shared by every process that serves an app: duplicate sends and rates.

- ``remember_first(key, value, ttl)``: the first send with a key is remembered for ``ttl``
  seconds; a repeat gets the remembered value back (Tencent: a message with the same
  Random within 5 minutes is a duplicate).
- ``take(key, limit, window)``: a fixed-window counter (per group sends per second).

In process (memory) when presence is in process; in Redis when several processes share
presence, so a retry that lands on another process is still caught.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol


class SendGuards(Protocol):
    async def start(self) -> None:
        """Open what the guards use (the Redis client); once, before the first call."""

    async def remember_first(self, key: str, value: str, ttl: float) -> str | None:
        """None if ``key`` was not remembered (now it is, with ``value``); else its value."""

    async def update(self, key: str, value: str, ttl: float) -> None:
        """Replace a remembered key's value (the send it stands for has completed)."""

    async def forget(self, key: str) -> None:
        """Forget a key (the send it stands for failed: a retry is not a duplicate)."""

    async def pop(self, key: str) -> str | None:
        """The remembered value of ``key`` (None: none), forgotten in the same step."""

    async def take(self, key: str, limit: int, window: float) -> bool:
        """Count one event for ``key`` in the current window; False once over ``limit``."""

    async def close(self) -> None: ...


class MemoryGuards:
    """One process. Bounded: the oldest keys go first beyond ``max_keys``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1_000_000) -> None:
        self._clock = clock
        self._max = max_keys
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._windows: dict[str, tuple[int, int]] = {}

    async def start(self) -> None:
        pass

    async def remember_first(self, key: str, value: str, ttl: float) -> str | None:
        now = self._clock()
        found = self._seen.get(key)
        if found is not None and found[0] > now:
            return found[1]
        self._seen[key] = (now + ttl, value)
        self._seen.move_to_end(key)
        while len(self._seen) > self._max or (
                self._seen and next(iter(self._seen.values()))[0] <= now):
            self._seen.popitem(last=False)
        return None

    async def update(self, key: str, value: str, ttl: float) -> None:
        self._seen[key] = (self._clock() + ttl, value)

    async def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    async def pop(self, key: str) -> str | None:
        found = self._seen.pop(key, None)
        return found[1] if found is not None and found[0] > self._clock() else None

    async def take(self, key: str, limit: int, window: float) -> bool:
        slot = int(self._clock() // window)
        start, count = self._windows.get(key, (slot, 0))
        if start != slot:
            start, count = slot, 0
            if len(self._windows) > 100_000:
                self._windows = {k: v for k, v in self._windows.items() if v[0] == slot}
        count += 1
        self._windows[key] = (start, count)
        return count <= limit

    async def close(self) -> None:
        pass


class RedisGuards:
    """Several processes: the same two guards on Redis (keys under ``<prefix>:guard:``).

    The client (one Redis, or a Redis Cluster: every command here has one key) is opened
    by ``start`` (or else at the first use; a Redis that does not answer then fails that
    call, and the next one tries again)."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self._url = redis_url
        self._client: Any = None
        self._opening = asyncio.Lock()
        self._prefix = f"{prefix}:guard:"

    async def start(self) -> None:
        await self._redis()

    async def _redis(self) -> Any:
        if self._client is None:
            from opentim.presence.client import open_redis
            from opentim.presence.redis import client_options

            async with self._opening:
                if self._client is None:
                    # Bounded as presence's client is: a hung Redis fails a send in 2 s.
                    self._client = await open_redis(self._url, client_name="opentim-guards",
                                                    **client_options())
        return self._client

    async def remember_first(self, key: str, value: str, ttl: float) -> str | None:
        k = self._prefix + "seen:" + key
        # SET NX GET: set if absent, and return what was there (Redis >= 7).
        found = await (await self._redis()).set(k, value, nx=True, get=True,
                                                 px=int(ttl * 1000))
        return None if found is None else bytes(found).decode()

    async def update(self, key: str, value: str, ttl: float) -> None:
        await (await self._redis()).set(self._prefix + "seen:" + key, value,
                                        px=int(ttl * 1000))

    async def forget(self, key: str) -> None:
        await (await self._redis()).delete(self._prefix + "seen:" + key)

    async def pop(self, key: str) -> str | None:
        found = await (await self._redis()).getdel(self._prefix + "seen:" + key)
        return None if found is None else bytes(found).decode()

    async def take(self, key: str, limit: int, window: float) -> bool:
        slot = int(time.time() // window)
        k = f"{self._prefix}rate:{key}:{slot}"
        async with (await self._redis()).pipeline(transaction=False) as pipe:
            pipe.incr(k)
            pipe.pexpire(k, int(window * 2000))
            count, _ = await pipe.execute()
        return int(count) <= limit

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
