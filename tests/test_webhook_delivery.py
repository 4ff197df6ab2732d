"""Webhook delivery's queue: groups in parallel, each group in order, none starved.

Real REST calls (add_group_member) produce Group.CallbackAfterNewMemberJoin callbacks,
keyed by group, to a real HTTP receiver that answers slowly and counts how many requests
it holds at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from opentim.domain.apps import App
from tests.helpers import (
    LiveServer,
    Receiver,
    create_group,
    import_accounts,
    live_server,
    serve_asgi,
)

JOIN = "Group.CallbackAfterNewMemberJoin"


@dataclass
class CountingReceiver(Receiver):
    inflight: int = 0
    most_inflight: int = 0

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.inflight -= 1


@pytest.fixture
async def counting() -> AsyncIterator[CountingReceiver]:
    receiver = CountingReceiver(delay=0.3)
    async with serve_asgi(receiver) as url:
        receiver.url = url + "/im-callback"
        yield receiver


@pytest.fixture
async def hooked(tmp_path, counting: CountingReceiver
                 ) -> AsyncIterator[tuple[LiveServer, App]]:
    async with live_server(f"sqlite:///{tmp_path}/d.db", "memory") as live:
        app = await live.new_app(rate_limit=0, callback_url=counting.url,
                                 callback_commands=frozenset({JOIN}))
        yield live, app


async def add(tim, group_id: str, account: str) -> None:  # type: ignore[no-untyped-def]
    await tim.ok("group_open_http_svc/add_group_member",
                 {"GroupId": group_id, "MemberList": [{"Member_Account": account}]})


async def test_callbacks_of_different_groups_are_sent_in_parallel(
        hooked, counting: CountingReceiver) -> None:
    live, app = hooked
    async with live.client(app) as tim:
        await import_accounts(tim, "owner", "joiner")
        groups = [await create_group(tim, "Public", Owner_Account="owner") for _ in range(10)]
        for group_id in groups:
            await add(tim, group_id, "joiner")
        calls = await counting.wait_for(10, JOIN)
    assert sorted(c.body["GroupId"] for c in calls) == sorted(groups)
    # ten 0.3 s answers overlapped instead of queueing behind each other
    assert counting.most_inflight >= 5, counting.most_inflight


async def test_a_busy_group_keeps_its_order_and_does_not_hold_up_others(
        hooked, counting: CountingReceiver) -> None:
    live, app = hooked
    counting.delay = 0.1
    async with live.client(app) as tim:
        joiners = [f"j{i}" for i in range(5)]
        await import_accounts(tim, "owner", "late", *joiners)
        busy = await create_group(tim, "Public", Owner_Account="owner")
        other = await create_group(tim, "Public", Owner_Account="owner")
        for joiner in joiners:
            await add(tim, busy, joiner)
        await add(tim, other, "late")
        calls = await counting.wait_for(6, JOIN)
    arrived = [(c.body["GroupId"], c.body["NewMemberList"][0]["Member_Account"])
               for c in calls]
    assert [a for g, a in arrived if g == busy] == joiners  # one at a time, in order
    assert arrived.index((other, "late")) < arrived.index((busy, "j4"))  # not starved
    assert counting.most_inflight == 2  # the busy group never had two in flight
