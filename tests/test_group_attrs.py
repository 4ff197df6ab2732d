"""Group attributes: get_group_attr (group_open_attr_http_svc), modify_group_attr,
set_group_attr, delete_group_attr, clear_group_attr (group_open_http_svc), with Tencent's
limits and codes, on SQLite and PostgreSQL; the callback against a real receiver."""

from __future__ import annotations

from typing import Any

from opentim.client.rest import RestClient
from tests.helpers import Receiver, Server, create_group, import_accounts

SVC = "group_open_http_svc"
GET = "group_open_attr_http_svc/get_group_attr"
TYPES = ["Private", "Public", "ChatRoom", "AVChatRoom", "Community"]


def pairs(**values: str) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in values.items()]


async def attrs(tim: RestClient, group_id: str) -> list[dict[str, str]]:
    return (await tim.ok(GET, {"GroupId": group_id}))["GroupAttrAry"]


async def write(tim: RestClient, command: str, group_id: str, items: Any = None) -> dict:
    body: dict[str, Any] = {"GroupId": group_id}
    if items is not None:
        body["GroupAttr"] = items
    return await tim.call(f"{SVC}/{command}", body)


async def test_every_command_on_every_type(server: Server, tim: RestClient) -> None:
    for group_type in TYPES:
        group_id = await create_group(tim, group_type)
        assert await attrs(tim, group_id) == []
        assert (await write(tim, "modify_group_attr", group_id,
                            pairs(b="2", a="1")))["ErrorCode"] == 0
        assert await attrs(tim, group_id) == pairs(a="1", b="2")
        await write(tim, "modify_group_attr", group_id, pairs(b="3", c="4"))
        assert await attrs(tim, group_id) == pairs(a="1", b="3", c="4")
        await write(tim, "delete_group_attr", group_id, [{"key": "a"}, {"key": "c"}])
        assert await attrs(tim, group_id) == pairs(b="3")
        server.clock.advance(1)
        await write(tim, "set_group_attr", group_id, pairs(x="9", y=""))
        assert await attrs(tim, group_id) == pairs(x="9", y="")
        reply = await write(tim, "clear_group_attr", group_id)
        if group_type == "Community":  # Tencent's clear_group_attr table leaves it out
            assert reply["ErrorCode"] == 10007
        else:
            assert reply["ErrorCode"] == 0 and await attrs(tim, group_id) == []


async def test_limits(tim: RestClient) -> None:
    group_id = await create_group(tim, "AVChatRoom")
    cases: list[tuple[str, Any, int]] = [
        ("modify_group_attr", pairs(**{"k" * 33: "v"}), 10045),
        ("modify_group_attr", pairs(k="v" * 4001), 10046),
        ("modify_group_attr", pairs(**{f"k{i}": "v" for i in range(17)}), 10047),
        ("set_group_attr", pairs(**{f"k{i}": "v" * 1100 for i in range(15)}), 10048),
        ("modify_group_attr", [], 10004),
        ("modify_group_attr", pairs(**{"": "v"}), 10004),
        ("modify_group_attr", [{"key": "k"}], 10004),
        ("modify_group_attr", [{"key": 1, "value": "v"}], 10004),
        ("modify_group_attr", None, 10004),
        ("delete_group_attr", [{"key": "never"}], 10050),
        ("delete_group_attr", [], 10004),
        ("delete_group_attr", [{"key": "k" * 33}], 10045),
    ]
    for command, items, code in cases:
        assert (await write(tim, command, group_id, items))["ErrorCode"] == code, (
            command, code)
    # The whole is checked too: 16 keys and 16000 bytes with what is stored (other groups:
    # each takes at most 5 writes a second).
    many, large = await create_group(tim, "Public"), await create_group(tim, "Community")
    await write(tim, "set_group_attr", many, pairs(**{f"k{i}": "v" for i in range(15)}))
    assert (await write(tim, "modify_group_attr", many, pairs(x="1", y="2")))[
        "ErrorCode"] == 10047
    await write(tim, "set_group_attr", large, pairs(**{f"k{i}": "v" * 3900
                                                      for i in range(4)}))
    assert (await write(tim, "modify_group_attr", large, pairs(z="v" * 500)))[
        "ErrorCode"] == 10048
    assert len(await attrs(tim, many)) == 15  # the refused writes wrote nothing
    assert len(await attrs(tim, large)) == 4
    for gone, code in (("missing", 10010), ("", 10015)):
        for command in ("modify_group_attr", "set_group_attr"):
            assert (await write(tim, command, gone, pairs(a="1")))["ErrorCode"] == code
        assert (await write(tim, "delete_group_attr", gone, [{"key": "a"}]))[
            "ErrorCode"] == code
        assert (await write(tim, "clear_group_attr", gone))["ErrorCode"] == code
        assert (await tim.call(GET, {"GroupId": gone}))["ErrorCode"] == code


async def test_writes_are_limited_to_five_a_second_per_group(tim: RestClient) -> None:
    busy, other = await create_group(tim, "Public"), await create_group(tim, "Public")
    codes = [(await write(tim, "modify_group_attr", busy, pairs(n=str(i))))["ErrorCode"]
             for i in range(11)]  # eleven in at most two windows: one holds six
    assert 10049 in codes and codes.count(0) >= 5
    assert (await write(tim, "modify_group_attr", other, pairs(n="1")))["ErrorCode"] == 0


async def test_destroying_a_group_drops_its_attributes(tim: RestClient) -> None:
    await create_group(tim, "Public", GroupId="reused")
    await write(tim, "modify_group_attr", "reused", pairs(a="1"))
    await tim.ok(f"{SVC}/destroy_group", {"GroupId": "reused"})
    await create_group(tim, "Public", GroupId="reused")
    assert await attrs(tim, "reused") == []


async def test_attr_callback(server: Server, receiver: Receiver) -> None:
    app = await server.new_app(rate_limit=0, callback_url=receiver.url)
    async with server.client(app) as tim:
        await import_accounts(tim, "owner")
        group_id = await create_group(tim, "Public", Owner_Account="owner")
        await write(tim, "modify_group_attr", group_id, pairs(a="1"))
        await write(tim, "modify_group_attr", group_id, pairs(a="1"))  # no change: silent
        await write(tim, "set_group_attr", group_id, pairs(b="2"))
        await write(tim, "delete_group_attr", group_id, [{"key": "b"}])
        await write(tim, "clear_group_attr", group_id)  # nothing left: silent
        got = await receiver.wait_for(3, "Group.CallbackAfterGroupAttrChanged")
        bodies = [{k: v for k, v in r.body.items() if k != "EventTime"} for r in got]
        base = {"CallbackCommand": "Group.CallbackAfterGroupAttrChanged",
                "GroupId": group_id, "Type": "Public", "Operator_Account": "administrator"}
        assert bodies == [{**base, "OptionType": "modify", "GroupAttr": pairs(a="1")},
                          {**base, "OptionType": "set", "GroupAttr": pairs(b="2")},
                          {**base, "OptionType": "delete", "GroupAttr": pairs(b="")}]
