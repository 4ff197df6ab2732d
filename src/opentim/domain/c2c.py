"""One-to-one message rules (openim): keys, limits, what each flag means, what is kept.

Pure functions of their inputs; ``services/openim/messages.py`` and ``messaging/c2c.py``
call them by name. Tencent's pages: sendmsg (269/2282), batchsendmsg (1612), importmsg
(2568), admin_getroammsg (42794), admin_msgwithdraw (38980), admin_set_msg_read (50349),
get_c2c_unread_msg_num (56043); the codes are Tencent's "Message Error Codes".

- A message is identified within its conversation by ``MsgKey`` = ``<MsgSeq>_<MsgRandom>_
  <MsgTime>``; history is ordered by MsgTime, then MsgSeq (then MsgRandom).
- Unread counts: per (account, peer), a counter moved by sends and withdrawals and reset
  by ``admin_set_msg_read`` from the messages after its ``MsgReadTime``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from opentim import errors
from opentim.domain.accounts import USER_ID_MAX_BYTES
from opentim.domain.messages import MsgElemFields, message_body

# batchsendmsg takes at most 500 recipients (Tencent: 90011 past it).
BATCH_MAX = 500
# Tencent: the duplicate key (sender, MsgSeq, MsgRandom, CRC32 of the body) lives 120 s.
DUPLICATE_WINDOW_S = 120.0
# MsgLifeTime: at most 7 days; more is taken as 7 days (Tencent), 0 is online only.
MSG_LIFE_TIME_MAX = 604_800
# get_c2c_unread_msg_num: at most 10 Peer_Account entries.
UNREAD_PEERS_MAX = 10
# admin_getroammsg: Tencent cuts a page at 13 KB of messages ("Complete": 0, pull again);
# OpenTIM also reads at most this many rows per page, whatever MaxCnt asks for.
ROAM_PAGE_BYTES = 13 * 1024
ROAM_PAGE_MAX = 500
# MsgFlagBits of a withdrawn message (admin_getroammsg keeps it, flagged).
MSG_FLAG_WITHDRAWN = 8
# A before-callback reply may refuse with a code of the app's own, told to the sender.
CALLBACK_CODES = range(120_001, 130_001)
UINT32_MAX = 2**32 - 1
CLOUD_CUSTOM_DATA_MAX_BYTES = 12 * 1024

_encode = msgspec.json.Encoder().encode


def pair(a: str, b: str) -> tuple[str, str]:
    """The conversation's key: its two accounts in order (a message to oneself is (a, a))."""
    return (a, b) if a <= b else (b, a)


def msg_key(seq: int, random: int, time: int) -> str:
    return f"{seq}_{random}_{time}"


def pick_seq(now: float, random: int) -> int:
    """A MsgSeq for a message sent without one. Tencent fills in a random number; here its
    top bits are the millisecond within the second, so that the messages of one second,
    which history orders by MsgSeq, stay in the order they were sent."""
    ms = int(now * 1000) % 1000
    return (ms << 22) | (random & 0x3FFFFF)


def parse_msg_key(key: str) -> tuple[int, int, int]:
    """(MsgSeq, MsgRandom, MsgTime) of a MsgKey; 90054 for anything else."""
    parts = key.split("_")
    if len(parts) != 3 or len(key) > 64 or not all(p.isdigit() and p.isascii() for p in parts):
        raise errors.OpenimMsgKeyInvalid(f"MsgKey {errors.shown(key)} is not "
                                         "<MsgSeq>_<MsgRandom>_<MsgTime>")
    seq, random, time = (int(p) for p in parts)
    if seq > UINT32_MAX or random > UINT32_MAX or time >= 2**62:
        raise errors.OpenimMsgKeyInvalid(f"MsgKey {errors.shown(key)} is out of range")
    return seq, random, time


def is_user_id(account: str) -> bool:
    """Could this be an imported UserID (so worth looking up)?"""
    return 0 < len(account.encode()) <= USER_ID_MAX_BYTES


def sender_account(from_account: str | None, identifier: str) -> str:
    """sendmsg/batchsendmsg without From_Account: the App admin sends as itself."""
    return from_account if from_account else identifier


def require_account(account: str | None, error: type[errors.TimError], field: str) -> str:
    """A required account field: present and the shape of a UserID, else ``error``."""
    if not account:
        raise error(f"{field} is missing")
    if not is_user_id(account):
        raise error(f"{field} {errors.shown(account)} is not a UserID (1 to "
                    f"{USER_ID_MAX_BYTES} bytes)")
    return account


def sync_other_machine(value: int | None) -> tuple[bool, bool]:
    """SyncOtherMachine: (push to the sender's connections, keep in the sender's history).

    1: both. 2: neither (the message is the recipient's only). Absent: kept in the
    sender's history, not pushed to it (Tencent's default). Anything else 90031.
    """
    if value is None:
        return False, True
    if value == 1:
        return True, True
    if value == 2:
        return False, False
    raise errors.OpenimSyncOtherMachineInvalid(f"SyncOtherMachine is {value}: use 1 or 2")


def keeps(life_time: int | None) -> bool:
    """MsgLifeTime 0: delivered to who is online, not stored, not counted as unread.
    Absent or > 0: stored (retention is the server's: everything is kept)."""
    return life_time is None or life_time > 0


def counts_unread(send_msg_control: Sequence[str] | None) -> bool:
    """SendMsgControl ``NoUnread``: the message does not count as unread. (``NoLastMsg``
    and ``WithMuteNotifications`` change nothing here: no conversation list, no mute
    settings.)"""
    return not send_msg_control or "NoUnread" not in send_msg_control


def callbacks_wanted(forbid: Sequence[str] | None) -> tuple[bool, bool]:
    """ForbidCallbackControl: (ask the before-callback, tell the after-callback)."""
    forbid = forbid or ()
    return ("ForbidBeforeSendMsgCallback" not in forbid,
            "ForbidAfterSendMsgCallback" not in forbid)


def c2c_body(elems: Sequence[MsgElemFields], *, batch: bool = False) -> list[dict[str, Any]]:
    """A message body as stored: well formed (90002) and at most 12 KB (93000; batchsendmsg
    90055). The element rules are the group messages' (``domain.messages``)."""
    try:
        body, fits = message_body(elems)
    except errors.InvalidParameter as exc:
        raise errors.OpenimMsgBodyInvalid(exc.info) from None
    if not fits:
        raise (errors.OpenimBatchBodyTooLong if batch else errors.OpenimBodyTooLong)()
    return body


def check_cloud_custom_data(data: str | None, *, batch: bool = False) -> str:
    data = data or ""
    if len(data.encode()) > CLOUD_CUSTOM_DATA_MAX_BYTES:
        raise (errors.OpenimBatchBodyTooLong if batch else errors.OpenimBodyTooLong)(
            f"CloudCustomData exceeds {CLOUD_CUSTOM_DATA_MAX_BYTES} bytes")
    return data


def msg_time(now: int, time_stamp: int | None) -> int:
    """The message's MsgTime: now, or the MsgTimeStamp the request gave when that is in
    the past (a future one is taken as now)."""
    if time_stamp is None or time_stamp <= 0 or time_stamp > now:
        return now
    return time_stamp


def duplicate_key(sdkappid: int, sender: str, peers: Iterable[str], seq: int | None,
                  random: int, body: list[dict[str, Any]]) -> str:
    """Tencent's duplicate key: sender, MsgSeq, MsgRandom and the body's CRC32 (the peer
    too here, so that one message to two people is never taken for a retry). A send without
    MsgSeq keys on its absence, so its retry is caught as well."""
    peers_crc = zlib.crc32("\n".join(peers).encode())
    seq_part = "-" if seq is None else str(seq)
    return (f"c2c:{sdkappid}:{sender}:{peers_crc:x}:{seq_part}:{random}:"
            f"{zlib.crc32(_encode(body)):x}")


def callback_refusal(reply: dict[str, Any] | None) -> type[errors.TimError] | None:
    """A before-callback reply with an ErrorCode of the app's own (120001-130000): the
    message is refused and the sender gets that code."""
    if not isinstance(reply, dict):
        return None
    code = reply.get("ErrorCode")
    if isinstance(code, int) and not isinstance(code, bool) and code in CALLBACK_CODES:
        return errors.c2c_callback_error(code)
    return None


def import_mode(sync_from_old_system: int | None) -> bool:
    """importmsg SyncFromOldSystem: 2 history (no unread, no push), 5 live (counted as
    unread and pushed to the recipient). Returns whether it is live; 90030 otherwise."""
    if sync_from_old_system == 2:
        return False
    if sync_from_old_system == 5:
        return True
    raise errors.OpenimSyncFromOldSystemInvalid(
        f"SyncFromOldSystem is {sync_from_old_system}: use 2 (history) or 5 (live)")


def recipients(to_accounts: Sequence[str]) -> list[str]:
    """batchsendmsg To_Account: 1 to 500 (90029, 90011), duplicates sent once."""
    if not to_accounts:
        raise errors.OpenimToAccountEmpty()
    unique = list(dict.fromkeys(to_accounts))
    if len(unique) > BATCH_MAX:
        raise errors.OpenimTooManyRecipients(
            f"To_Account lists {len(unique)} accounts: at most {BATCH_MAX}")
    return unique


def unread_peers(peers: Sequence[str] | None) -> list[str] | None:
    """get_c2c_unread_msg_num Peer_Account: absent is every conversation, else 1 to 10."""
    if peers is None:
        return None
    unique = list(dict.fromkeys(peers))
    if len(unique) > UNREAD_PEERS_MAX:
        raise errors.OpenimTooManyAccounts(
            f"Peer_Account lists {len(unique)} accounts: at most {UNREAD_PEERS_MAX}")
    return unique


def read_time(now: int, value: int | str | None) -> int:
    """admin_set_msg_read MsgReadTime (an integer, or a string on older pages): messages
    up to this second are read; absent is now."""
    if value is None or value == "":
        return now
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            raise errors.OpenimInvalidRequest(
                f"MsgReadTime {errors.shown(value)} is not a time in seconds")
        value = int(value)
    if value < 0:
        raise errors.OpenimInvalidRequest("MsgReadTime is negative")
    return value


def roam_page_size(max_cnt: int) -> int:
    if max_cnt <= 0:
        raise errors.OpenimInvalidRequest("MaxCnt must be at least 1")
    return min(max_cnt, ROAM_PAGE_MAX)


def visible_to(operator: str, from_account: str, sender_roam: bool) -> bool:
    """A message sent with SyncOtherMachine 2 is not in its sender's history."""
    return sender_roam or from_account != operator


def fill_page(sizes: Sequence[int], limit: int) -> int:
    """How many of the newest messages (their sizes, newest first) one roam page holds:
    at most ``limit``, stopping before 13 KB, and at least one."""
    total = 0
    for n, size in enumerate(sizes[:limit]):
        total += size
        if total > ROAM_PAGE_BYTES and n > 0:
            return n
    return min(len(sizes), limit)


def body_size(body: list[dict[str, Any]], cloud_custom_data: str) -> int:
    return len(_encode(body)) + len(cloud_custom_data)
