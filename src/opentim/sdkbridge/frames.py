"""The web SDK's frames, as observed (docs/tencent-sdk.md#frames): pure functions.

Every frame either way is one JSON object ``{"head": {...}, "body": {...}}``. The SDK
sends binary frames; it decodes only binary frames (a text frame reads as nothing), so
every frame the server sends is binary UTF-8 JSON.

- A request's head names the call (``servcmd``, ``<service>.<command>``) and its number
  (``seq``); the reply carries the same ``servcmd`` and ``seq`` and the result in its body,
  with ``ErrorCode`` / ``ErrorInfo`` (0 and "" on success) beside the result's fields.
- Before login the head carries ``identifier`` and ``usersig``; after it, the ``A2Key`` and
  ``TinyId`` the login reply gave (``a2``, ``tinyid``) instead. The A2Key made here
  carries the identifier and the UserSig it logged in with, so a reconnecting SDK (which
  logs in again with its A2Key) is checked exactly as at its first login.
- Pushes are frames with a ``servcmd`` the SDK did not call (``im_open_push.msg_push``,
  ``im_open_status.stat_forceoffline``) and a body ``{"EventArray": [{"Event": n, ...}]}``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec

from opentim import errors

# The path the SDK appends to proxyServer; docs/tencent-sdk.md tells apps the base.
PATH = "/sdk/binfo"
BASE_PATH = "/sdk"

LOGIN = "im_open_status.wslogin"
LOGOUT = "im_open_status.wslogout"
MSG_PUSH = "im_open_push.msg_push"
FORCE_OFFLINE = "im_open_status.stat_forceoffline"

# Push events (EventArray[].Event) and what each item list is called.
EVENT_C2C = 1  # C2cMsgArray
EVENT_GROUP = 3  # GroupMsgArray
EVENT_KICK = 9  # C2cNotifyMsgArray with KickoutMsgNotify
# KickoutMsgNotify.KickType: the SDK's KICKED_OUT types.
KICK_MULTI_ACCOUNT = 1  # logged in elsewhere (same platform)
KICK_REST_API = 3  # im_open_login_svc/kick (and account deleted)

# MsgPriority in pushed group messages is a number.
PRIORITY_NUMBERS = {"High": 1, "Normal": 2, "Low": 3, "Lowest": 4}

MAX_A2_CHARS = 8192  # an A2Key holds a UserSig (at most a few hundred characters)
MAX_HEAD_STRING = 4096


class Head(msgspec.Struct):
    """The head fields the server reads; the others (ver, platform, websdkappid,
    sdkability, cs, …) are ignored."""

    servcmd: str
    seq: int
    sdkappid: int | str = 0
    identifier: str | None = None
    usersig: str | None = None
    a2: str | None = None
    tinyid: int | str | None = None
    status_instid: int = 0  # the InstId of the login this SDK instance had (reconnects)


class Frame(msgspec.Struct):
    head: Head
    body: dict[str, Any] = {}


_decoder = msgspec.json.Decoder(Frame)
_encode = msgspec.json.Encoder().encode


def decode(raw: bytes) -> Frame:
    """A frame from the SDK; 60003 when it is not one."""
    try:
        frame = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise errors.JsonParseError(f"bad frame: {exc}") from None
    for value in (frame.head.servcmd, frame.head.identifier, frame.head.usersig):
        if value is not None and len(value) > MAX_HEAD_STRING:
            raise errors.InvalidParameter("a head field is too long")
    return frame


def reply(head: Head, body: dict[str, Any], *, code: int = 0, info: str = "") -> bytes:
    """The reply to a request: the same servcmd and seq, ErrorCode/ErrorInfo first."""
    return _encode({"head": {"ver": "v4", "servcmd": head.servcmd, "seq": head.seq,
                             "sdkappid": head.sdkappid},
                    "body": {"ErrorCode": code, "ErrorInfo": info, **body}})


def push(servcmd: str, seq: int, sdkappid: int, events: list[dict[str, Any]]) -> bytes:
    return _encode({"head": {"ver": "v4", "servcmd": servcmd, "seq": seq,
                             "sdkappid": sdkappid},
                    "body": {"EventArray": events}})


# --- the login token --------------------------------------------------------------------


def a2_key(identifier: str, usersig: str) -> str:
    """The A2Key the login reply hands out: the login's identifier and UserSig."""
    return base64.urlsafe_b64encode(_encode([identifier, usersig])).decode()


def from_a2_key(a2: str) -> tuple[str, str]:
    """(identifier, usersig) of an A2Key; 70003 when it is not one made here."""
    try:
        if len(a2) > MAX_A2_CHARS:
            raise ValueError("too long")
        pair = msgspec.json.decode(base64.urlsafe_b64decode(a2), type=tuple[str, str])
    except (ValueError, msgspec.DecodeError):
        raise errors.UserSigUndecodable("the A2Key is not one this server issued: "
                                        "log in again with a UserSig") from None
    return pair


def tiny_id(sdkappid: int, account: str) -> str:
    """A stable number for an account (Tencent's TinyId), under 2**48 so that JavaScript
    numbers hold it exactly."""
    digest = hashlib.blake2b(f"{sdkappid}\x00{account}".encode(), digest_size=6).digest()
    return str(int.from_bytes(digest, "big") or 1)


def purchase_bits(*, online_member_list: bool) -> str:
    """The commercial-feature bits (a string of binary digits, bit 0 last) the SDK checks
    before it uses a feature: bit 6 lets getGroupMemberList of an AVChatRoom read the
    online list (get_members)."""
    return "1000000" if online_member_list else "0"


# --- OpenTIM pushes as SDK pushes ---------------------------------------------------------


def group_message_item(frame: dict[str, Any]) -> dict[str, Any]:
    """A gateway ``group_message`` frame as a GroupMsgArray item."""
    group_id = frame.get("GroupId", "")
    return {
        "From_Account": frame.get("From_Account", ""),
        "ToGroupId": group_id,
        "GroupInfo": {"GroupId": group_id, "GroupType": frame.get("Type", "")},
        "MsgSeq": frame.get("MsgSeq", 0),
        "MsgRandom": frame.get("MsgRandom", 0),
        "MsgTimeStamp": frame.get("MsgTime", 0),
        "MsgPriority": PRIORITY_NUMBERS.get(frame.get("MsgPriority", "Normal"), 2),
        "MsgBody": frame.get("MsgBody", []),
        "CloudCustomData": frame.get("CloudCustomData", ""),
        "OnlineOnlyFlag": frame.get("OnlineOnlyFlag", 0),
    }


def c2c_message_item(frame: dict[str, Any], me: str) -> dict[str, Any]:
    """A gateway ``c2c_message`` frame as a C2cMsgArray item. A message this account sent
    (from another of its connections) is a sync message: the SDK expects its peer in
    From_Account and swaps the two itself."""
    sender, to = frame.get("From_Account", ""), frame.get("To_Account", "")
    synced = sender == me and to != me
    return {
        "From_Account": to if synced else sender,
        "To_Account": me,
        "IsSyncMsg": int(synced),
        "MsgSeq": frame.get("MsgSeq", 0),
        "MsgRandom": frame.get("MsgRandom", 0),
        "MsgTimeStamp": frame.get("MsgTime", 0),
        "MsgKey": frame.get("MsgKey", ""),
        "MsgBody": frame.get("MsgBody", []),
        "CloudCustomData": frame.get("CloudCustomData", ""),
    }


def translate(frame: dict[str, Any], me: str) -> tuple[str, list[dict[str, Any]]] | None:
    """(servcmd, EventArray) of the SDK push for a gateway frame; None for the frames the
    SDK has no use for or that are not translated (docs/tencent-sdk.md#pushes)."""
    event = frame.get("event")
    if event == "group_message":
        return MSG_PUSH, [{"Event": EVENT_GROUP, "GroupMsgArray": [group_message_item(frame)]}]
    if event == "c2c_message":
        return MSG_PUSH, [{"Event": EVENT_C2C, "C2cMsgArray": [c2c_message_item(frame, me)]}]
    return None


# Group system notices' OpType (Tencent's): removed from the group, group dismissed.
OP_KICKED = 4
OP_DISMISSED = 5
REMOVAL_OPS = {"Kicked": OP_KICKED, "GroupDestroyed": OP_DISMISSED}


def removal_events(group_id: str, group_type: str, op_type: int, *,
                   now: int) -> list[dict[str, Any]]:
    """A group system notice (Event 5) that the account was removed from the group or the
    group was dismissed."""
    return [{"Event": 5, "GroupMsgArray": [{
        "From_Account": "@TIM#SYSTEM", "ToGroupId": group_id, "GroupId": group_id,
        "GroupInfo": {"GroupId": group_id, "GroupType": group_type},
        "MsgSeq": 0, "MsgRandom": 0, "MsgTimeStamp": now,
        "MsgBody": {"OpType": op_type, "Operator_Account": "administrator"},
    }]}]


def kick_events(kick_type: int) -> list[dict[str, Any]]:
    return [{"Event": EVENT_KICK,
             "C2cNotifyMsgArray": [{"KickoutMsgNotify": {"KickType": kick_type,
                                                         "NewInstInfo": {}}}]}]
