"""Carries group events to the rooms of every server process.

The event bus is per process: a join handled by process A, or a REST call served by B,
emits there. Connections in the group may be held by any process, so each bus event that
concerns connections becomes a compact room event (``rooms.RoomEvent``) that is applied
to this process's rooms at once and, when processes share presence through Redis,
published on one Redis channel that every process reads. Each process then coalesces
what it hears into its own batches (``LocalRooms``), so a connection still gets at most
one batch per group per second however many processes produced the changes.

Published messages are batched: events queued while a PUBLISH is in flight go out
together in the next one, so heavy churn costs a few PUBLISHes a millisecond at most.
Pub/sub is at-most-once: a process that loses its Redis connection misses what was
published meanwhile (pushes are notifications; the online list itself stays exact in
Redis and REST reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from opentim.events import (
    AccountKicked,
    AccountsDeleted,
    Event,
    EventBus,
    GroupDestroyed,
    GroupPush,
    MarksChanged,
    MembersExited,
    MembersJoined,
    MemberStateChanged,
    UserPush,
)
from opentim.gateway.rooms import (
    AccountsGone,
    GroupFrame,
    Joined,
    LocalRooms,
    MarksNow,
    MemberState,
    Removed,
    RoomEvent,
    UserFrame,
)

log = logging.getLogger(__name__)

MAX_EVENTS_PER_MESSAGE = 1000
QUEUE_SIZE = 100_000  # room events waiting to be published


class Envelope(msgspec.Struct, array_like=True):
    node: str
    events: list[RoomEvent]


_encode = msgspec.msgpack.Encoder().encode
_encode_json = msgspec.json.Encoder().encode
_decode = msgspec.msgpack.Decoder(Envelope).decode


def room_event(event: Event) -> RoomEvent | None:
    """The part of a bus event that connections hear about (None: nothing)."""
    if isinstance(event, MemberStateChanged):
        return MemberState(event.sdkappid, event.group_id, event.account, event.online)
    if isinstance(event, MarksChanged):
        return MarksNow(event.sdkappid, event.group_id, event.members)
    if isinstance(event, MembersExited):
        return Removed(event.sdkappid, event.group_id, event.members, event.exit_type)
    if isinstance(event, GroupDestroyed):
        return Removed(event.sdkappid, event.group_id, None, "GroupDestroyed")
    if isinstance(event, MembersJoined):
        return Joined(event.sdkappid, event.group_id)
    if isinstance(event, GroupPush):
        # Encoded here, once: every connection of every process gets these same bytes.
        return GroupFrame(event.sdkappid, event.group_id, _encode_json(event.frame), event.room,
                          event.accounts, event.priority, event.seq, event.except_conn)
    if isinstance(event, UserPush):
        return UserFrame(event.sdkappid, event.accounts, _encode_json(event.frame),
                         event.except_conn)
    if isinstance(event, AccountsDeleted):
        return AccountsGone(event.sdkappid, event.accounts, "AccountDeleted")
    if isinstance(event, AccountKicked):
        return AccountsGone(event.sdkappid, (event.account,), "Kicked")
    return None


class RoomRelay:
    """One process: bus events go straight to this process's rooms."""

    def __init__(self, events: EventBus, rooms: LocalRooms) -> None:
        self.rooms = rooms
        self.dropped = 0  # room events never published (queue full or Redis failing)
        events.subscribe(self._on_event)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def _on_event(self, event: Event) -> None:
        found = room_event(event)
        if found is not None:
            self._publish(found)  # queued, first: a failure here must not stop the others
            # Awaited: this process's removed connections leave the online list while the
            # call that removed them is handled. That awaits presence, never a client's
            # socket: the notices are queued on each connection.
            await self.rooms.deliver(found)

    def _publish(self, event: RoomEvent) -> None:
        pass


class RedisRoomRelay(RoomRelay):
    """Several processes: room events also travel over the Redis channel ``<prefix>:rooms``.

    ``on_remote_destroyed`` hears of groups dismissed through another process (to drop
    caches of them at once); ``on_remote_removed`` of members removed (or banned) through
    another process (the join-ban copy of that group is dropped, so a re-join is refused
    here at once).
    """

    def __init__(self, events: EventBus, rooms: LocalRooms, *, redis_url: str, prefix: str,
                 node_id: str,
                 on_remote_destroyed: Callable[[int, str], None] | None = None,
                 on_remote_removed: Callable[[int, str], None] | None = None) -> None:
        super().__init__(events, rooms)
        self._url = redis_url
        self._redis: Any = None  # opened by start(): one Redis, or a Redis Cluster
        self._channel = f"{prefix}:rooms"
        self._node = node_id
        self._on_remote_destroyed = on_remote_destroyed
        self._on_remote_removed = on_remote_removed
        self._queue: asyncio.Queue[RoomEvent] = asyncio.Queue(QUEUE_SIZE)
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        from opentim.presence.client import open_redis
        from opentim.presence.redis import client_options

        # Named, so `CLIENT LIST` shows which connection is whose relay. On a Redis
        # Cluster a classic PUBLISH reaches the subscribers of every node, so the one
        # subscription (on the master of the channel's slot) hears every process.
        # Bounded as presence's client is (a hung Redis fails a PUBLISH in 2 s). The
        # subscription's blocking read is not cut by the socket timeout: redis-py 8.1
        # reads a blocking get_message without one (hence its floor in pyproject.toml).
        self._redis = await open_redis(self._url, client_name=f"opentim-relay-{self._node}",
                                       **client_options())
        # Subscribed before the server accepts connections: nothing published after this
        # returns is missed.
        await self._subscribe()
        self._tasks = [asyncio.create_task(self._read_loop(), name="opentim-relay-read"),
                       asyncio.create_task(self._write_loop(), name="opentim-relay-write")]

    async def close(self) -> None:
        # Publish what is queued (e.g. members this process's shutdown took offline).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    def _publish(self, event: RoomEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._count_dropped(1, "the relay queue is full")

    def _count_dropped(self, n: int, why: str) -> None:
        self.dropped += n
        log.warning("%d room event(s) not relayed to other processes: %s (%d so far)",
                    n, why, self.dropped)

    async def _subscribe(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._pubsub = pubsub

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_EVENTS_PER_MESSAGE and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._redis.publish(self._channel, _encode(Envelope(self._node, batch)))
            except Exception as exc:
                self._count_dropped(len(batch), f"PUBLISH failed: {exc!r}")
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except Exception as exc:
                log.warning("room relay lost its Redis subscription (%r); resubscribing", exc)
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self._subscribe()
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                envelope = _decode(message["data"])
            except msgspec.DecodeError:
                log.warning("unreadable message on %s ignored", self._channel)
                continue
            if envelope.node == self._node:
                continue  # applied locally already
            for event in envelope.events:
                await self._apply_remote(event)

    async def _apply_remote(self, event: RoomEvent) -> None:
        if isinstance(event, Removed):
            if event.accounts is None and self._on_remote_destroyed is not None:
                self._on_remote_destroyed(event.sdkappid, event.group_id)
            elif self._on_remote_removed is not None:
                self._on_remote_removed(event.sdkappid, event.group_id)
        try:
            await self.rooms.deliver(event)
        except Exception:
            log.exception("applying a relayed room event failed: %r", event)
