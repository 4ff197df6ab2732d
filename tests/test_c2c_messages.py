"""One-to-one messages (openim): sending, batch sending, import, history, withdrawal, read
marks and unread counts; callbacks; delivery through real gateway connections."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from opentim.client.rest import RestClient
from opentim.client.session import GatewayError
from opentim.domain import c2c as rules
from opentim.domain.apps import App
from opentim.events import C2CMessageSent, UserPush
from tests.helpers import (
    LiveServer,
    Received,
    Receiver,
    Server,
    import_accounts,
    live_server,
    live_servers,
    read_body,
    serve_asgi,
)

SEND = "openim/sendmsg"
BATCH = "openim/batchsendmsg"
IMPORT = "openim/importmsg"
ROAM = "openim/admin_getroammsg"
WITHDRAW = "openim/admin_msgwithdraw"
SET_READ = "openim/admin_set_msg_read"
UNREAD = "openim/get_c2c_unread_msg_num"
BEFORE = "C2C.CallbackBeforeSendMsg"
AFTER = "C2C.CallbackAfterSendMsg"
AFTER_WITHDRAW = "C2C.CallbackAfterMsgWithDraw"

_randoms = itertools.count(1000)
_seqs = itertools.count(1)


def text(value: str = "hi") -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


def message(to: Any, value: str = "hi", **fields: Any) -> dict[str, Any]:
    """A sendmsg body. MsgSeq increases from one call to the next (messages of one second
    are in MsgSeq order), unless given; None leaves a field out."""
    body = {"To_Account": to, "MsgRandom": next(_randoms), "MsgSeq": next(_seqs),
            "MsgBody": text(value), **fields}
    return {k: v for k, v in body.items() if v is not None}


async def roam(tim: RestClient, operator: str, peer: str, **fields: Any) -> dict[str, Any]:
    return await tim.ok(ROAM, {"Operator_Account": operator, "Peer_Account": peer,
                               "MaxCnt": 100, "MinTime": 0, "MaxTime": 2**40, **fields})


async def texts(tim: RestClient, operator: str, peer: str) -> list[str]:
    return [m["MsgBody"][0]["MsgContent"]["Text"] if m["MsgBody"] else ""
            for m in (await roam(tim, operator, peer))["MsgList"]]


async def unread_total(tim: RestClient, account: str) -> int:
    return (await tim.ok(UNREAD, {"To_Account": account}))["AllC2CUnreadMsgNum"]


async def unread_from(tim: RestClient, account: str, peer: str) -> int:
    reply = await tim.ok(UNREAD, {"To_Account": account, "Peer_Account": [peer]})
    return reply["C2CUnreadMsgNumList"][0]["C2CUnreadMsgNum"]


async def codes(tim: RestClient, path: str, cases: list[tuple[dict[str, Any], int]]) -> None:
    got = [((await tim.call(path, body))["ErrorCode"], code) for body, code in cases]
    assert [g for g, _ in got] == [c for _, c in got], list(zip(cases, got, strict=True))


@pytest.fixture
def pinned(server: Server) -> int:
    server.clock.pinned = float(int(server.clock()))
    return int(server.clock())


# --- sendmsg ------------------------------------------------------------------------------


async def test_sendmsg_keeps_the_message_and_answers_its_key(tim, pinned: int) -> None:
    await import_accounts(tim, "a", "b")
    reply = await tim.ok(SEND, {"SyncOtherMachine": 1, "From_Account": "a",
                                "To_Account": "b", "MsgSeq": 93847636, "MsgRandom": 1287657,
                                "MsgBody": text("hi, beauty"),
                                "CloudCustomData": "your cloud custom data",
                                "SupportMessageExtension": 0,
                                "OfflinePushInfo": {"PushFlag": 0, "Desc": "d"}})
    assert reply == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
                     "MsgTime": pinned, "MsgKey": f"93847636_1287657_{pinned}"}
    page = await roam(tim, "b", "a")
    assert page["Complete"] == 1 and page["MsgCnt"] == 1
    assert page["LastMsgTime"] == pinned and page["LastMsgKey"] == reply["MsgKey"]
    assert page["MsgList"] == [{
        "From_Account": "a", "To_Account": "b", "MsgSeq": 93847636, "MsgRandom": 1287657,
        "MsgTimeStamp": pinned, "MsgFlagBits": 0, "IsPeerRead": 0, "MsgKey": reply["MsgKey"],
        "MsgBody": text("hi, beauty"), "CloudCustomData": "your cloud custom data"}]
    assert (await roam(tim, "a", "b"))["MsgList"] == page["MsgList"]  # either side
    assert await unread_total(tim, "b") == 1 and await unread_total(tim, "a") == 0
    assert await unread_from(tim, "b", "a") == 1


async def test_the_admin_sends_as_itself_without_from_account(tim) -> None:
    await import_accounts(tim, "b")
    key = (await tim.ok(SEND, message("b", MsgSeq=None)))["MsgKey"]
    msg, = (await roam(tim, "b", "administrator"))["MsgList"]
    assert (msg["From_Account"], msg["MsgKey"]) == ("administrator", key)
    assert len(key.split("_")) == 3  # a MsgSeq of the server's choosing


async def test_sendmsg_errors(tim) -> None:
    await import_accounts(tim, "a", "b")
    ok = message("b", From_Account="a")
    cases: list[tuple[dict[str, Any], int]] = [
        ({k: v for k, v in ok.items() if k != "To_Account"}, 90003),
        ({**ok, "To_Account": "ghost"}, 90003),
        ({**ok, "To_Account": "x" * 33}, 90003),
        ({**ok, "To_Account": ""}, 90003),
        ({k: v for k, v in ok.items() if k != "MsgRandom"}, 90005),
        ({k: v for k, v in ok.items() if k != "MsgBody"}, 90002),
        ({**ok, "MsgBody": []}, 90002),
        ({**ok, "MsgBody": [{"MsgType": "TIMNoSuchElem", "MsgContent": {}}]}, 90002),
        ({**ok, "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": 1}}]}, 90002),
        ({**ok, "MsgBody": text("x" * 13000)}, 93000),
        ({**ok, "CloudCustomData": "x" * 13000}, 93000),
        ({**ok, "From_Account": "ghost"}, 90008),
        ({**ok, "From_Account": "x" * 40}, 90008),
        ({**ok, "SyncOtherMachine": 3}, 90031),
        ({**ok, "To_Account": 7}, 90001),
        ({**ok, "MsgRandom": -1}, 90001),
        ({**ok, "MsgRandom": 2**32}, 90001),
        ({**ok, "MsgLifeTime": -1}, 90001),
    ]
    await codes(tim, SEND, cases)
    assert (await roam(tim, "a", "b"))["MsgList"] == []  # nothing was kept
    assert (await tim.call("openim/modify_c2c_msg", {}))["ErrorCode"] == 60009


async def test_online_only_and_no_unread(tim) -> None:
    await import_accounts(tim, "a", "b")
    await tim.ok(SEND, message("b", "gone", From_Account="a", MsgLifeTime=0))
    assert await texts(tim, "b", "a") == [] and await unread_total(tim, "b") == 0
    await tim.ok(SEND, message("b", "quiet", From_Account="a", SendMsgControl=["NoUnread"]))
    await tim.ok(SEND, message("b", "long", From_Account="a", MsgLifeTime=10**7,
                               SendMsgControl=["NoLastMsg", "WithMuteNotifications"]))
    assert await texts(tim, "b", "a") == ["quiet", "long"]
    assert await unread_total(tim, "b") == 1


async def test_a_retried_send_is_one_message(tim, server: Server, pinned: int) -> None:
    await import_accounts(tim, "a", "b", "c")
    body = message("b", "once", From_Account="a", MsgSeq=5)
    first = await tim.ok(SEND, body)
    server.clock.advance(3)
    again = await tim.ok(SEND, body)
    assert (again["MsgKey"], again["MsgTime"]) == (first["MsgKey"], pinned)
    # Without MsgSeq too: the same random and body from the same sender.
    loose = message("b", "twice", From_Account="a", MsgSeq=None)
    assert (await tim.ok(SEND, loose))["MsgKey"] == (await tim.ok(SEND, loose))["MsgKey"]
    # Another body, another peer or another sender is another message (a second later:
    # in the same second it would have the same MsgKey).
    server.clock.advance(1)
    await tim.ok(SEND, {**body, "MsgBody": text("other")})
    await tim.ok(SEND, {**body, "To_Account": "c"})
    await tim.ok(SEND, {**body, "From_Account": "c"})
    assert await texts(tim, "b", "a") == ["once", "twice", "other"]
    assert await unread_total(tim, "b") == 4
    assert rules.DUPLICATE_WINDOW_S == 120  # Tencent's window for one-to-one messages


async def test_sync_other_machine_2_keeps_it_out_of_the_senders_history(tim) -> None:
    await import_accounts(tim, "a", "b")
    await tim.ok(SEND, message("b", "theirs only", From_Account="a", SyncOtherMachine=2))
    await tim.ok(SEND, message("b", "both", From_Account="a"))
    assert await texts(tim, "b", "a") == ["theirs only", "both"]
    assert await texts(tim, "a", "b") == ["both"]


# --- batchsendmsg -------------------------------------------------------------------------


async def test_batchsendmsg_reaches_each_existing_recipient(tim, server: Server,
                                                            pinned: int) -> None:
    await import_accounts(tim, "a", "b", "c", "d")
    reply = await tim.ok(BATCH, {"From_Account": "a", "To_Account": ["b", "ghost", "c", "b"],
                                 "MsgSeq": 28360, "MsgRandom": 19901224,
                                 "MsgBody": text("all"), "SyncOtherMachine": 2})
    assert reply["MsgKey"] == f"28360_19901224_{pinned}"
    assert reply["ErrorList"] == [{"To_Account": "ghost", "ErrorCode": 70107}]
    for to in ("b", "c"):
        page = await roam(tim, to, "a")
        assert [m["MsgKey"] for m in page["MsgList"]] == [reply["MsgKey"]]
        assert await unread_total(tim, to) == 1
    assert await texts(tim, "a", "b") == []  # SyncOtherMachine 2
    full = await tim.ok(BATCH, {"To_Account": ["b", "d"], "MsgRandom": 1, "MsgBody": text()})
    assert "ErrorList" not in full
    assert not [e for e in server.events if isinstance(e, C2CMessageSent)]  # no callbacks


async def test_batchsendmsg_errors(tim) -> None:
    await import_accounts(tim, "a", "b")
    ok = {"From_Account": "a", "To_Account": ["b"], "MsgRandom": 1, "MsgBody": text()}
    cases: list[tuple[dict[str, Any], int]] = [
        ({k: v for k, v in ok.items() if k != "To_Account"}, 90003),
        ({**ok, "To_Account": "b"}, 90028),
        ({**ok, "To_Account": []}, 90029),
        ({**ok, "To_Account": [f"u{n}" for n in range(501)]}, 90011),
        ({**ok, "To_Account": ["ghost", "x" * 40]}, 90012),
        ({**ok, "From_Account": "ghost"}, 90008),
        ({**ok, "MsgBody": text("x" * 13000)}, 90055),
        ({k: v for k, v in ok.items() if k != "MsgRandom"}, 90005),
        ({**ok, "MsgBody": []}, 90002),
        ({**ok, "SyncOtherMachine": 0}, 90031),
    ]
    await codes(tim, BATCH, cases)
    # 500 distinct recipients are allowed (duplicates count once).
    reply = await tim.ok(BATCH, {**ok, "To_Account": ["b"] * 600 + [f"u{n}" for n in range(499)]})
    assert len(reply["ErrorList"]) == 499


# --- importmsg ----------------------------------------------------------------------------


async def test_importmsg_keeps_history_with_its_own_time(tim, server: Server,
                                                         pinned: int) -> None:
    await import_accounts(tim, "a", "b")
    old = pinned - 86400
    history = {"SyncFromOldSystem": 2, "From_Account": "a", "To_Account": "b",
               "MsgSeq": 827092, "MsgRandom": 1287657, "MsgTimeStamp": old,
               "MsgBody": text("then"), "CloudCustomData": "cc"}
    assert await tim.ok(IMPORT, history) == {"ActionStatus": "OK", "ErrorCode": 0,
                                             "ErrorInfo": ""}
    await tim.ok(IMPORT, history)  # the same MsgKey again: kept once
    await tim.ok(IMPORT, {**history, "SyncFromOldSystem": 5, "MsgTimeStamp": old + 1,
                          "MsgBody": text("live")})
    page = await roam(tim, "b", "a")
    assert [(m["MsgTimeStamp"], m["MsgKey"]) for m in page["MsgList"]] == [
        (old, f"827092_1287657_{old}"), (old + 1, f"827092_1287657_{old + 1}")]
    assert await unread_total(tim, "b") == 1  # only the live import counts
    assert not [e for e in server.events if isinstance(e, C2CMessageSent)]


async def test_importmsg_errors(tim, pinned: int) -> None:
    await import_accounts(tim, "a", "b")
    ok = {"SyncFromOldSystem": 2, "From_Account": "a", "To_Account": "b", "MsgRandom": 1,
          "MsgTimeStamp": pinned - 10, "MsgBody": text()}
    cases: list[tuple[dict[str, Any], int]] = [
        ({**ok, "SyncFromOldSystem": 1}, 90030),
        ({k: v for k, v in ok.items() if k != "SyncFromOldSystem"}, 90030),
        ({k: v for k, v in ok.items() if k != "MsgTimeStamp"}, 90006),
        ({**ok, "MsgTimeStamp": -5}, 90006),
        ({k: v for k, v in ok.items() if k != "From_Account"}, 90008),
        ({**ok, "From_Account": "ghost"}, 90008),
        ({**ok, "To_Account": "ghost"}, 90003),
        ({k: v for k, v in ok.items() if k != "MsgRandom"}, 90005),
        ({**ok, "MsgBody": []}, 90002),
        ({**ok, "MsgBody": text("x" * 13000)}, 93000),
    ]
    await codes(tim, IMPORT, cases)


async def test_retention_deletes_old_messages(tim, server: Server, pinned: int) -> None:
    await import_accounts(tim, "a", "b")
    for age_days in (40, 1):
        await tim.ok(IMPORT, {"SyncFromOldSystem": 2, "From_Account": "a", "To_Account": "b",
                              "MsgRandom": age_days, "MsgTimeStamp": pinned - age_days * 86400,
                              "MsgBody": text(f"{age_days} days old")})
    assert await server.runtime.retention.run_once() >= 1  # premium: 30 days are kept
    assert await texts(tim, "b", "a") == ["1 days old"]


# --- admin_getroammsg ---------------------------------------------------------------------


async def test_roam_pages_newest_first_by_last_msg_key(tim, server: Server,
                                                       pinned: int) -> None:
    await import_accounts(tim, "a", "b")
    sent = []
    for n in range(25):
        # Three messages a second: same-second messages are ordered by MsgSeq.
        if n % 3 == 0:
            server.clock.advance(1)
        sender, to = ("a", "b") if n % 2 else ("b", "a")
        reply = await tim.ok(SEND, message(to, f"m{n}", From_Account=sender, MsgSeq=100 - n
                                           if n % 3 else 50 + n))
        sent.append(reply["MsgKey"])
    def place(key: str) -> tuple[int, int, int]:
        seq, random, time = rules.parse_msg_key(key)
        return time, seq, random

    expected = sorted(sent, key=place)
    body = {"Operator_Account": "a", "Peer_Account": "b", "MaxCnt": 10, "MinTime": 0,
            "MaxTime": pinned + 100}
    pages = []
    while True:
        page = await tim.ok(ROAM, body)
        pages.append(page)
        keys = [m["MsgKey"] for m in page["MsgList"]]
        assert page["MsgCnt"] == len(keys)
        assert (page["LastMsgKey"], page["LastMsgTime"]) == (
            keys[0], page["MsgList"][0]["MsgTimeStamp"])  # the oldest of the page
        if page["Complete"]:
            break
        body = {**body, "MaxTime": page["LastMsgTime"], "LastMsgKey": page["LastMsgKey"]}
    assert [p["MsgCnt"] for p in pages] == [10, 10, 5]
    assert [m["MsgKey"] for p in reversed(pages) for m in p["MsgList"]] == expected
    # A time window; the old field names.
    first_second = rules.parse_msg_key(expected[0])[2]
    window = await tim.ok(ROAM, {"From_Account": "b", "To_Account": "a", "MaxCnt": 100,
                                 "MinTime": first_second, "MaxTime": first_second})
    assert [m["MsgKey"] for m in window["MsgList"]] == expected[:3]
    assert window["Complete"] == 1


async def test_roam_cuts_a_page_at_13_kb(tim) -> None:
    await import_accounts(tim, "a", "b")
    for n in range(3):
        await tim.ok(SEND, message("b", str(n) * 6000, From_Account="a"))
    page = await roam(tim, "a", "b", MaxCnt=10)
    assert (page["MsgCnt"], page["Complete"]) == (2, 0)
    rest = await roam(tim, "a", "b", MaxCnt=10, MaxTime=page["LastMsgTime"],
                      LastMsgKey=page["LastMsgKey"])
    assert (rest["MsgCnt"], rest["Complete"]) == (1, 1)
    empty = await roam(tim, "a", "b", MinTime=1, MaxTime=2)
    assert empty["MsgList"] == [] and empty["Complete"] == 1 and empty["LastMsgKey"] == ""


async def test_roam_errors(tim) -> None:
    await import_accounts(tim, "a", "b")
    ok = {"Operator_Account": "a", "Peer_Account": "b", "MaxCnt": 10, "MinTime": 0,
          "MaxTime": 2**40}
    cases: list[tuple[dict[str, Any], int]] = [
        ({k: v for k, v in ok.items() if k != "Operator_Account"}, 90008),
        ({**ok, "Operator_Account": "ghost"}, 90008),
        ({k: v for k, v in ok.items() if k != "Peer_Account"}, 90003),
        ({**ok, "Peer_Account": "x" * 33}, 90003),
        ({**ok, "MaxCnt": 0}, 90001),
        ({**ok, "LastMsgKey": "1_2"}, 90054),
        ({**ok, "LastMsgKey": "a_b_c"}, 90054),
        ({**ok, "LastMsgKey": f"1_1_{10**30}"}, 90054),
        ({**ok, "MaxCnt": "ten"}, 90001),
    ]
    await codes(tim, ROAM, cases)


# --- admin_msgwithdraw --------------------------------------------------------------------


async def test_withdraw_flags_the_message_and_uncounts_it(tim) -> None:
    await import_accounts(tim, "a", "b")
    key = (await tim.ok(SEND, message("b", "oops", From_Account="a",
                                      CloudCustomData="cc")))["MsgKey"]
    await tim.ok(SEND, message("b", "fine", From_Account="a"))
    assert await unread_total(tim, "b") == 2
    await tim.ok(WITHDRAW, {"From_Account": "a", "To_Account": "b", "MsgKey": key})
    withdrawn, kept = (await roam(tim, "b", "a"))["MsgList"]
    assert (withdrawn["MsgKey"], withdrawn["MsgFlagBits"]) == (key, 8)
    assert (withdrawn["MsgBody"], withdrawn["CloudCustomData"]) == ([], "")
    assert kept["MsgFlagBits"] == 0
    assert await unread_total(tim, "b") == 1
    online_key = (await tim.ok(SEND, message("b", From_Account="a", MsgLifeTime=0)))["MsgKey"]
    ok = {"From_Account": "a", "To_Account": "b", "MsgKey": key}
    cases: list[tuple[dict[str, Any], int]] = [
        (ok, 20023),
        ({**ok, "MsgKey": "1_2_3"}, 20022),
        ({**ok, "MsgKey": online_key}, 20022),  # online only: nothing kept to withdraw
        ({**ok, "From_Account": "b", "To_Account": "a"}, 20022),  # not b's message
        ({**ok, "MsgKey": "nonsense"}, 90054),
        ({k: v for k, v in ok.items() if k != "MsgKey"}, 90054),
        ({k: v for k, v in ok.items() if k != "From_Account"}, 90008),
        ({**ok, "From_Account": "ghost"}, 90008),
        ({**ok, "To_Account": "ghost"}, 90003),
    ]
    await codes(tim, WITHDRAW, cases)


# --- read marks and unread counts ---------------------------------------------------------


async def test_set_msg_read_and_unread_counts(tim, server: Server, pinned: int) -> None:
    await import_accounts(tim, "a", "b", "c")
    for n in range(3):
        await tim.ok(SEND, message("b", f"a{n}", From_Account="a"))
        server.clock.advance(10)
    await tim.ok(SEND, message("b", "c0", From_Account="c"))
    reply = await tim.ok(UNREAD, {"To_Account": "b", "Peer_Account": ["a", "c", "ghost"]})
    assert reply["C2CUnreadMsgNumList"] == [{"Peer_Account": "a", "C2CUnreadMsgNum": 3},
                                            {"Peer_Account": "c", "C2CUnreadMsgNum": 1}]
    assert reply["ErrorList"] == [{"Peer_Account": "ghost", "ErrorCode": 70107}]
    assert await unread_total(tim, "b") == 4
    # Read up to the second message: one left from a.
    await tim.ok(SET_READ, {"Report_Account": "b", "Peer_Account": "a",
                            "MsgReadTime": pinned + 10})
    assert await unread_from(tim, "b", "a") == 1
    page = (await roam(tim, "a", "b"))["MsgList"]
    assert [m["IsPeerRead"] for m in page] == [1, 1, 0]
    await tim.ok(SET_READ, {"Report_Account": "b", "Peer_Account": "a",
                            "MsgReadTime": str(pinned)})  # a string, as older pages have it
    assert await unread_from(tim, "b", "a") == 2
    await tim.ok(SET_READ, {"Report_Account": "b", "Peer_Account": "a"})  # now
    assert await unread_total(tim, "b") == 1
    assert (await tim.ok(UNREAD, {"To_Account": "a", "Peer_Account": ["b"]}))[
        "C2CUnreadMsgNumList"] == [{"Peer_Account": "b", "C2CUnreadMsgNum": 0}]


async def test_read_and_unread_errors(tim) -> None:
    await import_accounts(tim, "a", "b")
    ok = {"Report_Account": "b", "Peer_Account": "a"}
    await codes(tim, SET_READ, [
        ({k: v for k, v in ok.items() if k != "Report_Account"}, 90003),
        ({**ok, "Report_Account": "ghost"}, 90003),
        ({k: v for k, v in ok.items() if k != "Peer_Account"}, 90008),
        ({**ok, "Peer_Account": "ghost"}, 90008),
        ({**ok, "MsgReadTime": "soon"}, 90001),
        ({**ok, "MsgReadTime": -1}, 90001),
    ])
    await codes(tim, UNREAD, [
        ({}, 90003),
        ({"To_Account": "ghost"}, 90003),
        ({"To_Account": "b", "Peer_Account": [f"p{n}" for n in range(11)]}, 90018),
        ({"To_Account": "b", "Peer_Account": "a"}, 90001),
    ])


# --- callbacks ------------------------------------------------------------------------------


@dataclass
class Answering(Receiver):
    """A webhook receiver that answers each callback command with a reply of the test's."""

    replies: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        from urllib.parse import parse_qsl

        query = dict(parse_qsl(scope["query_string"].decode()))
        self.calls.append(Received(query, msgspec.json.decode(await read_body(receive))))
        reply = self.replies.get(query.get("CallbackCommand", ""),
                                 {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": msgspec.json.encode(reply)})


@pytest.fixture
async def hooks() -> AsyncIterator[Answering]:
    rec = Answering()
    async with serve_asgi(rec) as url:
        rec.url = url + "/im-callback"
        yield rec


async def hooked(server: Server, hooks: Answering) -> RestClient:
    app = await server.new_app(rate_limit=0, callback_url=hooks.url)
    return server.client(app)


async def test_before_and_after_send_callbacks(server: Server, hooks: Answering,
                                               pinned: int) -> None:
    async with await hooked(server, hooks) as tim:
        await import_accounts(tim, "a", "b")
        reply = await tim.ok(SEND, message("b", "hello", From_Account="a", MsgSeq=9,
                                           CloudCustomData="cc"))
        before, = await hooks.wait_for(1, BEFORE)
        after, = await hooks.wait_for(1, AFTER)
    assert before.body == {
        "CallbackCommand": BEFORE, "From_Account": "a", "To_Account": "b", "MsgSeq": 9,
        "MsgRandom": before.body["MsgRandom"], "MsgTime": pinned, "MsgKey": reply["MsgKey"],
        "OnlineOnlyFlag": 0, "MsgBody": text("hello"), "CloudCustomData": "cc",
        "EventTime": pinned * 1000}
    assert after.body == {**before.body, "CallbackCommand": AFTER, "SendMsgResult": 0,
                          "ErrorInfo": "send msg succeed", "UnreadMsgNum": 1}
    assert before.query["OptPlatform"] == "RESTAPI"


async def test_before_callback_refuses_drops_and_replaces(server: Server,
                                                          hooks: Answering) -> None:
    async with await hooked(server, hooks) as tim:
        await import_accounts(tim, "a", "b")
        hooks.replies[BEFORE] = {"ActionStatus": "OK", "ErrorCode": 1, "ErrorInfo": "no"}
        refused = await tim.call(SEND, message("b", "bad", From_Account="a"))
        assert refused["ErrorCode"] == 20006
        hooks.replies[BEFORE] = {"ActionStatus": "OK", "ErrorCode": 120005,
                                 "ErrorInfo": "not on our watch"}
        own = await tim.call(SEND, message("b", "bad", From_Account="a"))
        assert (own["ErrorCode"], own["ErrorInfo"]) == (120005, "not on our watch")
        hooks.replies[BEFORE] = {"ActionStatus": "OK", "ErrorCode": 2, "ErrorInfo": ""}
        dropped = await tim.ok(SEND, message("b", "shh", From_Account="a"))
        assert dropped["MsgKey"]
        hooks.replies[BEFORE] = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
                                 "MsgBody": text("clean"), "CloudCustomData": "new"}
        await tim.ok(SEND, message("b", "dirty", From_Account="a", CloudCustomData="old"))
        msg, = (await roam(tim, "b", "a"))["MsgList"]
        assert (msg["MsgBody"], msg["CloudCustomData"]) == (text("clean"), "new")
        after, = await hooks.wait_for(1, AFTER)
        assert after.body["MsgBody"] == text("clean")
        # ForbidCallbackControl: neither callback.
        hooks.replies[BEFORE] = {"ActionStatus": "OK", "ErrorCode": 1, "ErrorInfo": "no"}
        await tim.ok(SEND, message("b", "trusted", From_Account="a", ForbidCallbackControl=[
            "ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"]))
        await tim.ok(BATCH, {**message(["b"], "batch", From_Account="a")})
        assert await texts(tim, "b", "a") == ["clean", "trusted", "batch"]
        await asyncio.sleep(0.2)
        assert len(hooks.of(BEFORE)) == 4 and len(hooks.of(AFTER)) == 1


async def test_withdraw_callback(server: Server, hooks: Answering, pinned: int) -> None:
    async with await hooked(server, hooks) as tim:
        await import_accounts(tim, "a", "b")
        key = (await tim.ok(SEND, message("b", From_Account="a")))["MsgKey"]
        await tim.ok(WITHDRAW, {"From_Account": "a", "To_Account": "b", "MsgKey": key})
        withdrawn, = await hooks.wait_for(1, AFTER_WITHDRAW)
    assert withdrawn.body == {"CallbackCommand": AFTER_WITHDRAW, "From_Account": "a",
                              "To_Account": "b", "MsgKey": key, "UnreadMsgNum": 0,
                              "EventTime": pinned * 1000}


# --- delivery through the gateway -------------------------------------------------------


@pytest.fixture
async def live_db(db_url: str) -> AsyncIterator[LiveServer]:
    """A live server (memory presence) on SQLite or PostgreSQL."""
    async with live_server(db_url, "memory") as srv:
        yield srv


async def gateway_app(live: LiveServer, *users: str, **settings: Any) -> App:
    app = await live.new_app(rate_limit=0, **settings)
    async with live.client(app) as tim:
        await import_accounts(tim, *users)
    return app


async def test_rest_messages_reach_every_connection_of_the_recipient(live_db) -> None:
    live = live_db
    app = await gateway_app(live, "a", "b")
    async with live.connect(app, "b") as b1, live.connect(app, "b") as b2, \
            live.connect(app, "a") as a1, live.client(app) as tim:
        reply = await tim.ok(SEND, message("b", "to b", From_Account="a", MsgSeq=3,
                                           CloudCustomData="cc"))
        for session in (b1, b2):
            got = await session.next_message()
            assert got == {"event": "c2c_message", "From_Account": "a", "To_Account": "b",
                           "MsgSeq": 3, "MsgRandom": got["MsgRandom"],
                           "MsgTime": reply["MsgTime"], "MsgKey": reply["MsgKey"],
                           "MsgBody": text("to b"), "CloudCustomData": "cc"}
        # SyncOtherMachine 1: the sender's connections get it too.
        synced = await tim.ok(SEND, message("b", "synced", From_Account="a",
                                            SyncOtherMachine=1))
        assert (await a1.next_message())["MsgKey"] == synced["MsgKey"]
        assert (await b1.next_message())["MsgKey"] == synced["MsgKey"]
        # A withdrawal tells both parties.
        await tim.ok(WITHDRAW, {"From_Account": "a", "To_Account": "b",
                                "MsgKey": reply["MsgKey"]})
        for session in (a1, b1, b2):
            while (got := await session.next_message())["event"] != "c2c_message_withdrawn":
                pass
            assert got == {"event": "c2c_message_withdrawn", "From_Account": "a",
                           "To_Account": "b", "MsgKey": reply["MsgKey"], "MsgSeq": 3,
                           "MsgRandom": got["MsgRandom"], "MsgTime": reply["MsgTime"]}


async def test_gateway_send_c2c_msg(live_db) -> None:
    live = live_db
    app = await gateway_app(live, "a", "b")
    async with live.connect(app, "a") as a1, live.connect(app, "a") as a2, \
            live.connect(app, "b") as b1, live.client(app) as tim:
        sent = await a1.send_c2c_message("b", text("from a1"), MsgRandom=77,
                                         CloudCustomData="cc")
        assert set(sent) >= {"MsgTime", "MsgKey", "MsgSeq"}
        assert sent["MsgKey"] == f"{sent['MsgSeq']}_77_{sent['MsgTime']}"
        got = await b1.next_message()
        assert (got["From_Account"], got["MsgKey"], got["CloudCustomData"]) == (
            "a", sent["MsgKey"], "cc")
        assert (await a2.next_message())["MsgKey"] == sent["MsgKey"]  # the other connection
        # ... and not the sending one: the next thing it hears is this marker.
        marker = await tim.ok(SEND, message("a", "marker", From_Account="b"))
        assert (await a1.next_message())["MsgKey"] == marker["MsgKey"]
        assert sent["MsgKey"] in [m["MsgKey"] for m in (await roam(tim, "b", "a"))["MsgList"]]
        assert await unread_from(tim, "b", "a") == 1
        # The same rules as REST.
        for to, body, code in [("ghost", text(), 90003), ("b", [], 90002),
                               ("b", text("x" * 13000), 93000)]:
            with pytest.raises(GatewayError) as refused:
                await a1.send_c2c_message(to, body)
            assert refused.value.code == code
        with pytest.raises(GatewayError) as refused:
            await a1.send_c2c_message("b", text(), MsgRandom="x")
        assert refused.value.code == 10004  # a frame field of the wrong type


async def test_gateway_sends_ask_the_before_callback(live_db, hooks: Answering) -> None:
    live = live_db
    app = await gateway_app(live, "a", "b", callback_url=hooks.url)
    hooks.replies[BEFORE] = {"ActionStatus": "OK", "ErrorCode": 1, "ErrorInfo": "no"}
    async with live.connect(app, "a", platform="Web") as a1:
        with pytest.raises(GatewayError) as refused:
            await a1.send_c2c_message("b", text("bad"))
        assert refused.value.code == 20006
    before, = hooks.of(BEFORE)
    assert before.query["OptPlatform"] == "Web"
    async with live.client(app) as tim:
        assert await texts(tim, "b", "a") == []


async def test_messages_cross_processes(tmp_path) -> None:
    async with live_servers(2, f"sqlite:///{tmp_path}/two.db") as (one, two):
        app = await gateway_app(one, "a", "b")
        async with two.connect(app, "b") as b, one.client(app) as tim:
            reply = await tim.ok(SEND, message("b", "across", From_Account="a"))
            got = await b.next_message()
            assert (got["MsgKey"], got["MsgBody"]) == (reply["MsgKey"], text("across"))
        assert [e for e in one.events if isinstance(e, UserPush)]
