"""Tencent Cloud Chat's server REST commands, per service, with each one's doc page.

Data only. The REST edge uses it to tell a real Tencent command that OpenTIM lacks ("not
implemented by OpenTIM") from a typo ("unknown command"); docs/rest-commands.md#coverage
lists the same commands.

Source: Tencent's REST API list, https://cloud.tencent.com/document/product/269/1520
(English: https://trtc.io/document/34621), as of 2025. Pages are
``cloud.tencent.com/document/product/269/<id>`` where the id is known, else the list.
"""

from __future__ import annotations

from types import MappingProxyType

REST_API_LIST = "https://cloud.tencent.com/document/product/269/1520"
_DOC = "https://cloud.tencent.com/document/product/269/"
_INTL = "https://intl.cloud.tencent.com/document/product/1047/"

_SERVICES: dict[str, dict[str, str]] = {
    "im_open_login_svc": {
        "account_import": _INTL + "34953",
        "multiaccount_import": _INTL + "34954",
        "account_delete": _DOC + "36443",
        "account_check": _INTL + "34956",
        "kick": _DOC + "3853",
    },
    "openim": {
        "query_online_status": _DOC + "2566",
        "querystate": _DOC + "2566",  # the older name, still answered by Tencent
        "sendmsg": _DOC + "2282",
        "batchsendmsg": _DOC + "1612",
        "importmsg": _DOC + "2568",
        "admin_getroammsg": _DOC + "42794",
        "admin_msgwithdraw": _DOC + "38980",
        "admin_set_msg_read": _DOC + "50349",
        "get_c2c_unread_msg_num": _DOC + "56043",
        "modify_c2c_msg": REST_API_LIST,
        "modify_group_msg": REST_API_LIST,
    },
    "all_member_push": {
        name: REST_API_LIST for name in (
            "im_push", "im_set_attr_name", "im_get_attr_name", "im_get_attr", "im_set_attr",
            "im_remove_attr", "im_get_tag", "im_add_tag", "im_remove_tag",
            "im_remove_all_tags")
    },
    "profile": {
        "portrait_set": _DOC + "1640",
        "portrait_get": _DOC + "1639",
    },
    "sns": {
        "friend_add": _INTL + "34902",
        "friend_import": _INTL + "34903",
        "friend_update": REST_API_LIST,
        "friend_delete": _INTL + "34905",
        "friend_delete_all": _INTL + "34906",
        "friend_check": _INTL + "34907",
        "friend_get": _INTL + "34908",
        "friend_get_list": _INTL + "34910",
        "black_list_add": _INTL + "34911",
        "black_list_delete": _INTL + "34912",
        "black_list_get": _INTL + "34914",
        "black_list_check": _INTL + "34913",
        "group_add": _INTL + "34950",
        "group_delete": _INTL + "34926",
        "group_get": REST_API_LIST,
    },
    "follow": {
        name: REST_API_LIST for name in (
            "follow_add", "follow_delete", "follow_check", "follow_get", "follow_get_info")
    },
    "recentcontact": {
        name: REST_API_LIST for name in (
            "get_list", "delete", "create_contact_group", "del_contact_group",
            "update_contact_group", "search_contact_group", "mark_contact",
            "get_contact_group")
    },
    "group_open_http_svc": {
        "get_appid_group_list": _INTL + "34960",
        "create_group": _INTL + "34895",
        "get_group_info": _INTL + "34961",
        "get_group_member_info": _INTL + "34948",
        "modify_group_base_info": _DOC + "1620",
        "add_group_member": _INTL + "34921",
        "delete_group_member": _INTL + "34949",
        "modify_group_member_info": _DOC + "1623",
        "destroy_group": _INTL + "34896",
        "get_joined_group_list": _DOC + "1625",
        "get_role_in_group": _DOC + "1626",
        "forbid_send_msg": _DOC + "1627",
        "get_group_muted_account": _DOC + "2925",
        "get_group_shutted_uin": _DOC + "2925",  # the older name of get_group_muted_account
        "send_group_msg": _INTL + "34959",
        "send_group_system_notification": _DOC + "1630",
        "group_msg_recall": _DOC + "12341",
        "change_group_owner": _DOC + "1633",
        "import_group": _INTL + "34967",
        "import_group_msg": _INTL + "34968",
        "import_group_member": _INTL + "34969",
        "set_unread_msg_num": _INTL + "34909",
        "delete_group_msg_by_sender": _DOC + "2359",
        "group_msg_get_simple": _DOC + "2738",
        "get_online_member_num": REST_API_LIST,
        "get_group_ban_member": REST_API_LIST,
        "ban_group_member": REST_API_LIST,
        "unban_group_member": REST_API_LIST,
        "modify_group_attr": _DOC + "67010",
        "clear_group_attr": _DOC + "67009",
        "set_group_attr": _DOC + "67011",
        "delete_group_attr": _DOC + "104440",
        "send_broadcast_msg": REST_API_LIST,
        "get_group_counter": REST_API_LIST,
        "update_group_counter": REST_API_LIST,
        "delete_group_counter": REST_API_LIST,
    },
    "group_open_attr_http_svc": {
        "get_group_attr": _DOC + "67012",
    },
    "group_open_avchatroom_http_svc": {
        "get_members": "https://www.tencentcloud.com/document/product/1047/50293",
        "modify_user_info": "https://www.tencentcloud.com/document/product/1047/50294",
        "add_robots": "https://trtc.io/document/60527",
        "del_robots": _DOC + "103785",
        # Not on the list page; seen in Tencent's Java server SDK.
        "modify_admin": REST_API_LIST,
        "get_admin_list": REST_API_LIST,
        "check_members": REST_API_LIST,
    },
    "openconfigsvr": {
        "setnospeaking": _INTL + "34923",
        "getnospeaking": _INTL + "34924",
        "getappinfo": _INTL + "34886",
    },
    "open_msg_svc": {
        "get_history": _INTL + "34885",
    },
    "ConfigSvc": {
        "GetIPList": REST_API_LIST,
    },
    "im_cos_msg": {
        name: REST_API_LIST for name in (
            "forbid_illegal_object", "allow_banned_object", "get_cos_sig")
    },
    "openim_robot_http_svc": {
        "create_robot": _DOC + "89990",  # the robot APIs' section page
        "delete_robot": _DOC + "89992",
        "get_all_robots": _DOC + "89993",
    },
}

# service -> command -> doc page; read-only so no caller can change what the edge answers.
COMMANDS: MappingProxyType[str, MappingProxyType[str, str]] = MappingProxyType({
    service: MappingProxyType(commands) for service, commands in _SERVICES.items()})


def doc_page(service: str, command: str) -> str | None:
    """Tencent's page for a command it has, or None when Tencent has no such command."""
    commands = COMMANDS.get(service)
    return None if commands is None else commands.get(command)
