"""Which callback each internal event becomes, with Tencent's body shapes (docs/webhooks.md).

Pure functions: no I/O, so the mapping is tested on its own and the delivery code stays
about queues and HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentim.events import (
    C2CMessageSent,
    C2CMessageWithdrawn,
    ConnectionStateChanged,
    Event,
    GroupAttrChanged,
    GroupCreated,
    GroupDestroyed,
    GroupFilled,
    GroupInfoChanged,
    GroupMessageSent,
    GroupMessagesRecalled,
    GroupOwnerChanged,
    MemberFieldChanged,
    MembersExited,
    MembersJoined,
    MemberStateChanged,
    Origin,
)

STATE_CHANGE = "State.StateChange"
MEMBER_STATE_CHANGE = "Group.CallbackOnMemberStateChange"
AFTER_NEW_MEMBER_JOIN = "Group.CallbackAfterNewMemberJoin"
AFTER_MEMBER_EXIT = "Group.CallbackAfterMemberExit"
AFTER_SEND_MSG = "Group.CallbackAfterSendMsg"
# Asked (and awaited) before a group message is stored: messaging/group.py.
BEFORE_SEND_MSG = "Group.CallbackBeforeSendMsg"
AFTER_RECALL_MSG = "Group.CallbackAfterRecallMsg"
# One-to-one messages (openim); the before-callback is asked by messaging/c2c.py.
C2C_BEFORE_SEND_MSG = "C2C.CallbackBeforeSendMsg"
C2C_AFTER_SEND_MSG = "C2C.CallbackAfterSendMsg"
C2C_AFTER_MSG_WITHDRAW = "C2C.CallbackAfterMsgWithDraw"
# Group administration (services/group_open_http_svc/admin.py, attrs.py, groups.py); the
# before-callback is asked by create_group.
BEFORE_CREATE_GROUP = "Group.CallbackBeforeCreateGroup"
AFTER_CREATE_GROUP = "Group.CallbackAfterCreateGroup"
AFTER_GROUP_DESTROYED = "Group.CallbackAfterGroupDestroyed"
AFTER_GROUP_INFO_CHANGED = "Group.CallbackAfterGroupInfoChanged"
AFTER_CHANGE_GROUP_OWNER = "Group.CallbackAfterChangeGroupOwner"
AFTER_MEMBER_FIELD_CHANGED = "Group.CallbackAfterMemberFieldChanged"
AFTER_GROUP_ATTR_CHANGED = "Group.CallbackAfterGroupAttrChanged"
AFTER_GROUP_FULL = "Group.CallbackAfterGroupFull"
CALLBACK_COMMANDS = (STATE_CHANGE, MEMBER_STATE_CHANGE, AFTER_NEW_MEMBER_JOIN,
                     AFTER_MEMBER_EXIT, BEFORE_SEND_MSG, AFTER_SEND_MSG, AFTER_RECALL_MSG,
                     C2C_BEFORE_SEND_MSG, C2C_AFTER_SEND_MSG, C2C_AFTER_MSG_WITHDRAW,
                     BEFORE_CREATE_GROUP, AFTER_CREATE_GROUP, AFTER_GROUP_DESTROYED,
                     AFTER_GROUP_INFO_CHANGED, AFTER_CHANGE_GROUP_OWNER,
                     AFTER_MEMBER_FIELD_CHANGED, AFTER_GROUP_ATTR_CHANGED, AFTER_GROUP_FULL)

# The AV group's state callback names a closed set of causes; a lost link reads as a Quit.
_AV_CAUSES = {"Join": "Join", "Quit": "Quit", "LinkClose": "Quit",
              "HeartbeatInterrupt": "HeartbeatInterrupt", "HeartbeatRecover": "HeartbeatRecover"}


@dataclass(frozen=True, slots=True)
class Callback:
    sdkappid: int
    command: str
    body: dict[str, Any]
    # Deliveries with the same key keep their order (a group, or an account's logins).
    order_key: str
    origin: Origin
    # Tencent's AV member-state callback carries no ClientIP/OptPlatform in its query.
    bare_query: bool = False


def callback_for(event: Event) -> Callback | None:
    if isinstance(event, MembersJoined):
        return Callback(event.sdkappid, AFTER_NEW_MEMBER_JOIN, {
            "CallbackCommand": AFTER_NEW_MEMBER_JOIN,
            "GroupId": event.group_id,
            "Type": event.group_type,
            "JoinType": event.join_type,
            "Operator_Account": event.operator,
            "NewMemberList": [{"Member_Account": m} for m in event.members],
            "EventTime": event.event_time_ms,
        }, f"g:{event.group_id}", event.origin)
    if isinstance(event, MembersExited):
        return Callback(event.sdkappid, AFTER_MEMBER_EXIT, {
            "CallbackCommand": AFTER_MEMBER_EXIT,
            "GroupId": event.group_id,
            "Type": event.group_type,
            "ExitType": event.exit_type,
            "Operator_Account": event.operator,
            "ExitMemberList": [{"Member_Account": m} for m in event.members],
            "EventTime": event.event_time_ms,
        }, f"g:{event.group_id}", event.origin)
    if isinstance(event, MemberStateChanged):
        if event.group_type != "AVChatRoom":
            return None  # Community members going online is not a Tencent callback
        return Callback(event.sdkappid, MEMBER_STATE_CHANGE, {
            "CallbackCommand": MEMBER_STATE_CHANGE,
            "GroupId": event.group_id,
            "Type": event.group_type,
            "EventType": "Online" if event.online else "Offline",
            "EventCause": _AV_CAUSES.get(event.cause, event.cause),
            "MemberList": [{"Member_Account": event.account}],
            "EventTime": str(event.event_time_ms),  # a string in Tencent's sample
        }, f"g:{event.group_id}", event.origin, bare_query=True)
    if isinstance(event, GroupMessageSent):
        return Callback(event.sdkappid, AFTER_SEND_MSG, {
            "CallbackCommand": AFTER_SEND_MSG,
            "GroupId": event.group_id,
            "Type": event.group_type,
            "From_Account": event.from_account,
            "Operator_Account": event.operator,
            "Random": event.random,
            "MsgSeq": event.msg_seq,
            "MsgTime": event.msg_time,
            "OnlineOnlyFlag": int(event.online_only),
            "MsgBody": event.msg_body,
            "CloudCustomData": event.cloud_custom_data,
            "EventTime": event.event_time_ms,
        }, f"g:{event.group_id}", event.origin)
    if isinstance(event, GroupMessagesRecalled):
        return Callback(event.sdkappid, AFTER_RECALL_MSG, {
            "CallbackCommand": AFTER_RECALL_MSG,
            "Operator_Account": event.operator,
            "Type": event.group_type,
            "GroupId": event.group_id,
            "MsgSeqList": [{"MsgSeq": seq} for seq in event.msg_seqs],
            "EventTime": event.event_time_ms,
        }, f"g:{event.group_id}", event.origin)
    if isinstance(event, C2CMessageSent):
        return Callback(event.sdkappid, C2C_AFTER_SEND_MSG, {
            "CallbackCommand": C2C_AFTER_SEND_MSG,
            "From_Account": event.from_account,
            "To_Account": event.to_account,
            "MsgSeq": event.msg_seq,
            "MsgRandom": event.msg_random,
            "MsgTime": event.msg_time,
            "MsgKey": event.msg_key,
            "OnlineOnlyFlag": int(event.online_only),
            "SendMsgResult": 0,
            "ErrorInfo": "send msg succeed",
            "UnreadMsgNum": event.unread_msg_num,
            "MsgBody": event.msg_body,
            "CloudCustomData": event.cloud_custom_data,
            "EventTime": event.event_time_ms,
        }, f"c2c:{event.from_account}", event.origin)
    if isinstance(event, C2CMessageWithdrawn):
        return Callback(event.sdkappid, C2C_AFTER_MSG_WITHDRAW, {
            "CallbackCommand": C2C_AFTER_MSG_WITHDRAW,
            "From_Account": event.from_account,
            "To_Account": event.to_account,
            "MsgKey": event.msg_key,
            "UnreadMsgNum": event.unread_msg_num,
            "EventTime": event.event_time_ms,
        }, f"c2c:{event.from_account}", event.origin)
    if isinstance(event, ConnectionStateChanged):
        return Callback(event.sdkappid, STATE_CHANGE, {
            "CallbackCommand": STATE_CHANGE,
            "EventTime": event.event_time_ms,
            "Info": {"Action": event.action, "To_Account": event.account,
                     "Reason": event.reason},
        }, f"u:{event.account}", event.origin)
    return _admin_callback(event)


def _group(event: Any, command: str, body: dict[str, Any]) -> Callback:
    """An after-callback about one group: ordered with the group's other callbacks."""
    return Callback(event.sdkappid, command, {"CallbackCommand": command, **body,
                                              "EventTime": event.event_time_ms},
                    f"g:{event.group_id}", event.origin)


def _admin_callback(event: Event) -> Callback | None:
    """The group administration callbacks (Tencent's pages 1663, 1670, 2930, 105353-105356,
    1669)."""
    if isinstance(event, GroupCreated):
        return _group(event, AFTER_CREATE_GROUP, {
            "GroupId": event.group_id, "Operator_Account": event.operator,
            "Owner_Account": event.owner, "Type": event.group_type, "Name": event.name,
            "MemberList": [{"Member_Account": m} for m in event.members],
            "UserDefinedDataList": [{"Key": k, "Value": v} for k, v in event.app_defined_data],
        })
    if isinstance(event, GroupDestroyed):
        body: dict[str, Any] = {
            "Operator_Account": event.operator, "GroupId": event.group_id,
            "Type": event.group_type, "Owner_Account": event.owner, "Name": event.name}
        if event.members is not None:  # a Community's members are not listed (Tencent)
            body["MemberList"] = [{"Member_Account": m} for m in event.members]
        return _group(event, AFTER_GROUP_DESTROYED, body)
    if isinstance(event, GroupInfoChanged):
        return _group(event, AFTER_GROUP_INFO_CHANGED, {
            "GroupId": event.group_id, "Type": event.group_type,
            "Operator_Account": event.operator, **dict(event.changes)})
    if isinstance(event, GroupOwnerChanged):
        return _group(event, AFTER_CHANGE_GROUP_OWNER, {
            "GroupId": event.group_id, "Type": event.group_type,
            "Operator_Account": event.operator, "OldOwner_Account": event.old_owner,
            "NewOwner_Account": event.new_owner})
    if isinstance(event, MemberFieldChanged):
        body = {"GroupId": event.group_id, "Type": event.group_type,
                "Operator_Account": event.operator,
                # Tencent's pages name the member both ways (Modified_Account on the newest
                # Chinese page, Member_Account on the others): both are sent.
                "Modified_Account": event.account, "Member_Account": event.account}
        if event.role is not None:
            body["Role"] = event.role
        if event.name_card is not None:
            body["NameCard"] = event.name_card
        return _group(event, AFTER_MEMBER_FIELD_CHANGED, body)
    if isinstance(event, GroupAttrChanged):
        return _group(event, AFTER_GROUP_ATTR_CHANGED, {
            "GroupId": event.group_id, "Type": event.group_type,
            "Operator_Account": event.operator, "OptionType": event.option_type,
            "GroupAttr": [{"key": k, "value": v} for k, v in event.attrs]})
    if isinstance(event, GroupFilled):
        return _group(event, AFTER_GROUP_FULL, {"GroupId": event.group_id})
    return None
