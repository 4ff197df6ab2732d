"""Presence: online member lists, marks and robots of AVChatRoom / Community groups.

``open_presence_store`` picks the backend: in-process memory (one server process) or
Redis (any number of processes). The Redis backend is imported only when asked for.
The contract both implement is ``contract.PresenceStore``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentim.domain.online import RECOVER_WINDOW
from opentim.presence.contract import PresenceStore
from opentim.presence.errors import (
    InvalidCursorError,
    InvalidMarkError,
    MarkLimitError,
    PresenceError,
)
from opentim.presence.memory import MemoryPresenceStore
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

__all__ = [
    "RECOVER_WINDOW",
    "InvalidCursorError",
    "InvalidMarkError",
    "Joined",
    "LeaseLostHook",
    "MarkLimitError",
    "MarkResult",
    "MarkedMember",
    "MemoryPresenceStore",
    "Offline",
    "OfflineHook",
    "Page",
    "PresenceError",
    "PresenceStore",
    "Profiles",
    "open_presence_store",
]


def open_presence_store(
    redis_url: str | None,
    *,
    node_id: str,
    clock: Callable[[], float] = time.time,
    sweep_interval: float = 5.0,
    background: bool = True,
    on_offline: OfflineHook | None = None,
    on_lease_lost: LeaseLostHook | None = None,
    **redis_options: Any,
) -> PresenceStore:
    """A not-yet-started store: Redis at ``redis_url``, or memory when it is None.

    Both take the same background options: once started, the store sweeps every
    ``sweep_interval`` seconds (timed by ``clock``; the presence rules always take
    ``now`` from the caller) and hands whoever went offline to ``on_offline``;
    ``on_lease_lost`` is called when a shared store finds this process's lease was
    claimed. ``node_id`` names this server process (Redis crash cleanup);
    ``redis_options`` go to ``RedisPresenceStore`` (prefix, lease_ttl, ...).
    Call ``await start()``.
    """
    common: dict[str, Any] = {"clock": clock, "sweep_interval": sweep_interval,
                              "background": background, "on_offline": on_offline,
                              "on_lease_lost": on_lease_lost}
    if redis_url is None:
        return MemoryPresenceStore(**common)
    from opentim.presence.redis import RedisPresenceStore

    return RedisPresenceStore.from_url(redis_url, node_id=node_id, **common, **redis_options)
