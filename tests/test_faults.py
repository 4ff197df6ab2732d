"""Faults survived: Redis hangs or restarts, PostgreSQL drops or refuses connections.

Each fault is real: a ``redis-server`` of the test's own is paused (SIGSTOP) or killed and
restarted empty; the server's PostgreSQL backends are terminated (``pg_terminate_backend``)
and, through a TCP proxy, refused. Clients are real gateway sessions and REST calls. What
is promised, with the figures these tests measure: docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from websockets.exceptions import ConnectionClosed

from opentim.app import create_app
from opentim.client.rest import RestClient
from opentim.domain.apps import App
from opentim.gateway.endpoint import CLOSE_LEASE_LOST
from opentim.presence.redis import SOCKET_TIMEOUT
from opentim.runtime import Runtime
from opentim.settings import Settings
from tests.helpers import (
    Clock,
    LiveServer,
    Server,
    all_pages,
    create_group,
    eventually,
    import_accounts,
    next_event,
)
from tests.helpers.faults import (
    PrivateRedis,
    TcpProxy,
    pg_database,
    private_redis,
    redis_server,
    terminate_backends,
    through,
)

AV = "group_open_avchatroom_http_svc"
SVC = "group_open_http_svc"
QUERY = "openim/query_online_status"
# Short background intervals so that the tests wait seconds, not the defaults' 5-15 s; the
# pause below stays shorter than the lease, as a brief Redis hang would.
PRESENCE = {"refresh_interval": 1.0}
BOUND = 10.0
# A REST call that needs Redis fails within the client's socket timeout (2 s) and a bit.
REDIS_FAIL_BOUND = 3.0


def _text(value: str) -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": value}}]


@contextlib.asynccontextmanager
async def two_servers(tmp_path: Path, redis: PrivateRedis
                      ) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    """Two server processes' worth of servers sharing a database and the private Redis."""
    prefix = f"faults-{uuid.uuid4().hex[:8]}"
    db_url = f"sqlite:///{tmp_path}/shared.db"
    async with redis_server(db_url, redis.url, prefix, presence=PRESENCE,
                            sweep_interval=1.0) as a, \
            redis_server(db_url, redis.url, prefix, presence=PRESENCE,
                         sweep_interval=1.0) as b:
        yield a, b


@pytest.fixture
def no_rest_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The REST edge logs no error (an unhandled exception, with its traceback)."""
    yield
    errors = [r.getMessage() for r in caplog.records
              if r.name == "opentim.protocol.rest" and r.levelno >= logging.ERROR]
    assert not errors, errors


async def timed(tim: RestClient, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    reply = await tim.call(path, body)
    return reply, time.monotonic() - started


def redis_calls(group_id: str) -> list[tuple[str, dict[str, Any], int]]:
    """REST calls that need Redis (presence, the send guards), with the code each fails with."""
    return [(f"{AV}/get_members", {"GroupId": group_id, "Timestamp": 0}, 10002),
            (QUERY, {"To_Account": ["stays_a"]}, 91000),
            (f"{SVC}/send_group_msg", {"GroupId": group_id, "Random": 7,
                                       "MsgBody": _text("hi")}, 10002)]


async def fail_for_redis(tim: RestClient, group_id: str) -> dict[str, float]:
    """Each call needing Redis fails with its service's internal-error code and a text
    naming Redis; a call that needs only the database is answered as usual. Seconds each."""
    took: dict[str, float] = {}
    for path, body, code in redis_calls(group_id):
        reply, took[path] = await timed(tim, path, body)
        assert (reply["ActionStatus"], reply["ErrorCode"]) == ("FAIL", code), reply
        assert reply["ErrorInfo"] == ("internal error: Redis is unreachable or not "
                                      "answering, try again"), reply
    reply, took["account_import"] = await timed(tim, "im_open_login_svc/account_import",
                                                {"UserID": f"new{uuid.uuid4().hex[:6]}"})
    assert reply["ErrorCode"] == 0, reply
    return took


async def listed(tim: RestClient, group_id: str) -> list[str]:
    return sorted(await all_pages(tim, group_id))


async def converged(tims: tuple[RestClient, ...], group_id: str, wanted: list[str]) -> None:
    """Every process lists exactly ``wanted``, and reports them (only them) online."""
    async def same() -> bool:
        return all([await listed(t, group_id) == wanted for t in tims])

    await eventually(same, f"the online lists converge to {wanted}", BOUND)
    everyone = ["gone", "stays_a", "stays_b"]
    for tim in tims:
        reply = await tim.ok(QUERY, {"To_Account": everyone})
        assert {r["To_Account"]: r["Status"] for r in reply["QueryResult"]} == {
            a: "Online" if a in wanted else "Offline" for a in everyone}


async def relayed(server: LiveServer, app: App, group_id: str, listener: Any) -> None:
    """A join through ``server`` reaches ``listener``, a session on the other process: the
    relay carries events again (tried until it has resubscribed)."""
    deadline = time.monotonic() + BOUND
    while True:
        async with server.connect(app, "probe") as probe:
            await probe.join_group(group_id)
            with contextlib.suppress(TimeoutError):
                while "probe" not in (await next_event(listener, "members_changed", 1.5)
                                      ).get("Online", []):
                    pass
                return
        assert time.monotonic() < deadline, "the relay never resubscribed"


async def test_a_redis_that_hangs_then_comes_back(tmp_path: Path, no_rest_traceback: None
                                                  ) -> None:
    async with private_redis(tmp_path) as redis, two_servers(tmp_path, redis) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "gone", "stays_a", "stays_b", "probe", "idle")
            group_id = await create_group(tim_a, "AVChatRoom")
            async with a.connect(app, "gone") as gone, a.connect(app, "stays_a") as on_a, \
                    b.connect(app, "stays_b") as on_b, a.connect(app, "idle") as idle:
                for session in (gone, on_a, on_b):
                    await session.join_group(group_id)
                await converged((tim_a, tim_b), group_id, ["gone", "stays_a", "stays_b"])
                redis.pause()  # SIGSTOP, for less than the lease (15 s)
                try:
                    took = await fail_for_redis(tim_a, group_id)
                    # every Redis client gives up after its 2 s socket timeout (presence's,
                    # and the send guards' in messaging/guards.py)
                    assert took[f"{AV}/get_members"] < REDIS_FAIL_BOUND, took
                    assert took[QUERY] < REDIS_FAIL_BOUND, took
                    assert took[f"{SVC}/send_group_msg"] < REDIS_FAIL_BOUND, took
                    await gone.close()  # its leave cannot be recorded
                    await asyncio.sleep(SOCKET_TIMEOUT + 0.5)
                finally:
                    redis.resume()
                resumed = time.monotonic()
                # a could not record a leave: it starts over, its clients reconnect (4009)
                await asyncio.wait_for(on_a.wait_closed(), BOUND)
                assert on_a.close_code == CLOSE_LEASE_LOST
                closed_after = time.monotonic() - resumed
                async with a.connect(app, "stays_a") as again:
                    await again.join_group(group_id)
                    await converged((tim_a, tim_b), group_id, ["stays_a", "stays_b"])
                    assert on_b.close_code is None  # b lost nothing: its clients stay
                    await relayed(a, app, group_id, on_b)
                    # a connection in no group is left open, and still reads online
                    await idle.heartbeat()
                    reply = await tim_b.ok(QUERY, {"To_Account": ["idle"]})
                    assert reply["QueryResult"][0]["Status"] == "Online"
    print(f"Redis paused: {took}; 4009 {closed_after:.2f} s after it resumed")


async def test_the_relay_subscription_outlives_a_quiet_spell(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The relay's client has the 2 s socket timeout of every OpenTIM Redis client; its
    subscription's blocking read must not end at it: a message after a silence longer
    than the timeout still crosses, and nothing was resubscribed."""
    async with private_redis(tmp_path) as redis, two_servers(tmp_path, redis) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a:
            await import_accounts(tim_a, "far")
            group_id = await create_group(tim_a, "AVChatRoom")
            async with b.connect(app, "far", heartbeat_interval=0) as far:
                await far.join_group(group_id)
                await asyncio.sleep(SOCKET_TIMEOUT * 2 + 0.5)  # nothing published
                await tim_a.ok(f"{SVC}/send_group_msg", {"GroupId": group_id, "Random": 1,
                                                          "MsgBody": _text("after")})
                assert (await far.next_message())["MsgBody"] == _text("after")
    lost = [r.getMessage() for r in caplog.records if "lost its Redis" in r.getMessage()]
    assert not lost, lost


async def test_a_redis_that_stalls_briefly(tmp_path: Path, no_rest_traceback: None) -> None:
    """A Redis busy for 3.5 s (DEBUG SLEEP: a slow command, a fork): calls in the stall
    fail in 2 s; nothing was lost, so no client is disconnected."""
    async with private_redis(tmp_path) as redis, two_servers(tmp_path, redis) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "gone", "stays_a", "stays_b")
            group_id = await create_group(tim_a, "AVChatRoom")
            async with a.connect(app, "stays_a") as on_a, b.connect(app, "stays_b") as on_b:
                for session in (on_a, on_b):
                    await session.join_group(group_id)
                await redis.stall(3.5)
                await asyncio.sleep(0.1)
                reply, took = await timed(tim_a, f"{AV}/get_members",
                                          {"GroupId": group_id, "Timestamp": 0})
                assert reply["ErrorCode"] == 10002 and "Redis" in reply["ErrorInfo"], reply
                assert took < REDIS_FAIL_BOUND
                await asyncio.sleep(3.5)  # past the stall, and a few lease refreshes
                assert (on_a.close_code, on_b.close_code) == (None, None)
                await on_a.heartbeat()
                await converged((tim_a, tim_b), group_id, ["stays_a", "stays_b"])


async def test_a_redis_restarted_empty(tmp_path: Path, no_rest_traceback: None) -> None:
    async with private_redis(tmp_path) as redis, two_servers(tmp_path, redis) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "gone", "stays_a", "stays_b", "probe")
            group_id = await create_group(tim_a, "AVChatRoom")
            async with a.connect(app, "gone") as gone, a.connect(app, "stays_a") as on_a, \
                    b.connect(app, "stays_b") as on_b:
                for session in (gone, on_a, on_b):
                    await session.join_group(group_id)
                redis.kill()  # connections reset, the port refuses
                took = await fail_for_redis(tim_a, group_id)
                assert max(took.values()) < 1.0, took  # refused: no waiting at all
                # a new gateway connection fails at once (its registration cannot be
                # stored; the socket is dropped without a close frame: 1006)
                attempted = time.monotonic()
                with pytest.raises(ConnectionClosed):
                    async with a.connect(app, "stays_a"):
                        pass
                assert time.monotonic() - attempted < 1.0
                await gone.close()
                await redis.restart()  # empty: every lease, list and connection is gone
                restarted = time.monotonic()
                for session in (on_a, on_b):  # both processes start over
                    await asyncio.wait_for(session.wait_closed(), BOUND)
                    assert session.close_code == CLOSE_LEASE_LOST
                closed_after = time.monotonic() - restarted
                async with a.connect(app, "stays_a") as again_a, \
                        b.connect(app, "stays_b") as again_b:
                    await again_a.join_group(group_id)
                    await again_b.join_group(group_id)
                    await relayed(b, app, group_id, again_a)
                    await converged((tim_a, tim_b), group_id, ["stays_a", "stays_b"])
                    converged_after = time.monotonic() - restarted
    print(f"Redis killed: {took}; 4009 {closed_after:.2f} s after the restart, lists "
          f"converged {converged_after:.2f} s after it")


async def test_a_redis_restored_from_an_older_snapshot(tmp_path: Path,
                                                      no_rest_traceback: None) -> None:
    """A persistent Redis restarts with a snapshot taken before a member left: the lists
    it restores are stale, and the leases older than what each process last wrote."""
    async with private_redis(tmp_path) as redis, two_servers(tmp_path, redis) as (a, b):
        app = await a.new_app(rate_limit=0)
        await b.runtime.apps.refresh()
        async with a.client(app) as tim_a, b.client(app) as tim_b:
            await import_accounts(tim_a, "gone", "stays_a", "stays_b")
            group_id = await create_group(tim_a, "AVChatRoom")
            async with a.connect(app, "stays_a") as on_a, b.connect(app, "stays_b") as on_b:
                async with a.connect(app, "gone") as gone:
                    for session in (gone, on_a, on_b):
                        await session.join_group(group_id)
                    await redis.save()
                await converged((tim_a, tim_b), group_id, ["stays_a", "stays_b"])
                await asyncio.sleep(1.5)  # both processes refresh their leases meanwhile
                await redis.restart()  # loads the snapshot: "gone" is listed again
                for session in (on_a, on_b):  # neither finds its lease as it left it
                    await asyncio.wait_for(session.wait_closed(), BOUND)
                    assert session.close_code == CLOSE_LEASE_LOST
                async with a.connect(app, "stays_a") as again_a, \
                        b.connect(app, "stays_b") as again_b:
                    await again_a.join_group(group_id)
                    await again_b.join_group(group_id)
                    await converged((tim_a, tim_b), group_id, ["stays_a", "stays_b"])


# --- PostgreSQL --------------------------------------------------------------------------------


class Traffic:
    """REST writes in a loop (account_import, send_group_msg, sendmsg): what each answered."""

    def __init__(self, tim: RestClient, group_id: str) -> None:
        self.tim = tim
        self.group_id = group_id
        self.acked: dict[str, list[str]] = {"import": [], "group": [], "c2c": []}
        self.failed: list[tuple[str, int, str, float]] = []  # (what, code, info, seconds)
        self.last_ok = 0.0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """One loop per kind, concurrently, as several REST clients would."""
        await asyncio.gather(*(self._loop(what) for what in self.acked))

    def _call(self, what: str, n: int) -> tuple[str, dict[str, Any], str]:
        if what == "import":
            return "im_open_login_svc/account_import", {"UserID": f"u{n}"}, f"u{n}"
        if what == "group":
            return (f"{SVC}/send_group_msg",
                    {"GroupId": self.group_id, "Random": n, "MsgBody": _text(f"g{n}")}, f"g{n}")
        return ("openim/sendmsg", {"From_Account": "alice", "To_Account": "bob",
                                   "MsgRandom": n, "MsgBody": _text(f"c{n}")}, f"c{n}")

    async def _loop(self, what: str) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            path, body, key = self._call(what, n)
            started = time.monotonic()
            reply = await self.tim.call(path, body)  # HTTP 200, or this raises
            took = time.monotonic() - started
            if reply["ErrorCode"] == 0:
                self.acked[what].append(key)
                self.last_ok = time.monotonic()
            else:
                self.failed.append((what, reply["ErrorCode"], reply["ErrorInfo"], took))
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()


async def _group_texts(tim: RestClient, group_id: str) -> set[str]:
    texts: set[str] = set()
    body: dict[str, Any] = {"GroupId": group_id, "ReqMsgNumber": 20}
    while True:
        page = await tim.ok(f"{SVC}/group_msg_get_simple", body)
        texts |= {m["MsgBody"][0]["MsgContent"]["Text"] for m in page["RspMsgList"]
                  if m["MsgBody"]}
        seqs = [m["MsgSeq"] for m in page["RspMsgList"]]
        if not seqs or min(seqs) <= 1:  # (IsFinished: only whether 20 were asked for)
            return texts
        body["ReqMsgSeq"] = min(seqs) - 1


async def _c2c_texts(tim: RestClient) -> set[str]:
    texts: set[str] = set()
    body: dict[str, Any] = {"Operator_Account": "alice", "Peer_Account": "bob", "MaxCnt": 100,
                            "MinTime": 0, "MaxTime": int(time.time()) + 60}
    while True:
        page = await tim.ok("openim/admin_getroammsg", body)
        texts |= {m["MsgBody"][0]["MsgContent"]["Text"] for m in page["MsgList"]}
        if page["Complete"]:
            return texts
        body = {**body, "MaxTime": page["LastMsgTime"], "LastMsgKey": page["LastMsgKey"]}


async def _imported(tim: RestClient, accounts: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(accounts), 100):
        reply = await tim.ok("im_open_login_svc/account_check", {"CheckItem": [
            {"UserID": a} for a in accounts[start:start + 100]]})
        found |= {r["UserID"] for r in reply["ResultItem"] if r["AccountStatus"] == "Imported"}
    return found


async def test_postgresql_connections_terminated_and_refused(no_rest_traceback: None
                                                              ) -> None:
    async with pg_database() as db_url:
        pg = make_url(db_url)
        proxy = TcpProxy(pg.host or "127.0.0.1", pg.port or 5432)
        await proxy.accept()
        clock = Clock()
        runtime = Runtime.create(Settings(db=through(db_url, proxy), app_refresh_interval=0.2),
                                 clock=clock)
        asgi = create_app(runtime=runtime)
        await runtime.start()
        server = Server(runtime, asgi, clock)
        try:
            app = await server.new_app(rate_limit=0, group_msg_rate=0)
            async with server.client(app) as tim:
                await import_accounts(tim, "alice", "bob")
                group_id = await create_group(tim, "Public")
                traffic = Traffic(tim, group_id)
                task = asyncio.create_task(traffic.run())
                await asyncio.sleep(0.5)
                figures: dict[str, Any] = {}
                # 1. the server's backends terminated, twice, mid-traffic
                for round_ in (1, 2):
                    figures[f"terminated{round_}"] = await terminate_backends(db_url)
                    await asyncio.sleep(0.5)
                failed_before = len(traffic.failed)
                figures["failed_after_terminations"] = failed_before
                # 2. PostgreSQL refuses connections (and the open ones are reset)
                await proxy.refuse()
                await asyncio.sleep(1.0)
                refused = traffic.failed[failed_before:]
                assert refused, "nothing failed while PostgreSQL refused connections"
                figures["slowest_refused_call"] = round(max(f[3] for f in refused), 3)
                await proxy.accept()
                back = time.monotonic()
                await eventually(lambda: _ok_since(traffic, back), "calls succeed again", BOUND)
                figures["recovered_after"] = round(traffic.last_ok - back, 3)
                await asyncio.sleep(0.3)
                traffic.stop()
                await task
                print("postgresql:", figures, {k: len(v) for k, v in traffic.acked.items()},
                      len(traffic.failed), traffic.failed[:3])
                # every failure named the database, with the service's internal-error code
                codes = {"import": 70500, "group": 10002, "c2c": 91000}
                for what, code, info, _took in traffic.failed:
                    assert code == codes[what] and "the database is unreachable" in info, (
                        what, code, info)
                # nothing acknowledged is lost
                assert await _imported(tim, traffic.acked["import"]) == set(
                    traffic.acked["import"])
                assert set(traffic.acked["group"]) <= await _group_texts(tim, group_id)
                assert set(traffic.acked["c2c"]) <= await _c2c_texts(tim)
        finally:
            await runtime.close()
            await proxy.close()


async def _ok_since(traffic: Traffic, since: float) -> bool:
    return traffic.last_ok > since
