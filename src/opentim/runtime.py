"""What a running server holds: storage, app registry, caches, events; and per-request context."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from opentim.domain.apps import App
from opentim.events import REST, EventBus, Origin
from opentim.marks import MarkService
from opentim.messaging.group import GroupMessaging
from opentim.messaging.guards import MemoryGuards, RedisGuards, SendGuards
from opentim.messaging.retention import Expiring, MessageRetention
from opentim.online import GroupTypes, OnlineService
from opentim.presence import Offline, PresenceStore, open_presence_store
from opentim.protocol.ratelimit import RateLimiter
from opentim.protocol.usersig import SigCache
from opentim.settings import Settings
from opentim.storage.database import Database
from opentim.storage.sql import SqlStore
from opentim.webhooks.delivery import WebhookDispatcher, WebhookSettings

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class AppRegistry:
    """In-memory copy of the apps table, refreshed in the background.

    Every request needs its app (key, admins, edition); reading it from the database each
    time would cost more than the rest of the request. ``opentim app …`` writes the table from
    another process; this copy picks the change up within ``refresh_interval`` seconds.
    """

    def __init__(self, store: SqlStore, refresh_interval: float) -> None:
        self._store = store
        self._interval = refresh_interval
        self._apps: dict[int, App] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_miss_refresh = 0.0

    def get(self, sdkappid: int) -> App | None:
        return self._apps.get(sdkappid)

    def all(self) -> list[App]:
        return list(self._apps.values())

    async def get_or_refresh(self, sdkappid: int) -> App | None:
        """A miss may be an app created a moment ago: refresh, at most once a second."""
        found = self._apps.get(sdkappid)
        if found is not None:
            return found
        now = time.monotonic()
        if now - self._last_miss_refresh >= 1.0:
            self._last_miss_refresh = now
            await self.refresh()
        return self._apps.get(sdkappid)

    async def refresh(self) -> None:
        self._apps = {app.sdkappid: app for app in await self._store.apps.list_all()}

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="opentim-app-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
                if failing:
                    log.info("refreshing apps works again")
                failing = False
            except Exception as exc:
                # Once per outage, not every interval; the traceback only at debug.
                if not failing:
                    log.warning("refreshing apps failed (%s); keeping the previous copy "
                                "until the database answers", type(exc).__name__)
                log.debug("refreshing apps failed", exc_info=True)
                failing = True


@dataclass
class Runtime:
    settings: Settings
    db: Database
    store: SqlStore
    apps: AppRegistry
    presence: PresenceStore
    clock: Clock = time.time
    # Names this process in shared presence (Redis node leases) and on the room relay.
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    redis_prefix: str = "opentim"
    events: EventBus = field(default_factory=EventBus)
    sigs: SigCache = field(default_factory=SigCache)
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
    # Duplicate sends and per-group rates: in Redis when processes share presence.
    guards: SendGuards = field(default_factory=MemoryGuards)
    group_types: GroupTypes = field(init=False)
    online: OnlineService = field(init=False)
    marks: MarkService = field(init=False)
    webhooks: WebhookDispatcher = field(init=False)
    group_messages: GroupMessaging = field(init=False)
    retention: MessageRetention = field(init=False)

    def __post_init__(self) -> None:
        self.group_types = GroupTypes(self.store)
        self.online = OnlineService(self.store, self.presence, self.events, self.group_types)
        s = self.settings
        self.marks = MarkService(self.store, self.presence, self.events, self.group_types,
                                 mark500_ttl=s.mark500_ttl)
        self.webhooks = WebhookDispatcher(self.apps, self.events, self.clock, WebhookSettings(
            timeout=s.webhook_timeout, retries=s.webhook_retries,
            queue_size=s.webhook_queue_size, own_host=s.host, own_port=s.port))
        self.group_messages = GroupMessaging(self.store, self.events, self.guards,
                                             self.webhooks)
        self.retention = MessageRetention(
            lambda: self.apps.all(), self._expiring_stores,
            days=s.message_retention_days, interval=s.retention_interval, clock=self.clock)

    def _expiring_stores(self) -> list[Expiring]:
        """Every store of messages that expire (group history; one-to-one history)."""
        return [self.store.messages, self.store.c2c]

    # Called when this process's presence lease was lost (Redis): its connections were
    # swept by another process, so the gateway closes them and clients reconnect.
    lease_lost_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings, *, clock: Clock = time.time,
               **presence_options: object) -> Runtime:
        db = Database(settings.db)
        store = SqlStore(db)
        # Either store reports members its background sweeps take offline (lapsed marks
        # 500; with Redis also a crashed process's users); the runtime it reports to is
        # built below.
        built: list[Runtime] = []

        async def on_offline(gone: list[Offline]) -> None:
            await built[0].online.report_offline(gone, now=clock())

        async def on_lease_lost() -> None:
            for hook in built[0].lease_lost_hooks:
                await hook()

        presence_options.setdefault("sweep_interval", settings.sweep_interval)
        presence_options.setdefault("on_offline", on_offline)
        presence_options.setdefault("on_lease_lost", on_lease_lost)
        node_id = uuid.uuid4().hex
        presence = open_presence_store(settings.redis, node_id=node_id, clock=clock,
                                       **presence_options)  # type: ignore[arg-type]
        prefix = str(presence_options.get("prefix", "opentim"))
        guards: SendGuards = (RedisGuards(settings.redis, prefix) if settings.redis
                              else MemoryGuards())
        runtime = cls(settings=settings, db=db, store=store,
                      apps=AppRegistry(store, settings.app_refresh_interval), presence=presence,
                      clock=clock, node_id=node_id, redis_prefix=prefix, guards=guards)
        built.append(runtime)
        return runtime

    async def start(self) -> None:
        await self.db.migrate()
        await self.apps.start()
        await self.presence.start()  # it runs its own background sweep
        await self.guards.start()  # (Redis: its client, a Redis Cluster's if it is one)
        self.retention.start()

    async def close(self) -> None:
        # Presence first: closing it may report this process's members offline, and those
        # callbacks should still be delivered. Each step is bounded so that one stuck
        # dependency cannot keep the process from exiting.
        for step in (self.retention.close, self.presence.close, self.webhooks.close,
                     self.guards.close,
                     self.apps.close, self.db.close):
            try:
                async with asyncio.timeout(15.0):
                    await step()
            except Exception:
                log.exception("shutdown step %s failed or timed out", step.__qualname__)


@dataclass(slots=True)
class Context:
    """One authenticated REST call: the app, the admin who called, and the time it arrived."""

    runtime: Runtime
    app: App
    identifier: str
    now: float
    origin: Origin = REST

    @property
    def sdkappid(self) -> int:
        return self.app.sdkappid

    @property
    def store(self) -> SqlStore:
        return self.runtime.store

    @property
    def now_s(self) -> int:
        return int(self.now)
