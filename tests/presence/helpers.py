"""Reads the presence contract does not offer, built on it for tests: whether an account
is online and which marks it holds. The server never needs them (it pages and counts),
so they are not part of ``PresenceStore``; both backends answer them the same way here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from opentim.domain.marks import MARK_ALWAYS_ONLINE, MARK_HIDDEN, MIN_CUSTOM_MARK
from opentim.presence import PresenceStore
from opentim.presence.cursor import MAX_CAP

# Every mark the tests use: the special ones and the first custom ones.
CANDIDATE_MARKS = (MARK_ALWAYS_ONLINE, MARK_HIDDEN, *range(MIN_CUSTOM_MARK, MIN_CUSTOM_MARK + 64))


async def _listed(s: PresenceStore, app: int, group: str, mark: int | None,
                  now: float) -> set[str]:
    out: set[str] = set()
    cursor = 0
    while True:
        p = await s.page(app, group, cursor=cursor, mark=mark, limit=1000, cap=MAX_CAP, now=now)
        out.update(r["Member_Account"] for r in json.loads(p.rows))
        if not p.next_cursor:
            return out
        cursor = p.next_cursor


async def online(s: PresenceStore, app: int, group: str, *, now: float) -> set[str]:
    """Every online account: the plain list plus the hidden (mark 600) members."""
    return await _listed(s, app, group, None, now) | await _listed(s, app, group, MARK_HIDDEN,
                                                                    now)


async def is_online(s: PresenceStore, app: int, group: str, account: str, *,
                    now: float) -> bool:
    return account in await online(s, app, group, now=now)


async def marks_of(s: PresenceStore, app: int, group: str, accounts: Iterable[str], *,
                   now: float, marks: Iterable[int] = CANDIDATE_MARKS,
                   ) -> dict[str, tuple[int, ...]]:
    """Marks (sorted) of those ``accounts`` that are online; offline ones are absent.
    A lapsed mark 500 is left out (``page(mark=500)`` lists valid ones only)."""
    wanted = set(accounts) & await online(s, app, group, now=now)
    held: dict[str, list[int]] = {a: [] for a in wanted}
    for m in sorted(marks):
        for a in wanted & await _listed(s, app, group, m, now):
            held[a].append(m)
    return {a: tuple(ms) for a, ms in held.items()}
