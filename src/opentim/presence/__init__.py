"""Presence: online member lists, marks and robots of AVChatRoom / Community groups.

``open_presence_store`` picks the backend: in-process memory (one server process) or
Redis (any number of processes). The Redis backend is imported only when asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentim.presence.base import (
    RECOVER_WINDOW,
    Joined,
    MarkedMember,
    MarkResult,
    Offline,
    Page,
    PresenceStore,
)
from opentim.presence.errors import (
    InvalidCursorError,
    InvalidMarkError,
    MarkLimitError,
    PresenceError,
)
from opentim.presence.memory import MemoryPresenceStore

__all__ = [
    "RECOVER_WINDOW",
    "InvalidCursorError",
    "InvalidMarkError",
    "Joined",
    "MarkLimitError",
    "MarkResult",
    "MarkedMember",
    "MemoryPresenceStore",
    "Offline",
    "Page",
    "PresenceError",
    "PresenceStore",
    "open_presence_store",
]


def open_presence_store(
    redis_url: str | None,
    *,
    node_id: str,
    clock: Callable[[], float] = time.time,
    **redis_options: Any,
) -> PresenceStore:
    """A not-yet-started store: Redis at ``redis_url``, or memory when it is None.

    ``node_id`` names this server process (unique per process; used by Redis for crash
    cleanup); ``clock`` only drives Redis's background lease/sweep timing - the presence
    rules always take ``now`` from the caller. ``redis_options`` go to
    ``RedisPresenceStore`` (prefix, lease_ttl, on_offline, ...). Call ``await start()``.
    """
    if redis_url is None:
        return MemoryPresenceStore()
    from opentim.presence.redis import RedisPresenceStore

    return RedisPresenceStore.from_url(redis_url, node_id=node_id, clock=clock, **redis_options)
