"""im_open_login_svc: account_import, multiaccount_import, account_check, account_delete."""

from __future__ import annotations

from opentim.events import AccountsDeleted
from tests.helpers import Server, create_group, import_accounts


async def _status(tim, *user_ids: str) -> dict[str, str]:
    reply = await tim.ok("im_open_login_svc/account_check",
                         {"CheckItem": [{"UserID": u} for u in user_ids]})
    return {item["UserID"]: item["AccountStatus"] for item in reply["ResultItem"]}


async def test_import_check_delete(tim) -> None:
    assert (await tim.call("im_open_login_svc/account_import",
                           {"UserID": "alice", "Nick": "Alice", "FaceUrl": "http://a"})) == {
        "ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
    assert await _status(tim, "alice", "bob") == {"alice": "Imported", "bob": "NotImported"}
    reply = await tim.ok("im_open_login_svc/account_delete",
                         {"DeleteItem": [{"UserID": "alice"}, {"UserID": "bob"}]})
    assert reply["ResultItem"] == [
        {"UserID": "alice", "ResultCode": 0, "ResultInfo": ""},
        # Tencent's own ResultInfo (account_delete page, 269/36443)
        {"UserID": "bob", "ResultCode": 70107,
         "ResultInfo": "Err_TLS_PT_Open_Login_Account_Not_Exist"},
    ]
    assert await _status(tim, "alice") == {"alice": "NotImported"}


async def test_check_item_fields(tim) -> None:
    reply = await tim.ok("im_open_login_svc/account_check", {"CheckItem": [{"UserID": "x"}]})
    assert reply["ResultItem"] == [
        {"UserID": "x", "ResultCode": 0, "ResultInfo": "", "AccountStatus": "NotImported"}
    ]


async def test_legacy_identifier_field(tim) -> None:
    await tim.ok("im_open_login_svc/account_import", {"Identifier": "legacy"})
    assert await _status(tim, "legacy") == {"legacy": "Imported"}


async def test_reimport_updates_given_fields_only(tim, server: Server, app) -> None:
    await tim.ok("im_open_login_svc/account_import",
                 {"UserID": "u", "Nick": "N1", "FaceUrl": "F1"})
    await tim.ok("im_open_login_svc/account_import", {"UserID": "u", "Nick": "N2"})
    profiles = await server.runtime.store.accounts.profiles(app.sdkappid, ["u"])
    assert profiles == {"u": ("N2", "F1")}


async def test_multiaccount_import_both_shapes(tim, server: Server, app) -> None:
    reply = await tim.ok("im_open_login_svc/multiaccount_import",
                         {"AccountList": [{"UserID": "a", "Nick": "A"}, {"UserID": "b"}]})
    assert reply["FailAccounts"] == []
    reply = await tim.ok("im_open_login_svc/multiaccount_import", {"Accounts": ["c", "d"]})
    assert reply["FailAccounts"] == []
    assert set((await _status(tim, "a", "b", "c", "d")).values()) == {"Imported"}
    assert (await server.runtime.store.accounts.profiles(app.sdkappid, ["a"]))["a"][0] == "A"


async def test_multiaccount_import_reports_bad_ids(tim) -> None:
    reply = await tim.ok("im_open_login_svc/multiaccount_import",
                         {"AccountList": [{"UserID": "ok"}, {"UserID": "x" * 33},
                                          {"UserID": ""}]})
    assert reply["FailAccounts"] == ["x" * 33, ""]
    assert (await _status(tim, "ok"))["ok"] == "Imported"


async def test_user_id_rules(tim) -> None:
    for bad in ("", "x" * 33, "tab\there"):
        reply = await tim.call("im_open_login_svc/account_import", {"UserID": bad})
        assert reply["ErrorCode"] == 70402, bad
    assert (await tim.call("im_open_login_svc/account_import",
                           {"UserID": "x" * 32}))["ErrorCode"] == 0


async def test_profile_value_limit(tim) -> None:
    reply = await tim.call("im_open_login_svc/account_import",
                           {"UserID": "u", "Nick": "n" * 501})
    assert reply["ErrorCode"] == 40601
    reply = await tim.call("im_open_login_svc/account_import",
                           {"UserID": "u", "FaceUrl": "f" * 501})
    assert reply["ErrorCode"] == 40601


async def test_batch_limits(tim) -> None:
    many = [{"UserID": f"u{i}"} for i in range(101)]
    assert (await tim.call("im_open_login_svc/multiaccount_import",
                           {"AccountList": many}))["ErrorCode"] == 70206
    assert (await tim.call("im_open_login_svc/account_check",
                           {"CheckItem": many}))["ErrorCode"] == 70206
    assert (await tim.call("im_open_login_svc/account_delete",
                           {"DeleteItem": many}))["ErrorCode"] == 70206
    for path, field in (("multiaccount_import", "AccountList"), ("account_check", "CheckItem"),
                        ("account_delete", "DeleteItem")):
        assert (await tim.call(f"im_open_login_svc/{path}", {field: []}))["ErrorCode"] == 70402


async def test_accounts_are_per_app(server: Server, tim) -> None:
    await tim.ok("im_open_login_svc/account_import", {"UserID": "shared"})
    other = await server.new_app(rate_limit=0)
    async with server.client(other) as tim2:
        assert await _status(tim2, "shared") == {"shared": "NotImported"}


async def test_account_import_is_silent(tim, server: Server) -> None:
    await tim.ok("im_open_login_svc/account_import", {"UserID": "quiet"})
    await tim.ok("im_open_login_svc/multiaccount_import", {"Accounts": ["q2"]})
    assert server.events == []


# --- account_delete removes what the account held in groups -------------------------------


async def _members(tim, group_id: str) -> tuple[int, dict[str, str]]:
    reply = await tim.ok("group_open_http_svc/get_group_member_info", {
        "GroupId": group_id, "MemberInfoFilter": ["Role", "UnreadMsgNum"]})
    return reply["MemberNum"], {m["Member_Account"]: m["Role"] for m in reply["MemberList"]}


async def _group(tim, group_id: str) -> dict:
    reply = await tim.ok("group_open_http_svc/get_group_info", {"GroupIdList": [group_id]})
    return reply["GroupInfo"][0]


async def _delete(tim, *user_ids: str) -> list[int]:
    reply = await tim.ok("im_open_login_svc/account_delete",
                         {"DeleteItem": [{"UserID": u} for u in user_ids]})
    return [item["ResultCode"] for item in reply["ResultItem"]]


async def test_deleted_account_leaves_its_groups(tim, server: Server) -> None:
    await import_accounts(tim, "owner", "adm", "m1", "m2")
    public = await create_group(tim, "Public", Owner_Account="owner", MemberList=[
        {"Member_Account": "adm", "Role": "Admin"}, {"Member_Account": "m1"},
        {"Member_Account": "m2"}])
    community = await create_group(tim, "Community", Owner_Account="owner", MemberList=[
        {"Member_Account": "adm", "Role": "Admin"}, {"Member_Account": "m1"}])
    await tim.ok("group_open_http_svc/send_group_msg", {
        "GroupId": public, "Random": 1,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]})

    assert await _delete(tim, "adm") == [0]
    assert await _members(tim, public) == (3, {"owner": "Owner", "m1": "Member",
                                               "m2": "Member"})
    assert await _members(tim, community) == (2, {"owner": "Owner", "m1": "Member"})
    assert (await _group(tim, public))["MemberNum"] == 3

    # The same UserID imported again is a new account: no role, no membership, no unread.
    await import_accounts(tim, "adm")
    assert (await _members(tim, public))[1].get("adm") is None
    reply = await tim.ok("group_open_http_svc/add_group_member", {
        "GroupId": public, "MemberList": [{"Member_Account": "adm"}]})
    assert reply["MemberList"] == [{"Member_Account": "adm", "Result": 1}]
    reply = await tim.ok("group_open_http_svc/get_group_member_info", {
        "GroupId": public, "MemberInfoFilter": ["Role", "UnreadMsgNum"]})
    assert {m["Member_Account"]: (m["Role"], m["UnreadMsgNum"]) for m in reply["MemberList"]
            }["adm"] == ("Member", 0)


async def test_deleted_owner_leaves_groups_without_owner(tim, server: Server) -> None:
    await import_accounts(tim, "owner", "m1")
    public = await create_group(tim, "Public", Owner_Account="owner",
                                MemberList=[{"Member_Account": "m1"}])
    live = await create_group(tim, "AVChatRoom", Owner_Account="owner")
    assert await _delete(tim, "owner", "m1", "owner") == [0, 0, 0]
    info = await _group(tim, public)
    assert (info["ErrorCode"], info["Owner_Account"], info["MemberNum"]) == (0, "", 0)
    assert info["MemberList"] == []
    assert (await _group(tim, live))["Owner_Account"] == ""
    await import_accounts(tim, "owner")
    assert (await _group(tim, public))["Owner_Account"] == ""


async def test_account_delete_touches_only_its_app(tim, server: Server) -> None:
    other = await server.new_app(rate_limit=0)
    async with server.client(other) as tim2:
        await import_accounts(tim2, "u", "o")
        kept = await create_group(tim2, "Public", Owner_Account="o",
                                  MemberList=[{"Member_Account": "u"}])
        await import_accounts(tim, "u")
        assert await _delete(tim, "u") == [0]
        assert await _members(tim2, kept) == (2, {"o": "Owner", "u": "Member"})


async def test_account_delete_emits_accounts_deleted(tim, server: Server, app,
                                                     caplog) -> None:
    await import_accounts(tim, "x", "y")
    seen: list[object] = []
    server.runtime.events.subscribe(seen.append)
    assert await _delete(tim, "nobody") == [70107]
    assert seen == []
    server.clock.pinned = 1_700_000_000.5
    assert await _delete(tim, "y", "nobody", "x", "y") == [0, 70107, 0, 0]
    assert len(seen) == 1 and isinstance(seen[0], AccountsDeleted)
    event = seen[0]
    assert (event.sdkappid, event.accounts, event.event_time_ms, event.origin.platform) == (
        app.sdkappid, ("y", "x"), 1_700_000_000_500, "RESTAPI")
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []



async def test_account_delete_alongside_membership_writes(tim) -> None:
    """Deletes, adds, removals and messages on the same groups at once: no deadlock, no
    internal error, and every group's MemberNum still counts its member rows."""
    import asyncio

    gone = [f"gone{i}" for i in range(6)]
    stay = [f"stay{i}" for i in range(12)]
    await import_accounts(tim, "owner", *gone, *stay)
    group_ids = [await create_group(tim, "Public", Owner_Account="owner", MemberList=[
        {"Member_Account": u} for u in gone + stay[:4]]) for _ in range(4)]

    async def delete(user: str) -> int:
        return (await tim.call("im_open_login_svc/account_delete",
                               {"DeleteItem": [{"UserID": user}]}))["ErrorCode"]

    async def add(group_id: str, users: list[str]) -> int:
        return (await tim.call("group_open_http_svc/add_group_member", {
            "GroupId": group_id, "MemberList": [{"Member_Account": u} for u in users]}
        ))["ErrorCode"]

    async def remove(group_id: str, user: str) -> int:
        return (await tim.call("group_open_http_svc/delete_group_member", {
            "GroupId": group_id, "MemberToDel_Account": [user]}))["ErrorCode"]

    async def send(group_id: str) -> int:
        return (await tim.call("group_open_http_svc/send_group_msg", {
            "GroupId": group_id, "Random": 1, "From_Account": "owner",
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x"}}]}
        ))["ErrorCode"]

    jobs = [delete(u) for u in gone]
    for i, group_id in enumerate(group_ids):
        jobs += [add(group_id, stay[4 + i:8 + i]), remove(group_id, stay[i]), send(group_id),
                 remove(group_id, gone[i])]
    codes = await asyncio.gather(*jobs)
    assert set(codes) == {0}, codes
    for group_id in group_ids:
        count, members = await _members(tim, group_id)
        assert count == len(members)
        assert not set(members) & set(gone)
