"""im_open_login_svc: account_import, multiaccount_import, account_check, account_delete."""

from __future__ import annotations

from tests.conftest import Server


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
        {"UserID": "bob", "ResultCode": 70107, "ResultInfo": "account does not exist"},
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
    profiles = await server.runtime.store.get_profiles(app.sdkappid, ["u"])
    assert profiles == {"u": ("N2", "F1")}


async def test_multiaccount_import_both_shapes(tim, server: Server, app) -> None:
    reply = await tim.ok("im_open_login_svc/multiaccount_import",
                         {"AccountList": [{"UserID": "a", "Nick": "A"}, {"UserID": "b"}]})
    assert reply["FailAccounts"] == []
    reply = await tim.ok("im_open_login_svc/multiaccount_import", {"Accounts": ["c", "d"]})
    assert reply["FailAccounts"] == []
    assert set((await _status(tim, "a", "b", "c", "d")).values()) == {"Imported"}
    assert (await server.runtime.store.get_profiles(app.sdkappid, ["a"]))["a"][0] == "A"


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
