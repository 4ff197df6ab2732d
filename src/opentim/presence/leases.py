"""Node leases of the Redis presence store, and the index of groups each node is in.

Each server process (node) holds a lease in ``P:nodes`` (node id -> deadline, see
lua/lease.lua) that it refreshes in the background, and files the groups it holds
connections in under ``P:ng:{<node>}``. A node whose lease expired is dead: a sweeper
claims its lease, removes its connections group by group (the store's ``leave_node``
script) and releases the claim. None of this is per-group state, so it lives apart from
the group operations in ``presence.redis``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from importlib import resources
from typing import Any

from opentim.presence.client import AnyRedis


def lua_source(name: str) -> str:
    return resources.files("opentim.presence").joinpath(f"lua/{name}.lua").read_text("utf-8")


def num(x: float) -> str:
    # repr() round-trips a float exactly; Redis parses it back to the same double.
    return repr(float(x))


def text(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b


class NodeLeases:
    """The lease table; ``node_id`` is this process, ``lease_ttl`` seconds long."""

    def __init__(self, client: AnyRedis, prefix: str, node_id: str,
                 lease_ttl: float) -> None:
        self._r = client
        self._key = f"{prefix}:nodes"
        self.node_id = node_id
        self.lease_ttl = lease_ttl
        self.script = client.register_script(lua_source("lease"))
        self.deadline = 0.0  # of our lease; 0 until registered

    @property
    def key(self) -> str:
        """The lease table (readers of other per-node state filter by it)."""
        return self._key

    async def _op(self, *args: str) -> int:
        return int(await self.script(keys=[self._key], args=args))

    async def register(self, now: float) -> None:
        self.deadline = now + self.lease_ttl
        await self._op("register", self.node_id, num(self.deadline))

    async def refresh(self, now: float) -> bool:
        """Extend our lease; False if it had been claimed (then it is registered anew)."""
        new = now + self.lease_ttl
        kept = bool(await self._op("refresh", self.node_id, num(self.deadline), num(new)))
        self.deadline = new
        if not kept:
            await self._op("register", self.node_id, num(new))
        return kept

    async def expired(self, now: float) -> list[str]:
        """Other nodes whose lease ran out (ours is for ``refresh`` to renew or find lost)."""
        due: list[Any] = await self._r.zrangebyscore(self._key, "-inf", num(now))
        return [node for node in map(text, due) if node != self.node_id]

    async def claim(self, node: str, now: float) -> str | None:
        """Claim a dead node for cleanup; the claim's token, or None if someone else has it.
        A claim is a lease too, so a sweeper that dies while cleaning up is retried."""
        token = num(now + self.lease_ttl)
        return token if await self._op("claim", node, num(now), token) else None

    async def release(self, node: str, token: str) -> None:
        await self._op("release", node, token)

    async def remove(self) -> None:
        await self._r.zrem(self._key, self.node_id)


class NodeGroups:
    """Which groups a node has connections in (``P:ng:{<node>}``), and for this node a
    count per group of its connections (pending joins included), so that idle groups
    can be unfiled without losing a join in flight."""

    def __init__(self, client: AnyRedis, prefix: str, node_id: str) -> None:
        self._r = client
        self._prefix = prefix
        self._mine = self.key(node_id)
        self._filed: set[str] = set()
        self._local: dict[str, int] = {}
        self._lock = asyncio.Lock()

    def key(self, node: str) -> str:
        return f"{self._prefix}:ng:{{{node}}}"

    def joining(self, ref: str) -> bool:
        """A join of ours into ``ref`` ("<sdkappid>:<group>") is about to be stored; True
        when the group must be filed first (``await file(ref)``). Synchronous, so a join
        into a group already filed costs no extra await."""
        # Count first: a pending join keeps unfile_idle from unfiling the group.
        self._local[ref] = self._local.get(ref, 0) + 1
        return ref not in self._filed

    async def file(self, ref: str) -> None:
        async with self._lock:
            if ref not in self._filed:
                # Filed BEFORE the connection exists: a crash in between leaves only
                # a stale entry for the sweeper, never an unfindable connection.
                await self._r.sadd(self._mine, ref)
                self._filed.add(ref)

    def gone(self, ref: str) -> None:
        """One connection of ours in ``ref`` is gone (or a join of it was a no-op)."""
        if ref in self._local:
            self._local[ref] -= 1

    async def unfile_idle(self) -> None:
        async with self._lock:
            idle = [ref for ref in self._filed if self._local.get(ref, 0) <= 0]
            if idle:
                await self._r.srem(self._mine, *idle)
                self._filed.difference_update(idle)
                for ref in idle:
                    self._local.pop(ref, None)

    async def of(self, node: str) -> list[str]:
        return [text(raw) for raw in await self._r.smembers(self.key(node))]

    async def unfile(self, node: str, refs: Iterable[str]) -> None:
        refs = list(refs)
        if refs:
            await self._r.srem(self.key(node), *refs)

    def forget_mine(self) -> None:
        """Our own connections were all removed (start, close)."""
        self._filed.clear()
        self._local.clear()
