"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can serve: the database
answers ``SELECT 1`` and, with ``--redis``, Redis answers PING, each within ``TIMEOUT``).

Both are on the API port, where load balancers and orchestrators probe
(docs/running.md#health-checks). They need no credentials and say nothing secret: a
failed check is named with a short reason ("connection refused", "timed out after 1 s"),
never an exception's text (which may carry a URL) or a traceback. Concurrent probes share
one check, and a result is reused for ``REUSE`` seconds, so probing the public port
cannot make the server query its database more than about once a second.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger(__name__)

TIMEOUT = 1.0  # seconds each dependency has to answer
REUSE = 1.0  # seconds a readiness result is reused

_NO_STORE = {"cache-control": "no-store"}


async def healthz(_request: Request) -> Response:
    """The process is up and its event loop turns."""
    return Response(b"ok", media_type="text/plain; charset=utf-8", headers=_NO_STORE)


Check = Callable[[], Awaitable[None]]


class Readiness:
    """The /readyz endpoint: the runtime's database (and Redis, when configured)."""

    def __init__(self, runtime: Any, *, timeout: float = TIMEOUT, reuse: float = REUSE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._runtime = runtime
        self._timeout = timeout
        self._reuse = reuse
        self._clock = clock
        self._redis: Any = None  # a client of its own, made at the first check
        self._running: asyncio.Task[dict[str, str]] | None = None
        self._last: tuple[float, dict[str, str]] | None = None
        self._was_ready = True

    async def endpoint(self, _request: Request) -> Response:
        checks = await self.check()
        ready = all(v == "ok" for v in checks.values())
        body = msgspec.json.encode({"status": "ready" if ready else "not ready",
                                    "checks": checks})
        return Response(body, status_code=200 if ready else 503,
                        media_type="application/json", headers=_NO_STORE)

    async def check(self) -> dict[str, str]:
        """Each dependency → "ok" or why not (a fresh result at most ``reuse`` s old)."""
        if self._last is not None and self._clock() - self._last[0] < self._reuse:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._check_all())
            self._running.add_done_callback(self._finished)
        # (shielded: a probe that gives up does not cancel the check others wait on)
        return await asyncio.shield(self._running)

    def _finished(self, task: asyncio.Task[dict[str, str]]) -> None:
        self._running = None
        if not task.cancelled() and task.exception() is None:
            self._last = (self._clock(), task.result())

    async def _check_all(self) -> dict[str, str]:
        checks: dict[str, Check] = {"database": self._database}
        if self._runtime.settings.redis:
            checks["redis"] = self._ping_redis
        results = await asyncio.gather(*(self._bounded(c) for c in checks.values()))
        found = dict(zip(checks, results, strict=True))
        ready = all(v == "ok" for v in found.values())
        if ready != self._was_ready:
            self._was_ready = ready
            if ready:
                log.info("ready again: %s", ", ".join(found))
            else:
                log.warning("not ready: %s", "; ".join(
                    f"{name} {why}" for name, why in found.items() if why != "ok"))
        return found

    async def _bounded(self, check: Check) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                await check()
        except TimeoutError:
            return f"timed out after {self._timeout:g} s"
        except Exception as exc:
            return _reason(exc)
        return "ok"

    async def _database(self) -> None:
        from sqlalchemy import text

        async with self._runtime.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def _ping_redis(self) -> None:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                self._runtime.settings.redis, socket_connect_timeout=self._timeout,
                socket_timeout=self._timeout, client_name="opentim-readyz")
        await self._redis.ping()

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:
                log.debug("closing the readiness Redis client failed", exc_info=True)
            self._redis = None


def _reason(exc: BaseException) -> str:
    """A few words for a failed check, from the exception's chain; never its text (a
    driver's message may quote the URL it failed on)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 16:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "unknown host"
        if isinstance(cause, TimeoutError):
            return "timed out"
        if type(cause).__name__ in ("InvalidPasswordError", "AuthenticationError",
                                    "InvalidAuthorizationSpecificationError"):
            return "login refused"
    for cause in chain:
        if isinstance(cause, ConnectionError):
            return "connection lost"
    return f"failed ({type(chain[-1]).__name__})"
