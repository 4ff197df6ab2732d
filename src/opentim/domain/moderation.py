"""Moderation rules: mutes, AVChatRoom bans, who may speak, recall and history paging.

Pure functions of their inputs and ``now``; the handlers in
``services/group_open_http_svc/moderation.py`` and ``history.py`` and the sender check in
``messaging/moderation.py`` call them by name. Tencent's pages: forbid_send_msg
(cloud.tencent.com/document/product/269/1627), get_group_muted_account (2925),
ban_group_member / unban_group_member / get_group_ban_member (79249, 89989),
group_msg_recall (12341), group_msg_get_simple (2738), delete_group_msg_by_sender (2359),
send_group_system_notification (1630).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from opentim import errors
from opentim.domain.accounts import USER_ID_MAX_BYTES
from opentim.domain.groups import Group, GroupType, Role


class SenderFields(Protocol):
    """What the store knows of an account in a group (``storage.base.SenderState``)."""

    @property
    def role(self) -> str | None: ...
    @property
    def muted_until(self) -> int: ...
    @property
    def banned_until(self) -> int: ...

# --- mutes -------------------------------------------------------------------------------

MUTE_MEMBERS_MAX = 500
# MuteTime 4294967295 (0xFFFFFFFF) mutes for ever; MutedUntil then reads 4294967295.
MUTE_FOREVER = 0xFFFFFFFF


def check_accounts(accounts: Sequence[str], limit: int, name: str = "Members_Account"
                   ) -> list[str]:
    """Distinct accounts in request order: 10004 when empty or when one is longer than any
    UserID, 10005 over ``limit``."""
    distinct = list(dict.fromkeys(a for a in accounts if a))
    if not distinct:
        raise errors.InvalidParameter(f"{name} is empty")
    if len(distinct) > limit:
        raise errors.TooManyAccounts(f"{name} lists more than {limit} accounts")
    for account in distinct:
        if len(account.encode()) > USER_ID_MAX_BYTES:
            raise errors.InvalidParameter(
                f"{name} holds {errors.shown(account)}, longer than {USER_ID_MAX_BYTES} "
                "bytes: no UserID is")
    return distinct


def check_no_topic(topic_id: str | None) -> None:
    if topic_id:
        raise errors.InvalidParameter("topics are not supported: leave TopicId out")


def check_mute_target(group: Group) -> None:
    """Tencent: Private (Work) groups do not support muting; every other type does."""
    if group.type is GroupType.PRIVATE:
        raise errors.NoPermission("Private (Work) groups do not support muting members")


def until(seconds: int, now: int) -> int:
    """The Unix time a mute or ban of ``seconds`` ends: 0 for 0 (lifted), MUTE_FOREVER for
    4294967295 and never past it."""
    if seconds <= 0:
        return 0
    if seconds >= MUTE_FOREVER:
        return MUTE_FOREVER
    return min(now + seconds, MUTE_FOREVER)


# --- bans (AVChatRoom) -------------------------------------------------------------------

BAN_MEMBERS_MAX = 20
BAN_DESCRIPTION_MAX = 1000
BAN_PAGE_MAX = 100
# How many of a group's bans a join check keeps in memory (those ending first).
BAN_CACHE_MAX = 10_000


def check_ban_target(group: Group) -> None:
    """Bans are for AVChatRoom groups, whose members are live sessions (see docs)."""
    if group.type is not GroupType.AVCHATROOM:
        raise errors.NoPermission(
            f"ban_group_member, unban_group_member and get_group_ban_member apply to "
            f"AVChatRoom groups only; {group.group_id!r} is a {group.type.value} group: "
            "use delete_group_member or forbid_send_msg")


def check_ban(duration: int, description: str) -> None:
    if duration <= 0:
        raise errors.InvalidParameter("Duration must be a positive number of seconds")
    if len(description.encode()) > BAN_DESCRIPTION_MAX:
        raise errors.InvalidParameter(f"Description exceeds {BAN_DESCRIPTION_MAX} bytes")


def check_ban_page(limit: int, offset: int) -> None:
    if not 0 < limit <= BAN_PAGE_MAX:
        raise errors.InvalidParameter(f"Limit must be between 1 and {BAN_PAGE_MAX}")
    if offset < 0:
        raise errors.InvalidParameter("Offset must not be negative")


def next_offset(offset: int, got: int, limit: int, more: bool) -> int:
    """get_group_ban_member's NextOffset: 0 once the list is complete."""
    return offset + min(got, limit) if more else 0


def banned_error(group_id: str, account: str) -> errors.TimError:
    # Tencent publishes no code of its own for a banned member's join or send: 10007.
    return errors.NoPermission(f"{errors.shown(account)} is banned from group {group_id!r}")


# --- who may speak -----------------------------------------------------------------------


def exempt_from_mute_all(group: Group, account: str, role: str | None, *,
                         is_admin: bool) -> bool:
    """MuteAllMember silences everyone but the group's owner and admins and App admins."""
    if is_admin or (group.owner is not None and group.owner == account):
        return True
    return role in (Role.OWNER.value, Role.ADMIN.value)


def sender_refusal(group: Group, account: str, state: SenderFields, *, now: int,
                   is_admin: bool) -> errors.TimError | None:
    """Why ``account`` may not send to ``group`` now (None: it may)."""
    if state.banned_until > now:
        return banned_error(group.group_id, account)
    if state.muted_until > now:
        return errors.SenderMuted(
            f"{errors.shown(account)} is muted in group {group.group_id!r} until "
            f"{state.muted_until}")
    if group.shut_up_all and not exempt_from_mute_all(group, account, state.role,
                                                      is_admin=is_admin):
        return errors.SenderMuted(f"group {group.group_id!r} is muted (MuteAllMember)")
    return None


# --- system notifications ----------------------------------------------------------------

NOTIFICATION_TARGETS_MAX = 50  # Tencent's newest page (older ones said 500)
NOTIFICATION_CONTENT_MAX = 12 * 1024  # Tencent: the same limit as a message body


def check_notification(content: str, topic_id: str | None) -> None:
    if not content:
        raise errors.InvalidParameter("Content is empty")
    if len(content.encode()) > NOTIFICATION_CONTENT_MAX:
        raise errors.MsgBodyTooLong(f"Content exceeds {NOTIFICATION_CONTENT_MAX} bytes")
    check_no_topic(topic_id)


def notification_targets(group: Group, to_accounts: Sequence[str] | None
                         ) -> list[str] | None:
    """ToMembers_Account: None (or empty) tells every member. An AVChatRoom's notification
    goes to the whole room only (Tencent): naming receivers there is refused, 10004,
    rather than telling the whole room what was meant for a few."""
    if not to_accounts:
        return None
    if group.type is GroupType.AVCHATROOM:
        raise errors.InvalidParameter(
            "an AVChatRoom's system notification goes to the whole room: leave "
            "ToMembers_Account out")
    return check_accounts(to_accounts, NOTIFICATION_TARGETS_MAX, "ToMembers_Account")


# --- recall and history ------------------------------------------------------------------

RECALL_MAX = 10
HISTORY_PAGE_MAX = 20
# IsPlaceMsg: what is left of a message (group_messages.removed holds the same numbers).
KEPT, DELETED, RECALLED = 0, 1, 2


def check_history_target(group: Group) -> None:
    """AVChatRoom keeps no history: nothing to page, recall or delete."""
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission(
            f"AVChatRoom group {group.group_id!r} keeps no message history")


def check_recall(seqs: Sequence[int]) -> list[int]:
    distinct = list(dict.fromkeys(seqs))
    if not distinct:
        raise errors.InvalidParameter("MsgSeqList is empty")
    if len(distinct) > RECALL_MAX:
        raise errors.InvalidParameter(f"MsgSeqList lists more than {RECALL_MAX} messages")
    if any(s <= 0 for s in distinct):
        raise errors.InvalidParameter("every MsgSeq must be positive")
    return distinct


# delete_group_msg_by_sender recalls the sender's messages among the group's newest 1000.
DELETE_BY_SENDER_WINDOW = 1000
# RecallRetList RetCode of a message that is not there (never sent, or already recalled).
RECALL_NOT_FOUND = 10030


def history_range(req_number: int, req_seq: int | None, next_msg_seq: int
                  ) -> tuple[int, int, int]:
    """(lowest seq, highest seq, IsFinished) of a group_msg_get_simple call.

    ReqMsgSeq is the newest seq wanted (absent or 0: the group's newest message), and
    the range is the ReqMsgNumber seqs up to it. Tencent returns at most 20 messages: a
    larger ReqMsgNumber gets the newest 20 of its range, with IsFinished 0.
    """
    if req_number <= 0:
        raise errors.InvalidParameter("ReqMsgNumber must be positive")
    newest = next_msg_seq - 1
    hi = newest if not req_seq else min(req_seq, newest)
    count = min(req_number, HISTORY_PAGE_MAX)
    return max(1, hi - count + 1), hi, 1 if req_number <= HISTORY_PAGE_MAX else 0


# MsgPriority in history: Tencent's numbers (1 High, 2 Normal, 3 Low, 4 Lowest).
_PRIORITY_NUMBERS = {"high": 1, "normal": 2, "low": 3, "lowest": 4}


def priority_number(name: str) -> int:
    return _PRIORITY_NUMBERS.get(name.lower(), 2)
