"""Presence kept in Redis, shared by any number of server processes.

Key layout (``P`` = prefix, ``G`` = ``P:{<sdkappid>:<group_id>}``; the braces are a Redis
Cluster hash tag, so all keys of one group share a slot and one Lua script may touch them):

    G:seq          string  last join sequence (INCR)
    G:ord          zset    account -> join seq: the online list, newest = highest score
    G:row          hash    account -> pre-encoded JSON row
    G:nc           hash    account -> number of connections
    G:n:<node>     hash    conn id -> account, the connections a node holds in the group
    G:nodes        set     nodes holding connections in the group
    G:am           hash    account -> "1000,1001" (its marks)
    G:m:<mark>     zset    account -> join seq: per-mark index, so mark pages never scan
    G:marks        set     marks in use (limit checks, cleanup)
    G:x500         zset    account -> until: mark-500 expiries
    G:hbi          zset    account -> when a heartbeat interruption (a timed-out leave, or
                           a dead node's connections swept) took it offline; read and
                           removed when it becomes online again (HeartbeatRecover for
                           every process); older than RECOVER_WINDOW trimmed whenever
                           one is recorded
    G:ver          string  bumped by every writing script (page cache validation)
    P:nodes        zset    node id -> lease deadline (see lua/lease.lua)
    P:ng:{<node>}  set     "<sdkappid>:<group_id>" of groups the node has connections in
    P:x500         zset    "<sdkappid>:<group_id>" -> earliest mark-500 expiry (sweeper)

Every per-group operation is ONE EVALSHA of a script under ``lua/`` (``common.lua``
prepended), so it is atomic and costs one round trip. Pages come back as a few bulk
strings of pre-joined rows (see lua/page.lua), never as one item per row.

Crash safety: each process has a ``node_id`` and a lease in ``P:nodes`` that a background
task refreshes. ``sweep`` (run on start and periodically by every process) claims nodes
whose lease expired and removes their connections through the normal leave logic, so a
crashed process's users go offline instead of staying online forever. A process must
only ``join``/``leave`` its own connections (they are filed under its node id).

The two cross-slot indexes (``P:ng:*`` and ``P:x500``) are written by separate commands
ordered so that a crash between them leaves, at worst, a stale entry the sweeper skips.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from opentim.presence.base import (
    DEFAULT_MARK500_TTL,
    DEFAULT_PAGE_CAP,
    DEFAULT_PAGE_LIMIT,
    MARK_ALWAYS_ONLINE,
    MAX_DISTINCT_MARKS,
    MAX_MEMBERS_PER_MARK,
    RECOVER_WINDOW,
    Joined,
    MarkedMember,
    MarkLimitError,
    MarkResult,
    Offline,
    Page,
    Profiles,
    RobotsViaMarks,
    check_mark,
    check_page_args,
    encode_row,
    merge_items,
)
from opentim.presence.cursor import next_cursor, page_window

log = logging.getLogger(__name__)

_GROUP_SCRIPTS = (
    "join",
    "leave",
    "leave_node",
    "page",
    "count",
    "state",
    "set_marks",
    "del_marks",
    "expire",
    "drop",
)
# Scripts that may change what a page shows; each bumps the group's version first.
_WRITING_SCRIPTS = frozenset(
    {"join", "leave", "leave_node", "set_marks", "del_marks", "expire", "drop"})
_BUMP = "redis.call('INCR', K_VER)\n"
# A cached page is re-validated by version on every read; this bounds how long one is
# trusted at all (a dropped group's version key can expire and restart from 1).
_PAGE_CACHE_SECONDS = 10.0
_PAGE_CACHE_ENTRIES = 4096
_EMPTY = Page(b"[]", 0, 0)
_LEAVE_NODE_BATCH = 1000

OfflineHook = Callable[[list[Offline]], Awaitable[None]]


def _lua(name: str) -> str:
    return resources.files("opentim.presence").joinpath(f"lua/{name}.lua").read_text("utf-8")


def _num(x: float) -> str:
    # repr() round-trips a float exactly; Redis parses it back to the same double.
    return repr(float(x))


def _s(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b


def _marks(b: bytes | str) -> tuple[int, ...]:
    s = _s(b)
    return tuple(int(m) for m in s.split(",")) if s else ()


class RedisPresenceStore(RobotsViaMarks):
    """Presence in Redis (redis.asyncio + hiredis); safe for several server processes.

    ``node_id`` must be unique per running process (a restarted process may reuse its old
    id: ``start`` first clears what a previous process with that id left behind).
    ``lease_ttl`` / ``refresh_interval`` / ``sweep_interval`` are seconds; a node is
    declared dead ``lease_ttl`` after its last refresh. ``on_offline`` receives members
    taken offline by background sweeps and by ``close``; ``on_lease_lost`` is awaited
    when this node finds its lease was claimed (it stalled longer than ``lease_ttl``; its
    connections may have been removed, so the gateway should drop them).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        node_id: str,
        prefix: str = "opentim",
        clock: Callable[[], float] = time.time,
        lease_ttl: float = 15.0,
        refresh_interval: float = 5.0,
        sweep_interval: float = 5.0,
        background: bool = True,
        release_on_close: bool = True,
        on_offline: OfflineHook | None = None,
        on_lease_lost: Callable[[], Awaitable[None]] | None = None,
        owns_client: bool = False,
    ) -> None:
        if any(c in prefix for c in "{}") or not prefix:
            raise ValueError("prefix must be non-empty and free of '{' / '}' (hash tags)")
        if not node_id or any(c in node_id for c in "{}"):
            raise ValueError("node_id must be non-empty and free of '{' / '}'")
        self._r = client
        self.node_id = node_id
        self._prefix = prefix
        self._clock = clock
        self._lease_ttl = lease_ttl
        self._refresh_interval = refresh_interval
        self._sweep_interval = sweep_interval
        self._background = background
        self._release_on_close = release_on_close
        self._on_offline = on_offline
        self._on_lease_lost = on_lease_lost
        self._owns_client = owns_client
        self._k_nodes = f"{prefix}:nodes"
        self._k_x500 = f"{prefix}:x500"
        self._k_my_groups = self._k_node_groups(node_id)
        common = _lua("common")
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(
                common + "\n" + (_BUMP if name in _WRITING_SCRIPTS else "") + _lua(name))
            for name in _GROUP_SCRIPTS
        }
        # (group base, below, take, mark) -> (version, first 500 expiry, last, n, more, rows)
        self._pages: dict[tuple[str, str, int, str], tuple[bytes, float, int, int, bool, bytes,
                                                           float]] = {}
        self._lease_script = client.register_script(_lua("lease"))
        self._deadline = 0.0
        # Groups filed under this node in P:ng, and this process's connection count per
        # group (pending joins included) so idle groups can be unfiled safely.
        self._filed: set[str] = set()
        self._local: dict[str, int] = {}
        self._filing = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisPresenceStore:
        client = aioredis.from_url(url, decode_responses=False)
        return cls(client, owns_client=True, **kwargs)

    # --- keys ------------------------------------------------------------------------

    def _k_node_groups(self, node: str) -> str:
        return f"{self._prefix}:ng:{{{node}}}"

    def _base(self, app: int, group: str) -> str:
        return f"{self._prefix}:{{{app}:{group}}}"

    def _base_of_ref(self, ref: str) -> tuple[int, str, str]:
        app, group = ref.split(":", 1)
        return int(app), group, f"{self._prefix}:{{{ref}}}"

    async def _run(self, name: str, base: str, *args: Any) -> Any:
        return await self._scripts[name](keys=[base], args=args)

    async def _run_then(
        self, name: str, base: str, args: Sequence[Any], then: Callable[[Any], None]
    ) -> Any:
        """One round trip: the script, then commands queued by ``then`` on a pipeline.

        redis-py's Script-in-pipeline would add a SCRIPT EXISTS round trip per call, so
        EVALSHA is queued directly and NOSCRIPT (Redis restarted) handled here.
        """
        script = self._scripts[name]
        for attempt in (0, 1):
            pipe = self._r.pipeline(transaction=False)
            pipe.evalsha(script.sha, 1, base, *args)
            then(pipe)
            try:
                return (await pipe.execute())[0]
            except NoScriptError:
                if attempt:
                    raise
                script.sha = await self._r.script_load(script.script)
        raise AssertionError("unreachable")

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        for script in (*self._scripts.values(), self._lease_script):
            script.sha = await self._r.script_load(script.script)  # fail fast
        now = self._clock()
        # Leftovers of a previous process that used this node id.
        leftovers = await self._cleanup_node(self.node_id, now)
        self._deadline = now + self._lease_ttl
        await self._lease("register", self.node_id, _num(self._deadline))
        await self._notify(leftovers + await self.sweep(now))
        if self._background:
            self._tasks = [
                asyncio.create_task(self._every(self._refresh_interval, self._refresh)),
                asyncio.create_task(self._every(self._sweep_interval, self._sweep_now)),
            ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        # Bounded: a background job stuck in I/O must not hang the server's shutdown.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks = []
        try:
            if self._release_on_close and self._deadline:
                # A graceful shutdown takes this node's users offline at once.
                await self._notify(await self._cleanup_node(self.node_id, self._clock()))
                await self._r.zrem(self._k_nodes, self.node_id)
        finally:
            if self._owns_client:
                await self._r.aclose()

    async def _every(self, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the loop alive across Redis hiccups
                log.exception("presence background job %s failed", job.__name__)

    async def _notify(self, events: list[Offline]) -> None:
        if events and self._on_offline is not None:
            await self._on_offline(events)

    async def _sweep_now(self) -> None:
        await self._notify(await self.sweep(self._clock()))

    async def _lease(self, *args: str) -> int:
        return int(await self._lease_script(keys=[self._k_nodes], args=args))

    async def _refresh(self) -> None:
        new = self._clock() + self._lease_ttl
        if await self._lease("refresh", self.node_id, _num(self._deadline), _num(new)):
            self._deadline = new
        else:
            log.warning("presence node %s lost its lease; re-registering", self.node_id)
            self._deadline = new
            await self._lease("register", self.node_id, _num(new))
            async with self._filing:  # refile groups a sweeper may have unfiled
                self._filed = {ref for ref, n in self._local.items() if n > 0}
                if self._filed:
                    await self._r.sadd(self._k_my_groups, *self._filed)
            if self._on_lease_lost is not None:
                await self._on_lease_lost()
        await self._unfile_idle()

    async def _unfile_idle(self) -> None:
        async with self._filing:
            idle = [ref for ref in self._filed if self._local.get(ref, 0) <= 0]
            if idle:
                await self._r.srem(self._k_my_groups, *idle)
                self._filed.difference_update(idle)
                for ref in idle:
                    self._local.pop(ref, None)

    # --- connections -----------------------------------------------------------------

    async def join(
        self,
        app: int,
        group: str,
        account: str,
        conn_id: str,
        *,
        nick: str,
        avatar: str,
        now: float,
    ) -> Joined:
        ref = f"{app}:{group}"
        # Count first: a pending join keeps _unfile_idle from unfiling the group.
        self._local[ref] = self._local.get(ref, 0) + 1
        if ref not in self._filed:
            async with self._filing:
                if ref not in self._filed:
                    # Filed BEFORE the connection exists: a crash in between leaves only
                    # a stale entry for the sweeper, never an unfindable connection.
                    await self._r.sadd(self._k_my_groups, ref)
                    self._filed.add(ref)
        row = encode_row(account, now, nick, avatar)
        rc = int(
            await self._run(
                "join", self._base(app, group), self.node_id, conn_id, account, row, _num(now),
                _num(now - RECOVER_WINDOW),
            )
        )
        if rc < 0:
            self._local[ref] -= 1
        return Joined(max(rc, 0))  # join.lua's codes are Joined's values; -1 is a no-op

    async def leave(
        self,
        app: int,
        group: str,
        account: str,
        conn_id: str,
        *,
        now: float,
        interrupted: bool = False,
    ) -> bool:
        rc = int(
            await self._run(
                "leave", self._base(app, group), self.node_id, conn_id, account, _num(now),
                "1" if interrupted else "0", _num(now - RECOVER_WINDOW),
            )
        )
        ref = f"{app}:{group}"
        if rc >= 0 and ref in self._local:
            self._local[ref] -= 1
        return rc == 1

    async def _cleanup_node(self, node: str, now: float) -> list[Offline]:
        key = self._k_node_groups(node)
        out: list[Offline] = []
        for raw in await self._r.smembers(key):
            ref = _s(raw)
            app, group, base = self._base_of_ref(ref)
            cursor = "0"
            while True:
                res = await self._run(
                    "leave_node", base, node, cursor, _LEAVE_NODE_BATCH, _num(now),
                    _num(now - RECOVER_WINDOW),
                )
                cursor = _s(res[0])
                out.extend(Offline(app, group, _s(a), "node_lost") for a in res[1:])
                if cursor == "0":
                    break
            await self._r.srem(key, ref)
        if node == self.node_id:
            self._filed.clear()
            self._local.clear()
        return out

    # --- reads -----------------------------------------------------------------------

    async def page(
        self,
        app: int,
        group: str,
        *,
        cursor: int = 0,
        mark: int | None = None,
        limit: int = DEFAULT_PAGE_LIMIT,
        cap: int = DEFAULT_PAGE_CAP,
        now: float,
    ) -> Page:
        check_page_args(limit, cap)
        if mark is not None:
            check_mark(mark)
        below, served, take = page_window(cursor, limit, cap)
        if take == 0:
            return _EMPTY
        key = (self._base(app, group), "+inf" if below is None else f"({below}", take,
               "" if mark is None else str(mark))
        cached = self._pages.get(key)
        if cached is not None and time.monotonic() - cached[6] > _PAGE_CACHE_SECONDS:
            cached = None
        res = await self._run("page", key[0], key[1], take, key[3], _num(now),
                              cached[0] if cached else "")
        if res[0] == b"same" and cached is not None:
            _ver, _until, last, n, more, rows, _at = cached
        else:
            last, n, more = int(res[0]), int(res[1]), bool(res[2])
            # chunks of 32 pre-joined rows, never one per row
            rows = b"[" + b",".join(res[5:]) + b"]"
            if len(self._pages) >= _PAGE_CACHE_ENTRIES:
                del self._pages[next(iter(self._pages))]
            until = float(res[4]) if res[4] else math.inf
            self._pages[key] = (res[3], until, last, n, more, rows, time.monotonic())
        return Page(rows, next_cursor(last, served, n, more, cap), n)

    async def count(self, app: int, group: str, *, now: float) -> int:
        return int(await self._run("count", self._base(app, group), _num(now)))

    async def _state(
        self, app: int, group: str, accounts: list[str], now: float
    ) -> dict[str, tuple[int, ...]]:
        if not accounts:
            return {}
        res = await self._run("state", self._base(app, group), _num(now), *accounts)
        return {a: _marks(res[2 * i + 1]) for i, a in enumerate(accounts) if int(res[2 * i])}

    async def is_online(self, app: int, group: str, account: str, *, now: float) -> bool:
        return account in await self._state(app, group, [account], now)

    async def marks_of(
        self, app: int, group: str, accounts: Iterable[str], *, now: float
    ) -> dict[str, tuple[int, ...]]:
        return await self._state(app, group, list(dict.fromkeys(accounts)), now)

    # --- marks -----------------------------------------------------------------------

    async def set_marks(
        self,
        app: int,
        group: str,
        items: Sequence[tuple[str, Sequence[int]]],
        *,
        now: float,
        profiles: Profiles | None = None,
        mark500_ttl: float = DEFAULT_MARK500_TTL,
        allow_offline_500: bool = True,
    ) -> MarkResult:
        merged = merge_items(items)
        until = now + mark500_ttl
        args: list[Any] = [
            _num(now),
            _num(until),
            "1" if allow_offline_500 else "0",
            MAX_DISTINCT_MARKS,
            MAX_MEMBERS_PER_MARK,
        ]
        any500 = False
        for acc, marks in merged.items():
            row = b""
            if MARK_ALWAYS_ONLINE in marks:
                any500 = True
                nick, avatar = (profiles or {}).get(acc, ("", ""))
                row = encode_row(acc, now, nick, avatar)
            args += [acc, row, len(marks), *marks]
        base = self._base(app, group)
        if any500:
            # Schedule the group for the expiry sweeper AFTER the script (see expire.lua
            # and sweep): a sweeper that unschedules concurrently either sees our 500 in
            # the group or runs before our ZADD.
            ref = f"{app}:{group}"
            res = await self._run_then(
                "set_marks",
                base,
                args,
                lambda p: p.zadd(self._k_x500, {ref: until}, lt=True),
            )
        else:
            res = await self._run("set_marks", base, *args)
        if _s(res[0]) == "LIMIT":
            kind = "distinct_marks" if _s(res[1]) == "distinct_marks" else "members_per_mark"
            raise MarkLimitError(kind, int(res[2]), int(res[3]) or None,
                                 went_offline=[_s(a) for a in res[4:]])
        result, i = _parse_offline(res)
        for _ in range(int(res[i])):
            acc, new, marks = _s(res[i + 1]), int(res[i + 2]), res[i + 3]
            i += 3
            result.members.append(MarkedMember(acc, _marks(marks)))
            if new:
                result.went_online.append(acc)
        return result

    async def delete_marks(
        self,
        app: int,
        group: str,
        items: Sequence[tuple[str, Sequence[int]]],
        *,
        now: float,
    ) -> MarkResult:
        merged = merge_items(items)
        args: list[Any] = [_num(now)]
        for acc, marks in merged.items():
            args += [acc, len(marks), *marks]
        res = await self._run("del_marks", self._base(app, group), *args)
        result, i = _parse_offline(res)
        for _ in range(int(res[i])):
            result.members.append(MarkedMember(_s(res[i + 1]), _marks(res[i + 3])))
            i += 3
        return result

    # --- housekeeping ----------------------------------------------------------------

    async def drop_group(self, app: int, group: str) -> None:
        # P:ng / P:x500 may keep a stale entry for the group; sweepers skip those.
        await self._run("drop", self._base(app, group))

    async def sweep(self, now: float) -> list[Offline]:
        out: list[Offline] = []
        for raw in await self._r.zrangebyscore(self._k_nodes, "-inf", _num(now)):
            node = _s(raw)
            if node == self.node_id:
                continue  # our own lease is for _refresh to renew or find lost
            claim = _num(now + self._lease_ttl)  # a crashed sweeper's claim expires too
            if await self._lease("claim", node, _num(now), claim):
                out += await self._cleanup_node(node, now)
                await self._lease("release", node, claim)
        for raw in await self._r.zrangebyscore(self._k_x500, "-inf", _num(now)):
            ref = _s(raw)
            app, group, base = self._base_of_ref(ref)
            # Unschedule first, then expire, then reschedule from what is left: a
            # concurrent set_marks (script, then ZADD LT) can't be lost in between.
            await self._r.zrem(self._k_x500, ref)
            res = await self._run("expire", base, _num(now))
            if res[0]:
                await self._r.zadd(self._k_x500, {ref: float(res[0])}, lt=True)
            out.extend(Offline(app, group, _s(a), "mark500_expired") for a in res[1:])
        return out


def _parse_offline(res: list[Any]) -> tuple[MarkResult, int]:
    n_off = int(res[1])
    result = MarkResult(went_offline=[_s(a) for a in res[2 : 2 + n_off]])
    return result, 2 + n_off
