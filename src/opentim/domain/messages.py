"""Message rules of group_open_http_svc: what a MsgBody may hold and how large, what each
group type keeps, and import_group_msg's batch and per-message results.

Pure functions of their inputs; the handlers in ``services/group_open_http_svc/messages.py``
call them by name. Which imported messages the store takes (time order) is
``domain/imports.message_accepted``.

A member's unread count is derived from its read mark (MsgSeq in get_group_member_info):
unread = (NextMsgSeq - 1) - MsgSeq. Sending a message therefore costs O(1) whatever the
group's size; every member's count grows except the sender's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from opentim import errors
from opentim.domain.accounts import USER_ID_MAX_BYTES
from opentim.domain.groups import Group, GroupType, check_group_id
from opentim.protocol.body import nesting_exceeds

MSG_BODY_MAX_BYTES = 12 * 1024
IMPORT_MSG_MAX = 7
# A TIMRelayElem (merged messages) nests about 6 levels per relay: 32 allows 5 relays deep.
MSG_CONTENT_MAX_DEPTH = 32
MSG_TYPES = frozenset({
    "TIMTextElem", "TIMLocationElem", "TIMFaceElem", "TIMCustomElem", "TIMSoundElem",
    "TIMImageElem", "TIMFileElem", "TIMVideoFileElem", "TIMRelayElem",
})
_encode = msgspec.json.Encoder().encode


class MsgElemFields(Protocol):
    @property
    def MsgType(self) -> str: ...
    @property
    def MsgContent(self) -> dict[str, Any]: ...


class ImportedMsgFields(Protocol):
    @property
    def From_Account(self) -> str: ...
    @property
    def MsgBody(self) -> Sequence[MsgElemFields]: ...


def message_body(elems: Sequence[MsgElemFields]) -> tuple[list[dict[str, Any]], bool]:
    """The body as stored, and whether it fits in 12 KB; malformed elements fail, 10004."""
    if not elems:
        raise errors.InvalidParameter("MsgBody is empty")
    body = []
    for elem in elems:
        if elem.MsgType not in MSG_TYPES:
            raise errors.InvalidParameter(f"MsgType {errors.shown(elem.MsgType)} is not supported")
        if nesting_exceeds(elem.MsgContent, MSG_CONTENT_MAX_DEPTH):
            # Stored as JSON and encoded again on the way to the database: a bound here keeps
            # that encoding far from the interpreter's recursion limit.
            raise errors.InvalidParameter(
                f"MsgContent nests arrays and objects more than {MSG_CONTENT_MAX_DEPTH} deep")
        if elem.MsgType == "TIMTextElem" and not isinstance(elem.MsgContent.get("Text"), str):
            raise errors.InvalidParameter("a TIMTextElem needs MsgContent.Text, a string")
        body.append({"MsgType": elem.MsgType, "MsgContent": elem.MsgContent})
    return body, len(_encode(body)) <= MSG_BODY_MAX_BYTES


def sendable_body(elems: Sequence[MsgElemFields]) -> list[dict[str, Any]]:
    """send_group_msg's body: well formed, and 80002 when over 12 KB."""
    body, fits = message_body(elems)
    if not fits:
        raise errors.MsgBodyTooLong(f"MsgBody exceeds {MSG_BODY_MAX_BYTES} bytes")
    return body


def keeps_history(group: Group) -> bool:
    """AVChatRoom: no roster and no history. A message there still takes a seq (clients
    order live messages by it), but no row is kept and the sender need not be a member."""
    return group.type is not GroupType.AVCHATROOM


def check_import(group_id: str, messages: Sequence[ImportedMsgFields], topic_id: str | None
                 ) -> list[tuple[list[dict[str, Any]], bool]]:
    """import_group_msg's checks before the group is read; each message's stored body and
    whether it fits (one that does not answers 80002 on its own)."""
    check_group_id(group_id)
    if not messages:
        raise errors.InvalidParameter("MsgList is empty")
    # 10004 rather than 10005: Tencent's 10005 is about too many accounts.
    if len(messages) > IMPORT_MSG_MAX:
        raise errors.InvalidParameter(f"MsgList has more than {IMPORT_MSG_MAX} messages")
    if topic_id:
        raise errors.InvalidParameter("topics are not supported: leave TopicId out")
    for m in messages:
        # Not checked against the accounts (history may name gone users), but it is stored.
        if len(m.From_Account.encode()) > USER_ID_MAX_BYTES:
            raise errors.InvalidParameter(
                f"From_Account {errors.shown(m.From_Account)} is longer than "
                f"{USER_ID_MAX_BYTES} bytes: no UserID is")
    return [message_body(m.MsgBody) for m in messages]


def check_import_target(group: Group) -> None:
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission("import_group_msg does not apply to AVChatRoom groups")


def import_result(seq: int | None, fits: bool) -> int:
    """A message's Result in import_group_msg: 0 when taken, 80002 when its body is too
    long, 10004 when the store refused it (its SendTime out of order or range)."""
    if not fits:
        return errors.MsgBodyTooLong.code
    return 0 if seq is not None else errors.InvalidParameter.code


def keeps_unread(group: Group) -> bool:
    """Tencent: AVChatRoom and ChatRoom clients keep no unread counts, and setting one is
    accepted and ignored rather than failed."""
    return group.type not in (GroupType.AVCHATROOM, GroupType.CHATROOM)


# --- sending: send_group_msg (REST) and the gateway's send_group_msg --------------------

# MsgPriority names, most important first; the index is what deliveries carry, and a
# connection that falls behind sheds from the end of this list (see gateway/endpoint.py).
MSG_PRIORITIES = ("High", "Normal", "Low", "Lowest")
# Tencent: two messages with the same Random within five minutes are one message.
DUPLICATE_WINDOW_S = 300.0
# Tencent's default send limit per group (Use Limits); App.group_msg_rate overrides it.
GROUP_MSG_RATE = 40
# Targeted group messages (To_Account): Tencent allows 50 receivers, not in AVChatRoom
# or Community groups.
TARGETS_MAX = 50
# A message of priority i (0 High .. 3 Lowest) is shed, rather than queued, once the
# connection's unwritten frames exceed this share of its backlog limit: under overload a
# viewer loses likes before comments, and comments before the host's messages. High is
# never shed (a client that cannot take even those is closed, 4010).
SHED_AT = (1.0, 0.75, 0.5, 0.25)
CLOUD_CUSTOM_DATA_MAX_BYTES = 12 * 1024


def priority_index(name: str | None) -> int:
    """MsgPriority as an index into MSG_PRIORITIES; absent is Normal, unknown 10004."""
    if not name:
        return 1
    for i, known in enumerate(MSG_PRIORITIES):
        if known.lower() == name.lower():
            return i
    raise errors.InvalidParameter(
        f"MsgPriority {errors.shown(name)} is not one of {', '.join(MSG_PRIORITIES)}")


# Tencent keeps roaming history 7 days (standard edition) or 30 (premium editions).
RETENTION_DAYS = {"standard": 7, "premium": 30}


def retention_cutoff(edition: str, days: int | None, now: float) -> int | None:
    """Messages sent before this time are deleted; None: keep everything (days == 0)."""
    keep = RETENTION_DAYS.get(edition, 30) if days is None else days
    return None if keep <= 0 else int(now) - keep * 86400


def sheds(priority: int, queued_bytes: int, backlog_bytes: int) -> bool:
    """Whether a connection with ``queued_bytes`` unwritten drops a message (SHED_AT)."""
    return priority > 0 and queued_bytes > backlog_bytes * SHED_AT[priority]


def check_cloud_custom_data(data: str) -> None:
    if len(data.encode()) > CLOUD_CUSTOM_DATA_MAX_BYTES:
        raise errors.MsgBodyTooLong(
            f"CloudCustomData exceeds {CLOUD_CUSTOM_DATA_MAX_BYTES} bytes")


def check_targets(group: Group, to_accounts: Sequence[str] | None) -> tuple[str, ...] | None:
    """To_Account of a targeted group message: distinct, at most 50, not AV or Community."""
    if to_accounts is None:
        return None
    if group.type in (GroupType.AVCHATROOM, GroupType.COMMUNITY):
        raise errors.InvalidParameter(
            f"targeted messages (To_Account) are not supported in {group.type.value} groups")
    targets = tuple(dict.fromkeys(to_accounts))
    if not targets:
        raise errors.InvalidParameter("To_Account is empty")
    if len(targets) > TARGETS_MAX:
        raise errors.InvalidParameter(f"To_Account lists more than {TARGETS_MAX} accounts")
    return targets


def takes_seq(group: Group, *, online_only: bool, targeted: bool) -> bool:
    """Whether a message is numbered. AVChatRoom messages always are (clients order live
    messages by MsgSeq). In other groups an online-only or targeted message is neither
    stored nor counted as unread (Tencent), and since unread counts derive from the seq it
    takes none: its MsgSeq is 0."""
    return group.type is GroupType.AVCHATROOM or not (online_only or targeted)


def duplicate_key(sdkappid: int, group_id: str, sender: str | None, random: int) -> str:
    return f"g:{sdkappid}:{group_id}:{sender or ''}:{random}"


class BeforeSendVerdict(msgspec.Struct, frozen=True):
    allow: bool = True
    silent: bool = False  # refused without telling the sender (ErrorCode 2)
    msg_body: list[dict[str, Any]] | None = None  # a replacement body
    cloud_custom_data: str | None = None


ALLOW = BeforeSendVerdict()


def before_send_verdict(reply: dict[str, Any] | None) -> BeforeSendVerdict:
    """A CallbackBeforeSendMsg reply: ErrorCode 0 allows (a MsgBody / CloudCustomData in
    the reply replaces the message's), 1 refuses, 2 drops silently (the sender is told it
    was sent). No reply, or one we cannot read, allows: Tencent lets the message through
    when the callback fails or times out."""
    if not isinstance(reply, dict):
        return ALLOW
    code = reply.get("ErrorCode", 0)
    if code == 1:
        return BeforeSendVerdict(allow=False)
    if code == 2:
        return BeforeSendVerdict(allow=False, silent=True)
    if code != 0:
        return ALLOW
    body = reply.get("MsgBody")
    replaced: list[dict[str, Any]] | None = None
    if isinstance(body, list) and body:
        try:
            replaced = sendable_body(msgspec.convert(body, list[_Elem]))
        except (msgspec.ValidationError, errors.TimError):
            replaced = None  # a malformed replacement is ignored, the original goes out
    data = reply.get("CloudCustomData")
    if not isinstance(data, str) or len(data.encode()) > CLOUD_CUSTOM_DATA_MAX_BYTES:
        data = None  # not a usable replacement: the message keeps its own
    return BeforeSendVerdict(msg_body=replaced, cloud_custom_data=data)


class _Elem(msgspec.Struct):
    MsgType: str
    MsgContent: dict[str, Any]
