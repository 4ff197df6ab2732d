"""Which of this process's client connections are in which group, and what they are pushed.

It also indexes every connection of the process by account (in a group or not), for the
per-account connection limit (``limits.py``) and for closing a deleted account's
connections.

The rooms receive *room events* (below), not bus events: the relay (``relay.py``) turns
the bus's events into room events and carries them to the rooms of every server process
sharing presence, this one included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from opentim.gateway import limits
from opentim.gateway.audience import GroupMembers
from opentim.gateway.outbox import Coalescer, Wire, WriteCounts

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode

# Pushes to a group are coalesced: at most one batch per group per interval, so a
# 100k-member room sees one frame a second (of each kind), not one per viewer or call.
BATCH_INTERVAL = 1.0


# --- room events: compact, so the relay can ship them between processes ------------------


class MemberState(msgspec.Struct, frozen=True, array_like=True, tag="s"):
    """An account went online (True) or offline (False) in a group's online list."""

    sdkappid: int
    group_id: str
    account: str
    online: bool


class MarksNow(msgspec.Struct, frozen=True, array_like=True, tag="m"):
    """Marks changed: each listed account with every mark it holds now."""

    sdkappid: int
    group_id: str
    members: tuple[tuple[str, tuple[int, ...]], ...]


class Removed(msgspec.Struct, frozen=True, array_like=True, tag="r"):
    """Members were removed (``accounts``), or the group dismissed (``accounts`` None)."""

    sdkappid: int
    group_id: str
    accounts: tuple[str, ...] | None
    reason: str  # Kicked, GroupDestroyed


class AccountsGone(msgspec.Struct, frozen=True, array_like=True, tag="a"):
    """These accounts' connections must end (``reason``: AccountDeleted, Kicked)."""

    sdkappid: int
    accounts: tuple[str, ...]
    reason: str


class Joined(msgspec.Struct, frozen=True, array_like=True, tag="j"):
    """Members were added to a roster group (its member set changed)."""

    sdkappid: int
    group_id: str


class GroupFrame(msgspec.Struct, frozen=True, array_like=True, tag="g"):
    """A frame (already JSON-encoded, once) for a group's audience: ``events.GroupPush``.
    Not ``room`` and no ``accounts``: every member, resolved by each process."""

    sdkappid: int
    group_id: str
    data: bytes
    room: bool
    accounts: tuple[str, ...] | None
    priority: int
    seq: int
    except_conn: str


class UserFrame(msgspec.Struct, frozen=True, array_like=True, tag="u"):
    """A frame for every connection of some accounts: ``events.UserPush``."""

    sdkappid: int
    accounts: tuple[str, ...]
    data: bytes
    except_conn: str


RoomEvent = (MemberState | MarksNow | Removed | AccountsGone | Joined | GroupFrame
             | UserFrame)

# A group message that arrives ahead of its predecessor (sent concurrently, or relayed by
# another process) waits this long for the gap to fill before it goes out anyway.
REORDER_HOLD = 0.2
# The first message this process sees of a group (or of a group quiet long enough to be
# forgotten) has no predecessor to wait for: it waits this long for messages sent just
# before it (concurrently, or relayed from another process) so they go out first.
FIRST_HOLD = 0.05
REORDER_MAX_HELD = 1000  # per group; past it the held messages go out at once


class Pushable(Protocol):
    """A connection as the rooms see it. No method waits on the client's socket: frames
    are queued and written by the connection's own writer."""

    @property
    def sdkappid(self) -> int: ...

    @property
    def account(self) -> str: ...

    @property
    def platform(self) -> str: ...

    @property
    def conn_id(self) -> str: ...

    def offer(self, frame: Wire) -> None:
        """Queue a pushed frame for this connection (one Wire is shared by a room)."""

    def offer_message(self, frame: Wire, priority: int) -> None:
        """Queue a message; one that has fallen behind sheds low priorities first."""

    async def removed_from(self, group_id: str, reason: str) -> None:
        """Leave the group's online list (awaits presence only), then queue the notice."""

    async def kicked(self, reason: str) -> None:
        """Leave every online list (awaits presence only), then queue the notice and close."""

    def close(self, code: int, reason: str) -> None:
        """Queue a close; the connection ends once it is written (or the write times out)."""


class _Batch:
    """What a group's connections will be told at its next flush (latest state wins)."""

    __slots__ = ("marks", "offline", "online", "task")

    def __init__(self) -> None:
        self.online: dict[str, None] = {}
        self.offline: dict[str, None] = {}
        self.marks: dict[str, tuple[int, ...]] = {}
        self.task: asyncio.Task[None] | None = None


class LocalRooms:
    def __init__(self, clock: Callable[[], float] = time.time,
                 batch_interval: float = BATCH_INTERVAL,
                 connection_limits: limits.ConnectionLimits = limits.TENCENT_LIMITS,
                 members: GroupMembers | None = None, write_delay: float = 0.0) -> None:
        self._clock = clock
        self._limits = connection_limits
        self._tasks: set[asyncio.Task[None]] = set()
        self._rooms: dict[tuple[int, str], set[Pushable]] = defaultdict(set)
        # Every connection by account, in connection order (dicts keep insertion order).
        self._accounts: dict[tuple[int, str], dict[Pushable, None]] = {}
        self._batches: dict[tuple[int, str], _Batch] = {}
        self._last_flush: dict[tuple[int, str], float] = {}
        self._interval = batch_interval
        self.slow_clients_closed = 0  # connections closed for not reading their pushes
        # Group messages in MsgSeq order: the next seq expected per group, and the ones
        # that came early (with the timer that sends them anyway).
        self._next_seq: dict[tuple[int, str], int] = {}
        self._held: dict[tuple[int, str], dict[int, GroupFrame]] = {}
        # Roster groups' members (who hears their messages here), and one lock per group
        # being resolved so that a message waiting on a read is not overtaken.
        self._members = members
        self._resolving: dict[tuple[int, str], asyncio.Lock] = {}
        self._hold_timers: dict[tuple[int, str], asyncio.TimerHandle] = {}
        self.messages_delivered = 0  # message frames handed to connections
        self.messages_late = 0  # arrived after a later one had gone out
        self.messages_shed = 0  # not queued: the connection had fallen behind (priority)
        # Shared by this process's connections' outboxes.
        self.write_counts = WriteCounts()
        self.coalescer = Coalescer(write_delay)

    def register(self, conn: Pushable) -> list[Pushable]:
        """Index a new connection; returns the older ones it pushes over the per-account
        limit of its platform (to be kicked, oldest first)."""
        key = (conn.sdkappid, conn.account)
        existing = self._accounts.setdefault(key, {})
        over = limits.to_kick(list(existing), conn.platform, self._limits)
        existing[conn] = None
        return over

    def unregister(self, conn: Pushable) -> None:
        key = (conn.sdkappid, conn.account)
        existing = self._accounts.get(key)
        if existing is not None:
            existing.pop(conn, None)
            if not existing:
                del self._accounts[key]

    def of_account(self, sdkappid: int, account: str) -> list[Pushable]:
        return list(self._accounts.get((sdkappid, account), ()))

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

    async def deliver(self, event: RoomEvent) -> None:
        """Apply one room event to this process's connections."""
        if isinstance(event, AccountsGone):
            await self._accounts_gone(event)
            return
        if isinstance(event, UserFrame):
            self._to_accounts(event.sdkappid, event.accounts, event.data, 0, event.except_conn)
            return
        if isinstance(event, GroupFrame):
            if not event.room and event.accounts is None:
                resolved = await self._to_members(event)
                if resolved is None:
                    return
                event = resolved
            if event.seq > 0:
                self._in_order(event)
            else:
                self._fan_out(event)
            return
        key = (event.sdkappid, event.group_id)
        if isinstance(event, Joined | Removed) and self._members is not None:
            self._members.forget(*key)
        if isinstance(event, Joined) or key not in self._rooms:
            return  # nobody here to tell: the common case for a relayed event
        if isinstance(event, Removed):
            accounts = None if event.accounts is None else set(event.accounts)
            await self._removed(key, accounts, event.reason)
        elif isinstance(event, MemberState):
            batch = self._batch(key)
            (batch.online if event.online else batch.offline)[event.account] = None
            (batch.offline if event.online else batch.online).pop(event.account, None)
            if not event.online:  # its marks went with it
                batch.marks.pop(event.account, None)
        else:
            batch = self._batch(key)
            for account, marks in event.members:
                batch.marks[account] = marks

    def push(self, sdkappid: int, group_id: str, doc: dict[str, Any]) -> None:
        """Hand one frame to every connection in the group, without waiting on any.

        Each connection writes its own queue; a client that stops reading fills only its
        own queue (and is dropped when that grows too long), never delaying the others.
        """
        room = self._rooms.get((sdkappid, group_id))
        if not room:
            return
        frame = Wire(_encode(doc))  # once, not once per connection
        for conn in room:
            conn.offer(frame)

    # --- messages -----------------------------------------------------------------------

    async def _to_members(self, frame: GroupFrame) -> GroupFrame | None:
        """The frame addressed to the group's members connected here (None: nobody)."""
        if self._members is None:
            return None
        if not self._accounts:  # no connections here: still counted for the seq order
            return msgspec.structs.replace(frame, accounts=())
        key = (frame.sdkappid, frame.group_id)
        lock = self._resolving.get(key)
        if lock is None:
            if len(self._resolving) > 10_000:
                self._resolving = {k: v for k, v in self._resolving.items() if v.locked()}
            lock = self._resolving[key] = asyncio.Lock()
        async with lock:
            members = await self._members.get(*key)
        app = frame.sdkappid
        if len(members) <= len(self._accounts):
            here = tuple(m for m in members if (app, m) in self._accounts)
        else:
            here = tuple(a for (s, a) in self._accounts if s == app and a in members)
        return msgspec.structs.replace(frame, accounts=here)

    def _fan_out(self, frame: GroupFrame) -> None:
        if not frame.room:
            self._to_accounts(frame.sdkappid, frame.accounts or (), frame.data, frame.priority,
                              frame.except_conn)
            return
        room = self._rooms.get((frame.sdkappid, frame.group_id))
        if not room:
            return
        wanted = None if frame.accounts is None else set(frame.accounts)
        wire, priority, skip = Wire(frame.data), frame.priority, frame.except_conn
        n = 0
        for conn in room:
            if (wanted is None or conn.account in wanted) and conn.conn_id != skip:
                conn.offer_message(wire, priority)
                n += 1
        self.messages_delivered += n

    def _to_accounts(self, sdkappid: int, accounts: tuple[str, ...], data: bytes,
                     priority: int, skip: str) -> None:
        n = 0
        wire = Wire(data)
        for account in accounts:
            for conn in self._accounts.get((sdkappid, account), ()):
                if conn.conn_id != skip:
                    conn.offer_message(wire, priority)
                    n += 1
        self.messages_delivered += n

    def _in_order(self, frame: GroupFrame) -> None:
        """Hand a group message out in MsgSeq order: one ahead of a gap waits (at most
        REORDER_HOLD) for the messages before it, and the first one seen of a group waits
        FIRST_HOLD for any sent just before it."""
        key = (frame.sdkappid, frame.group_id)
        expected = self._next_seq.get(key)
        if expected is None or frame.seq > expected:
            held = self._held.setdefault(key, {})
            held[frame.seq] = frame
            if len(held) >= REORDER_MAX_HELD:
                self._release(key)
            elif key not in self._hold_timers:
                self._hold_timers[key] = asyncio.get_running_loop().call_later(
                    FIRST_HOLD if expected is None else REORDER_HOLD, self._release, key)
            return
        if expected is not None and frame.seq < expected:
            self.messages_late += 1
        self._fan_out(frame)
        self._next_seq[key] = max(expected or 0, frame.seq + 1)
        self._drain_held(key)
        if len(self._next_seq) > 100_000:  # groups long quiet start afresh
            self._next_seq = {k: v for k, v in self._next_seq.items() if k in self._held}

    def _drain_held(self, key: tuple[int, str]) -> None:
        held = self._held.get(key)
        if not held:
            return
        expected = self._next_seq[key]
        while expected in held:
            self._fan_out(held.pop(expected))
            expected += 1
        self._next_seq[key] = expected
        if not held:
            del self._held[key]
            timer = self._hold_timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    def _release(self, key: tuple[int, str]) -> None:
        """The gap did not fill in time (a message that takes a seq but is not delivered,
        such as an imported one, or a relayed one lost): send what waits, in order."""
        timer = self._hold_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        held = self._held.pop(key, {})
        for seq in sorted(held):
            self._fan_out(held[seq])
            self._next_seq[key] = seq + 1

    # --- batches of member changes --------------------------------------------------------

    def _batch(self, key: tuple[int, str]) -> _Batch:
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch()
        if batch.task is None:
            # The first change after a quiet interval goes out at once, later ones wait.
            since = time.monotonic() - self._last_flush.get(key, 0.0)
            delay = max(0.0, self._interval - since)
            batch.task = asyncio.create_task(self._flush(key, delay))
            self._tasks.add(batch.task)
            batch.task.add_done_callback(self._tasks.discard)
        return batch

    async def _flush(self, key: tuple[int, str], delay: float) -> None:
        await asyncio.sleep(delay)
        batch = self._batches.pop(key)
        self._last_flush[key] = time.monotonic()
        if len(self._last_flush) > 10_000:  # keep only recent groups
            self._last_flush = {k: t for k, t in self._last_flush.items()
                                if time.monotonic() - t < self._interval}
        now_ms = int(self._clock() * 1000)
        if batch.online or batch.offline:
            self.push(key[0], key[1], {
                "event": "members_changed", "GroupId": key[1],
                "Online": list(batch.online), "Offline": list(batch.offline),
                "EventTime": now_ms,
            })
        if batch.marks:
            self.push(key[0], key[1], {
                "event": "marks_changed", "GroupId": key[1],
                "MemberList": [{"Member_Account": a, "Marks": list(m)}
                               for a, m in batch.marks.items()],
                "EventTime": now_ms,
            })

    async def _removed(self, key: tuple[int, str], accounts: set[str] | None,
                       reason: str) -> None:
        """Connections of removed members (or all, for a dismissed group) leave the room."""
        sdkappid, group_id = key
        for conn in list(self._rooms.get(key, ())):
            if accounts is None or conn.account in accounts:
                self.leave(sdkappid, group_id, conn)
                try:
                    await conn.removed_from(group_id, reason)
                except Exception:  # one failure must not keep the others in the room
                    log.warning("taking a connection out of %s failed", group_id,
                                exc_info=True)

    async def _accounts_gone(self, event: AccountsGone) -> None:
        for account in event.accounts:
            for conn in self.of_account(event.sdkappid, account):
                try:
                    await conn.kicked(event.reason)
                except Exception:  # one failure must not keep the other connections open
                    log.warning("closing a connection of %r failed", account, exc_info=True)

    def connections(self) -> set[Pushable]:
        return {conn for room in self._rooms.values() for conn in room}

    def connection_count(self) -> int:
        """Every connection of this process, in a group or not."""
        return sum(len(conns) for conns in self._accounts.values())

    async def close_all(self, code: int, reason: str) -> None:
        """Close every connection that is in a group (async for the lease-lost hook)."""
        for conn in self.connections():
            conn.close(code, reason)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for timer in self._hold_timers.values():
            timer.cancel()
