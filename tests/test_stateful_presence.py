"""Two server processes on one Redis against a model of the online member list.

A hypothesis state machine connects users to either process (real gateway sessions),
joins and quits live groups, sets and deletes marks and robots through either process's
REST API, closes client connections, and kills one process once (at a random step, or at
the end of a run that did not). After every step each
living process's ``get_members`` (the plain list in its order, and the list of each
mark) and ``get_online_member_num`` must match a plain model of the contract
(presence/contract.py): a member is listed while one of its connections is in the group
or while it holds mark 500; leaving with mark 500 keeps only 500; mark 600 hides.

The two processes are two runtimes in this process, as in ``tests/helpers.live_servers``,
built with ``release_on_close=False``. Killing one closes its presence store, which stops
its lease renewal and sweeps and writes nothing (as after SIGKILL: its users are still
listed), and leaves its client sockets open but unused. The survivor's clock is then
moved past the lease (15 s), so its own sweep evicts the dead process's connections:
the model expects them gone (mark-500 holders stay, with only 500) within a bound.

``OPENTIM_STATEFUL_EXAMPLES`` (default 25) runs of up to 30 steps, about 40 s; derandomized.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from opentim.app import create_app
from opentim.client import GatewayError
from opentim.client.rest import RestClient
from opentim.domain.apps import App
from opentim.runtime import Runtime
from opentim.settings import Settings
from tests.helpers import (
    REDIS_URL,
    Clock,
    LiveServer,
    all_pages,
    create_group,
    drop_redis_keys,
    import_accounts,
    online_num,
    require_redis,
    serve_asgi,
)

AV = "group_open_avchatroom_http_svc"
EXAMPLES = int(os.environ.get("OPENTIM_STATEFUL_EXAMPLES", "25"))
STEPS = 30
LEASE_TTL = 15.0  # RedisPresenceStore's default: the survivor's clock moves past it
USERS = ("u0", "u1", "u2")
ROBOTS = ("r0",)
ACCOUNTS = USERS + ROBOTS
MARKS = (500, 600, 1000, 1001)
GROUPS = 1  # (the machine takes more; two halve the interactions a run of 30 steps sees)
SETTLE = 10.0  # bound for what is applied after the step returns (closes, the sweep)

T = TypeVar("T")
STEPS_RUN: dict[str, int] = {}  # rule -> times run, over the whole test (printed)
pytestmark = pytest.mark.timeout(max(300, EXAMPLES * 60))


# --- the model ----------------------------------------------------------------------------


@dataclass
class Listed:
    seq: int
    marks: set[int] = field(default_factory=set)


@dataclass
class Model:
    """What each group's online list must be: presence/contract.py in its plainest form."""

    groups: list[dict[str, Listed]] = field(
        default_factory=lambda: [{} for _ in range(GROUPS)])
    conns_in: list[dict[str, set[int]]] = field(  # group -> account -> connection numbers
        default_factory=lambda: [{} for _ in range(GROUPS)])
    seq: int = 0

    def _list(self, g: int, account: str) -> None:
        if account not in self.groups[g]:
            self.seq += 1
            self.groups[g][account] = Listed(self.seq)

    def _settle(self, g: int, account: str) -> None:
        """After a change: an account with no connection and no 500 is not listed."""
        entry = self.groups[g].get(account)
        if entry is not None and not self.conns_in[g].get(account) \
                and 500 not in entry.marks:
            del self.groups[g][account]

    def join(self, g: int, account: str, conn: int) -> None:
        self._list(g, account)
        self.conns_in[g].setdefault(account, set()).add(conn)

    def leave(self, g: int, account: str, conn: int) -> None:
        held = self.conns_in[g].get(account, set())
        held.discard(conn)
        entry = self.groups[g].get(account)
        if not held and entry is not None and 500 in entry.marks:
            entry.marks = {500}  # "always online": only mark 500 survives the leave
        self._settle(g, account)

    def set_marks(self, g: int, items: list[tuple[str, list[int]]]) -> bool:
        """modify_user_info CommandType 1; False when it must fail (nobody applicable)."""
        applicable = [(a, ms) for a, ms in items if a in self.groups[g] or 500 in ms]
        for account, marks in applicable:
            self._list(g, account)
            self.groups[g][account].marks |= set(marks)
        return bool(applicable)

    def delete_marks(self, g: int, items: list[tuple[str, list[int]]]) -> bool:
        applicable = [(a, ms) for a, ms in items if a in self.groups[g]]
        for account, marks in applicable:
            self.groups[g][account].marks -= set(marks)
            self._settle(g, account)
        return bool(applicable)

    def plain_list(self, g: int) -> list[str]:
        shown = [(e.seq, a) for a, e in self.groups[g].items() if 600 not in e.marks]
        return [a for _, a in sorted(shown, reverse=True)]

    def with_mark(self, g: int, mark: int) -> set[str]:
        return {a for a, e in self.groups[g].items() if mark in e.marks}


# --- two processes ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def node(db_url: str, prefix: str) -> AsyncIterator[LiveServer]:
    """One server process's runtime on the shared database and Redis; like
    ``tests.helpers.live_server``, but a closed presence store releases nothing."""
    clock = Clock()
    runtime = Runtime.create(
        Settings(db=db_url, redis=REDIS_URL, app_refresh_interval=0.2, sweep_interval=0.2),
        clock=clock, prefix=prefix, lease_ttl=LEASE_TTL, release_on_close=False)
    asgi = create_app(runtime=runtime)
    async with serve_asgi(asgi, lifespan="on", settings=runtime.settings) as url:
        yield LiveServer(runtime, asgi, clock, url=url)


@dataclass
class Conn:
    number: int
    account: str
    server: int
    session: Any
    stack: contextlib.AsyncExitStack
    groups: set[int] = field(default_factory=set)


class Cluster:
    """The servers, the app and its groups, the open connections: one example's world."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.prefix = f"opentim-test-{uuid.uuid4().hex[:12]}"
        self.stack = contextlib.AsyncExitStack()
        self.servers: list[LiveServer] = []
        self.tims: list[RestClient] = []
        self.alive = [True, True]
        self.app: App | None = None
        self.groups: list[str] = []
        self.conns: dict[int, Conn] = {}

    async def start(self) -> None:
        self.servers = [await self.stack.enter_async_context(node(self.db_url, self.prefix))
                        for _ in range(2)]
        self.app = await self.servers[0].new_app(rate_limit=0)
        await self.servers[1].runtime.apps.refresh()
        self.tims = [await self.stack.enter_async_context(s.client(self.app))
                     for s in self.servers]
        await import_accounts(self.tims[0], *ACCOUNTS)
        self.groups = [await create_group(self.tims[0], "AVChatRoom", Owner_Account="u0")
                       for _ in range(GROUPS)]

    async def connect(self, number: int, account: str, server: int) -> Conn:
        stack = contextlib.AsyncExitStack()
        assert self.app is not None
        session = await stack.enter_async_context(
            self.servers[server].connect(self.app, account))
        conn = self.conns[number] = Conn(number, account, server, session, stack)
        return conn

    async def stop(self) -> None:
        try:
            for conn in self.conns.values():
                await conn.stack.aclose()
            await self.stack.aclose()
        finally:
            await drop_redis_keys(REDIS_URL, self.prefix)


# --- the machine --------------------------------------------------------------------------


class PresenceMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop  # the test's: the servers live there
    db_url: str

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.cluster = Cluster(self.db_url)
        self.numbers = 0
        self.ran: dict[str, int] = {}  # rule -> times run in this example
        self.run(self.cluster.start())

    def _count(self, rule_name: str) -> None:
        self.ran[rule_name] = self.ran.get(rule_name, 0) + 1
        STEPS_RUN[rule_name] = STEPS_RUN.get(rule_name, 0) + 1

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro
        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(60)

    def teardown(self) -> None:
        try:
            if self.cluster.alive[1] and self.ran:
                self._count("kill at the end")
                self._kill()
        finally:
            self.run(self.cluster.stop())

    # --- helpers ---

    def _living(self) -> list[int]:
        return [i for i, up in enumerate(self.cluster.alive) if up]

    def _usable(self) -> list[Conn]:
        return [c for c in self.cluster.conns.values() if self.cluster.alive[c.server]]

    async def _matches(self) -> str | None:
        """None when every living server lists what the model says, else the difference."""
        for s in self._living():
            tim = self.cluster.tims[s]
            for g, group_id in enumerate(self.cluster.groups):
                shown = await all_pages(tim, group_id)
                if shown != self.model.plain_list(g):
                    return f"server {s} group {g}: listed {shown}, model {self.model.plain_list(g)}"
                count = await online_num(tim, group_id)
                if count != len(self.model.groups[g]):
                    return f"server {s} group {g}: count {count}, model {self.model.groups[g]}"
                for mark in MARKS:
                    marked = set(await all_pages(tim, group_id, Mark=mark))
                    if marked != self.model.with_mark(g, mark):
                        return (f"server {s} group {g} mark {mark}: listed {sorted(marked)}, "
                                f"model {sorted(self.model.with_mark(g, mark))}")
        return None

    async def _settled(self, within: float) -> None:
        deadline = time.monotonic() + within
        while (problem := await self._matches()) is not None:
            assert time.monotonic() < deadline, f"diverged from the model: {problem}"
            await asyncio.sleep(0.05)

    # --- rules ---

    @initialize(accounts=st.lists(st.sampled_from(USERS), min_size=1, max_size=2,
                                  unique=True))
    def members_on_the_process_to_kill(self, accounts: list[str]) -> None:
        """Process 1 starts with members in the group, so that a kill evicts someone."""
        for account in accounts:
            self.numbers += 1
            conn = self.run(self.cluster.connect(self.numbers, account, 1))
            self.run(conn.session.join_group(self.cluster.groups[0]))
            conn.groups.add(0)
            self.model.join(0, account, conn.number)

    @precondition(lambda self: len(self._usable()) < 8)
    @rule(account=st.sampled_from(USERS), server=st.sampled_from((1, 0)),
          groups=st.sets(st.integers(0, GROUPS - 1)))
    def connect(self, account: str, server: int, groups: set[int]) -> None:
        """A new connection, which joins some groups at once."""
        self._count("connect")
        if not self.cluster.alive[server]:
            server = 0
        self.numbers += 1
        conn = self.run(self.cluster.connect(self.numbers, account, server))
        for g in sorted(groups):
            self.run(conn.session.join_group(self.cluster.groups[g]))
            conn.groups.add(g)
            self.model.join(g, account, conn.number)

    @precondition(lambda self: bool(self._usable()))
    @rule(data=st.data(), g=st.integers(0, GROUPS - 1))
    def join(self, data: st.DataObject, g: int) -> None:
        self._count("join")
        conn = data.draw(st.sampled_from(self._usable()), label="connection")
        self.run(conn.session.join_group(self.cluster.groups[g]))
        conn.groups.add(g)
        self.model.join(g, conn.account, conn.number)

    @precondition(lambda self: any(c.groups for c in self._usable()))
    @rule(data=st.data())
    def quit(self, data: st.DataObject) -> None:
        self._count("quit")
        conn = data.draw(st.sampled_from([c for c in self._usable() if c.groups]),
                         label="connection")
        g = data.draw(st.sampled_from(sorted(conn.groups)), label="group")
        self.run(conn.session.quit_group(self.cluster.groups[g]))
        conn.groups.discard(g)
        self.model.leave(g, conn.account, conn.number)

    @precondition(lambda self: any(len(c.groups) < GROUPS for c in self._usable()))
    @rule(data=st.data())
    def quit_elsewhere(self, data: st.DataObject) -> None:
        """Quitting a group the connection is not in: 10007, and nothing changes."""
        self._count("quit_elsewhere")
        conn = data.draw(st.sampled_from([c for c in self._usable()
                                          if len(c.groups) < GROUPS]), label="connection")
        g = data.draw(st.sampled_from([g for g in range(GROUPS) if g not in conn.groups]),
                      label="group")
        try:
            self.run(conn.session.quit_group(self.cluster.groups[g]))
        except GatewayError as exc:
            assert exc.code == 10007, exc
        else:
            raise AssertionError("quit_group of a group never joined succeeded")

    @precondition(lambda self: bool(self._usable()))
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        self._count("disconnect")
        conn = data.draw(st.sampled_from(self._usable()), label="connection")
        self.run(conn.stack.aclose())
        del self.cluster.conns[conn.number]
        for g in conn.groups:
            self.model.leave(g, conn.account, conn.number)
        self.run(self._settled(SETTLE))  # the server sees the close a moment later

    def _accounts(self, data: st.DataObject, g: int) -> st.SearchStrategy[str]:
        """Accounts to mark: mostly those listed in the group (where marks apply)."""
        listed = sorted(self.model.groups[g])
        if not listed:
            return st.sampled_from(ACCOUNTS)
        return st.one_of(st.sampled_from(listed), st.sampled_from(ACCOUNTS)) \
            if data.draw(st.booleans(), label="any account") else st.sampled_from(listed)

    @rule(data=st.data(), server=st.integers(0, 1), g=st.integers(0, GROUPS - 1),
          command=st.sampled_from((1, 2)))
    def marks(self, data: st.DataObject, server: int, g: int, command: int) -> None:
        self._count("marks")
        server = server if self.cluster.alive[server] else 0
        items = data.draw(st.dictionaries(
            self._accounts(data, g),
            st.lists(st.sampled_from(MARKS), min_size=1, max_size=2, unique=True),
            min_size=1, max_size=3), label="items")
        pairs = list(items.items())
        reply = self.run(self.cluster.tims[server].call(f"{AV}/modify_user_info", {
            "GroupId": self.cluster.groups[g], "CommandType": command,
            "MemberList": [{"Member_Account": a, "Marks": ms} for a, ms in pairs]}))
        ok = self.model.set_marks(g, pairs) if command == 1 else \
            self.model.delete_marks(g, pairs)
        assert reply["ErrorCode"] == (0 if ok else 10004), (pairs, reply)

    @rule(server=st.integers(0, 1), g=st.integers(0, GROUPS - 1), add=st.booleans(),
          accounts=st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=3, unique=True))
    def robots(self, server: int, g: int, add: bool, accounts: list[str]) -> None:
        self._count("robots")
        server = server if self.cluster.alive[server] else 0
        name = "add_robots" if add else "del_robots"
        reply = self.run(self.cluster.tims[server].call(
            f"{AV}/{name}", {"GroupId": self.cluster.groups[g], "Member_Account": accounts}))
        assert reply["ErrorCode"] == 0, reply
        items = [(a, [500]) for a in accounts]
        if add:
            self.model.set_marks(g, items)
        else:
            self.model.delete_marks(g, items)

    @precondition(lambda self: self.cluster.alive[1] and sum(self.ran.values()) >= 5)
    @rule()
    def kill(self) -> None:
        """Process 1 dies: no lease renewal, no cleanup; process 0 evicts its users once
        the lease ran out (its clock moves past it). A run that did not kill it does at
        its end (``teardown``)."""
        self._count("kill")
        self._kill()

    def _kill(self) -> None:
        self.cluster.alive[1] = False
        self.run(self.cluster.servers[1].runtime.presence.close())  # releases nothing
        # Within the lease nothing changed: the dead process's users are still listed.
        problem = self.run(self._matches())
        assert problem is None, f"before the lease ran out: {problem}"
        for conn in [c for c in self.cluster.conns.values() if c.server == 1]:
            for g in conn.groups:
                self.model.leave(g, conn.account, conn.number)
                STEPS_RUN["(in a group on the killed process)"] = \
                    STEPS_RUN.get("(in a group on the killed process)", 0) + 1
        self.cluster.servers[0].clock.advance(LEASE_TTL + 1)
        self.run(self._settled(SETTLE))

    @invariant()
    def lists_match_the_model(self) -> None:
        problem = self.run(self._matches())
        assert problem is None, problem


async def test_two_processes_follow_the_model(tmp_path: Path) -> None:
    await require_redis(REDIS_URL)
    PresenceMachine.loop = asyncio.get_running_loop()
    PresenceMachine.db_url = f"sqlite:///{tmp_path}/shared.db"
    profile = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, derandomize=True,
                       database=None, deadline=None, suppress_health_check=list(HealthCheck))
    STEPS_RUN.clear()
    await asyncio.to_thread(run_state_machine_as_test, PresenceMachine, settings=profile)
    print(f"steps run: {STEPS_RUN}")
