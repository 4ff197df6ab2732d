"""``v4/profile``: portrait_set and portrait_get, end to end, on SQLite and PostgreSQL.

Every tag's round trip, every error path with its exact code, the 100-account limit in one
query, custom tags declared per app (and through ``opentim app``), account_import's Nick and
FaceUrl as the same profile, and the online list's NickName/Avatar after a change, over
real gateway connections on both presence backends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from opentim.app import create_app
from opentim.client.rest import RestClient
from opentim.domain import profiles as rules
from opentim.domain.apps import App
from opentim.runtime import Runtime
from opentim.settings import Settings
from opentim.storage.base import AccountProfile
from opentim.storage.database import Database
from opentim.storage.sql import SqlStore
from tests.helpers import (
    PG_URL,
    Clock,
    LiveServer,
    Server,
    create_group,
    ensure_pg_database,
    eventually,
    import_accounts,
    members,
    sdkappids,
    unavailable,
)

SET, GET = "profile/portrait_set", "profile/portrait_get"
NICK, IMAGE = "Tag_Profile_IM_Nick", "Tag_Profile_IM_Image"
CUSTOM = "Tag_Profile_Custom_Test"

# One value of every standard tag, each different from its default.
EVERY_TAG: dict[str, Any] = {
    NICK: "Alice 爱丽丝",
    "Tag_Profile_IM_Gender": "Gender_Type_Female",
    "Tag_Profile_IM_BirthDay": 20190419,
    "Tag_Profile_IM_Location": "Shenzhen",
    "Tag_Profile_IM_SelfSignature": "I'm Test1",
    "Tag_Profile_IM_AllowType": "AllowType_Type_DenyAny",
    "Tag_Profile_IM_Language": 2,
    IMAGE: "https://cdn.example/alice.png",
    "Tag_Profile_IM_MsgSettings": 1,
    "Tag_Profile_IM_AdminForbidType": "AdminForbid_Type_SendOut",
    "Tag_Profile_IM_Level": 4294967295,
    "Tag_Profile_IM_Role": 7,
}
DEFAULTS: dict[str, Any] = {
    NICK: "", "Tag_Profile_IM_Gender": "Gender_Type_Unknown", "Tag_Profile_IM_BirthDay": 0,
    "Tag_Profile_IM_Location": "", "Tag_Profile_IM_SelfSignature": "",
    "Tag_Profile_IM_AllowType": "AllowType_Type_NeedConfirm", "Tag_Profile_IM_Language": 0,
    IMAGE: "", "Tag_Profile_IM_MsgSettings": 0,
    "Tag_Profile_IM_AdminForbidType": "AdminForbid_Type_None", "Tag_Profile_IM_Level": 0,
    "Tag_Profile_IM_Role": 0,
}


def items(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"Tag": tag, "Value": value} for tag, value in values.items()]


async def profile_of(tim: RestClient, account: str, tags: list[str]) -> dict[str, Any]:
    reply = await tim.ok(GET, {"To_Account": [account], "TagList": tags})
    [item] = reply["UserProfileItem"]
    assert (item["To_Account"], item["ResultCode"], item["ResultInfo"]) == (account, 0, "")
    assert [i["Tag"] for i in item["ProfileItem"]] == tags  # request order
    return {i["Tag"]: i["Value"] for i in item["ProfileItem"]}


@pytest.fixture
async def custom_app(server: Server) -> App:
    return await server.new_app(rate_limit=0, profile_custom_tags=frozenset({"Test", "Lvl"}))


@pytest.fixture
async def ctim(server: Server, custom_app: App) -> AsyncIterator[RestClient]:
    async with server.client(custom_app) as client:
        await import_accounts(client, "alice", "bob")
        yield client


# --- round trips -----------------------------------------------------------------------------


async def test_every_standard_tag_round_trips(tim: RestClient) -> None:
    await tim.ok("im_open_login_svc/account_import", {"UserID": "alice"})
    assert await profile_of(tim, "alice", list(DEFAULTS)) == DEFAULTS  # never set
    reply = await tim.ok(SET, {"From_Account": "alice", "ProfileItem": items(EVERY_TAG)})
    assert reply == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
                     "ErrorDisplay": ""}
    assert await profile_of(tim, "alice", list(EVERY_TAG)) == EVERY_TAG
    # Each tag alone, in any order.
    for tag in reversed(EVERY_TAG):
        assert await profile_of(tim, "alice", [tag]) == {tag: EVERY_TAG[tag]}


async def test_the_reply_shape(tim: RestClient) -> None:
    await import_accounts(tim, "id1", "id2")
    await tim.ok(SET, {"From_Account": "id1", "ProfileItem": items({NICK: "NickNameTest1"})})
    reply = await tim.ok(GET, {"To_Account": ["id1", "id2"], "TagList": [NICK]})
    assert reply == {
        "ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
        "UserProfileItem": [
            {"To_Account": "id1", "ProfileItem": [{"Tag": NICK, "Value": "NickNameTest1"}],
             "ResultCode": 0, "ResultInfo": ""},
            {"To_Account": "id2", "ProfileItem": [{"Tag": NICK, "Value": "nick-id2"}],
             "ResultCode": 0, "ResultInfo": ""}],
        "ErrorDisplay": ""}  # no Fail_Account: nobody failed


async def test_a_set_changes_only_its_tags_and_the_later_duplicate_wins(tim) -> None:
    await import_accounts(tim, "alice")
    await tim.ok(SET, {"From_Account": "alice", "ProfileItem": items(EVERY_TAG)})
    await tim.ok(SET, {"From_Account": "alice", "ProfileItem": [
        {"Tag": "Tag_Profile_IM_Level", "Value": 1}, {"Tag": "Tag_Profile_IM_Level", "Value": 9},
        {"Tag": "Tag_Profile_IM_Location", "Value": ""}]})
    assert await profile_of(tim, "alice", list(EVERY_TAG)) == {
        **EVERY_TAG, "Tag_Profile_IM_Level": 9, "Tag_Profile_IM_Location": ""}


async def test_limits_are_bytes_of_utf8(tim: RestClient) -> None:
    await import_accounts(tim, "alice")
    longest = "é" * 250  # 500 bytes
    await tim.ok(SET, {"From_Account": "alice", "ProfileItem": items(
        {NICK: longest, "Tag_Profile_IM_SelfSignature": "x" * 500, IMAGE: "u" * 500,
         "Tag_Profile_IM_Location": "l" * 500})})
    assert (await profile_of(tim, "alice", [NICK]))[NICK] == longest
    for tag in (NICK, "Tag_Profile_IM_SelfSignature", IMAGE, "Tag_Profile_IM_Location"):
        reply = await tim.call(SET, {"From_Account": "alice",
                                     "ProfileItem": items({tag: longest + "a"})})
        assert (reply["ErrorCode"], reply["ErrorInfo"]) == (40601, f"{tag} exceeds 500 bytes")


async def test_account_import_nick_and_face_url_are_the_profile(tim: RestClient) -> None:
    await tim.ok("im_open_login_svc/account_import",
                 {"UserID": "alice", "Nick": "imported", "FaceUrl": "http://img/a.png"})
    assert await profile_of(tim, "alice", [NICK, IMAGE]) == {
        NICK: "imported", IMAGE: "http://img/a.png"}
    await tim.ok(SET, {"From_Account": "alice", "ProfileItem": items(
        {NICK: "set", "Tag_Profile_IM_Level": 3})})
    # Re-importing without Nick keeps the profile's; with it, account_import sets it.
    await tim.ok("im_open_login_svc/account_import", {"UserID": "alice"})
    assert await profile_of(tim, "alice", [NICK, IMAGE, "Tag_Profile_IM_Level"]) == {
        NICK: "set", IMAGE: "http://img/a.png", "Tag_Profile_IM_Level": 3}
    await tim.ok("im_open_login_svc/multiaccount_import",
                 {"AccountList": [{"UserID": "alice", "Nick": "again", "FaceUrl": ""}]})
    assert await profile_of(tim, "alice", [NICK, IMAGE, "Tag_Profile_IM_Level"]) == {
        NICK: "again", IMAGE: "", "Tag_Profile_IM_Level": 3}


async def test_a_deleted_account_takes_its_profile(tim: RestClient) -> None:
    await import_accounts(tim, "alice")
    await tim.ok(SET, {"From_Account": "alice", "ProfileItem": items(EVERY_TAG)})
    await tim.ok("im_open_login_svc/account_delete", {"DeleteItem": [{"UserID": "alice"}]})
    reply = await tim.call(GET, {"To_Account": ["alice"], "TagList": [NICK]})
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        40003, "account 'alice' has not been imported")
    await tim.ok("im_open_login_svc/account_import", {"UserID": "alice"})
    assert await profile_of(tim, "alice", list(DEFAULTS)) == DEFAULTS


async def test_concurrent_sets_of_different_tags_all_persist(tim: RestClient) -> None:
    await import_accounts(tim, "alice")
    tags = ["Tag_Profile_IM_BirthDay", "Tag_Profile_IM_Language", "Tag_Profile_IM_MsgSettings",
            "Tag_Profile_IM_Level", "Tag_Profile_IM_Role"]
    await asyncio.gather(*(
        tim.ok(SET, {"From_Account": "alice", "ProfileItem": items({tag: 100 + i})})
        for i, tag in enumerate(tags)))
    assert await profile_of(tim, "alice", tags) == {t: 100 + i for i, t in enumerate(tags)}


# --- portrait_set errors ---------------------------------------------------------------------


@pytest.mark.parametrize(("body", "code"), [
    ({"ProfileItem": items({NICK: "x"})}, 40001),  # no From_Account
    ({"From_Account": 7, "ProfileItem": items({NICK: "x"})}, 40001),
    ({"From_Account": "alice"}, 40001),  # no ProfileItem
    ({"From_Account": "alice", "ProfileItem": []}, 40001),
    ({"From_Account": "alice", "ProfileItem": {"Tag": NICK, "Value": "x"}}, 40001),
    ({"From_Account": "alice", "ProfileItem": [{"Tag": NICK}]}, 40001),  # no Value
    ({"From_Account": "alice", "ProfileItem": [{"Value": "x"}]}, 40001),  # no Tag
    ({"From_Account": "alice", "ProfileItem": [{"Tag": 1, "Value": "x"}]}, 40001),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Level": 2**64})}, 40001),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Nickname": "x"})}, 40009),
    ({"From_Account": "alice", "ProfileItem": items({"tag_profile_im_nick": "x"})}, 40009),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_Custom_Nope": "x"})}, 40009),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_Custom_": "x"})}, 40009),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_SNS_IM_Remark": "x"})}, 40009),
    ({"From_Account": "alice", "ProfileItem": items({NICK: 5})}, 40610),
    ({"From_Account": "alice", "ProfileItem": items({IMAGE: None})}, 40610),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Gender": 1})}, 40610),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_BirthDay": "20190419"})},
     40610),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Level": True})}, 40610),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Role": 1.5})}, 40610),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Language": [1]})}, 40610),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Location": {"a": 1}})},
     40610),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Gender": "Male"})}, 40605),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_AllowType": ""})}, 40605),
    ({"From_Account": "alice", "ProfileItem": items(
        {"Tag_Profile_IM_AdminForbidType": "AdminForbid_Type_All"})}, 40605),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_BirthDay": -1})}, 40605),
    ({"From_Account": "alice", "ProfileItem": items({"Tag_Profile_IM_Level": 2**32})}, 40605),
    ({"From_Account": "ghost", "ProfileItem": items({NICK: "x"})}, 40003),
    ({"From_Account": "x" * 5000, "ProfileItem": items({NICK: "x"})}, 40003),
    ({"From_Account": "", "ProfileItem": items({NICK: "x"})}, 40003),
])
async def test_portrait_set_errors(tim: RestClient, body: dict[str, Any], code: int) -> None:
    await import_accounts(tim, "alice")
    reply = await tim.call(SET, body)
    assert reply["ActionStatus"] == "FAIL" and reply["ErrorCode"] == code, reply
    assert await profile_of(tim, "alice", [NICK, "Tag_Profile_IM_Level"]) == {
        NICK: "nick-alice", "Tag_Profile_IM_Level": 0}


async def test_one_bad_item_fails_the_whole_set(tim: RestClient) -> None:
    await import_accounts(tim, "alice")
    reply = await tim.call(SET, {"From_Account": "alice", "ProfileItem": items(
        {NICK: "changed", "Tag_Profile_IM_Level": 5, "Tag_Profile_IM_Gender": "F"})})
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        40605, "Tag_Profile_IM_Gender takes one of Gender_Type_Unknown, Gender_Type_Female, "
               "Gender_Type_Male, got 'F'")
    assert await profile_of(tim, "alice", [NICK, "Tag_Profile_IM_Level"]) == {
        NICK: "nick-alice", "Tag_Profile_IM_Level": 0}


async def test_error_texts_name_the_tag(tim: RestClient) -> None:
    await import_accounts(tim, "alice")
    cases = [
        ({"Tag_Profile_IM_BirthDay": "x"}, 40610,
         "Tag_Profile_IM_BirthDay takes an integer (uint32), got a string"),
        ({NICK: 1}, 40610, "Tag_Profile_IM_Nick takes a string, got an integer"),
        ({"Tag_Profile_IM_Role": -5}, 40605,
         "Tag_Profile_IM_Role takes an integer from 0 to 4294967295, got -5"),
        ({"Tag_Profile_IM_Nik": "x"}, 40009, "unknown profile tag 'Tag_Profile_IM_Nik'"),
    ]
    for values, code, info in cases:
        reply = await tim.call(SET, {"From_Account": "alice", "ProfileItem": items(values)})
        assert (reply["ErrorCode"], reply["ErrorInfo"]) == (code, info)
    reply = await tim.call(SET, {"From_Account": "ghost", "ProfileItem": items({NICK: "x"})})
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        40003, "account 'ghost' has not been imported")


async def test_edge_codes_of_the_profile_service(tim: RestClient) -> None:
    reply = await tim.raw(SET, b'{"From_Account": "a\\u0000", "ProfileItem": []}')
    assert reply["ErrorCode"] == 40001
    reply = await tim.call("profile/portrait_sett", {})
    assert reply["ErrorCode"] == 60009 and "did you mean 'portrait_set'" in reply["ErrorInfo"]
    reply = await tim.call("profile/friend_get", {})
    assert reply["ErrorCode"] == 60009


# --- portrait_get errors and per-account results ---------------------------------------------


@pytest.mark.parametrize(("body", "code"), [
    ({"TagList": [NICK]}, 40002),  # no To_Account
    ({"To_Account": [], "TagList": [NICK]}, 40002),
    ({"To_Account": "alice", "TagList": [NICK]}, 40001),
    ({"To_Account": [1], "TagList": [NICK]}, 40001),
    ({"To_Account": [f"u{i}" for i in range(101)], "TagList": [NICK]}, 40001),
    ({"To_Account": ["alice"]}, 40001),  # no TagList
    ({"To_Account": ["alice"], "TagList": []}, 40001),
    ({"To_Account": ["alice"], "TagList": NICK}, 40001),
    ({"To_Account": ["alice"], "TagList": [NICK, "Tag_Profile_IM_Age"]}, 40009),
    ({"To_Account": ["alice"], "TagList": ["Tag_Profile_Custom_Test"]}, 40009),
    ({"To_Account": ["ghost"], "TagList": [NICK]}, 40003),
    ({"To_Account": ["ghost", "x" * 5000], "TagList": [NICK]}, 40003),
])
async def test_portrait_get_errors(tim: RestClient, body: dict[str, Any], code: int) -> None:
    await import_accounts(tim, "alice")
    reply = await tim.call(GET, body)
    assert reply["ActionStatus"] == "FAIL" and reply["ErrorCode"] == code, reply


async def test_missing_accounts_fail_one_by_one(tim: RestClient) -> None:
    await import_accounts(tim, "id1", "id3")
    reply = await tim.ok(GET, {"To_Account": ["id1", "ghost", "id3", "id1"], "TagList": [NICK]})
    assert reply["UserProfileItem"] == [
        {"To_Account": "id1", "ProfileItem": [{"Tag": NICK, "Value": "nick-id1"}],
         "ResultCode": 0, "ResultInfo": ""},
        {"To_Account": "ghost", "ResultCode": 40003,
         "ResultInfo": "account 'ghost' has not been imported"},
        {"To_Account": "id3", "ProfileItem": [{"Tag": NICK, "Value": "nick-id3"}],
         "ResultCode": 0, "ResultInfo": ""}]  # each account once, in request order
    assert reply["Fail_Account"] == ["ghost"]


async def test_100_accounts(tim: RestClient) -> None:
    users = [f"p{i:03d}" for i in range(100)]
    await import_accounts(tim, *users)
    await tim.ok(SET, {"From_Account": "p042", "ProfileItem": items(EVERY_TAG)})
    tags = [NICK, IMAGE, "Tag_Profile_IM_Gender", "Tag_Profile_IM_Level"]
    reply = await tim.ok(GET, {"To_Account": users[::-1], "TagList": tags})
    got = reply["UserProfileItem"]
    assert [item["To_Account"] for item in got] == users[::-1]
    assert got[100 - 1 - 42]["ProfileItem"] == items({t: EVERY_TAG[t] for t in tags})
    assert got[0]["ProfileItem"] == items({NICK: "nick-p099", IMAGE: "http://img.test/p099.png",
                                           "Tag_Profile_IM_Gender": "Gender_Type_Unknown",
                                           "Tag_Profile_IM_Level": 0})


# --- custom tags -----------------------------------------------------------------------------


async def test_declared_custom_tags(ctim: RestClient) -> None:
    assert await profile_of(ctim, "alice", [CUSTOM, "Tag_Profile_Custom_Lvl"]) == {
        CUSTOM: "", "Tag_Profile_Custom_Lvl": ""}  # never set
    await ctim.ok(SET, {"From_Account": "alice", "ProfileItem": items(
        {CUSTOM: "Custom Data1", "Tag_Profile_Custom_Lvl": "é" * 250, NICK: "A"})})
    assert await profile_of(ctim, "alice", [NICK, CUSTOM, "Tag_Profile_Custom_Lvl"]) == {
        NICK: "A", CUSTOM: "Custom Data1", "Tag_Profile_Custom_Lvl": "é" * 250}
    assert await profile_of(ctim, "bob", [CUSTOM]) == {CUSTOM: ""}


@pytest.mark.parametrize(("tag", "value", "code"), [
    (CUSTOM, 1, 40610),  # custom tags take strings only
    (CUSTOM, None, 40610),
    (CUSTOM, "x" * 501, 40601),
    ("Tag_Profile_Custom_test", "x", 40009),  # keywords are case-sensitive
    ("Tag_Profile_Custom_Other", "x", 40009),
])
async def test_custom_tag_errors(ctim: RestClient, tag: str, value: Any, code: int) -> None:
    reply = await ctim.call(SET, {"From_Account": "alice", "ProfileItem": items({tag: value})})
    assert reply["ErrorCode"] == code, reply


async def test_an_undeclared_tag_is_refused_and_its_value_kept(server: Server, custom_app: App,
                                                              ctim: RestClient) -> None:
    await ctim.ok(SET, {"From_Account": "alice", "ProfileItem": items({CUSTOM: "kept"})})
    await server.runtime.store.apps.save(
        dataclasses.replace(custom_app, profile_custom_tags=frozenset({"Lvl"})), now=1)
    await server.runtime.apps.refresh()
    for path, body in ((GET, {"To_Account": ["alice"], "TagList": [CUSTOM]}),
                       (SET, {"From_Account": "alice", "ProfileItem": items({CUSTOM: "x"})})):
        reply = await ctim.call(path, body)
        assert (reply["ErrorCode"], reply["ErrorInfo"]) == (40009, (
            f"custom profile tag 'Tag_Profile_Custom_Test' is not declared for app "
            f"{custom_app.sdkappid}: `opentim app update --profile-custom-tag` declares it "
            "(docs/configuration.md#custom-profile-tags)"))
    await server.runtime.store.apps.save(custom_app, now=2)
    await server.runtime.apps.refresh()
    assert await profile_of(ctim, "alice", [CUSTOM]) == {CUSTOM: "kept"}


def test_custom_keywords() -> None:
    assert rules.custom_keyword("Test") == "Test"
    assert rules.custom_keyword("Tag_Profile_Custom_abcdefgh") == "abcdefgh"
    for bad in ("", "abcdefghi", "Te_st", "Test1", "Tést", "Tag_Profile_Custom_"):
        with pytest.raises(ValueError, match="1 to 8 English letters"):
            rules.custom_keyword(bad)


def _opentim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opentim", *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ))


async def test_opentim_app_declares_custom_tags(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    sdkappid = str(next(sdkappids))
    created = await asyncio.to_thread(
        _opentim, "app", "create", "--sdkappid", sdkappid, "--profile-custom-tag", "Test",
        "--profile-custom-tag", "Tag_Profile_Custom_Lvl", "--db", db)
    assert created.returncode == 0, created.stderr
    assert "profile tags:  Tag_Profile_Custom_Lvl, Tag_Profile_Custom_Test" in created.stdout
    bad = await asyncio.to_thread(_opentim, "app", "update", "--sdkappid", sdkappid,
                                  "--profile-custom-tag", "Level2", "--db", db)
    assert bad.returncode == 2 and "1 to 8 English letters" in bad.stderr
    clock = Clock()
    runtime = Runtime.create(Settings(db=db, app_refresh_interval=0.2), clock=clock)
    await runtime.start()
    try:
        server = Server(runtime, create_app(runtime=runtime), clock)
        app = await runtime.store.apps.get(int(sdkappid))
        assert app is not None and app.profile_custom_tags == {"Test", "Lvl"}
        async with server.client(app) as tim:
            await import_accounts(tim, "alice")
            await tim.ok(SET, {"From_Account": "alice", "ProfileItem": items({CUSTOM: "v"})})
            updated = await asyncio.to_thread(
                _opentim, "app", "update", "--sdkappid", sdkappid, "--profile-custom-tag", "Lvl",
                "--db", db)
            assert updated.returncode == 0, updated.stderr
            assert "Tag_Profile_Custom_Test" not in updated.stdout
            await runtime.apps.refresh()
            reply = await tim.call(GET, {"To_Account": ["alice"], "TagList": [CUSTOM]})
            assert reply["ErrorCode"] == 40009
            cleared = await asyncio.to_thread(
                _opentim, "app", "update", "--sdkappid", sdkappid, "--no-profile-custom-tags",
                "--db", db)
            assert cleared.returncode == 0 and "profile tags" not in cleared.stdout
            stored = await runtime.store.apps.get(int(sdkappid))
            assert stored is not None and stored.profile_custom_tags == frozenset()
    finally:
        await runtime.close()


# --- the online list -------------------------------------------------------------------------


async def test_online_list_nick_and_avatar_come_from_the_profile(live: LiveServer) -> None:
    """Who joins after portrait_set shows the new NickName/Avatar. A member already online
    keeps what it came online with until it is offline and comes back (here: a new
    connection; docs/rest-commands.md#profile)."""
    app = await live.new_app(rate_limit=0)
    async with live.client(app) as tim:
        await import_accounts(tim, "alice", "bob")
        group_id = await create_group(tim, "AVChatRoom")

        def shown(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
            return {r["Member_Account"]: (r["NickName"], r["Avatar"]) for r in rows}

        async with live.connect(app, "alice") as alice:
            await alice.join_group(group_id)
            for user, nick in (("alice", "Alice 2"), ("bob", "Bob 2")):
                await tim.ok(SET, {"From_Account": user, "ProfileItem": items(
                    {NICK: nick, IMAGE: f"http://img/{user}2.png"})})
            async with live.connect(app, "bob") as bob:
                await bob.join_group(group_id)
                rows, _ = await members(tim, group_id)
                assert shown(rows) == {"bob": ("Bob 2", "http://img/bob2.png"),
                                       "alice": ("nick-alice", "http://img.test/alice.png")}

        async def everyone_left() -> bool:
            return not (await members(tim, group_id))[0]

        # The server ends a connection after the client closed it: wait for it (a new
        # connection of a member still online would join the row it already has).
        await eventually(everyone_left, "both connections leave the list")
        async with live.connect(app, "alice") as alice:
            await alice.join_group(group_id)
            rows, _ = await members(tim, group_id)
            assert shown(rows) == {"alice": ("Alice 2", "http://img/alice2.png")}


# --- the PostgreSQL read path ----------------------------------------------------------------


async def test_portraits_read_alike_on_asyncpg_and_sqlalchemy_in_one_query() -> None:
    error = await ensure_pg_database(PG_URL)
    if error:
        unavailable("PostgreSQL", error)
    fast_db, ref_db = Database(PG_URL), Database(PG_URL, direct_reads=False)
    await fast_db.migrate()
    try:
        fast, ref = SqlStore(fast_db), SqlStore(ref_db)
        a = next(sdkappids)
        await fast.accounts.import_profiles(a, [AccountProfile("u0", "零", "f"),
                                                AccountProfile("u1")], now=1)
        assert await fast.accounts.set_portrait(a, "u0", nick=None, face_url="g", tags={
            "Tag_Profile_IM_Level": 3, CUSTOM: "值"})
        assert not await fast.accounts.set_portrait(a, "nobody", nick="x", face_url=None,
                                                    tags={})
        for ids in (["u0", "u1", "nobody", "u0"], ["nobody"], []):
            assert await fast.accounts.portraits(a, ids) == await ref.accounts.portraits(a, ids)
        got = await fast.accounts.portraits(a, ["u0", "u1"])
        assert (got["u0"].nick, got["u0"].face_url, got["u0"].tags) == (
            "零", "g", {"Tag_Profile_IM_Level": 3, CUSTOM: "值"})
        assert got["u1"].tags == {}
        assert fast_db.fallback_reads == 0
        # 100 accounts: one SELECT (counted where reads go through SQLAlchemy's engine).
        users = [f"p{i}" for i in range(100)]
        await fast.accounts.import_profiles(a, [AccountProfile(u) for u in users], now=1)
        seen: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement)

        event.listen(ref_db.engine.sync_engine, "before_cursor_execute", record)
        try:
            assert len(await ref.accounts.portraits(a, users)) == 100
        finally:
            event.remove(ref_db.engine.sync_engine, "before_cursor_execute", record)
        assert len(seen) == 1 and seen[0].lstrip().startswith("SELECT"), seen
    finally:
        await fast_db.close()
        await ref_db.close()
