"""What both presence backends share: robots as marks, and how they run background work.

Each backend owns its background work: once started, it runs ``sweep`` every
``sweep_interval`` seconds (and a shared backend its lease refresh) and hands whoever
was taken offline to ``on_offline``. So the server starts either backend the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from opentim.domain.marks import DEFAULT_MARK500_TTL, robot_items
from opentim.presence.connections import ConnectionRegistry
from opentim.presence.types import LeaseLostHook, MarkResult, Offline, OfflineHook, Profiles

log = logging.getLogger("opentim.presence")

Job = Callable[[], Awaitable[None]]


class StoreBase(ABC):
    """``clock`` drives only the background timing (the rules take ``now`` from callers);
    ``background=False`` runs no task (tests that drive ``sweep`` themselves)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = 5.0,
        background: bool = True,
        on_offline: OfflineHook | None = None,
        on_lease_lost: LeaseLostHook | None = None,
    ) -> None:
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._background = background
        self._on_offline = on_offline
        self._on_lease_lost = on_lease_lost
        self._tasks: list[asyncio.Task[None]] = []

    # Failures that mean the backing service is unreachable: logged in one line, without
    # a traceback, every time the job retries (a shared backend sets them).
    _outage_errors: tuple[type[Exception], ...] = ()

    # --- background work -------------------------------------------------------------

    def _start_background(self, *jobs: tuple[float, Job]) -> None:
        """Run the sweep, and ``jobs`` (interval, job), periodically if ``background``."""
        if self._background:
            self._tasks = [asyncio.create_task(self._every(interval, job))
                           for interval, job in ((self._sweep_interval, self._sweep_now),
                                                 *jobs)]

    async def _stop_background(self) -> None:
        for t in self._tasks:
            t.cancel()
        # Bounded: a background job stuck in I/O must not hang the server's shutdown.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks = []

    async def _every(self, interval: float, job: Job) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except self._outage_errors as exc:
                log.warning("presence background job %s failed, retried in %.0f s: %s",
                            job.__name__, interval, exc)
            except Exception:  # keep the loop alive across hiccups (Redis restarts)
                log.exception("presence background job %s failed", job.__name__)

    async def _notify(self, events: list[Offline]) -> None:
        if events and self._on_offline is not None:
            await self._on_offline(events)

    async def _sweep_now(self) -> None:
        await self._notify(await self.sweep(self._clock()))

    @abstractmethod
    async def sweep(self, now: float) -> list[Offline]: ...

    # --- gateway connections: each backend sets its registry (presence.connections) -----

    _connections: ConnectionRegistry

    async def add_connection(self, app: int, account: str, conn_id: str, *,
                             platform: str) -> None:
        await self._connections.add(app, account, conn_id, platform)

    async def remove_connection(self, app: int, account: str, conn_id: str) -> None:
        await self._connections.remove(app, account, conn_id)

    async def connections(self, app: int, accounts: Sequence[str], *, now: float
                          ) -> dict[str, list[str]]:
        return await self._connections.platforms(app, accounts, now)

    # --- robots are mark 500 without a connection ---------------------------------------

    @abstractmethod
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
    ) -> MarkResult: ...

    @abstractmethod
    async def delete_marks(
        self,
        app: int,
        group: str,
        items: Sequence[tuple[str, Sequence[int]]],
        *,
        now: float,
    ) -> MarkResult: ...

    async def add_robots(
        self,
        app: int,
        group: str,
        accounts: Sequence[str],
        *,
        now: float,
        profiles: Profiles | None = None,
        ttl: float = DEFAULT_MARK500_TTL,
    ) -> MarkResult:
        return await self.set_marks(app, group, robot_items(accounts), now=now,
                                    profiles=profiles, mark500_ttl=ttl,
                                    allow_offline_500=True)

    async def del_robots(
        self, app: int, group: str, accounts: Sequence[str], *, now: float
    ) -> MarkResult:
        return await self.delete_marks(app, group, robot_items(accounts), now=now)
