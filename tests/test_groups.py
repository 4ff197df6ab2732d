"""group_open_http_svc: groups and their (persistent) members."""

from __future__ import annotations

import pytest

from opentim.events import GroupDestroyed, MembersExited, MembersJoined
from tests.helpers import Server, create_group, import_accounts

SVC = "group_open_http_svc"
TYPES = ["Private", "Public", "ChatRoom", "AVChatRoom", "Community"]


async def _info(tim, *group_ids: str, **filters) -> list[dict]:
    body = {"GroupIdList": list(group_ids)}
    if filters:
        body["ResponseFilter"] = filters
    return (await tim.ok(f"{SVC}/get_group_info", body))["GroupInfo"]


@pytest.mark.parametrize("group_type", TYPES)
async def test_create_each_type_with_generated_id(tim, group_type: str) -> None:
    await import_accounts(tim, "owner")
    group_id = await create_group(tim, group_type, Owner_Account="owner")
    assert group_id.startswith("@TGS#")
    if group_type == "Community":
        assert group_id.startswith("@TGS#_")
    [info] = await _info(tim, group_id)
    assert info["ErrorCode"] == 0
    assert info["Type"] == group_type
    assert info["Owner_Account"] == "owner"
    if group_type == "AVChatRoom":
        assert "MemberNum" not in info and "MemberList" not in info
    else:
        assert info["MemberNum"] == 1
        assert info["MemberList"][0]["Member_Account"] == "owner"
        assert info["MemberList"][0]["Role"] == "Owner"


async def test_work_and_meeting_aliases(tim) -> None:
    assert (await _info(tim, await create_group(tim, "Work")))[0]["Type"] == "Private"
    assert (await _info(tim, await create_group(tim, "Meeting")))[0]["Type"] == "ChatRoom"


async def test_create_group_full_shape(tim) -> None:
    await import_accounts(tim, "o", "a", "m")
    group_id = await create_group(
        tim, "Public", GroupId="my-group", Owner_Account="o", Introduction="intro",
        Notification="note", FaceUrl="http://f", MaxMemberCount=10,
        ApplyJoinOption="FreeAccess", AppDefinedData=[{"Key": "k", "Value": "v"}],
        MemberList=[{"Member_Account": "a", "Role": "Admin"}, {"Member_Account": "m"}],
    )
    assert group_id == "my-group"
    [info] = await _info(tim, group_id)
    assert info["Name"] == "g" and info["Introduction"] == "intro"
    assert info["Notification"] == "note" and info["FaceUrl"] == "http://f"
    assert info["MaxMemberNum"] == 10 and info["MemberNum"] == 3
    assert info["ApplyJoinOption"] == "FreeAccess"
    assert info["AppDefinedData"] == [{"Key": "k", "Value": "v"}]
    assert info["NextMsgSeq"] == 1 and info["ShutUpAllMember"] == "Off"
    assert {m["Member_Account"]: m["Role"] for m in info["MemberList"]} == {
        "o": "Owner", "a": "Admin", "m": "Member"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"Type": "Nope", "Name": "g"}, 10004),
        ({"Type": "Public"}, 10004),
        ({"Type": "Public", "Name": ""}, 10004),
        ({"Type": "Public", "Name": "n" * 31}, 10004),
        ({"Type": "Public", "Name": "g", "Introduction": "i" * 241}, 10004),
        ({"Type": "Public", "Name": "g", "Notification": "i" * 301}, 10004),
        ({"Type": "Public", "Name": "g", "FaceUrl": "i" * 101}, 10004),
        ({"Type": "Public", "Name": "g", "MaxMemberCount": 0}, 10004),
        ({"Type": "Public", "Name": "g", "MaxMemberCount": 100_000}, 10004),
        ({"Type": "Public", "Name": "g", "ApplyJoinOption": "Sometimes"}, 10004),
        ({"Type": "Public", "Name": "g", "AppDefinedData": [{"Key": "k" * 17, "Value": ""}]},
         10004),
        ({"Type": "Public", "Name": "g",
          "AppDefinedData": [{"Key": f"k{i}", "Value": ""} for i in range(11)]}, 10004),
        ({"Type": "Public", "Name": "g", "GroupId": "@TGS#mine"}, 10015),
        ({"Type": "Public", "Name": "g", "GroupId": "x" * 49}, 10015),
        ({"Type": "Public", "Name": "g", "GroupId": "bad\u00e9id"}, 10015),
        ({"Type": "Community", "Name": "g", "GroupId": "no-prefix"}, 10015),
        ({"Type": "AVChatRoom", "Name": "g", "MemberList": [{"Member_Account": "a"}]}, 10007),
        ({"Type": "Public", "Name": "g",
          "MemberList": [{"Member_Account": f"u{i}"} for i in range(101)]}, 10005),
        ({"Type": "Public", "Name": "g", "Owner_Account": "ghost"}, 10019),
        ({"Type": "Public", "Name": "g", "MemberList": [{"Member_Account": "ghost"}]}, 10019),
        ({"Type": "Public", "Name": "g", "MemberList": [{"Member_Account": "a",
                                                         "Role": "Owner"}]}, 10004),
    ],
)
async def test_create_group_errors(tim, body: dict, code: int) -> None:
    await import_accounts(tim, "a")
    reply = await tim.call(f"{SVC}/create_group", body)
    assert reply["ErrorCode"] == code, reply
    assert reply["ActionStatus"] == "FAIL" and reply["ErrorInfo"]


async def test_custom_community_id(tim) -> None:
    assert await create_group(tim, "Community", GroupId="@TGS#_club") == "@TGS#_club"


async def test_duplicate_group_id(tim) -> None:
    await import_accounts(tim, "o", "p")
    await create_group(tim, "Public", GroupId="dup", Owner_Account="o")
    reply = await tim.call(f"{SVC}/create_group",
                           {"Type": "Public", "Name": "g", "GroupId": "dup", "Owner_Account": "p"})
    assert reply["ErrorCode"] == 10021
    reply = await tim.call(f"{SVC}/create_group",
                           {"Type": "Public", "Name": "g", "GroupId": "dup", "Owner_Account": "o"})
    assert reply["ErrorCode"] == 10025


async def test_import_group_with_create_time(tim, server: Server) -> None:
    body = {"Type": "Public", "Name": "old", "CreateTime": 1448357837}
    group_id = (await tim.ok(f"{SVC}/import_group", body))["GroupId"]
    [info] = await _info(tim, group_id)
    assert info["CreateTime"] == 1448357837
    assert server.events == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"Type": "AVChatRoom", "Name": "g"}, 10007),
        ({"Type": "Public", "Name": "g", "CreateTime": 4_000_000_000}, 10004),
        ({"Type": "Public", "Name": "g", "CreateTime": -1}, 10004),
        ({"Type": "Public", "Name": "g", "CreateTime": "yesterday"}, 10004),
    ],
)
async def test_import_group_errors(tim, body: dict, code: int) -> None:
    assert (await tim.call(f"{SVC}/import_group", body))["ErrorCode"] == code


async def test_get_group_info_per_group_errors_and_filters(tim) -> None:
    group_id = await create_group(tim, "Public", AppDefinedData=[
        {"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    items = await _info(tim, group_id, "missing-group", "x" * 49)
    assert [i["ErrorCode"] for i in items] == [0, 10010, 10015]
    assert items[1]["GroupId"] == "missing-group" and items[1]["ErrorInfo"]
    [filtered] = await _info(tim, group_id, GroupBaseInfoFilter=["Name", "MemberNum"],
                             AppDefinedDataFilter_Group=["b"], MemberInfoFilter=["Role"])
    assert set(filtered) == {"GroupId", "ErrorCode", "ErrorInfo", "Name", "MemberNum",
                             "AppDefinedData", "MemberList"}
    assert filtered["AppDefinedData"] == [{"Key": "b", "Value": "2"}]


async def test_get_group_info_limits(tim) -> None:
    assert (await tim.call(f"{SVC}/get_group_info", {"GroupIdList": []}))["ErrorCode"] == 10004
    reply = await tim.call(f"{SVC}/get_group_info",
                           {"GroupIdList": [f"g{i}" for i in range(51)]})
    assert reply["ErrorCode"] == 10005


async def test_destroy_group(tim, server: Server) -> None:
    group_id = await create_group(tim, "Public")
    server.events.clear()  # the GroupCreated of create_group
    await tim.ok(f"{SVC}/destroy_group", {"GroupId": group_id})
    assert (await _info(tim, group_id))[0]["ErrorCode"] == 10010
    assert (await tim.call(f"{SVC}/destroy_group", {"GroupId": group_id}))["ErrorCode"] == 10010
    assert (await tim.call(f"{SVC}/destroy_group", {"GroupId": ""}))["ErrorCode"] == 10015
    assert [type(e) for e in server.events] == [GroupDestroyed]


async def test_add_group_member_results_and_event(tim, server: Server) -> None:
    await import_accounts(tim, "o", "a", "b")
    group_id = await create_group(tim, "Public", Owner_Account="o")
    server.events.clear()  # the GroupCreated of create_group
    reply = await tim.ok(f"{SVC}/add_group_member", {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a"}, {"Member_Account": "o"}, {"Member_Account": "ghost"},
        {"Member_Account": "b"}, {"Member_Account": "a"}]})
    assert reply["MemberList"] == [
        {"Member_Account": "a", "Result": 1}, {"Member_Account": "o", "Result": 2},
        {"Member_Account": "ghost", "Result": 0}, {"Member_Account": "b", "Result": 1}]
    assert (await _info(tim, group_id))[0]["MemberNum"] == 3
    [event] = server.events
    assert isinstance(event, MembersJoined)
    assert event.members == ("a", "b") and event.join_type == "Invited"
    assert event.operator == "administrator" and event.group_type == "Public"


async def test_add_group_member_errors(tim) -> None:
    await import_accounts(tim, "a", "b", "c")
    av = await create_group(tim, "AVChatRoom")
    small = await create_group(tim, "Public", MaxMemberCount=1,
                               MemberList=[{"Member_Account": "a"}])
    public = await create_group(tim, "Public")
    cases = [
        ({"GroupId": av, "MemberList": [{"Member_Account": "a"}]}, 10007),
        ({"GroupId": "nope", "MemberList": [{"Member_Account": "a"}]}, 10010),
        ({"GroupId": "", "MemberList": [{"Member_Account": "a"}]}, 10015),
        ({"GroupId": public, "MemberList": []}, 10004),
        ({"GroupId": public}, 10004),
        ({"GroupId": public, "MemberList": [{"Member_Account": f"u{i}"} for i in range(301)]},
         10005),
        ({"GroupId": small, "MemberList": [{"Member_Account": "b"}]}, 10014),
    ]
    for body, code in cases:
        reply = await tim.call(f"{SVC}/add_group_member", body)
        assert reply["ErrorCode"] == code, (body, reply)


async def test_add_group_member_partial_room(tim) -> None:
    await import_accounts(tim, "a", "b", "c")
    group_id = await create_group(tim, "Public", MaxMemberCount=2)
    reply = await tim.ok(f"{SVC}/add_group_member", {"GroupId": group_id, "MemberList": [
        {"Member_Account": "a"}, {"Member_Account": "b"}, {"Member_Account": "c"}]})
    assert [m["Result"] for m in reply["MemberList"]] == [1, 1, 0]


async def test_delete_group_member(tim, server: Server) -> None:
    await import_accounts(tim, "o", "a", "b")
    group_id = await create_group(tim, "Public", Owner_Account="o",
                                  MemberList=[{"Member_Account": "a"}])
    server.events.clear()  # the GroupCreated of create_group
    await tim.ok(f"{SVC}/delete_group_member",
                 {"GroupId": group_id, "MemberToDel_Account": ["a", "b"]})
    [info] = await _info(tim, group_id)
    assert info["MemberNum"] == 1
    [event] = server.events
    assert isinstance(event, MembersExited) and event.members == ("a",)
    assert event.exit_type == "Kicked"
    # removing a non-member still succeeds, and emits nothing
    await tim.ok(f"{SVC}/delete_group_member",
                 {"GroupId": group_id, "MemberToDel_Account": ["b"]})
    assert len(server.events) == 1


async def test_delete_group_member_errors(tim) -> None:
    await import_accounts(tim, "o")
    av = await create_group(tim, "AVChatRoom")
    public = await create_group(tim, "Public", Owner_Account="o")
    cases = [
        ({"GroupId": av, "MemberToDel_Account": ["a"]}, 10004),
        ({"GroupId": "nope", "MemberToDel_Account": ["a"]}, 10010),
        ({"GroupId": public, "MemberToDel_Account": []}, 10004),
        ({"GroupId": public, "MemberToDel_Account": [f"u{i}" for i in range(101)]}, 10005),
        ({"GroupId": public, "MemberToDel_Account": ["o"]}, 10004),
    ]
    for body, code in cases:
        assert (await tim.call(f"{SVC}/delete_group_member", body))["ErrorCode"] == code, body


async def test_get_group_member_info_paging_and_filters(tim) -> None:
    users = [f"u{i:02d}" for i in range(12)]
    await import_accounts(tim, "o", *users)
    group_id = await create_group(tim, "Public", Owner_Account="o", MemberList=[
        {"Member_Account": u, "Role": "Admin" if u == "u00" else "Member"} for u in users])
    reply = await tim.ok(f"{SVC}/get_group_member_info", {"GroupId": group_id})
    assert reply["MemberNum"] == 13 and len(reply["MemberList"]) == 13
    row = reply["MemberList"][0]
    assert set(row) == {"Member_Account", "Role", "JoinTime", "MsgSeq", "MsgFlag",
                        "LastSendMsgTime", "ShutUpUntil", "NameCard", "AppMemberDefinedData"}
    seen = []
    for offset in range(0, 13, 5):
        page = await tim.ok(f"{SVC}/get_group_member_info",
                            {"GroupId": group_id, "Limit": 5, "Offset": offset})
        seen += [m["Member_Account"] for m in page["MemberList"]]
    assert sorted(seen) == sorted(["o", *users])
    admins = await tim.ok(f"{SVC}/get_group_member_info",
                          {"GroupId": group_id, "MemberRoleFilter": ["Admin", "Owner"],
                           "MemberInfoFilter": ["Role"]})
    assert {(m["Member_Account"], m["Role"]) for m in admins["MemberList"]} == {
        ("o", "Owner"), ("u00", "Admin")}
    assert set(admins["MemberList"][0]) == {"Member_Account", "Role", "AppMemberDefinedData"}


async def test_get_group_member_info_community_next(tim) -> None:
    users = [f"c{i:02d}" for i in range(7)]
    await import_accounts(tim, *users)
    group_id = await create_group(tim, "Community",
                                  MemberList=[{"Member_Account": u} for u in users])
    seen, next_token, pages = [], "", 0
    while True:
        page = await tim.ok(f"{SVC}/get_group_member_info",
                            {"GroupId": group_id, "Limit": 3, "Next": next_token,
                             "Offset": 99})
        seen += [m["Member_Account"] for m in page["MemberList"]]
        next_token, pages = page["Next"], pages + 1
        if not next_token:
            break
    assert sorted(seen) == users and len(seen) == 7 and pages == 3


async def test_get_group_member_info_errors(tim) -> None:
    av = await create_group(tim, "AVChatRoom")
    public = await create_group(tim, "Public")
    community = await create_group(tim, "Community")
    cases = [
        ({"GroupId": av}, 10007),
        ({"GroupId": "nope"}, 10010),
        ({"GroupId": "x" * 49}, 10015),
        ({"GroupId": public, "Limit": 6001}, 10004),
        ({"GroupId": public, "Limit": -1}, 10004),
        ({"GroupId": public, "Offset": -1}, 10004),
        ({"GroupId": public, "MemberRoleFilter": ["Boss"]}, 10004),
        ({"GroupId": community, "Limit": 1, "Next": "!!not-ours"}, 10004),
    ]
    for body, code in cases:
        assert (await tim.call(f"{SVC}/get_group_member_info", body))["ErrorCode"] == code, body


async def test_get_appid_group_list(tim) -> None:
    public = {await create_group(tim, "Public") for _ in range(3)}
    private = {await create_group(tim, "Private") for _ in range(2)}
    reply = await tim.ok(f"{SVC}/get_appid_group_list", {})
    assert reply["TotalCount"] == 5 and reply["Next"] == 0
    assert {g["GroupId"] for g in reply["GroupIdList"]} == public | private
    seen, next_ = set(), 0
    while True:
        page = await tim.ok(f"{SVC}/get_appid_group_list",
                            {"Limit": 2, "Next": next_, "GroupType": "Public"})
        assert page["TotalCount"] == 3
        seen |= {g["GroupId"] for g in page["GroupIdList"]}
        next_ = page["Next"]
        if not next_:
            break
    assert seen == public
    for body in ({"Limit": 0}, {"Limit": 10001}, {"Next": -1}, {"GroupType": "Nope"}):
        assert (await tim.call(f"{SVC}/get_appid_group_list", body))["ErrorCode"] == 10004


async def test_groups_are_per_app(server: Server, tim) -> None:
    group_id = await create_group(tim, "Public", GroupId="same-id")
    other = await server.new_app(rate_limit=0)
    async with server.client(other) as tim2:
        assert (await _info(tim2, group_id))[0]["ErrorCode"] == 10010
        assert await create_group(tim2, "Public", GroupId="same-id") == "same-id"
