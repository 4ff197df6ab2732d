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
    P:uc:{<sdkappid>:<account>}, P:nc:{<node>}
                   hash    every gateway connection, by account and by node (in a group
                           or not; see ``presence.connections``)

Every per-group operation is ONE EVALSHA of a script under ``lua/`` (see
``presence.scripts``), so it is atomic and costs one round trip. Pages come back as a few
bulk strings of pre-joined rows (see lua/page.lua), never as one item per row.

Crash safety (``presence.leases``): each process has a lease; ``sweep`` (run on start and
periodically by every process) removes the connections of nodes whose lease expired
through the normal leave logic. A process must only ``join``/``leave`` its own
connections (they are filed under its node id).

The two cross-slot indexes (``P:ng:*`` and ``P:x500``) are written by separate commands
ordered so that a crash between them leaves, at worst, a stale entry the sweeper skips.

The same store runs on one Redis or on a Redis Cluster: ``presence.client`` builds the
client for the URL and holds the two helpers whose round trips differ (``script_then``,
``in_order``); every script and multi-key command here stays in one slot.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from opentim.domain.marks import (
    DEFAULT_MARK500_TTL,
    MARK_ALWAYS_ONLINE,
    MARK_LIMITS,
    LimitKind,
    MarkLimits,
)
from opentim.domain.online import LIST_CAP, PAGE_SIZE, RECOVER_WINDOW
from opentim.presence.backend import StoreBase
from opentim.presence.client import UNREACHABLE, AnyRedis, open_redis, script_then
from opentim.presence.connections import RedisConnections
from opentim.presence.cursor import next_cursor, page_window
from opentim.presence.errors import MarkLimitError
from opentim.presence.leases import NodeGroups, NodeLeases, num, text
from opentim.presence.rows import check_mark, check_page_args, encode_row, merge_items
from opentim.presence.scripts import group_scripts
from opentim.presence.types import (
    Joined,
    LeaseLostHook,
    MarkedMember,
    MarkResult,
    Offline,
    OfflineHook,
    Page,
    Profiles,
)

log = logging.getLogger(__name__)

# A cached page is re-validated by version on every read; this bounds how long one is
# trusted at all (a dropped group's version key can expire and restart from 1).
_PAGE_CACHE_SECONDS = 10.0
_PAGE_CACHE_ENTRIES = 4096
_EMPTY = Page(b"[]", 0, 0)
_LEAVE_NODE_BATCH = 1000

# What every OpenTIM Redis client is bounded by (docs/reliability.md#redis). A call to a
# Redis that hangs fails after SOCKET_TIMEOUT; one to a Redis that is down (refused, reset)
# is retried once on a new connection (the pooled one may be a dead leftover of a restart)
# and then fails: redis-py's own defaults were "wait forever" before 8.0, and are 5 s
# with ten retries since. A timeout is never retried: the command may have run.
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 10
# The failures that mean "Redis is unreachable or not answering" (not a bad command) are
# presence.client.UNREACHABLE (imported above; a Redis Cluster adds its own).


def client_options() -> dict[str, Any]:
    """Keyword arguments for ``redis.asyncio.Redis`` / ``from_url`` (a fresh ``Retry`` each
    call: redis-py mutates it)."""
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry_on_timeout": False,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1,
                       supported_errors=(redis_errors.ConnectionError,)),
    }


def _marks(b: bytes | str) -> tuple[int, ...]:
    s = text(b)
    return tuple(int(m) for m in s.split(",")) if s else ()


class RedisPresenceStore(StoreBase):
    """Presence in Redis (redis.asyncio + hiredis); safe for several server processes.

    ``node_id`` must be unique per running process (a restarted process may reuse its old
    id: ``start`` first clears what a previous process with that id left behind).
    ``lease_ttl`` / ``refresh_interval`` / ``sweep_interval`` are seconds; a node is
    declared dead ``lease_ttl`` after its last refresh. ``on_offline`` receives members
    taken offline by background sweeps and by ``close``; ``on_lease_lost`` is awaited
    when this node finds its lease was claimed (it stalled longer than ``lease_ttl``; its
    connections may have been removed, so the gateway should drop them).

    ``client``: one Redis or a Redis Cluster (``presence.client``); None with ``url``
    (``from_url``): ``start`` opens the client, whichever the URL names.
    """

    _r: AnyRedis
    _leases: NodeLeases
    _node_groups: NodeGroups
    _conns: RedisConnections
    _scripts: dict[str, AsyncScript]

    def __init__(
        self,
        client: AnyRedis | None,
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
        on_lease_lost: LeaseLostHook | None = None,
        owns_client: bool = False,
        limits: MarkLimits = MARK_LIMITS,
        recover_window: float = RECOVER_WINDOW,
        url: str | None = None,
    ) -> None:
        if client is None and url is None:
            raise ValueError("a client or a url")
        if any(c in prefix for c in "{}") or not prefix:
            raise ValueError("prefix must be non-empty and free of '{' / '}' (hash tags)")
        if not node_id or any(c in node_id for c in "{}"):
            raise ValueError("node_id must be non-empty and free of '{' / '}'")
        super().__init__(clock=clock, sweep_interval=sweep_interval, background=background,
                         on_offline=on_offline, on_lease_lost=on_lease_lost)
        self.node_id = node_id
        self._prefix = prefix
        self._url = url
        self._lease_ttl = lease_ttl
        self._refresh_interval = refresh_interval
        self._release_on_close = release_on_close
        self._owns_client = owns_client
        self._limits = limits
        self._recover_window = recover_window
        self._k_x500 = f"{prefix}:x500"
        self._bound = False
        if client is not None:
            self._bind(client)
        # (group base, below, take, mark) -> (version, first 500 expiry, last, n, more, rows)
        self._pages: dict[tuple[str, str, int, str], tuple[bytes, float, int, int, bool, bytes,
                                                           float]] = {}
        self._closed = False
        # A write of this node's own connections failed with Redis unreachable: whether it
        # was applied is unknown, so the node resyncs once Redis answers (``_resync``).
        self._unsure = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisPresenceStore:
        """A store on the Redis (or Redis Cluster) at ``url``, connected by ``start``."""
        return cls(None, url=url, owns_client=True, **kwargs)

    def _bind(self, client: AnyRedis) -> None:
        self._r = client
        self._leases = NodeLeases(client, self._prefix, self.node_id, self._lease_ttl)
        self._node_groups = NodeGroups(client, self._prefix, self.node_id)
        self._conns = RedisConnections(client, self._prefix, self.node_id, self._leases.key)
        self._connections = self._conns
        self._scripts = group_scripts(client)
        self._bound = True

    # --- keys ------------------------------------------------------------------------

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
        return await script_then(self._r, self._scripts[name], [base], args, then)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if not self._bound:
            assert self._url is not None
            self._bind(await open_redis(self._url, decode_responses=False,
                                        **client_options()))
        for script in (*self._scripts.values(), self._leases.script):
            script.sha = await self._r.script_load(script.script)  # fail fast
        now = self._clock()
        # Leftovers of a previous process that used this node id.
        leftovers = await self._cleanup_node(self.node_id, now)
        await self._leases.register(now)
        await self._notify(leftovers + await self.sweep(now))
        self._start_background((self._refresh_interval, self._refresh))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop_background()
        if not self._bound:  # never started
            return
        try:
            if self._release_on_close and self._leases.deadline:
                # A graceful shutdown takes this node's users offline at once.
                await self._notify(await self._cleanup_node(self.node_id, self._clock()))
                await self._leases.remove()
        finally:
            if self._owns_client:
                await self._r.aclose()

    async def _refresh(self) -> None:
        if self._unsure:
            await self._resync("writes of its connections failed while Redis was unreachable")
            return
        if not await self._leases.refresh(self._clock()):
            # Claimed by a sweeper (we stalled past it), or lost by Redis (restarted empty,
            # or from a snapshot older than our last refresh, with stale lists): either way
            # what Redis holds of ours is not what we hold.
            await self._resync("it lost its lease")
            return
        await self._node_groups.unfile_idle()

    _outage_errors = UNREACHABLE

    @contextlib.contextmanager
    def _owned_write(self) -> Iterator[None]:
        """A write of this node's own connection state (join, leave, a gateway connection
        opening or closing): when Redis does not answer, it may or may not have happened."""
        try:
            yield
        except UNREACHABLE:
            self._unsure = True
            raise

    async def _resync(self, why: str) -> None:
        """What Redis holds of this node's connections may be wrong: a leave that never
        landed would keep a member online for good, a join that landed unseen would never
        be left, a restored snapshot brings back members long gone. So start over: take
        every connection of this node out of its groups (their members go offline, as with
        a dead node) and have the gateway close those (4009); the clients reconnect and
        rejoin, and the lists hold exactly who did. The registry of open connections
        (query_online_status) is filed again from ours."""
        self._unsure = False
        now = self._clock()
        try:
            gone = await self._leave_groups(self.node_id, now)
            await self._conns.resync()
            await self._leases.register(now)
        except BaseException:
            self._unsure = True  # still unreachable: again at the next refresh
            raise
        log.warning("presence node %s: %s; its connections were taken out of their groups "
                    "and are closed (4009) to reconnect", self.node_id, why)
        await self._notify(gone)
        if self._on_lease_lost is not None:
            await self._on_lease_lost()

    # --- connections -----------------------------------------------------------------

    async def add_connection(self, app: int, account: str, conn_id: str, *,
                             platform: str) -> None:
        with self._owned_write():
            await super().add_connection(app, account, conn_id, platform=platform)

    async def remove_connection(self, app: int, account: str, conn_id: str) -> None:
        with self._owned_write():
            await super().remove_connection(app, account, conn_id)

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
        with self._owned_write():
            if self._node_groups.joining(ref):
                await self._node_groups.file(ref)
            row = encode_row(account, now, nick, avatar)
            rc = int(
                await self._run(
                    "join", self._base(app, group), self.node_id, conn_id, account, row,
                    num(now), num(now - self._recover_window),
                )
            )
        if rc < 0:
            self._node_groups.gone(ref)
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
        with self._owned_write():
            rc = int(
                await self._run(
                    "leave", self._base(app, group), self.node_id, conn_id, account, num(now),
                    "1" if interrupted else "0", num(now - self._recover_window),
                )
            )
        if rc >= 0:
            self._node_groups.gone(f"{app}:{group}")
        return rc == 1

    async def _cleanup_node(self, node: str, now: float) -> list[Offline]:
        """Remove every connection ``node`` holds (it died, or it is us starting/closing)."""
        await self._conns.cleanup(node)
        return await self._leave_groups(node, now)

    async def _leave_groups(self, node: str, now: float) -> list[Offline]:
        """Take ``node``'s connections out of every group it filed (``leave_node``)."""
        out: list[Offline] = []
        for ref in await self._node_groups.of(node):
            app, group, base = self._base_of_ref(ref)
            cursor = "0"
            while True:
                res = await self._run(
                    "leave_node", base, node, cursor, _LEAVE_NODE_BATCH, num(now),
                    num(now - self._recover_window),
                )
                cursor = text(res[0])
                out.extend(Offline(app, group, text(a), "node_lost") for a in res[1:])
                if cursor == "0":
                    break
            await self._node_groups.unfile(node, [ref])
        if node == self.node_id:
            self._node_groups.forget_mine()
        return out

    # --- reads -----------------------------------------------------------------------

    async def page(
        self,
        app: int,
        group: str,
        *,
        cursor: int = 0,
        mark: int | None = None,
        limit: int = PAGE_SIZE,
        cap: int = LIST_CAP,
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
        res = await self._run("page", key[0], key[1], take, key[3], num(now),
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
        return int(await self._run("count", self._base(app, group), num(now)))

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
            num(now),
            num(until),
            "1" if allow_offline_500 else "0",
            self._limits.max_distinct,
            self._limits.max_per_mark,
            self._limits.min_custom,
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
        if text(res[0]) == "LIMIT":
            kind: LimitKind = ("distinct_marks" if text(res[1]) == "distinct_marks"
                               else "members_per_mark")
            raise MarkLimitError(kind, int(res[2]), int(res[3]) or None,
                                 went_offline=[text(a) for a in res[4:]])
        result, i = _parse_offline(res)
        for _ in range(int(res[i])):
            acc, new, marks = text(res[i + 1]), int(res[i + 2]), res[i + 3]
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
        args: list[Any] = [num(now)]
        for acc, marks in merged.items():
            args += [acc, len(marks), *marks]
        res = await self._run("del_marks", self._base(app, group), *args)
        result, i = _parse_offline(res)
        for _ in range(int(res[i])):
            result.members.append(MarkedMember(text(res[i + 1]), _marks(res[i + 3])))
            i += 3
        return result

    # --- housekeeping ----------------------------------------------------------------

    async def drop_group(self, app: int, group: str) -> None:
        # P:ng / P:x500 may keep a stale entry for the group; sweepers skip those.
        await self._run("drop", self._base(app, group))

    async def sweep(self, now: float) -> list[Offline]:
        out: list[Offline] = []
        for node in await self._leases.expired(now):
            token = await self._leases.claim(node, now)
            if token is not None:
                out += await self._cleanup_node(node, now)
                await self._leases.release(node, token)
        due: list[Any] = await self._r.zrangebyscore(self._k_x500, "-inf", num(now))
        for raw in due:
            ref = text(raw)
            app, group, base = self._base_of_ref(ref)
            # Unschedule first, then expire, then reschedule from what is left: a
            # concurrent set_marks (script, then ZADD LT) can't be lost in between.
            await self._r.zrem(self._k_x500, ref)
            res = await self._run("expire", base, num(now))
            if res[0]:
                await self._r.zadd(self._k_x500, {ref: float(res[0])}, lt=True)
            out.extend(Offline(app, group, text(a), "mark500_expired") for a in res[1:])
        return out


def _parse_offline(res: list[Any]) -> tuple[MarkResult, int]:
    n_off = int(res[1])
    result = MarkResult(went_offline=[text(a) for a in res[2 : 2 + n_off]])
    return result, 2 + n_off
