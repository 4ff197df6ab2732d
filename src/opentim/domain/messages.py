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
