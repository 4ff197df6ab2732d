""""Before" callbacks: the app is asked, and its answer awaited, before an action happens.

Unlike the after-callbacks (queued, retried, never in anyone's way), a before-callback
holds up the one action it is about, so it is bounded three ways:
- one attempt, no retry, within ``WebhookSettings.timeout`` (Tencent: 2 s); a failure or a
  timeout lets the action through (``None``), as Tencent does;
- at most ``PER_KEY`` in flight per order key (a group, a sender): a group whose receiver
  is slow waits on its own slots and nobody else's;
- at most ``PER_APP`` in flight per app, on a connection pool of their own (the after-
  callbacks' pool is not shared): past that the callback is skipped (the action goes
  through, counted as ``before_skipped``) rather than queued behind other groups.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import aiohttp
import msgspec
import yarl

from opentim.domain.apps import App
from opentim.webhooks.payloads import Callback
from opentim.webhooks.urls import origin

log = logging.getLogger(__name__)

PER_KEY = 16
PER_APP = 512
MAX_REPLY = 64 * 1024

_decode = msgspec.json.Decoder().decode


class BeforeCallbacks:
    def __init__(self, dispatcher: Any) -> None:
        self._dispatcher = dispatcher  # WebhookDispatcher: URL checks, clock, settings
        self._http: aiohttp.ClientSession | None = None
        self._per_key: dict[tuple[int, str], asyncio.Semaphore] = {}
        self._per_app: Counter[int] = Counter()
        self.metrics: Counter[tuple[int, str]] = Counter()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            from opentim.webhooks.resolver import GuardedResolver

            d = self._dispatcher
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(d._own), limit=PER_APP),
                timeout=aiohttp.ClientTimeout(total=d.settings.timeout),
                auto_decompress=False,
                headers={"content-type": "application/json"})
        return self._http

    def wanted(self, app: App, command: str) -> bool:
        return bool(app.callback_url) and (
            app.callback_commands is None or command in app.callback_commands)

    async def ask(self, app: App, cb: Callback) -> dict[str, Any] | None:
        """The receiver's JSON reply, or None (not configured, skipped, failed, timed out)."""
        from opentim.webhooks.delivery import callback_url

        if not self.wanted(app, cb.command) or self._dispatcher._closed:
            return None
        sdkappid = app.sdkappid
        if self._per_app[sdkappid] >= PER_APP:
            self.metrics[(sdkappid, "before_skipped")] += 1
            return None
        base = self._dispatcher._target(sdkappid, app.callback_url or "")
        if base is None:
            self.metrics[(sdkappid, "before_failed")] += 1
            return None
        key = (sdkappid, cb.order_key)
        slot = self._per_key.get(key)
        if slot is None:
            if len(self._per_key) > 10_000:  # forget idle keys
                self._per_key = {k: s for k, s in self._per_key.items() if s.locked()}
            slot = self._per_key[key] = asyncio.Semaphore(PER_KEY)
        self._per_app[sdkappid] += 1
        problem = ""
        try:
            async with asyncio.timeout(self._dispatcher.settings.timeout):
                async with slot:
                    url = yarl.URL(callback_url(app, cb, self._dispatcher.clock(), base),
                                   encoded=True)
                    async with self._session().post(url, data=msgspec.json.encode(cb.body),
                                                    allow_redirects=False) as response:
                        if response.status != 200:
                            problem = f"HTTP {response.status}"
                        else:
                            raw = await response.content.read(MAX_REPLY + 1)
                            if len(raw) > MAX_REPLY:
                                problem = "reply too large"
                            else:
                                reply = _decode(raw)
                                if isinstance(reply, dict):
                                    self.metrics[(sdkappid, "before_sent")] += 1
                                    return reply
                                problem = "reply is not a JSON object"
        except TimeoutError:
            problem = f"no answer within {self._dispatcher.settings.timeout} s"
        except msgspec.DecodeError:
            problem = "reply is not JSON"
        except aiohttp.ClientConnectorError as exc:
            problem = f"cannot connect: {exc.os_error.strerror or exc.os_error}"
        except (aiohttp.ClientError, ValueError) as exc:
            problem = type(exc).__name__  # their text may hold the full URL
        finally:
            self._per_app[sdkappid] -= 1
        self.metrics[(sdkappid, "before_failed")] += 1
        log.warning("before-callback %s to app %s at %s failed (%s): the action goes ahead",
                    cb.command, sdkappid, origin(base), problem)
        return None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
