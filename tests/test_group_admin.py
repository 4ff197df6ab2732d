"""Group administration: modify_group_base_info, modify_group_member_info,
change_group_owner, get_role_in_group, get_joined_group_list, and the filters of
get_group_info / get_group_member_info they change.

REST tests run on SQLite and PostgreSQL (``tim``); callbacks against a real receiver;
pushes on real gateway connections (``live``, both presence backends).
"""

from __future__ import annotations

from typing import Any

from opentim.client.rest import RestClient
from tests.helpers import (
    LiveServer,
    Receiver,
    Server,
    create_group,
    import_accounts,
    next_event,
    statements,
)

SVC = "group_open_http_svc"
BASE = f"{SVC}/modify_group_base_info"
MEMBER = f"{SVC}/modify_group_member_info"
OWNER = f"{SVC}/change_group_owner"
ROLES = f"{SVC}/get_role_in_group"
JOINED = f"{SVC}/get_joined_group_list"
TEXT = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]


async def info(tim: RestClient, group_id: str, **filters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"GroupIdList": [group_id]}
    if filters:
        body["ResponseFilter"] = filters
    return (await tim.ok(f"{SVC}/get_group_info", body))["GroupInfo"][0]


async def member(tim: RestClient, group_id: str, account: str) -> dict[str, Any]:
    reply = await tim.ok(f"{SVC}/get_group_member_info", {"GroupId": group_id})
    return next(m for m in reply["MemberList"] if m["Member_Account"] == account)


async def group_with(tim: RestClient, group_type: str = "Public", *members: str,
                     **fields: Any) -> str:
    await import_accounts(tim, "owner", *members)
    owner = {} if group_type == "AVChatRoom" else {"Owner_Account": "owner"}
    listed = [] if group_type == "AVChatRoom" else [{"Member_Account": m} for m in members]
    return await create_group(tim, group_type, **owner, MemberList=listed, **fields)


# --- modify_group_base_info --------------------------------------------------------------


async def test_modify_base_info_sets_every_field_and_advances_info_seq(
        server: Server, tim: RestClient) -> None:
    group_id = await group_with(tim, "Public", "a",
                                AppDefinedData=[{"Key": "k1", "Value": "v1"},
                                                {"Key": "k2", "Value": "v2"}])
    first = await info(tim, group_id)
    server.clock.advance(5)
    await tim.ok(BASE, {
        "GroupId": group_id, "Name": "new name", "Introduction": "intro",
        "Notification": "notice", "FaceUrl": "http://face", "MaxMemberNum": 100,
        "ApplyJoinOption": "FreeAccess", "InviteJoinOption": "NeedPermission",
        "MuteAllMember": "On",
        "AppDefinedData": [{"Key": "k1", "Value": ""}, {"Key": "k3", "Value": "v3"}],
        "Unknown": "ignored"})
    got = await info(tim, group_id)
    assert (got["Name"], got["Introduction"], got["Notification"], got["FaceUrl"]) == (
        "new name", "intro", "notice", "http://face")
    assert got["MaxMemberNum"] == 100 and got["ApplyJoinOption"] == "FreeAccess"
    assert got["InviteJoinOption"] == "NeedPermission"
    assert got["MuteAllMember"] == got["ShutUpAllMember"] == "On"
    assert got["AppDefinedData"] == [{"Key": "k2", "Value": "v2"}, {"Key": "k3", "Value": "v3"}]
    assert got["InfoSeq"] == first["InfoSeq"] + 1
    assert got["LastInfoTime"] >= first["LastInfoTime"] + 5
    # The old field name, and a filter naming either spelling.
    await tim.ok(BASE, {"GroupId": group_id, "ShutUpAllMember": "Off"})
    assert await info(tim, group_id, GroupBaseInfoFilter=["MuteAllMember"]) == {
        "ErrorCode": 0, "ErrorInfo": "", "GroupId": group_id, "MuteAllMember": "Off",
        "AppDefinedData": [{"Key": "k2", "Value": "v2"}, {"Key": "k3", "Value": "v3"}],
        "MemberList": (await info(tim, group_id))["MemberList"]}
    # Nothing to change: no new InfoSeq.
    seq = (await info(tim, group_id))["InfoSeq"]
    await tim.ok(BASE, {"GroupId": group_id})
    assert (await info(tim, group_id))["InfoSeq"] == seq


async def test_mute_all_member_silences_members_but_not_the_owner(tim: RestClient) -> None:
    group_id = await group_with(tim, "Public", "a")
    await tim.ok(BASE, {"GroupId": group_id, "MuteAllMember": "On"})
    send = {"GroupId": group_id, "Random": 1, "MsgBody": TEXT}
    assert (await tim.call(f"{SVC}/send_group_msg", {**send, "From_Account": "a"}))[
        "ErrorCode"] == 10017
    await tim.ok(f"{SVC}/send_group_msg", {**send, "From_Account": "owner", "Random": 2})
    await tim.ok(BASE, {"GroupId": group_id, "MuteAllMember": "Off"})
    await tim.ok(f"{SVC}/send_group_msg", {**send, "From_Account": "a", "Random": 3})


BASE_REFUSALS = [
    ("Public", {"Name": ""}, 10004),
    ("Public", {"Name": "n" * 31}, 10004),
    ("Public", {"Name": 5}, 10004),
    ("Public", {"Introduction": "i" * 241}, 10004),
    ("Public", {"Notification": "i" * 301}, 10004),
    ("Public", {"FaceUrl": "f" * 101}, 10004),
    ("Public", {"MaxMemberNum": 0}, 10004),
    ("Public", {"MaxMemberNum": 6001}, 10004),
    ("Public", {"MaxMemberNum": "10"}, 10004),
    ("Public", {"ApplyJoinOption": "Sometimes"}, 10004),
    ("Public", {"InviteJoinOption": "DisableApply"}, 10004),
    ("Public", {"MuteAllMember": "Yes"}, 10004),
    ("Public", {"AppDefinedData": [{"Key": "k" * 17, "Value": "v"}]}, 10004),
    ("Public", {"AppDefinedData": [{"Key": "k", "Value": "v" * 513}]}, 10004),
    ("Public", {"AppDefinedData": [{"Key": "", "Value": "v"}]}, 10004),
    ("Public", {"AppDefinedData": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]},
     10004),
    ("Private", {"MuteAllMember": "On"}, 10007),
    ("AVChatRoom", {"MaxMemberNum": 10}, 10007),
    ("AVChatRoom", {"InviteJoinOption": "FreeAccess"}, 10007),
]


async def test_modify_base_info_refusals(tim: RestClient) -> None:
    groups = {t: await group_with(tim, t) for t in ("Public", "Private", "AVChatRoom")}
    for group_type, body, code in BASE_REFUSALS:
        reply = await tim.call(BASE, {"GroupId": groups[group_type], **body})
        assert reply["ErrorCode"] == code, (body, reply)
    for group_id in groups.values():
        assert (await info(tim, group_id))["InfoSeq"] == 1  # nothing written


async def test_modify_base_info_limits_on_the_stored_group(tim: RestClient) -> None:
    group_id = await group_with(tim, "Public", "a", "b",
                                AppDefinedData=[{"Key": f"k{i}", "Value": "v"}
                                                for i in range(9)])
    assert (await tim.call(BASE, {"GroupId": group_id, "MaxMemberNum": 2}))[
        "ErrorCode"] == 10004  # below its 3 members
    await tim.ok(BASE, {"GroupId": group_id, "MaxMemberNum": 3})
    await import_accounts(tim, "owner2")
    add = await tim.call(f"{SVC}/add_group_member",
                         {"GroupId": group_id, "MemberList": [{"Member_Account": "owner2"}]})
    assert add["ErrorCode"] == 10014
    more = [{"Key": "x", "Value": "v"}, {"Key": "y", "Value": "v"}]
    assert (await tim.call(BASE, {"GroupId": group_id, "AppDefinedData": more}))[
        "ErrorCode"] == 10004  # 11 keys once merged
    await tim.ok(BASE, {"GroupId": group_id,
                        "AppDefinedData": [{"Key": "k0", "Value": ""}, *more[:1],
                                           {"Key": "y", "Value": "v"}]})
    assert len((await info(tim, group_id))["AppDefinedData"]) == 10
    for gone, code in (("missing", 10010), ("@TGS#\x01", 10015), ("g" * 49, 10015)):
        assert (await tim.call(BASE, {"GroupId": gone, "Name": "x"}))["ErrorCode"] == code


# --- modify_group_member_info ------------------------------------------------------------


async def test_modify_member_info_sets_every_field(server: Server, tim: RestClient) -> None:
    group_id = await group_with(tim, "Public", "a")
    await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a", "Role": "Admin",
                          "NameCard": "card", "MsgFlag": "AcceptNotNotify",
                          "AppMemberDefinedData": [{"Key": "m1", "Value": "x"},
                                                   {"Key": "m2", "Value": "y"}]})
    row = await member(tim, group_id, "a")
    assert (row["Role"], row["NameCard"], row["MsgFlag"]) == ("Admin", "card",
                                                              "AcceptNotNotify")
    assert row["AppMemberDefinedData"] == [{"Key": "m1", "Value": "x"},
                                           {"Key": "m2", "Value": "y"}]
    await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a", "Role": "Member",
                          "AppMemberDefinedData": [{"Key": "m1", "Value": ""}]})
    row = await member(tim, group_id, "a")
    assert row["Role"] == "Member" and row["AppMemberDefinedData"] == [
        {"Key": "m2", "Value": "y"}]
    # MuteTime (and its old name) is forbid_send_msg's mute.
    now = int(server.clock())
    await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a", "ShutUpTime": 600})
    until = (await member(tim, group_id, "a"))["ShutUpUntil"]
    assert now + 600 <= until <= now + 602
    muted = await tim.ok(f"{SVC}/get_group_muted_account", {"GroupId": group_id})
    assert muted["MutedAccountList"] == [{"Member_Account": "a", "MutedUntil": until}]
    send = {"GroupId": group_id, "From_Account": "a", "Random": 1, "MsgBody": TEXT}
    assert (await tim.call(f"{SVC}/send_group_msg", send))["ErrorCode"] == 10017
    await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a", "MuteTime": 0})
    assert (await member(tim, group_id, "a"))["ShutUpUntil"] == 0
    await tim.ok(f"{SVC}/send_group_msg", send)


MEMBER_REFUSALS = [
    ("Public", {"Member_Account": "owner", "Role": "Member"}, 10007),
    ("Public", {"Member_Account": "owner", "Role": "Admin"}, 10007),
    ("Public", {"Member_Account": "a", "Role": "Owner"}, 10004),
    ("Public", {"Member_Account": "a", "Role": "Boss"}, 10004),
    ("Public", {"Member_Account": "a", "Role": 1}, 10004),
    ("Public", {"Member_Account": "nobody", "NameCard": "x"}, 10007),
    ("Public", {"Member_Account": "nobody", "MuteTime": 60}, 10007),
    ("Public", {"Member_Account": "a", "NameCard": "n" * 51}, 10004),
    ("Public", {"Member_Account": "a", "MsgFlag": "Maybe"}, 10004),
    ("Public", {"Member_Account": "a", "MuteTime": -1}, 10004),
    ("Public", {"Member_Account": "a", "MuteTime": 2**32}, 10004),
    ("Public", {"Member_Account": "a", "TopicId": "t"}, 10004),
    ("Public", {"Member_Account": "a",
                "AppMemberDefinedData": [{"Key": "k" * 17, "Value": ""}]}, 10004),
    ("Public", {"Member_Account": "a",
                "AppMemberDefinedData": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]},
     10004),
    ("Public", {"Role": "Admin"}, 10004),  # Member_Account missing
    ("Private", {"Member_Account": "a", "Role": "Admin"}, 10007),
    ("Private", {"Member_Account": "a", "MuteTime": 60}, 10007),
    ("AVChatRoom", {"Member_Account": "a", "NameCard": "x"}, 10007),
]


async def test_modify_member_info_refusals(tim: RestClient) -> None:
    groups = {t: await group_with(tim, t, "a") for t in ("Public", "Private", "AVChatRoom")}
    for group_type, body, code in MEMBER_REFUSALS:
        reply = await tim.call(MEMBER, {"GroupId": groups[group_type], **body})
        assert reply["ErrorCode"] == code, (body, reply)
    for group_type in ("Public", "Private"):
        row = await member(tim, groups[group_type], "a")
        assert (row["Role"], row["NameCard"], row["ShutUpUntil"]) == ("Member", "", 0)


async def test_missing_groups(tim: RestClient) -> None:
    for path, body in ((MEMBER, {"Member_Account": "a", "NameCard": "x"}),
                       (OWNER, {"NewOwner_Account": "a"}),
                       (ROLES, {"User_Account": ["a"]})):
        assert (await tim.call(path, {"GroupId": "missing", **body}))["ErrorCode"] == 10010
        assert (await tim.call(path, {"GroupId": "", **body}))["ErrorCode"] == 10015


# --- change_group_owner ------------------------------------------------------------------


async def test_change_owner_swaps_the_roles(tim: RestClient) -> None:
    group_id = await group_with(tim, "Public", "a", "b")
    await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a", "Role": "Admin"})
    seq = (await info(tim, group_id))["InfoSeq"]
    await tim.ok(OWNER, {"GroupId": group_id, "NewOwner_Account": "a"})
    got = await info(tim, group_id)
    assert got["Owner_Account"] == "a" and got["InfoSeq"] == seq + 1
    roles = {m["Member_Account"]: m["Role"] for m in got["MemberList"]}
    assert roles == {"owner": "Member", "a": "Owner", "b": "Member"}
    await tim.ok(OWNER, {"GroupId": group_id, "NewOwner_Account": "a"})  # already: no-op
    assert (await info(tim, group_id))["InfoSeq"] == seq + 1
    # A group with no owner gets one.
    await import_accounts(tim, "c")
    ownerless = await create_group(tim, "Public", MemberList=[{"Member_Account": "c"}])
    await tim.ok(OWNER, {"GroupId": ownerless, "NewOwner_Account": "c"})
    assert (await info(tim, ownerless))["Owner_Account"] == "c"


async def test_change_owner_refusals(tim: RestClient) -> None:
    await import_accounts(tim, "stranger")
    groups = {t: await group_with(tim, t, "a") for t in ("Public", "AVChatRoom")}
    for group_type, new_owner, code in (("Public", "stranger", 10007),
                                        ("Public", "never-imported", 10007),
                                        ("Public", "", 10004), ("Public", 7, 10004),
                                        ("AVChatRoom", "a", 10007)):
        reply = await tim.call(OWNER, {"GroupId": groups[group_type],
                                       "NewOwner_Account": new_owner})
        assert reply["ErrorCode"] == code, (new_owner, reply)
    assert (await info(tim, groups["Public"]))["Owner_Account"] == "owner"


# --- get_role_in_group -------------------------------------------------------------------


async def test_roles_in_request_order(tim: RestClient) -> None:
    group_id = await group_with(tim, "Community", "a", "b")
    await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a", "Role": "Admin"})
    reply = await tim.ok(ROLES, {"GroupId": group_id,
                                 "User_Account": ["b", "x", "owner", "a", "b"]})
    assert reply["UserIdList"] == [
        {"Member_Account": "b", "Role": "Member"}, {"Member_Account": "x", "Role": "NotMember"},
        {"Member_Account": "owner", "Role": "Owner"}, {"Member_Account": "a", "Role": "Admin"},
        {"Member_Account": "b", "Role": "Member"}]
    assert len((await tim.ok(ROLES, {"GroupId": group_id, "User_Account": [
        f"u{i}" for i in range(500)]}))["UserIdList"]) == 500


async def test_role_refusals(tim: RestClient) -> None:
    groups = {t: await group_with(tim, t) for t in ("Public", "AVChatRoom")}
    for group_type, accounts, code in (("Public", [], 10004), ("Public", "a", 10004),
                                       ("Public", [f"u{i}" for i in range(501)], 10005),
                                       ("AVChatRoom", ["a"], 10007)):
        reply = await tim.call(ROLES, {"GroupId": groups[group_type],
                                       "User_Account": accounts})
        assert reply["ErrorCode"] == code, (accounts, reply)


# --- get_joined_group_list ---------------------------------------------------------------


async def test_joined_groups_default_types_paging_and_filters(
        server: Server, tim: RestClient) -> None:
    await import_accounts(tim, "u", "other")
    mine = []
    for group_type in ("Public", "ChatRoom", "Community", "Private"):
        mine.append(await create_group(tim, group_type, Owner_Account="other",
                                       MemberList=[{"Member_Account": "u"}]))
        server.clock.advance(1)
    await create_group(tim, "AVChatRoom", Owner_Account="u")
    await create_group(tim, "Public", Owner_Account="other")  # not u's
    public, meeting, community, work = mine
    reply = await tim.ok(JOINED, {"Member_Account": "u"})
    # The Work group has no message yet: not active, not listed by default.
    assert reply["TotalCount"] == 3
    assert reply["GroupIdList"] == [{"GroupId": g} for g in (public, meeting, community)]
    reply = await tim.ok(JOINED, {"Member_Account": "u", "WithNoActiveGroups": 1,
                                  "WithHugeGroups": 1})
    assert [g["GroupId"] for g in reply["GroupIdList"]] == mine
    await tim.ok(f"{SVC}/send_group_msg", {"GroupId": work, "Random": 1, "MsgBody": TEXT})
    reply = await tim.ok(JOINED, {"Member_Account": "u", "Limit": 2, "Offset": 1})
    assert reply["TotalCount"] == 4
    assert [g["GroupId"] for g in reply["GroupIdList"]] == [meeting, community]
    reply = await tim.ok(JOINED, {"Member_Account": "u", "Limit": 2, "Offset": 9})
    assert reply == {**reply, "TotalCount": 4, "GroupIdList": []}
    reply = await tim.ok(JOINED, {"Member_Account": "u", "GroupType": "Work"})
    assert [g["GroupId"] for g in reply["GroupIdList"]] == [work]
    assert (await tim.ok(JOINED, {"Member_Account": "u", "GroupType": "AVChatRoom",
                                  "WithHugeGroups": 1}))["TotalCount"] == 0
    assert (await tim.ok(JOINED, {"Member_Account": "never-imported"}))["TotalCount"] == 0
    reply = await tim.ok(JOINED, {"Member_Account": "u", "GroupType": "Public",
                                  "ResponseFilter": {
                                      "GroupBaseInfoFilter": ["Type", "Name", "MemberNum",
                                                              "Owner_Account"],
                                      "SelfInfoFilter": ["Role", "MsgFlag", "UnreadMsgNum"]}})
    assert reply["GroupIdList"] == [{
        "GroupId": public, "Type": "Public", "Name": "g", "MemberNum": 2,
        "Owner_Account": "other",
        "SelfInfo": {"Role": "Member", "MsgFlag": "AcceptAndNotify", "UnreadMsgNum": 0}}]


JOINED_REFUSALS = [
    ({"Member_Account": ""}, 10004),
    ({}, 10004),
    ({"Member_Account": "u", "Limit": -1}, 10004),
    ({"Member_Account": "u", "Offset": -1}, 10004),
    ({"Member_Account": "u", "GroupType": "Nope"}, 10004),
    ({"Member_Account": "u", "WithHugeGroups": 2}, 10004),
    ({"Member_Account": "u", "WithNoActiveGroups": "1"}, 10004),
    ({"Member_Account": "u", "ResponseFilter": {"SelfInfoFilter": ["Mood"]}}, 10004),
]


async def test_joined_refusals(tim: RestClient) -> None:
    for body, code in JOINED_REFUSALS:
        assert (await tim.call(JOINED, body))["ErrorCode"] == code, body


async def test_reads_are_one_query_whatever_the_number_of_groups(
        server: Server, tim: RestClient) -> None:
    users = [f"u{i}" for i in range(100)]
    await import_accounts(tim, "few", "many", *users)
    for i in range(30):
        await create_group(tim, "Public", MemberList=[{"Member_Account": "many"}]
                           + ([{"Member_Account": "few"}] if i < 2 else []))
    group_id = await create_group(tim, "Public", MemberList=[
        {"Member_Account": u} for u in users[:50]])
    counts = []
    for account in ("few", "many"):
        async with statements(server) as seen:
            reply = await tim.ok(JOINED, {"Member_Account": account, "ResponseFilter": {
                "GroupBaseInfoFilter": ["Name"], "SelfInfoFilter": ["Role"]}})
        counts.append(len(seen))
        assert reply["TotalCount"] == (2 if account == "few" else 30)
    assert counts[0] == counts[1] <= 1
    counts = []
    for accounts in (users[:1], users):
        async with statements(server) as seen:
            await tim.ok(ROLES, {"GroupId": group_id, "User_Account": accounts})
        counts.append(len(seen))
    assert counts[0] == counts[1] <= 2  # the group, then every role at once


# --- callbacks ---------------------------------------------------------------------------


async def webhook_app(server: Server, receiver: Receiver) -> RestClient:
    app = await server.new_app(rate_limit=0, callback_url=receiver.url)
    tim = server.client(app)
    await import_accounts(tim, "owner", "a", "b")
    return tim


def _body(received: Any) -> dict[str, Any]:
    body = dict(received.body)
    assert isinstance(body.pop("EventTime"), int)
    return body


async def test_create_group_callbacks(server: Server, receiver: Receiver) -> None:
    def answer(command: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if command != "Group.CallbackBeforeCreateGroup":
            return None
        verdicts = {"refuse": {"ErrorCode": 1, "ErrorInfo": ""},
                    "mine": {"ErrorCode": 10150, "ErrorInfo": "not today"},
                    "other": {"ErrorCode": 7}}
        return verdicts.get(body["Name"], {"ActionStatus": "OK", "ErrorCode": 0})
    receiver.answer = answer
    async with await webhook_app(server, receiver) as tim:
        await create_group(tim, "Public", Owner_Account="owner", GroupId="earlier")
        group_id = await create_group(tim, "Public", Name="ok", Owner_Account="owner",
                                      MemberList=[{"Member_Account": "a"},
                                                  {"Member_Account": "b"}],
                                      AppDefinedData=[{"Key": "k", "Value": "v"}])
        before = [r for r in receiver.of("Group.CallbackBeforeCreateGroup")
                  if r.body["Name"] == "ok"]
        assert _body(before[0]) == {
            "CallbackCommand": "Group.CallbackBeforeCreateGroup",
            "Operator_Account": "administrator", "Owner_Account": "owner",
            "Type": "Public", "Name": "ok", "CreateGroupNum": 1,
            "MemberList": [{"Member_Account": "a"}, {"Member_Account": "b"}]}
        for name, code, text in (("refuse", 10016, None), ("mine", 10150, "not today")):
            reply = await tim.call(f"{SVC}/create_group", {"Type": "Public", "Name": name,
                                                          "GroupId": f"x-{name}"})
            assert reply["ErrorCode"] == code
            if text:
                assert reply["ErrorInfo"] == text
            gone = await tim.ok(f"{SVC}/get_group_info", {"GroupIdList": [f"x-{name}"]})
            assert gone["GroupInfo"][0]["ErrorCode"] == 10010
        await create_group(tim, "Public", Name="other")  # an unknown code lets it through
        after = await receiver.wait_for(3, "Group.CallbackAfterCreateGroup")
        mine = next(r for r in after if r.body["GroupId"] == group_id)
        assert _body(mine) == {
            "CallbackCommand": "Group.CallbackAfterCreateGroup", "GroupId": group_id,
            "Operator_Account": "administrator", "Owner_Account": "owner",
            "Type": "Public", "Name": "ok",
            "MemberList": [{"Member_Account": "a"}, {"Member_Account": "b"}],
            "UserDefinedDataList": [{"Key": "k", "Value": "v"}]}
        # import_group calls neither.
        count = len(receiver.calls)
        await tim.ok(f"{SVC}/import_group", {"Type": "Public", "Name": "imported"})
        assert len(receiver.calls) == count


async def test_a_failing_or_slow_before_create_callback_lets_the_group_through(
        server: Server, receiver: Receiver) -> None:
    server.runtime.webhooks.settings = type(server.runtime.webhooks.settings)(timeout=0.3)
    async with await webhook_app(server, receiver) as tim:
        receiver.statuses = [500]
        await create_group(tim, "Public", Name="after a 500")
        receiver.delays = {"Group.CallbackBeforeCreateGroup": 2.0}
        await create_group(tim, "Public", Name="after a timeout")


async def test_admin_callbacks(server: Server, receiver: Receiver) -> None:
    async with await webhook_app(server, receiver) as tim:
        group_id = await create_group(tim, "Public", Owner_Account="owner",
                                      MaxMemberCount=3, MemberList=[{"Member_Account": "a"}])
        await tim.ok(BASE, {"GroupId": group_id, "Name": "n2", "FaceUrl": "http://f",
                            "MaxMemberNum": 4, "From_Account": "a"})
        await tim.ok(BASE, {"GroupId": group_id, "MuteAllMember": "On"})  # no callback
        await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a", "Role": "Admin",
                              "MsgFlag": "Discard"})
        await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a",
                              "MsgFlag": "AcceptAndNotify"})  # no callback
        await tim.ok(OWNER, {"GroupId": group_id, "NewOwner_Account": "a"})
        await tim.ok(f"{SVC}/add_group_member", {"GroupId": group_id,
                                                 "MemberList": [{"Member_Account": "b"}]})
        await import_accounts(tim, "c", "d")
        await tim.ok(f"{SVC}/add_group_member", {"GroupId": group_id,
                                                 "MemberList": [{"Member_Account": "c"}]})
        full = await tim.call(f"{SVC}/add_group_member",
                              {"GroupId": group_id, "MemberList": [{"Member_Account": "d"}]})
        assert full["ErrorCode"] == 10014
        await tim.ok(f"{SVC}/destroy_group", {"GroupId": group_id})
        community = await create_group(tim, "Community", Owner_Account="owner")
        await tim.ok(f"{SVC}/destroy_group", {"GroupId": community})
        changed = await receiver.wait_for(1, "Group.CallbackAfterGroupInfoChanged")
        assert [_body(c) for c in changed] == [{
            "CallbackCommand": "Group.CallbackAfterGroupInfoChanged", "GroupId": group_id,
            "Type": "Public", "Operator_Account": "a", "Name": "n2", "FaceUrl": "http://f"}]
        assert changed[0].query["ClientIP"] is not None
        [field] = await receiver.wait_for(1, "Group.CallbackAfterMemberFieldChanged")
        assert _body(field) == {
            "CallbackCommand": "Group.CallbackAfterMemberFieldChanged", "GroupId": group_id,
            "Type": "Public", "Operator_Account": "administrator", "Modified_Account": "a",
            "Member_Account": "a", "Role": "Admin"}
        [owner] = await receiver.wait_for(1, "Group.CallbackAfterChangeGroupOwner")
        assert _body(owner) == {
            "CallbackCommand": "Group.CallbackAfterChangeGroupOwner", "GroupId": group_id,
            "Type": "Public", "Operator_Account": "administrator",
            "OldOwner_Account": "owner", "NewOwner_Account": "a"}
        fulls = await receiver.wait_for(2, "Group.CallbackAfterGroupFull")
        assert [_body(f) for f in fulls] == [
            {"CallbackCommand": "Group.CallbackAfterGroupFull", "GroupId": group_id}] * 2
        destroyed = await receiver.wait_for(2, "Group.CallbackAfterGroupDestroyed")
        destroyed[0].body["MemberList"].sort(key=lambda m: m["Member_Account"])
        assert [_body(d) for d in destroyed] == [{
            "CallbackCommand": "Group.CallbackAfterGroupDestroyed",
            "Operator_Account": "administrator", "GroupId": group_id, "Type": "Public",
            "Owner_Account": "a", "Name": "n2",
            "MemberList": [{"Member_Account": m} for m in ("a", "b", "c", "owner")]}, {
            "CallbackCommand": "Group.CallbackAfterGroupDestroyed",
            "Operator_Account": "administrator", "GroupId": community, "Type": "Community",
            "Owner_Account": "owner", "Name": "g"}]
        # Per group, in order.
        assert [c for c in receiver.commands() if c != "Group.CallbackBeforeCreateGroup"][
            1:5] == ["Group.CallbackAfterGroupInfoChanged",
                     "Group.CallbackAfterMemberFieldChanged",
                     "Group.CallbackAfterChangeGroupOwner",
                     "Group.CallbackAfterNewMemberJoin"]


# --- pushes ------------------------------------------------------------------------------


async def test_members_online_hear_every_change(live: LiveServer) -> None:
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "owner", "a", "outsider")
        group_id = await create_group(tim, "Public", Owner_Account="owner",
                                      MemberList=[{"Member_Account": "a"}])
        async with live.connect(app, "a") as a, live.connect(app, "outsider") as outsider:
            await tim.ok(BASE, {"GroupId": group_id, "Notification": "hello",
                                "MuteAllMember": "On"})
            got = await next_event(a, "group_info_changed")
            assert got == {"event": "group_info_changed", "GroupId": group_id,
                           "Operator_Account": "administrator", "InfoSeq": 2,
                           "Notification": "hello", "MuteAllMember": "On"}
            await tim.ok(MEMBER, {"GroupId": group_id, "Member_Account": "a",
                                  "Role": "Admin", "NameCard": "A", "MuteTime": 60})
            got = await next_event(a, "group_member_info_changed")
            assert got["Member_Account"] == "a" and got["Role"] == "Admin"
            assert got["NameCard"] == "A" and got["ShutUpUntil"] > 0
            await tim.ok(OWNER, {"GroupId": group_id, "NewOwner_Account": "a"})
            got = await next_event(a, "group_owner_changed")
            assert got == {"event": "group_owner_changed", "GroupId": group_id,
                           "Operator_Account": "administrator", "OldOwner_Account": "owner",
                           "NewOwner_Account": "a"}
            await tim.ok(f"{SVC}/modify_group_attr", {
                "GroupId": group_id, "GroupAttr": [{"key": "seat1", "value": "a"}]})
            got = await next_event(a, "group_attr_changed")
            assert got == {"event": "group_attr_changed", "GroupId": group_id,
                           "OptionType": "modify", "Operator_Account": "administrator",
                           "GroupAttr": [{"key": "seat1", "value": "a"}]}
            assert outsider.events.empty()  # not a member: told nothing
