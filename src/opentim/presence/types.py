"""What presence stores return, and the callbacks they report background changes to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

Profiles = Mapping[str, tuple[str, str]]
"""account -> (nick, avatar), used for rows of accounts that become online via mark 500."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the online list.

    ``rows`` is a complete JSON array (``b"[...]"``) ready to embed in a response;
    ``next_cursor`` is 0 when the paging sequence is complete; ``count`` = rows in it.
    """

    rows: bytes
    next_cursor: int
    count: int


class Joined(Enum):
    """What ``join`` did to the account's place in the list.

    Every value but ``NO_CHANGE`` means the account became online (a fresh sequence and
    row); the others say how the caller should announce it.
    """

    NO_CHANGE = 0
    """Already online (another connection, or a valid mark 500), or a duplicate conn_id."""
    ONLINE = 1
    """Became online: a plain join."""
    RECOVERED = 2
    """Became online within the recovery window after a heartbeat interruption took it
    offline (HeartbeatRecover)."""
    AFTER_LAPSE = 3
    """Became online; until now a lapsed mark 500 still listed it, which this join removed.
    Nothing reported it offline yet (the sweep no longer will): announce its Offline,
    as for a swept ``mark500_expired``, before the Online."""

    @property
    def became_online(self) -> bool:
        return self is not Joined.NO_CHANGE


@dataclass(frozen=True, slots=True)
class MarkedMember:
    """An account a mark call succeeded for and ALL the marks it holds afterwards."""

    account: str
    marks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MarkResult:
    """Outcome of set_marks / delete_marks / add_robots / del_robots.

    ``members``: accounts that were online (or were brought online by mark 500), in the
    order of the request, each with the full set of marks it holds after the call (sorted
    ascending). Offline / unknown accounts are left out; an empty list means the REST
    layer should FAIL the call.
    ``went_online``: accounts listed because of this call (mark 500 on an offline account).
    ``went_offline``: accounts no longer listed after this call - mark 500 deleted from an
    unconnected member, or any member of the group whose mark 500 lapsed (cleaned up here).
    A lapsed member that the call lists again with a new 500 is in both lists: it went
    offline (lapse) before it came back online (this call).
    """

    members: list[MarkedMember] = field(default_factory=list)
    went_online: list[str] = field(default_factory=list)
    went_offline: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Offline:
    """A member that ``sweep`` took offline, for the webhook layer.

    ``reason``: ``"mark500_expired"`` (its 500 lapsed and it had no connection) or
    ``"node_lost"`` (its last connection belonged to a server process that died).
    """

    app: int
    group: str
    account: str
    reason: Literal["mark500_expired", "node_lost"]


OfflineHook = Callable[[list[Offline]], Awaitable[None]]
"""Receives the members a store's background sweep (or its close) took offline."""
LeaseLostHook = Callable[[], Awaitable[None]]
"""Awaited when this process's presence lease was claimed by another (shared stores):
its connections may have been removed, so the gateway should drop them."""
