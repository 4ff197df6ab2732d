"""Webhook delivery: never in the way of the request or connection that caused it.

Each app with a callback URL gets a few delivery lanes; a callback goes to the lane its
order key (group or account) hashes to, so one group's callbacks arrive in order while
different groups proceed in parallel. Lanes are bounded queues: when one is full the
callback is dropped, counted, and logged — never silently lost, never blocking. A failed
attempt (timeout, connection error, non-200) is retried with exponential backoff before
it counts as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

import httpx
import msgspec

from opentim.domain.apps import App
from opentim.events import Event, EventBus
from opentim.webhooks.payloads import STATE_CHANGE, Callback, callback_for

log = logging.getLogger(__name__)

OUTCOMES = ("sent", "failed", "dropped", "retried")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    timeout: float = 2.0
    retries: int = 3
    backoff: float = 0.5  # first retry delay; doubles each time
    lanes: int = 4
    queue_size: int = 10_000  # per app, shared out among its lanes


def sign(token: str, request_time: int) -> str:
    """Tencent's callback signature: hex(sha256(token + RequestTime))."""
    return hashlib.sha256(f"{token}{request_time}".encode()).hexdigest()


def callback_url(app: App, cb: Callback, now: float) -> str:
    query: dict[str, str | int] = {"SdkAppid": app.sdkappid, "CallbackCommand": cb.command,
                                   "contenttype": "json"}
    if not cb.bare_query:
        platform = cb.origin.platform
        if cb.command == STATE_CHANGE and platform == "iOS":
            platform = "IOS"  # State.StateChange alone spells it this way
        query["ClientIP"] = cb.origin.client_ip
        query["OptPlatform"] = platform
    if app.callback_token:
        request_time = int(now)
        query["Sign"] = sign(app.callback_token, request_time)
        query["RequestTime"] = request_time
    assert app.callback_url is not None
    separator = "&" if "?" in app.callback_url else "?"
    return f"{app.callback_url}{separator}{urlencode(query)}"


class AppLookup(Protocol):
    def get(self, sdkappid: int) -> App | None: ...


class _AppLanes:
    def __init__(self, dispatcher: WebhookDispatcher, sdkappid: int) -> None:
        size = max(1, dispatcher.settings.queue_size // dispatcher.settings.lanes)
        self.queues: list[asyncio.Queue[tuple[str, bytes]]] = [
            asyncio.Queue(maxsize=size) for _ in range(dispatcher.settings.lanes)
        ]
        self.tasks = [asyncio.create_task(dispatcher._work(sdkappid, q),
                                          name=f"opentim-webhooks-{sdkappid}-{i}")
                      for i, q in enumerate(self.queues)]


class WebhookDispatcher:
    def __init__(self, apps: AppLookup, events: EventBus, clock: Callable[[], float],
                 settings: WebhookSettings | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.apps = apps
        self.clock = clock
        self.settings = settings or WebhookSettings()
        self.metrics: Counter[tuple[int, str]] = Counter()
        self._lanes: dict[int, _AppLanes] = {}
        self._http = httpx.AsyncClient(timeout=self.settings.timeout, transport=transport)
        events.subscribe(self.on_event)

    def on_event(self, event: Event) -> None:
        cb = callback_for(event)
        if cb is None:
            return
        app = self.apps.get(cb.sdkappid)
        if app is None or not app.callback_url:
            return
        if app.callback_commands is not None and cb.command not in app.callback_commands:
            return
        lanes = self._lanes.get(app.sdkappid)
        if lanes is None:
            lanes = self._lanes[app.sdkappid] = _AppLanes(self, app.sdkappid)
        lane = lanes.queues[zlib.crc32(cb.order_key.encode()) % len(lanes.queues)]
        url = callback_url(app, cb, self.clock())
        try:
            lane.put_nowait((url, msgspec.json.encode(cb.body)))
        except asyncio.QueueFull:
            self.metrics[(app.sdkappid, "dropped")] += 1
            dropped = self.metrics[(app.sdkappid, "dropped")]
            if dropped == 1 or dropped % 1000 == 0:
                log.warning("webhook queue of app %s is full: dropped %s %s (%d dropped so far)",
                            app.sdkappid, cb.command, cb.order_key, dropped)

    async def _work(self, sdkappid: int, queue: asyncio.Queue[tuple[str, bytes]]) -> None:
        while True:
            url, body = await queue.get()
            try:
                await self._deliver(sdkappid, url, body)
            finally:
                queue.task_done()

    async def _deliver(self, sdkappid: int, url: str, body: bytes) -> None:
        delay = self.settings.backoff
        for attempt in range(self.settings.retries + 1):
            if attempt:
                self.metrics[(sdkappid, "retried")] += 1
                await asyncio.sleep(delay)
                delay *= 2
            try:
                response = await self._http.post(
                    url, content=body, headers={"content-type": "application/json"})
                if response.status_code == 200:
                    self.metrics[(sdkappid, "sent")] += 1
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
        self.metrics[(sdkappid, "failed")] += 1
        log.warning("webhook delivery to app %s failed after %d attempts (%s): %s",
                    sdkappid, self.settings.retries + 1, problem, url.split("?")[0])

    def queued(self) -> int:
        return sum(q.qsize() for lanes in self._lanes.values() for q in lanes.queues)

    async def drain(self) -> None:
        """Wait until every queued callback has been attempted (tests, shutdown)."""
        for lanes in list(self._lanes.values()):
            for queue in lanes.queues:
                await queue.join()

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):  # give queued callbacks a moment, not forever
                await self.drain()
        for lanes in self._lanes.values():
            for task in lanes.tasks:
                task.cancel()
            for task in lanes.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._lanes.clear()
        await self._http.aclose()

    def prometheus(self) -> str:
        lines = ["# TYPE opentim_webhook_deliveries_total counter"]
        for (sdkappid, outcome), count in sorted(self.metrics.items()):
            lines.append(f'opentim_webhook_deliveries_total{{sdkappid="{sdkappid}",'
                         f'outcome="{outcome}"}} {count}')
        lines += ["# TYPE opentim_webhook_queued gauge", f"opentim_webhook_queued {self.queued()}"]
        return "\n".join(lines) + "\n"
