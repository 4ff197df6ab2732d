"""Import rules: which rows an import takes, how the member cap cuts it, what each entry
answers, and how a requested unread count becomes a read mark.

Pure functions of their inputs (and ``now``). The SQL store calls them inside the one
transaction that must see the group's true count (``storage/members.py``,
``storage/messages.py``); they decide, the store only reads and writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentim.domain.groups import MemberResult


def read_mark(unread: int, msg_count: int) -> int:
    """The read mark (seq of the last message counted as read) that leaves ``unread``
    messages unread, clamped to the group's ``msg_count`` messages.

    A member's unread count is derived, ``msg_count - read_mark``, so asking for more
    unread messages than the group has means all of them.
    """
    return msg_count - min(unread, msg_count)


def screen(accounts: Sequence[str],
           exceptions: Mapping[str, bool]) -> tuple[dict[str, int], list[int]]:
    """Split a batch by what the database said before inserting.

    ``exceptions`` maps the accounts that do not exist (False) and those already members
    (True). Returns their results (FAILED, ALREADY_MEMBER) and the indexes, in request
    order, of the accounts to insert.
    """
    results: dict[str, int] = {}
    take: list[int] = []
    for i, account in enumerate(accounts):
        is_member = exceptions.get(account)
        if is_member is None:
            take.append(i)
        else:
            results[account] = MemberResult.ALREADY_MEMBER if is_member \
                else MemberResult.FAILED
    return results, take


def room(cap: int | None, member_num: int, added: int) -> int | None:
    """How many of the ``added`` new members fit, the count now being ``member_num``
    (them included); None when they all do.

    The cap is the group's ``max_member_num`` (None: no cap). The members that do not fit
    are the last ones in request order.
    """
    if cap is None or member_num <= cap:
        return None
    return max(cap - (member_num - added), 0)


def full_refusal(full_error: bool, fits: int | None) -> bool:
    """Whether the whole request fails as "group full" (add_group_member's 10014) rather
    than member by member: only when asked to, and only when not one new member fits."""
    return full_error and fits == 0


def settle(accounts: Sequence[str], results: dict[str, int], take: Sequence[int],
           inserted: set[str], kept: set[str]) -> dict[str, int]:
    """Every account's result, in request order, after the insert.

    An account the insert took and the cap kept is ADDED; one the insert took past the cap
    FAILED; one it skipped (a concurrent request made it a member first) ALREADY_MEMBER.
    """
    for i in take:
        account = accounts[i]
        if account in kept:
            results[account] = MemberResult.ADDED
        elif account in inserted:
            results[account] = MemberResult.FAILED  # past the cap
        else:
            results[account] = MemberResult.ALREADY_MEMBER
    return {a: results[a] for a in accounts}


def message_accepted(send_time: int, *, create_time: int, last_time: int, now: int) -> bool:
    """import_group_msg keeps history in time order: a message is taken only when its time
    is after the group's CreateTime and after the latest message (including the ones just
    taken), and before ``now``."""
    return create_time < send_time < now and send_time > last_time
