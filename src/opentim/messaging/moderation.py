"""Who may speak and who may join: the sender check every send path runs, and the ban
check of an AVChatRoom join.

``check_sender`` is called by send_group_msg (REST and gateway) before anything is
stored or delivered: 10017 when the sender is muted (its own mute, or MuteAllMember for
all but the owner, the group's admins and App admins), 10007 when it is banned from an
AVChatRoom. The rules are ``domain/moderation.py``; one read of the store
(``ModerationStore.sender_state``).

``JoinBans`` answers "is this account banned from this room" for the gateway's join from
a short-lived per-group copy of the room's bans, so that joins and churn in a busy room
cost no SQL each: a ban made through this process applies at once (``forget``); one made
through another process as soon as its relayed removal event arrives (the relay calls
``forget`` too), and within ``ttl`` seconds should that event be lost.
"""

from __future__ import annotations

import time

from opentim.domain import moderation as rules
from opentim.domain.groups import Group
from opentim.storage.sql import SqlStore


async def check_sender(store: SqlStore, group: Group, account: str | None, *, now: int,
                       is_admin: bool) -> None:
    """Raise Tencent's refusal when ``account`` may not send to ``group`` now.

    ``account`` None: the App admin speaking as the group itself, never refused.
    ``is_admin``: the sender is an App admin (exempt from MuteAllMember).
    """
    if account is None:
        return
    state = await store.moderation.sender_state(group.sdkappid, group.group_id, account)
    refusal = rules.sender_refusal(group, account, state, now=now, is_admin=is_admin)
    if refusal is not None:
        raise refusal


class JoinBans:
    """A per-process copy of each room's bans in force, read at most once per ``ttl``.

    A room with more bans than the copy holds (``BAN_CACHE_MAX``) keeps those ending
    first; an account not among them is then looked up on its own.
    """

    def __init__(self, store: SqlStore, ttl: float = 1.0) -> None:
        self._store = store
        self._ttl = ttl
        # (sdkappid, group_id) -> (account -> banned until, complete, read until)
        self._bans: dict[tuple[int, str], tuple[dict[str, int], bool, float]] = {}

    async def check(self, sdkappid: int, group_id: str, account: str, *, now: float) -> None:
        """10007 when ``account`` is banned from the group now."""
        key = (sdkappid, group_id)
        clock = time.monotonic()
        hit = self._bans.get(key)
        if hit is None or hit[2] <= clock:
            bans = await self._store.moderation.bans(sdkappid, group_id, now=int(now),
                                                     limit=rules.BAN_CACHE_MAX)
            if len(self._bans) > 100_000:
                self._bans.clear()
            hit = (bans, len(bans) < rules.BAN_CACHE_MAX, clock + self._ttl)
            self._bans[key] = hit
        until = hit[0].get(account)
        if until is None and not hit[1]:
            until = (await self._store.moderation.sender_state(
                sdkappid, group_id, account)).banned_until
        if (until or 0) > now:
            raise rules.banned_error(group_id, account)

    def forget(self, sdkappid: int, group_id: str) -> None:
        self._bans.pop((sdkappid, group_id), None)
