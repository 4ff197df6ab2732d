"""Error classes: one class per Tencent code, and the recurring failures word themselves."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from opentim import errors
from opentim.client.rest import RestClient

SVC = "group_open_http_svc"
TEXT = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]


def test_one_class_per_code() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, errors.TimError) and c is not errors.TimError]
    by_code: dict[int, list[str]] = {}
    for cls in classes:
        by_code.setdefault(cls.code, []).append(cls.__name__)
    assert {code: names for code, names in by_code.items() if len(names) > 1} == {}


def test_arguments_build_the_text_and_free_text_still_works() -> None:
    assert errors.GroupNotFound(group_id="g1").info == (
        "group 'g1' does not exist or has been dismissed")
    assert errors.GroupNotFound().info == "group does not exist or has been dismissed"
    assert errors.GroupNotFound("gone").info == "gone"
    assert errors.AccountNotFound(accounts=["a"]).info == "account 'a' has not been imported"
    assert errors.AccountNotFound(accounts=["a", "b"]).info == (
        "accounts 'a', 'b' have not been imported")
    assert errors.AccountNotFound(accounts=[]).info == "account does not exist"
    # A huge account name is cut short, not echoed whole.
    assert len(errors.AccountNotFound(accounts=["x" * 10_000]).info) < 100
    assert errors.GroupIdInUse(group_id="g").info == "group ID 'g' is already in use"
    assert errors.GroupIdInUseByOwner(group_id="g", owner="o").info == (
        "group ID 'g' is in use and 'o' owns it")
    error = errors.GroupNotFound(group_id="g1")
    assert (error.code, str(error)) == (10010, "10010: group 'g1' does not exist or has been "
                                               "dismissed")


async def test_every_command_words_a_missing_group_the_same(tim: RestClient) -> None:
    await tim.ok("im_open_login_svc/multiaccount_import", {"AccountList": ["a"]})
    gone = "no-such-group"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("destroy_group", {}),
        ("get_group_member_info", {}),
        ("add_group_member", {"MemberList": [{"Member_Account": "a"}]}),
        ("delete_group_member", {"MemberToDel_Account": ["a"]}),
        ("import_group_member", {"MemberList": [{"Member_Account": "a"}]}),
        ("get_online_member_num", {}),
        ("send_group_msg", {"Random": 1, "MsgBody": TEXT}),
        ("import_group_msg", {"MsgList": [{"From_Account": "a", "SendTime": 1,
                                           "MsgBody": TEXT}]}),
        ("set_unread_msg_num", {"Member_Account": "a", "UnreadMsgNum": 0}),
    ]
    for name, body in calls:
        reply = await tim.call(f"{SVC}/{name}", {"GroupId": gone, **body})
        assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
            10010, f"group {gone!r} does not exist or has been dismissed"), name


@pytest.mark.parametrize(("owner", "members", "info"), [
    ("ghost", [], "account 'ghost' has not been imported"),
    ("a", ["ghost", "a", "nobody"], "accounts 'ghost', 'nobody' have not been imported"),
])
async def test_create_group_names_the_missing_accounts(tim: RestClient, owner: str,
                                                       members: list[str], info: str) -> None:
    await tim.ok("im_open_login_svc/multiaccount_import", {"AccountList": ["a"]})
    reply = await tim.call(f"{SVC}/create_group", {
        "Type": "Public", "Name": "g", "Owner_Account": owner,
        "MemberList": [{"Member_Account": m} for m in members]})
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (10019, info)


async def test_av_sender_not_imported_is_named(tim: RestClient) -> None:
    group_id = (await tim.ok(f"{SVC}/create_group", {"Type": "AVChatRoom", "Name": "av"}))[
        "GroupId"]
    reply = await tim.call(f"{SVC}/send_group_msg", {
        "GroupId": group_id, "Random": 1, "MsgBody": TEXT, "From_Account": "ghost"})
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        10019, "account 'ghost' has not been imported")
