"""Every REST input gets its Tencent code: no internal error (10002/70500), no ERROR log.

Table-driven over every registered command (``dispatch.COMMANDS``): a valid sample body per
command, then each of its string fields set to a string holding U+0000, each integer field
set to values outside 64 bits, and each field (and an unknown one) replaced by deeply nested
JSON. SQLite and PostgreSQL must answer alike, so the expected code is the same on both.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from opentim.app import create_app
from opentim.protocol import dispatch
from opentim.runtime import Runtime
from opentim.settings import Settings
from tests.helpers import (
    REDIS_URL,
    Clock,
    Server,
    create_group,
    drop_redis_keys,
    import_accounts,
    redis_reachable,
    unavailable,
)

INTERNAL = {10002, 70500}
NUL = "a\u0000b"
HUGE_INTS = (2**63, 2**64, -(2**63) - 1, 10**30, -(10**30))
# In range for some fields and not others: only "no internal error" is asserted for these.
EDGE_INTS = (2**63 - 1, -(2**63), 2**32, 2**32 - 1, -1)


@dataclass
class World:
    """Accounts and groups the sample bodies refer to."""

    public: str
    community: str
    av: str
    community_next: str
    now: int
    imported: str  # created long ago, so history can be imported into it
    ticks: Iterator[int]  # strictly increasing SendTimes for import_group_msg

    def send_time(self) -> int:
        return self.now - 5000 + next(self.ticks)


@pytest.fixture
async def world(tim, server: Server) -> World:
    return await build_world(tim, server)


async def build_world(tim, server: Server) -> World:
    await import_accounts(tim, "a", "b", "c", "d")
    public = await create_group(tim, "Public", Owner_Account="a", MemberList=[
        {"Member_Account": "b"}, {"Member_Account": "d"}])
    community = await create_group(tim, "Community", Owner_Account="a", MemberList=[
        {"Member_Account": "b"}, {"Member_Account": "d"}])
    av = await create_group(tim, "AVChatRoom", Owner_Account="a")
    page = await tim.ok("group_open_http_svc/get_group_member_info",
                        {"GroupId": community, "Limit": 1})
    now = int(server.clock())
    imported = (await tim.ok("group_open_http_svc/import_group", {
        "Type": "Public", "Name": "old", "Owner_Account": "a", "CreateTime": now - 10_000,
        "MemberList": [{"Member_Account": "b"}]}))["GroupId"]
    return World(public, community, av, page["Next"], now, imported, itertools.count())


Sample = Callable[[World], dict[str, Any]]

_MSG_BODY = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]
_KV = [{"Key": "k", "Value": "v"}]


def _create(w: World, **extra: Any) -> dict[str, Any]:
    return {"Owner_Account": "a", "Type": "Public", "Name": "n", "Introduction": "i",
            "Notification": "n", "FaceUrl": "f", "MaxMemberCount": 100,
            "ApplyJoinOption": "FreeAccess", "InviteJoinOption": "FreeAccess",
            "AppDefinedData": _KV, "SupportTopic": 0,
            "MemberList": [{"Member_Account": "b", "Role": "Admin",
                            "AppMemberDefinedData": _KV}], **extra}


# Several samples per command where one body cannot reach every branch.
SAMPLES: dict[tuple[str, str], list[Sample]] = {
    ("im_open_login_svc", "account_import"): [
        lambda w: {"UserID": "n1", "Nick": "N", "FaceUrl": "http://f"}],
    ("im_open_login_svc", "multiaccount_import"): [
        lambda w: {"AccountList": [{"UserID": "n2", "Nick": "N", "FaceUrl": "u"}, "n3"]}],
    ("im_open_login_svc", "account_check"): [lambda w: {"CheckItem": [{"UserID": "a"}]}],
    ("im_open_login_svc", "account_delete"): [lambda w: {"DeleteItem": [{"UserID": "ghost"}]}],
    ("group_open_http_svc", "create_group"): [lambda w: _create(w, GroupId="new-g")],
    ("group_open_http_svc", "import_group"): [
        lambda w: _create(w, GroupId="imp-g", CreateTime=w.now - 100)],
    ("group_open_http_svc", "destroy_group"): [lambda w: {"GroupId": "ghost-group"}],
    ("group_open_http_svc", "get_group_info"): [lambda w: {
        "GroupIdList": [w.public], "ResponseFilter": {
            "GroupBaseInfoFilter": ["Name"], "MemberInfoFilter": ["Role"],
            "AppDefinedDataFilter_Group": ["k"], "AppDefinedDataFilter_GroupMember": ["k"]}}],
    ("group_open_http_svc", "get_group_member_info"): [
        lambda w: {"GroupId": w.public, "Limit": 10, "Offset": 1, "MemberInfoFilter": ["Role"],
                   "MemberRoleFilter": ["Member"], "AppDefinedDataFilter_GroupMember": ["k"]},
        lambda w: {"GroupId": w.community, "Limit": 1, "Next": w.community_next}],
    ("group_open_http_svc", "get_appid_group_list"): [
        lambda w: {"Limit": 10, "Next": 1, "GroupType": "Public"}],
    ("group_open_http_svc", "add_group_member"): [
        lambda w: {"GroupId": w.public, "MemberList": [{"Member_Account": "c"}], "Silence": 1}],
    ("group_open_http_svc", "delete_group_member"): [
        lambda w: {"GroupId": w.public, "MemberToDel_Account": ["ghost"], "Silence": 1,
                   "Reason": "r"}],
    ("group_open_http_svc", "get_online_member_num"): [lambda w: {"GroupId": w.av}],
    ("group_open_http_svc", "import_group_member"): [
        lambda w: {"GroupId": w.public, "MemberList": [
            {"Member_Account": "c", "Role": "Admin", "JoinTime": w.now, "UnreadMsgNum": 1}]}],
    ("group_open_http_svc", "send_group_msg"): [
        lambda w: {"GroupId": w.public, "Random": 1, "MsgBody": _MSG_BODY, "From_Account": "a"}],
    ("group_open_http_svc", "import_group_msg"): [
        lambda w: {"GroupId": w.imported, "RecentContactFlag": 0, "MsgList": [
            {"From_Account": "a", "SendTime": w.send_time(), "Random": 1,
             "MsgBody": _MSG_BODY}]}],
    ("group_open_http_svc", "set_unread_msg_num"): [
        lambda w: {"GroupId": w.public, "Member_Account": "b", "UnreadMsgNum": 1}],
    ("group_open_http_svc", "forbid_send_msg"): [
        lambda w: {"GroupId": w.public, "Members_Account": ["b"], "MuteTime": 60},
        lambda w: {"GroupId": w.av, "Members_Account": ["c"], "ShutUpTime": 0}],
    ("group_open_http_svc", "get_group_muted_account"): [lambda w: {"GroupId": w.public}],
    ("group_open_http_svc", "get_group_shutted_uin"): [lambda w: {"GroupId": w.av}],
    ("group_open_http_svc", "ban_group_member"): [
        lambda w: {"GroupId": w.av, "Members_Account": ["d"], "Duration": 60,
                   "Description": "d"}],
    ("group_open_http_svc", "unban_group_member"): [
        lambda w: {"GroupId": w.av, "Members_Account": ["d"]}],
    ("group_open_http_svc", "get_group_ban_member"): [
        lambda w: {"GroupId": w.av, "Limit": 10, "Offset": 0}],
    ("group_open_http_svc", "send_group_system_notification"): [
        lambda w: {"GroupId": w.public, "Content": "c", "ToMembers_Account": ["b"]}],
    ("group_open_http_svc", "group_msg_recall"): [
        lambda w: {"GroupId": w.public, "MsgSeqList": [{"MsgSeq": 1}], "Reason": "r"}],
    ("group_open_http_svc", "group_msg_get_simple"): [
        lambda w: {"GroupId": w.public, "ReqMsgNumber": 5, "ReqMsgSeq": 3,
                   "WithRecalledMsg": 1}],
    ("group_open_http_svc", "delete_group_msg_by_sender"): [
        lambda w: {"GroupId": w.public, "Sender_Account": "c"}],
    ("group_open_avchatroom_http_svc", "get_members"): [
        lambda w: {"GroupId": w.av, "Timestamp": 0, "Mark": 1000},
        lambda w: {"GroupId": w.community, "Timestamp": 0}],
    ("group_open_avchatroom_http_svc", "modify_user_info"): [
        lambda w: {"GroupId": w.av, "CommandType": 1,
                   "MemberList": [{"Member_Account": "a", "Marks": [500, 1000]}]}],
    ("group_open_avchatroom_http_svc", "add_robots"): [
        lambda w: {"GroupId": w.av, "Member_Account": ["a"]}],
    ("group_open_avchatroom_http_svc", "del_robots"): [
        lambda w: {"GroupId": w.av, "Member_Account": ["a"]}],
    ("profile", "portrait_set"): [
        lambda w: {"From_Account": "a", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "n"},
            {"Tag": "Tag_Profile_IM_Level", "Value": 1}]}],
    ("group_open_http_svc", "modify_group_base_info"): [lambda w: {
        "GroupId": w.public, "Name": "n2", "Introduction": "i", "Notification": "n",
        "FaceUrl": "f", "MaxMemberNum": 200, "ApplyJoinOption": "FreeAccess",
        "InviteJoinOption": "FreeAccess", "MuteAllMember": "Off", "AppDefinedData": _KV}],
    ("group_open_http_svc", "modify_group_member_info"): [lambda w: {
        "GroupId": w.public, "Member_Account": "b", "Role": "Admin", "MsgFlag": "AcceptNotNotify",
        "NameCard": "nc", "MuteTime": 0, "AppMemberDefinedData": _KV}],
    ("group_open_http_svc", "change_group_owner"): [
        lambda w: {"GroupId": w.community, "NewOwner_Account": "d"}],
    ("group_open_http_svc", "get_role_in_group"): [
        lambda w: {"GroupId": w.public, "User_Account": ["a", "b", "ghost"]}],
    ("group_open_http_svc", "get_joined_group_list"): [
        lambda w: {"Member_Account": "b", "Limit": 10, "Offset": 0, "GroupType": "Public",
                   "WithHugeGroups": 1, "WithNoActiveGroups": 1, "ResponseFilter": {
                       "GroupBaseInfoFilter": ["Name"], "SelfInfoFilter": ["Role"]}}],
    ("group_open_http_svc", "modify_group_attr"): [
        lambda w: {"GroupId": w.av, "GroupAttr": [{"key": "k", "value": "v"}]}],
    ("group_open_http_svc", "set_group_attr"): [
        lambda w: {"GroupId": w.public, "GroupAttr": [{"key": "k", "value": "v"}]}],
    ("group_open_http_svc", "delete_group_attr"): [
        lambda w: {"GroupId": w.public, "GroupAttr": [{"key": "k"}]}],
    ("group_open_http_svc", "clear_group_attr"): [lambda w: {"GroupId": w.av}],
    ("group_open_attr_http_svc", "get_group_attr"): [lambda w: {"GroupId": w.av}],
    ("im_open_login_svc", "kick"): [lambda w: {"UserID": "c"}],
    ("openim", "query_online_status"): [
        lambda w: {"To_Account": ["a", "ghost"], "IsNeedDetail": 1}],
    ("openim", "querystate"): [lambda w: {"To_Account": ["a"], "IsNeedDetail": 0}],
    ("openim", "sendmsg"): [lambda w: {
        "SyncOtherMachine": 1, "From_Account": "a", "To_Account": "b", "MsgSeq": 1,
        "MsgRandom": 1, "MsgLifeTime": 60, "MsgTimeStamp": w.now,
        "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback"],
        "SendMsgControl": ["NoUnread"], "MsgBody": _MSG_BODY, "CloudCustomData": "c",
        "SupportMessageExtension": 0, "IsNeedReadReceipt": 0,
        "OfflinePushInfo": {"PushFlag": 0, "Desc": "d"}}],
    ("openim", "batchsendmsg"): [lambda w: {
        "SyncOtherMachine": 2, "From_Account": "a", "To_Account": ["b", "c"], "MsgSeq": 1,
        "MsgRandom": 1, "MsgLifeTime": 60, "SendMsgControl": ["NoUnread"],
        "MsgBody": _MSG_BODY, "CloudCustomData": "c", "OfflinePushInfo": {"PushFlag": 0}}],
    ("openim", "importmsg"): [lambda w: {
        "SyncFromOldSystem": 2, "From_Account": "a", "To_Account": "b", "MsgSeq": 1,
        "MsgRandom": 1, "MsgTimeStamp": w.now - 100, "MsgBody": _MSG_BODY,
        "CloudCustomData": "c"}],
    ("openim", "admin_getroammsg"): [lambda w: {
        "Operator_Account": "a", "Peer_Account": "b", "MaxCnt": 10, "MinTime": 0,
        "MaxTime": w.now, "LastMsgKey": "1_1_1"}],
    ("openim", "admin_msgwithdraw"): [
        lambda w: {"From_Account": "a", "To_Account": "b", "MsgKey": "1_1_1"}],
    ("openim", "admin_set_msg_read"): [
        lambda w: {"Report_Account": "b", "Peer_Account": "a", "MsgReadTime": w.now}],
    ("openim", "get_c2c_unread_msg_num"): [
        lambda w: {"To_Account": "b", "Peer_Account": ["a"]}],
    ("profile", "portrait_get"): [
        lambda w: {"To_Account": ["a", "ghost"], "TagList": ["Tag_Profile_IM_Nick"]}],
}

Path = tuple[str | int, ...]


def _leaves(doc: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) in a JSON document, containers included, the root excluded."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in items:
        yield (*path, key), value
        yield from _leaves(value, (*path, key))


def _replace(doc: Any, path: Path, value: Any) -> Any:
    copy = msgspec.json.decode(msgspec.json.encode(doc))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_every_command_has_a_sample() -> None:
    dispatch.load_services()
    assert set(SAMPLES) == set(dispatch.COMMANDS)


async def _each_mutation(tim, world: World, mutate: Callable[[Path, Any], list[Any]],
                         only: Callable[[str, str], bool] = lambda service, name: True,
                         ) -> list[tuple[str, Path, Any, dict[str, Any]]]:
    """Send every mutation of every sample; returns (command, path, value, reply)."""
    out = []
    for (service, name), samples in SAMPLES.items():
        if not only(service, name):
            continue
        for sample in samples:
            for path, value in list(_leaves(sample(world))):
                for new in mutate(path, value):
                    # A fresh body each time: some samples differ per call (SendTime).
                    reply = await tim.call(f"{service}/{name}",
                                           _replace(sample(world), path, new))
                    out.append((f"{service}/{name}", path, new, reply))
    return out


def _invalid_parameter(command: str) -> int:
    service, name = command.split("/")
    return dispatch.COMMANDS[(service, name)].service.invalid_parameter.code


async def test_nul_in_any_string_is_a_parameter_error(tim, world: World, caplog) -> None:
    def nul(path: Path, value: Any) -> list[Any]:
        return [value[:1] + NUL + value[1:]] if isinstance(value, str) else []

    results = await _each_mutation(tim, world, nul)
    assert len(results) > 60
    wrong = [(cmd, path, reply) for cmd, path, _, reply in results
             if reply["ErrorCode"] != _invalid_parameter(cmd)]
    assert wrong == []
    assert _errors(caplog) == []


async def test_integers_beyond_64_bits_are_parameter_errors(tim, world: World, caplog) -> None:
    def huge(path: Path, value: Any) -> list[Any]:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        return [*HUGE_INTS, *EDGE_INTS] if is_int else []

    results = await _each_mutation(tim, world, huge)
    assert len(results) > 100
    internal = [(cmd, path, new, reply) for cmd, path, new, reply in results
                if reply["ErrorCode"] in INTERNAL]
    assert internal == []
    wrong = [(cmd, path, new, reply) for cmd, path, new, reply in results
             if new in HUGE_INTS and reply["ErrorCode"] != _invalid_parameter(cmd)]
    assert wrong == []
    assert _errors(caplog) == []


async def test_long_strings_never_overflow_a_column(tim, world: World, caplog) -> None:
    # Columns are VARCHAR(32/48/64/500) on PostgreSQL, unbounded on SQLite: lengths are
    # checked before SQL, so both answer alike.
    def long(path: Path, value: Any) -> list[Any]:
        return ["x" * 33, "x" * 65, "é" * 300, "x" * 5000] if isinstance(value, str) else []

    results = await _each_mutation(tim, world, long)
    assert len(results) > 200
    internal = [(cmd, path, reply) for cmd, path, _, reply in results
                if reply["ErrorCode"] in INTERNAL]
    assert internal == []
    assert _errors(caplog) == []


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [40, 300, 1000, 20000])
async def test_deeply_nested_values(tim, world: World, caplog, depth: int) -> None:
    nested = _nested(depth)
    raw_nested = b"[" * depth + b"]" * depth

    def deep(path: Path, value: Any) -> list[Any]:
        return [nested] if depth < 900 else []

    results = await _each_mutation(tim, world, deep)
    internal = [(cmd, path, reply) for cmd, path, _, reply in results
                if reply["ErrorCode"] in INTERNAL]
    assert internal == []
    for (service, name), samples in SAMPLES.items():
        for sample in samples:
            body = msgspec.json.encode(sample(world))
            raw = body[:-1] + b', "Deep": ' + raw_nested + b"}"
            reply = await tim.raw(f"{service}/{name}", raw)
            assert reply["ErrorCode"] not in INTERNAL, (service, name, reply)
            if depth >= 1000:
                assert reply["ErrorCode"] == 60003, (service, name, reply)
    assert _errors(caplog) == []


# --- the online list on Redis: cursors and marks reach Lua scripts and sorted sets -------


@pytest.fixture
async def redis_server(tmp_path) -> AsyncIterator[Server]:  # type: ignore[no-untyped-def]
    problem = await redis_reachable(REDIS_URL)
    if problem:
        unavailable("Redis", problem)
    prefix = f"opentim-test-{uuid.uuid4().hex[:12]}"
    clock = Clock()
    runtime = Runtime.create(Settings(db=f"sqlite:///{tmp_path}/redis.db", redis=REDIS_URL,
                                      app_refresh_interval=0.2), clock=clock, prefix=prefix)
    asgi = create_app(runtime=runtime)
    await runtime.start()
    try:
        yield Server(runtime, asgi, clock)
    finally:
        await runtime.close()
        await drop_redis_keys(REDIS_URL, prefix)


def _online_list(service: str, name: str) -> bool:
    return service == "group_open_avchatroom_http_svc" or name == "get_online_member_num"


async def test_online_list_inputs_on_redis(redis_server: Server, caplog) -> None:
    app = await redis_server.new_app(rate_limit=0)
    async with redis_server.client(app) as tim:
        world = await build_world(tim, redis_server)

        def mutate(path: Path, value: Any) -> list[Any]:
            if isinstance(value, str):
                return [value[:1] + NUL + value[1:]]
            if isinstance(value, int) and not isinstance(value, bool):
                return [*HUGE_INTS, *EDGE_INTS]
            return []

        results = await _each_mutation(tim, world, mutate, only=_online_list)
    assert len(results) > 30
    internal = [r for r in results if r[3]["ErrorCode"] in INTERNAL]
    assert internal == []
    wrong = [r for r in results if (isinstance(r[2], str) or r[2] in HUGE_INTS)
             and r[3]["ErrorCode"] != _invalid_parameter(r[0])]
    assert wrong == []
    assert _errors(caplog) == []


async def test_nul_error_names_the_field_and_an_escaped_backslash_is_text(tim, server) -> None:
    reply = await tim.raw("im_open_login_svc/multiaccount_import",
                          b'{"AccountList": [{"UserID": "ok"}, '
                          b'{"UserID": "x", "Nick": "a\\u0000"}]}')
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        70402, "invalid request: a string holds U+0000 (NUL) at `$.AccountList[1].Nick`")
    reply = await tim.raw("group_open_http_svc/get_group_info",
                          b'{"GroupIdList": ["g"], "Extra": {"k\\u0000": 1}}')
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        10004, "invalid request: a string holds U+0000 (NUL) at `$.Extra.k\\u0000`")
    # "\\u0000" in JSON is a backslash followed by "u0000": six printable characters.
    raw = b'{"UserID": "\\\\u0000", "Nick": "\\\\u0000"}'
    assert (await tim.raw("im_open_login_svc/account_import", raw))["ErrorCode"] == 0
    profiles = await server.runtime.store.accounts.profiles(tim.sdkappid, ["\\u0000"])
    assert profiles == {"\\u0000": ("\\u0000", "")}


async def test_msg_content_nesting_is_bounded(tim, world: World) -> None:
    def send(depth: int) -> dict[str, Any]:
        content: Any = "leaf"
        for _ in range(depth - 1):
            content = {"k": content}
        return {"GroupId": world.public, "Random": 1,
                "MsgBody": [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": content}}]}

    assert (await tim.call("group_open_http_svc/send_group_msg", send(32)))["ErrorCode"] == 0
    reply = await tim.call("group_open_http_svc/send_group_msg", send(33))
    assert (reply["ErrorCode"], reply["ErrorInfo"]) == (
        10004, "MsgContent nests arrays and objects more than 32 deep")


@pytest.mark.parametrize("inner", [
    b"99999999999999999999999:a",  # a join time past 64 bits
    b"1" * 5000 + b":a",  # past int()'s digit limit
    b"1:a\x00b",  # a NUL the body check cannot see: it is inside the base64
    b"1:" + b"x" * 40,  # no account is that long
    b"1_0:a",  # int() would take it
    b"no colon",
])
async def test_community_next_tokens_no_page_returned(tim, world: World, caplog,
                                                      inner: bytes) -> None:
    import base64

    token = base64.urlsafe_b64encode(inner).decode()
    reply = await tim.call("group_open_http_svc/get_group_member_info",
                           {"GroupId": world.community, "Limit": 1, "Next": token})
    assert reply["ErrorCode"] == 10004, reply
    assert reply["ErrorInfo"].startswith("Next "), reply
    assert len(reply["ErrorInfo"]) < 120
    assert _errors(caplog) == []
