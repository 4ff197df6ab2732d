"""Stored messages expire: every ``retention_interval`` each app's messages older than its
window (``domain.messages.retention_cutoff``: Tencent's 7 or 30 days by edition, or
``Settings.message_retention_days``) are deleted, in short batches.

Several processes may run it at once: deleting what is already gone costs a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from opentim.domain import messages as rules
from opentim.domain.apps import App

log = logging.getLogger(__name__)

BATCH = 10_000


class Expiring(Protocol):
    async def delete_sent_before(self, sdkappid: int, before: int, *,
                                 limit: int = BATCH) -> int: ...


class MessageRetention:
    def __init__(self, apps: Callable[[], Iterable[App]], stores: Callable[[], list[Expiring]],
                 *, days: int | None, interval: float,
                 clock: Callable[[], float]) -> None:
        self._apps = apps
        self._stores = stores
        self._days = days
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0

    async def run_once(self) -> int:
        """Delete every app's expired messages now; returns how many went."""
        deleted = 0
        for app in list(self._apps()):
            cutoff = rules.retention_cutoff(app.edition.value, self._days, self._clock())
            if cutoff is None:
                continue
            for store in self._stores():
                deleted += await _drain(store.delete_sent_before, app.sdkappid, cutoff)
        self.deleted += deleted
        return deleted

    def start(self) -> None:
        if self._days != 0:
            self._task = asyncio.create_task(self._loop(), name="opentim-retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if n := await self.run_once():
                    log.info("deleted %d expired messages", n)
            except Exception:
                log.exception("deleting expired messages failed; trying again later")


async def _drain(delete: Callable[..., Awaitable[int]], sdkappid: int, cutoff: int) -> int:
    total = 0
    while True:
        n = await delete(sdkappid, cutoff, limit=BATCH)
        total += n
        if n < BATCH:
            return total
        await asyncio.sleep(0)  # let requests in between batches
