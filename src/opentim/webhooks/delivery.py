"""Webhook delivery: never in the way of the request or connection that caused it.

Each app with a callback URL gets its own bounded queue of callbacks, kept as one FIFO
per order key (the group, or the account for State.StateChange) and a pool of senders:
a key has at most one callback in flight, so one group's callbacks arrive in order, while
up to ``concurrency`` different keys are sent in parallel (keys take turns, so one busy
group cannot starve the others). Senders are started when keys become ready and end when
none is, so an idle app holds no task. When the app's queue is full, or one key already
holds ``key_limit`` callbacks (one account's connect/close storm must leave room for every
other account and group), a new callback is dropped, counted, and logged — never silently
lost, never blocking. A failed attempt (timeout, connection error, non-200, a redirect,
which is never followed) is retried with exponential backoff before it counts as failed.

Nothing logged here carries a callback's query (``Sign``, ``RequestTime``), its path, or
the text of a client exception (aiohttp puts the full URL in several): only the receiver's
``scheme://host:port`` and a reason chosen here.

The HTTP client is aiohttp: measured on this machine posting a callback to a bare local
receiver, httpx spent ~1,300-1,500 us of CPU per POST and aiohttp ~165 us, so delivery
throughput (CPU-bound in the server process) is ~8x higher with aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import msgspec
import yarl

from opentim.domain.apps import App
from opentim.events import REST, Event, EventBus, Origin
from opentim.webhooks.before import BeforeCallbacks
from opentim.webhooks.payloads import STATE_CHANGE, Callback, callback_for
from opentim.webhooks.resolver import GuardedResolver
from opentim.webhooks.urls import OwnAddress, check_callback_url, origin

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    timeout: float = 2.0
    retries: int = 3
    backoff: float = 0.5  # first retry delay; doubles each time
    concurrency: int = 32  # callbacks of one app in flight at once (distinct order keys)
    queue_size: int = 10_000  # queued callbacks per app
    # Where this server listens (Settings.host/port): callbacks are never sent there.
    own_host: str = ""
    own_port: int = 0

    @property
    def key_limit(self) -> int:
        """Callbacks one order key (an account, a group) may have queued or in flight: a
        tenth of the app's queue, at most 1000, so one key can never fill the queue."""
        return max(1, min(1000, self.queue_size // 10))


# A receiver's reply is read (so the connection is reused) up to this much, else dropped.
MAX_REPLY = 64 * 1024
# Deliveries remembered per app for the console's webhook page (newest kept).
RECENT_DELIVERIES = 200
# Distinct callback URLs whose check is remembered (bounded: cleared when full).
_CHECKED_URLS = 1024


def sign(token: str, request_time: int) -> str:
    """Tencent's callback signature: hex(sha256(token + RequestTime))."""
    return hashlib.sha256(f"{token}{request_time}".encode()).hexdigest()


def callback_url(app: App, cb: Callback, now: float, base: str | None = None) -> str:
    """The URL one attempt POSTs to: ``base`` (the app's checked URL) and Tencent's query."""
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
    if base is None:
        base = app.callback_url
    assert base is not None
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode(query)}"


class AppLookup(Protocol):
    def get(self, sdkappid: int) -> App | None: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one callback's delivery ended, for the console (``WebhookDispatcher.recent``).

    ``outcome``: sent, failed, dropped. ``status``: the last attempt's HTTP status (None:
    no answer). ``latency_ms``: the last attempt's round trip. ``problem``: why it failed,
    in words chosen here (never a URL).
    """

    time: float
    command: str
    outcome: str
    status: int | None
    latency_ms: float
    attempts: int
    problem: str = ""


Item = tuple[Callback, bytes]


class _AppQueue:
    """One app's queued callbacks: a FIFO per order key and the keys ready to send.

    A key is in ``ready`` or in flight (never both, never twice) while it has callbacks;
    the sender that finishes one puts the key back at the end of ``ready`` if more wait.
    A sender is started for a newly ready key while fewer than ``concurrency`` run, and a
    sender ends when ``ready`` is empty: tasks and memory are bounded per app.
    """

    def __init__(self, dispatcher: WebhookDispatcher, sdkappid: int) -> None:
        settings = dispatcher.settings
        self.dispatcher = dispatcher
        self.sdkappid = sdkappid
        self.limit = settings.queue_size
        self.key_limit = settings.key_limit
        self.concurrency = settings.concurrency
        self.pending: dict[str, deque[Item]] = {}
        self.ready: deque[str] = deque()
        self.count = 0  # queued + in flight
        self.idle = asyncio.Event()
        self.idle.set()
        self.workers = 0  # senders started and not yet ended
        self.tasks: set[asyncio.Task[None]] = set()  # asyncio keeps tasks only weakly

    def put(self, key: str, item: Item) -> str | None:
        """Queue ``item``; or why it was refused (then nothing changed)."""
        if self.count >= self.limit:
            return "queue full"
        waiting = self.pending.get(key)
        if waiting is None:
            self.pending[key] = deque((item,))
            self._make_ready(key)
        elif len(waiting) >= self.key_limit:
            return f"{len(waiting)} already queued for {key!r}"
        else:
            waiting.append(item)  # sent after the ones before it, by whoever holds the key
        self.count += 1
        self.idle.clear()
        return None

    def _make_ready(self, key: str) -> None:
        self.ready.append(key)
        if self.workers < self.concurrency:
            self.workers += 1
            task = asyncio.create_task(self.dispatcher._work(self),
                                       name=f"opentim-webhooks-{self.sdkappid}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def done(self, key: str) -> None:
        waiting = self.pending[key]
        waiting.popleft()
        self.count -= 1
        if waiting:
            self.ready.append(key)  # the sender finishing this one takes it next
        else:
            del self.pending[key]
            if not self.count:
                self.idle.set()


class WebhookDispatcher:
    def __init__(self, apps: AppLookup, events: EventBus, clock: Callable[[], float],
                 settings: WebhookSettings | None = None) -> None:
        self.apps = apps
        self.clock = clock
        self.settings = settings or WebhookSettings()
        self.metrics: Counter[tuple[int, str]] = Counter()
        self._recent: dict[int, deque[Delivery]] = {}
        self._queues: dict[int, _AppQueue] = {}
        self._closed = False
        self._http: aiohttp.ClientSession | None = None  # made on first use, in the loop
        self._own = OwnAddress(self.settings.own_host, self.settings.own_port)
        # stored callback URL -> (the URL to use, None) or (None, why it is refused)
        self._checked: dict[str, tuple[str | None, str]] = {}
        self.before = BeforeCallbacks(self)
        events.subscribe(self.on_event)

    def wants(self, app: App, command: str) -> bool:
        """Whether the app takes callbacks of ``command`` (a URL, and the command on)."""
        return self.before.wanted(app, command)

    async def ask_before(self, app: App, command: str, body: dict[str, Any], *,
                         order_key: str, origin: Origin = REST) -> dict[str, Any] | None:
        """Ask a "before" callback and wait (bounded) for its reply; None lets the action
        through (see ``before.py``)."""
        return await self.before.ask(app, Callback(app.sdkappid, command, body, order_key,
                                                   origin))

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._own)),
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                # The reply is never used: not inflating it keeps a compressed bomb small.
                auto_decompress=False,
                headers={"content-type": "application/json"})
        return self._http

    def _target(self, sdkappid: int, stored: str) -> str | None:
        """The checked form of an app's stored callback URL, or None when it is refused.

        Checked once per distinct URL (rows written by older versions were never checked),
        so an attempt costs a dict lookup; a refusal is logged once, without the query.
        """
        checked = self._checked.get(stored)
        if checked is None:
            try:
                checked = (check_callback_url(stored, self._own), "")
            except ValueError as exc:
                checked = (None, str(exc))
                log.warning("webhooks of app %s: callback URL %s refused (%s); its callbacks "
                            "fail until `opentim app update --callback-url` replaces it",
                            sdkappid, origin(stored), exc)
            if len(self._checked) >= _CHECKED_URLS:
                self._checked.clear()
            self._checked[stored] = checked
        return checked[0]

    def on_event(self, event: Event) -> None:
        cb = callback_for(event)
        if cb is None or self._closed:
            return
        app = self.apps.get(cb.sdkappid)
        if app is None or not app.callback_url:
            return
        if app.callback_commands is not None and cb.command not in app.callback_commands:
            return
        queue = self._queues.get(app.sdkappid)
        if queue is None:
            queue = self._queues[app.sdkappid] = _AppQueue(self, app.sdkappid)
        refused = queue.put(cb.order_key, (cb, msgspec.json.encode(cb.body)))
        if refused is not None:
            self._drop(app.sdkappid, f"{refused}: dropped {cb.command}")

    def _drop(self, sdkappid: int, why: str) -> None:
        self.metrics[(sdkappid, "dropped")] += 1
        dropped = self.metrics[(sdkappid, "dropped")]
        if dropped == 1 or dropped % 1000 == 0:
            log.warning("webhooks of app %s: %s (%d dropped so far)", sdkappid, why, dropped)

    async def _work(self, queue: _AppQueue) -> None:
        try:
            while queue.ready:
                key = queue.ready.popleft()
                cb, body = queue.pending[key][0]
                try:
                    await self._deliver(cb, body)
                except Exception as exc:  # a sender must outlive any one callback
                    self.metrics[(queue.sdkappid, "failed")] += 1
                    # The frames, not the message: an exception's text may hold the URL.
                    log.error("webhook delivery to app %s failed: %s\n%s", queue.sdkappid,
                              type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
                finally:
                    queue.done(key)
        finally:
            queue.workers -= 1  # with no await since ``ready`` was seen empty

    async def _deliver(self, cb: Callback, body: bytes) -> None:
        sdkappid = cb.sdkappid
        delay = self.settings.backoff
        problem = ""
        base: str | None = None
        status: int | None = None
        latency = 0.0
        attempts = 0
        for attempt in range(self.settings.retries + 1):
            if attempt:
                self.metrics[(sdkappid, "retried")] += 1
                await asyncio.sleep(delay)
                delay *= 2
            # The app as it is now (its URL or token may have changed), and a fresh
            # RequestTime/Sign per attempt so receivers' freshness checks pass on retries.
            app = self.apps.get(sdkappid)
            if app is None or not app.callback_url:
                self._drop(sdkappid, f"callback URL removed: dropped {cb.command}")
                self._record(cb, "dropped", status, latency, attempts, "callback URL removed")
                return
            base = self._target(sdkappid, app.callback_url)
            if base is None:  # refused: no attempt will ever be made to it
                self.metrics[(sdkappid, "failed")] += 1
                self._record(cb, "failed", None, 0.0, attempts, "callback URL refused")
                return
            attempts += 1
            status = None
            started = time.monotonic()
            try:
                # encoded=True: the query is already percent-encoded, send it as it is.
                url = yarl.URL(callback_url(app, cb, self.clock(), base), encoded=True)
                async with self._session().post(url, data=body,
                                                allow_redirects=False) as response:
                    status = response.status
                    await _discard_reply(response)
                latency = time.monotonic() - started
                if status == 200:
                    self.metrics[(sdkappid, "sent")] += 1
                    self._record(cb, "sent", status, latency, attempts)
                    return
                problem = f"HTTP {status}"
                if 300 <= status < 400:
                    problem += " (redirects are not followed: give the final URL)"
            except TimeoutError:
                problem = f"no answer within {self.settings.timeout} s"
            except aiohttp.ClientConnectorError as exc:
                # Socket-level: names host:port at most, never the path or query.
                problem = f"cannot connect: {exc.os_error.strerror or exc.os_error}"
            except (aiohttp.ClientError, ValueError) as exc:
                problem = type(exc).__name__  # their text may hold the full URL
            latency = time.monotonic() - started
        self.metrics[(sdkappid, "failed")] += 1
        self._record(cb, "failed", status, latency, attempts, problem)
        log.warning("webhook %s to app %s at %s failed after %d attempts (%s)",
                    cb.command, sdkappid, origin(base or ""), self.settings.retries + 1, problem)

    def _record(self, cb: Callback, outcome: str, status: int | None, latency: float,
                attempts: int, problem: str = "") -> None:
        recent = self._recent.get(cb.sdkappid)
        if recent is None:
            recent = self._recent[cb.sdkappid] = deque(maxlen=RECENT_DELIVERIES)
        recent.append(Delivery(self.clock(), cb.command, outcome, status,
                               round(latency * 1000, 1), attempts, problem))

    def recent(self, sdkappid: int) -> list[Delivery]:
        """The app's last RECENT_DELIVERIES deliveries, newest first."""
        return list(reversed(self._recent.get(sdkappid, ())))

    def queued(self) -> int:
        """Callbacks of every app waiting to be sent or being sent."""
        return sum(queue.count for queue in self._queues.values())

    async def drain(self) -> None:
        """Wait until every queued callback has been attempted (tests, shutdown)."""
        for queue in list(self._queues.values()):
            await queue.idle.wait()

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):  # give queued callbacks a moment, not forever
                await self.drain()
        self._closed = True
        for sdkappid, queue in self._queues.items():
            if queue.count:
                self.metrics[(sdkappid, "dropped")] += queue.count
                log.warning("shutting down: %d queued webhooks of app %s not delivered",
                            queue.count, sdkappid)
            tasks = list(queue.tasks)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._queues.clear()
        await self.before.close()
        if self._http is not None:
            await self._http.close()

    def senders(self) -> int:
        """Sender tasks running across every app (at most ``concurrency`` per app)."""
        return sum(queue.workers for queue in self._queues.values())

    def prometheus(self) -> str:
        lines = ["# TYPE opentim_webhook_deliveries_total counter"]
        for (sdkappid, outcome), count in sorted((self.metrics + self.before.metrics).items()):
            lines.append(f'opentim_webhook_deliveries_total{{sdkappid="{sdkappid}",'
                         f'outcome="{outcome}"}} {count}')
        lines += ["# TYPE opentim_webhook_queued gauge", f"opentim_webhook_queued {self.queued()}"]
        return "\n".join(lines) + "\n"


async def _discard_reply(response: aiohttp.ClientResponse) -> None:
    """Read the (unused) reply so its connection can be reused; past ``MAX_REPLY`` bytes
    drop the connection instead: a receiver must not make us read without end."""
    left = MAX_REPLY
    while not response.content.at_eof():
        chunk = await response.content.readany()
        if not chunk:
            return
        left -= len(chunk)
        if left < 0:
            response.close()
            return
