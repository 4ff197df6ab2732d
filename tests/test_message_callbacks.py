"""Group.CallbackBeforeSendMsg and Group.CallbackAfterSendMsg, against a real receiver."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.helpers import LiveServer, Receiver, create_group, import_accounts

SEND = "group_open_http_svc/send_group_msg"
BEFORE = "Group.CallbackBeforeSendMsg"
AFTER = "Group.CallbackAfterSendMsg"


def text(value: str = "hi") -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


async def setup(live: LiveServer, receiver: Receiver, *users: str) -> tuple[Any, Any, str]:
    app = await live.new_app(rate_limit=0, callback_url=receiver.url)
    tim = live.client(app)
    await import_accounts(tim, "host", *users)
    group_id = await create_group(tim, "AVChatRoom", Owner_Account="host")
    return app, tim, group_id


def answering(replies: dict[str, dict[str, Any]]):  # type: ignore[no-untyped-def]
    """The before-callback's reply chosen by the message's text."""
    def answer(command: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if command != BEFORE:
            return None
        return replies.get(body["MsgBody"][0]["MsgContent"]["Text"])
    return answer


async def test_the_before_callback_allows_refuses_drops_and_replaces(
        live: LiveServer, receiver: Receiver) -> None:
    receiver.answer = answering({
        "refuse": {"ActionStatus": "OK", "ErrorCode": 1, "ErrorInfo": ""},
        "drop": {"ActionStatus": "OK", "ErrorCode": 2, "ErrorInfo": ""},
        "replace": {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
                    "MsgBody": text("replaced"), "CloudCustomData": "new"},
        "bad replacement": {"ErrorCode": 0, "MsgBody": [{"MsgType": "nope"}]},
    })
    app, tim, group_id = await setup(live, receiver, "v")
    async with tim, live.connect(app, "v") as v:
        await v.join_group(group_id)
        refused = await tim.call(SEND, {"GroupId": group_id, "Random": 1,
                                        "MsgBody": text("refuse")})
        assert refused["ErrorCode"] == 10016
        dropped = await tim.ok(SEND, {"GroupId": group_id, "Random": 2,
                                      "MsgBody": text("drop")})
        assert dropped["MsgSeq"] == 0  # told it was sent; nobody hears it
        await tim.ok(SEND, {"GroupId": group_id, "Random": 3, "MsgBody": text("replace"),
                            "CloudCustomData": "old"})
        got = await v.next_message()
        assert got["MsgBody"] == text("replaced") and got["CloudCustomData"] == "new"
        await tim.ok(SEND, {"GroupId": group_id, "Random": 4,
                            "MsgBody": text("bad replacement")})
        assert (await v.next_message())["MsgBody"] == text("bad replacement")
        # the gateway's sends are asked too
        with pytest.raises(Exception) as gw:
            await v.send_group_message(group_id, text("refuse"))
        assert getattr(gw.value, "code", None) == 10016
        before = receiver.of(BEFORE)[0]
        assert before.body["GroupId"] == group_id and before.body["Type"] == "AVChatRoom"
        assert before.body["MsgBody"] == text("refuse") and before.body["Random"] == 1
        assert before.query["SdkAppid"] == str(app.sdkappid)
        after = await receiver.wait_for(2, AFTER)
        assert [a.body["MsgBody"] for a in after] == [text("replaced"),
                                                      text("bad replacement")]
        assert after[0].body["MsgSeq"] >= 1 and after[0].body["CloudCustomData"] == "new"


async def test_a_failing_or_slow_before_callback_lets_the_message_through(
        live: LiveServer, receiver: Receiver) -> None:
    live.runtime.webhooks.settings = type(live.runtime.webhooks.settings)(timeout=0.3)
    app, tim, group_id = await setup(live, receiver, "v")
    async with tim, live.connect(app, "v") as v:
        await v.join_group(group_id)
        receiver.statuses = [500]
        await tim.ok(SEND, {"GroupId": group_id, "Random": 1, "MsgBody": text("a")})
        assert (await v.next_message())["MsgBody"] == text("a")
        receiver.delays = {BEFORE: 2.0}
        started = time.monotonic()
        await tim.ok(SEND, {"GroupId": group_id, "Random": 2, "MsgBody": text("b")})
        assert time.monotonic() - started < 1.5  # bounded by the timeout, not the receiver
        assert (await v.next_message())["MsgBody"] == text("b")


async def test_a_slow_before_callback_of_one_group_does_not_hold_up_another(
        live: LiveServer, receiver: Receiver) -> None:
    live.runtime.webhooks.settings = type(live.runtime.webhooks.settings)(timeout=5.0)
    _, tim, slow_group = await setup(live, receiver)
    async with tim:
        fast_group = await create_group(tim, "AVChatRoom", Owner_Account="host")
        # Every before-callback takes a second: 40 sends into one group fill its slots
        # (16 at a time) and queue behind each other ...
        receiver.delays = {BEFORE: 1.0}
        slow = [asyncio.create_task(tim.ok(SEND, {"GroupId": slow_group, "Random": i,
                                                  "MsgBody": text("slow")}))
                for i in range(40)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await tim.ok(SEND, {"GroupId": fast_group, "Random": 1, "MsgBody": text("fast")})
        # ... while another group's send waits one round trip, not that queue.
        assert time.monotonic() - started < 1.9
        await asyncio.gather(*slow)
