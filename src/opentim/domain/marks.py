"""Rules of member marks and robots in AVChatRoom groups.

A mark is a number a member of a live group carries while it is online. Two are special:
500 keeps the member listed ("always online") for a while without any connection (robots
are exactly that), 600 hides it from the plain list. Apps choose the others, >= 1000.

Everything here is a pure function of its inputs. The presence stores enforce the limits
atomically (inside one Lua script, or a section that never awaits) with the values of
``MARK_LIMITS`` passed to them, so the limits are defined here only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from opentim import errors

MARK_ALWAYS_ONLINE = 500
MARK_HIDDEN = 600
SPECIAL_MARKS = frozenset({MARK_ALWAYS_ONLINE, MARK_HIDDEN})
MIN_CUSTOM_MARK = 1000
MAX_DISTINCT_MARKS = 10
MAX_MEMBERS_PER_MARK = 1000
MAX_ACCOUNTS_PER_CALL = 500
# How long a mark 500 keeps an unconnected member listed unless the server sets otherwise
# (Settings.mark500_ttl): three days.
DEFAULT_MARK500_TTL = 3 * 86400.0

# modify_user_info's CommandType
SET = 1
DELETE = 2

Items = Sequence[tuple[str, Sequence[int]]]
LimitKind = Literal["distinct_marks", "members_per_mark"]


@dataclass(frozen=True, slots=True)
class MarkLimits:
    """The per-group limits, as the presence stores receive them.

    ``max_distinct``: distinct marks >= ``min_custom`` a group may use at once (500 and
    600 don't count); ``max_per_mark``: members one mark may have (500 and 600 included).
    """

    max_distinct: int = MAX_DISTINCT_MARKS
    max_per_mark: int = MAX_MEMBERS_PER_MARK
    min_custom: int = MIN_CUSTOM_MARK


MARK_LIMITS = MarkLimits()


def is_valid_mark(mark: object, *, allow_special: bool = True) -> bool:
    """A custom mark (>= 1000), or with ``allow_special`` one of 500 / 600."""
    # bool is an int subclass; True would otherwise pass as mark 1.
    if not isinstance(mark, int) or isinstance(mark, bool):
        return False
    return mark >= MIN_CUSTOM_MARK or (allow_special and mark in SPECIAL_MARKS)


def check_mark(mark: int, *, allow_special: bool = True, account: str | None = None) -> int:
    """The one validity check of a mark a request names; InvalidParameter if invalid.

    ``account``: the member the mark is for (modify_user_info / modify_marks), named in
    the error; None for get_members' Mark filter.
    """
    if is_valid_mark(mark, allow_special=allow_special):
        return mark
    if account is None:
        raise errors.InvalidParameter(
            f"mark {mark} is invalid: marks are >= {MIN_CUSTOM_MARK}, or the special marks "
            f"{MARK_ALWAYS_ONLINE} and {MARK_HIDDEN}"
        )
    allowed = f">= {MIN_CUSTOM_MARK}" + (", 500 or 600" if allow_special else "")
    raise errors.InvalidParameter(f"mark {mark} of {account!r} must be {allowed}")


def check_command_type(command_type: int) -> int:
    if command_type not in (SET, DELETE):
        raise errors.InvalidParameter("CommandType must be 1 (set) or 2 (delete)")
    return command_type


def check_items(items: Items, *, allow_special: bool) -> None:
    """A mark call's MemberList: 1..500 distinct accounts, each with valid marks."""
    if not items:
        raise errors.InvalidParameter("MemberList is empty")
    if len({account for account, _ in items}) > MAX_ACCOUNTS_PER_CALL:
        raise errors.TooManyAccounts(
            f"MemberList names more than {MAX_ACCOUNTS_PER_CALL} accounts"
        )
    for account, marks in items:
        if not account:
            raise errors.InvalidParameter("Member_Account is empty")
        if not marks:
            raise errors.InvalidParameter(f"Marks of {account!r} is empty")
        for mark in marks:
            check_mark(mark, allow_special=allow_special, account=account)


def check_robot_accounts(accounts: Sequence[str]) -> None:
    """add_robots / del_robots: 1..500 distinct non-empty accounts."""
    if not accounts or not all(accounts):
        raise errors.InvalidParameter("Member_Account must list at least one account")
    if len(set(accounts)) > MAX_ACCOUNTS_PER_CALL:
        raise errors.TooManyAccounts(
            f"Member_Account names more than {MAX_ACCOUNTS_PER_CALL} accounts"
        )


def robot_items(accounts: Sequence[str]) -> list[tuple[str, tuple[int, ...]]]:
    """Robots are mark 500 without a connection: the mark items of add/del_robots."""
    return [(a, (MARK_ALWAYS_ONLINE,)) for a in accounts]


def pinnable(items: Items, imported: Collection[str]) -> list[tuple[str, Sequence[int]]]:
    """The items a SET applies: an account never imported cannot be pinned with 500."""
    return [(a, m) for a, m in items if MARK_ALWAYS_ONLINE not in m or a in imported]


def wants_always_online(items: Items) -> list[str]:
    """Accounts a SET pins with mark 500 (their profiles give the rows they are listed by)."""
    return [a for a, marks in items if MARK_ALWAYS_ONLINE in marks]


def broken_limit(distinct_now: Collection[int], adds: dict[int, int],
                 size_of: Callable[[int], int],
                 limits: MarkLimits = MARK_LIMITS) -> tuple[LimitKind, int, int | None] | None:
    """Which limit adding ``adds`` (mark -> members gaining it) would break, if any.

    ``distinct_now``: custom marks in use; ``size_of(mark)``: members holding it now.
    Returns ``(kind, limit, mark)``; the distinct-marks limit is checked first, then the
    marks in ascending order.
    """
    distinct = set(distinct_now) | {m for m in adds if m >= limits.min_custom}
    if len(distinct) > limits.max_distinct:
        return "distinct_marks", limits.max_distinct, None
    for m in sorted(adds):
        if size_of(m) + adds[m] > limits.max_per_mark:
            return "members_per_mark", limits.max_per_mark, m
    return None


def limit_error(kind: LimitKind, mark: int | None) -> errors.TimError:
    """The reply to a mark call that would break a limit (nothing was applied)."""
    if kind == "distinct_marks":
        return errors.InvalidParameter(
            f"a group may use at most {MAX_DISTINCT_MARKS} distinct marks >= {MIN_CUSTOM_MARK}"
        )
    return errors.InvalidParameter(
        f"mark {mark} may be held by at most {MAX_MEMBERS_PER_MARK} members"
    )


def nobody_online_error() -> errors.TimError:
    """A mark call none of whose accounts is online (or pinnable with 500) FAILs."""
    return errors.InvalidParameter(
        "none of the accounts is online in the group (offline or unknown accounts are "
        "left out; only mark 500 applies to offline accounts)"
    )


def member_may_change_marks(account: str, admins: Collection[str], owner: str | None) -> bool:
    """Through the gateway, a connected user may set or delete marks >= 1000 when it is
    an App admin or the group's owner (``owner`` None: the group is gone). Through REST
    the App admin may change any mark, 500 and 600 included."""
    return account in admins or (owner is not None and owner == account)


def check_member_may_change_marks(account: str, admins: Collection[str],
                                  owner: str | None) -> None:
    if not member_may_change_marks(account, admins, owner):
        raise errors.NoPermission("only the group owner or an App admin may change marks")


# Through REST the caller is the App admin: special marks allowed; through the gateway
# a member (owner or admin) changes custom marks only.
REST_ALLOWS_SPECIAL = True
GATEWAY_ALLOWS_SPECIAL = False


def robots_not_imported_error(missing: Sequence[str]) -> errors.TimError:
    """add_robots lists an account only once it was imported (its row needs a profile)."""
    return errors.InvalidParameter(
        f"robot accounts must be imported first; not imported: {', '.join(missing)}"
    )
