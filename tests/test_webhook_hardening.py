"""Webhook hardening: which callback URLs are refused, redirects never followed, no secret
in any log line, one order key unable to fill an app's queue, bounded senders and replies.

Deliveries go from a real server to real HTTP receivers on loopback; the callbacks come
from real REST calls and real gateway connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import pytest

from opentim.domain.apps import App
from opentim.webhooks.delivery import sign
from opentim.webhooks.resolver import GuardedResolver
from opentim.webhooks.urls import OwnAddress, check_callback_url, origin, refused_address
from tests.helpers import (
    LiveServer,
    create_group,
    import_accounts,
    live_server,
    read_body,
    serve_asgi,
)

JOIN = "Group.CallbackAfterNewMemberJoin"
STATE = "State.StateChange"
SVC = "group_open_http_svc"


# --- the URL rules, as pure functions ----------------------------------------------------


@pytest.mark.parametrize(("url", "normalised"), [
    ("http://127.0.0.1:9000/im-callback", "http://127.0.0.1:9000/im-callback"),
    ("http://localhost:9000/cb", "http://localhost:9000/cb"),
    ("http://[::1]:9000/cb", "http://[::1]:9000/cb"),
    ("HTTPS://Backend.Example.COM:443/cb?team=a", "https://backend.example.com/cb?team=a"),
    ("http://10.0.0.5/cb", "http://10.0.0.5/cb"),  # private ranges: self-hosted backends
    ("http://192.168.1.2:8000/cb", "http://192.168.1.2:8000/cb"),
    ("http://172.16.0.1/cb", "http://172.16.0.1/cb"),
    ("http://100.64.1.1/cb", "http://100.64.1.1/cb"),
    ("http://[fd12::1]/cb", "http://[fd12::1]/cb"),
    ("https://bücher.example/cb", "https://xn--bcher-kva.example/cb"),
    ("http://backend/v4-callbacks/x", "http://backend/v4-callbacks/x"),
    ("http://backend/api/v4/cb", "http://backend/api/v4/cb"),  # only a leading /v4/
])
def test_callback_urls_that_are_accepted(url: str, normalised: str) -> None:
    assert check_callback_url(url) == normalised


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://backend/cb", "http"),
    ("backend.example.com/cb", "http"),
    ("http:///cb", "no host"),
    ("http://user:pass@backend/cb", "user name or password"),
    ("http://user@backend/cb", "user name or password"),
    ("http://backend/cb#frag", "fragment"),
    ("http://backend/cb#", "fragment"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://169.254.0.23/latest/meta-data/", "link-local"),  # Tencent CVM
    ("http://[fe80::1]/cb", "link-local"),
    ("http://[fe80::1%25eth0]/cb", "zone"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://METADATA.Google.Internal./computeMetadata/v1/", "metadata"),
    ("http://metadata/computeMetadata/v1/", "metadata"),
    ("http://metadata.tencentyun.com/latest/meta-data/", "metadata"),
    ("http://100.100.100.200/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
    ("http://2852039166/", "legacy"),
    ("http://0xa9fea9fe/", "legacy"),
    ("http://169.254.43518/", "legacy"),
    ("http://127.1:9000/", "legacy"),
    ("http://0.0.0.0:9000/cb", "not a host"),
    ("http://[::]:9000/cb", "not a host"),
    ("http://224.0.0.1/cb", "multicast"),
    ("http://255.255.255.255/cb", "broadcast"),
    ("http://backend/v4/group_open_http_svc/destroy_group", "/v4/"),
    ("http://backend/v4", "/v4/"),
    ("http://backend/V4/x", "/v4/"),
    ("http://backend/%76%34/x", "/v4/"),
    ("http://backend//v4/x", "/v4/"),
    ("http://backend/a/../v4/x", "/v4/"),
    ("http://backend/a/%2e%2e/v4/x", "/v4/"),
    ("http://backend/a/%252e%252e/v4/x", "/v4/"),
    ("http://backend/cb?Sign=abc", "'Sign'"),
    ("http://backend/cb?x=1&sdkappid=1", "'sdkappid'"),
    ("http://backend/c b", "whitespace"),
    ("http://backend/cb\r\nX-Injected: 1", "control"),
    ("http://backend\\@evil/cb", "backslash"),
    ("http://backend:0/cb", "port 0"),
    ("http://[::1/cb", "not a valid URL"),
    ("http://backend/" + "a" * 3000, "longer than"),
])
def test_callback_urls_that_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_callback_url(url)
    assert reason in str(refused.value), str(refused.value)
    assert "abc" not in str(refused.value)  # the query's values are never repeated


@pytest.mark.parametrize(("own", "url", "refused"), [
    (OwnAddress("127.0.0.1", 8080), "http://127.0.0.1:8080/cb", True),
    (OwnAddress("127.0.0.1", 8080), "http://localhost:8080/cb", True),
    (OwnAddress("127.0.0.1", 8080), "http://[::1]:8080/cb", True),
    (OwnAddress("0.0.0.0", 8080), "http://127.0.0.1:8080/cb", True),
    (OwnAddress("chat.example.com", 443), "https://CHAT.example.com/cb", True),
    (OwnAddress("127.0.0.1", 8080), "http://127.0.0.1:8081/cb", False),
    (OwnAddress("127.0.0.1", 8080), "http://backend:8080/cb", False),
    (OwnAddress(), "http://127.0.0.1:8080/cb", False),  # port unknown: no check
])
def test_this_servers_own_address_is_refused(own: OwnAddress, url: str, refused: bool) -> None:
    if refused:
        with pytest.raises(ValueError, match="own address"):
            check_callback_url(url, own)
    else:
        check_callback_url(url, own)


def test_address_rules_and_log_form() -> None:
    import ipaddress

    assert refused_address(ipaddress.ip_address("127.0.0.1")) is None
    assert refused_address(ipaddress.ip_address("10.1.2.3")) is None
    assert refused_address(ipaddress.ip_address("8.8.8.8")) is None
    assert "link-local" in str(refused_address(ipaddress.ip_address("169.254.169.254")))
    assert "link-local" in str(refused_address(ipaddress.ip_address("fe80::abcd")))
    assert origin("https://u:p@hooks.example.com:8443/T0/B0/capability?Sign=x&a=b") == \
        "https://hooks.example.com:8443"


async def test_the_resolver_refuses_names_that_resolve_to_this_server() -> None:
    """A name (not an IP literal) is judged by what it resolves to, at connect time."""
    guarded = GuardedResolver(OwnAddress("127.0.0.1", 8080))
    try:
        with pytest.raises(OSError, match="own address"):
            await guarded.resolve("localhost", 8080)
        results = await guarded.resolve("localhost", 9000)
        assert results and all(r["port"] == 9000 for r in results)
    finally:
        await guarded.close()


# --- a real receiver whose answers a test scripts ---------------------------------------


@dataclass
class Hit:
    path: str
    query: dict[str, str]
    body: Any


Answer = Callable[[Hit, Callable[[dict[str, Any]], Awaitable[None]],
                   Callable[[], Awaitable[dict[str, Any]]]], Awaitable[None]]


async def ok(_hit: Hit, send: Any, _receive: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"ActionStatus":"OK"}'})


@dataclass
class Scripted:
    """Records every request and lets ``answer`` reply to it."""

    answer: Answer = ok
    base: str = ""
    hits: list[Hit] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.base + "/im-callback"

    def of(self, command: str) -> list[Hit]:
        return [h for h in self.hits if h.query.get("CallbackCommand") == command]

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        hit = Hit(scope["path"], dict(parse_qsl(scope["query_string"].decode())),
                  msgspec.json.decode(body) if body else None)
        self.hits.append(hit)
        await self.answer(hit, send, receive)


@contextlib.asynccontextmanager
async def scripted(answer: Answer = ok) -> AsyncIterator[Scripted]:
    receiver = Scripted(answer)
    async with serve_asgi(receiver) as base:
        receiver.base = base
        yield receiver


def redirect(status: int, location: Callable[[Hit], str]) -> Answer:
    async def answer(hit: Hit, send: Any, _receive: Any) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"location", location(hit).encode())]})
        await send({"type": "http.response.body", "body": b""})
    return answer


def status(code: int) -> Answer:
    async def answer(_hit: Hit, send: Any, _receive: Any) -> None:
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})
    return answer


def slow(seconds: float, when: Callable[[Hit], bool] = lambda _h: True) -> Answer:
    async def answer(hit: Hit, send: Any, receive: Any) -> None:
        if when(hit):
            await asyncio.sleep(seconds)
        await ok(hit, send, receive)
    return answer


async def add_member(live: LiveServer, app: App, group_id: str, account: str) -> None:
    async with live.client(app) as tim:
        await tim.ok(f"{SVC}/add_group_member",
                     {"GroupId": group_id, "MemberList": [{"Member_Account": account}]})


async def joined_groups(live: LiveServer, app: App, count: int) -> list[str]:
    """``count`` Public groups, each sent one Group.CallbackAfterNewMemberJoin."""
    async with live.client(app) as tim:
        await import_accounts(tim, "owner", "joiner")
        groups = [await create_group(tim, "Public", Owner_Account="owner")
                  for _ in range(count)]
        for group_id in groups:
            await tim.ok(f"{SVC}/add_group_member",
                         {"GroupId": group_id, "MemberList": [{"Member_Account": "joiner"}]})
    return groups


async def drained(live: LiveServer, seconds: float = 30.0) -> None:
    async with asyncio.timeout(seconds):  # a stall fails the test, it never hangs
        await live.runtime.webhooks.drain()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- redirects are never followed ------------------------------------------------------


async def test_a_redirect_loop_costs_exactly_one_request_per_attempt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    loop = redirect(302, lambda hit: "/im-callback?" + "&".join(
        f"{k}={v}" for k, v in hit.query.items()))
    async with scripted(loop) as receiver, \
            live_server(f"sqlite:///{tmp_path}/r.db", "memory", webhook_retries=2) as live:
        app = await live.new_app(rate_limit=0, callback_url=receiver.url, callback_token="t",
                                 callback_commands=frozenset({JOIN}))
        await joined_groups(live, app, 2)
        await drained(live)
        metrics = live.runtime.webhooks.metrics
        assert len(receiver.hits) == 2 * 3  # two callbacks, retries + 1 requests each
        assert metrics[(app.sdkappid, "failed")] == 2
        assert metrics[(app.sdkappid, "retried")] == 4
        assert metrics[(app.sdkappid, "sent")] == 0


async def test_a_307_never_reaches_its_target(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with scripted() as target, \
            scripted(redirect(307, lambda _hit: target.url)) as receiver, \
            live_server(f"sqlite:///{tmp_path}/r.db", "memory", webhook_retries=1) as live:
        app = await live.new_app(rate_limit=0, callback_url=receiver.url,
                                 callback_commands=frozenset({JOIN}))
        await joined_groups(live, app, 1)
        await drained(live)
        assert len(receiver.hits) == 2
        assert target.hits == []  # the body was never re-POSTed elsewhere
        assert live.runtime.webhooks.metrics[(app.sdkappid, "failed")] == 1


# --- no secret in any log line ---------------------------------------------------------


async def test_failing_deliveries_log_no_sign_token_or_request_time(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    token = "tok-" + secrets.token_hex(12)
    request_time = int(time.time()) + 7  # the server's pinned clock: what RequestTime says
    async with scripted(status(500)) as refusing, \
            scripted(redirect(302, lambda hit: f"{refusing.url}?Sign={hit.query['Sign']}")) \
            as moving, \
            scripted(redirect(307, lambda hit: "/im-callback?" + "&".join(
                f"{k}={v}" for k, v in hit.query.items()))) as looping, \
            scripted(slow(5.0)) as sleeping, \
            live_server(f"sqlite:///{tmp_path}/l.db", "memory", webhook_retries=1,
                        webhook_timeout=0.5) as live:
        live.clock.pinned = float(request_time)
        urls = [refusing.url, moving.url, looping.url, sleeping.url,
                f"http://127.0.0.1:{closed_port()}/im-callback?team=x",
                "http://169.254.169.254/latest/meta-data/"]  # refused at delivery
        apps = [await live.new_app(rate_limit=0, callback_url=url, callback_token=token,
                                   callback_commands=frozenset({JOIN})) for url in urls]
        for app in apps:
            await joined_groups(live, app, 1)
        await drained(live)
        metrics = live.runtime.webhooks.metrics
        assert [metrics[(app.sdkappid, "failed")] for app in apps] == [1] * len(apps)
        assert len(sleeping.hits) == 2 and len(looping.hits) == 2
    leaked = [sign(token, request_time), token, str(request_time), "Sign=", "RequestTime=",
              "meta-data", "team=x"]
    # aiosqlite's DEBUG lines echo SQL parameters (the app row with its token, group rows
    # with the pinned time): the database driver's own output, reported separately.
    records = [r for r in caplog.records if not r.name.startswith("aiosqlite")]
    assert any(r.name.startswith("opentim.webhooks") for r in records)
    lines = [logging.Formatter().format(r) for r in records]  # with any traceback
    found = [(secret, line) for secret in leaked for line in lines if secret in line]
    assert found == []
    # ... and each failure still says what went wrong, where (scheme://host:port only).
    failures = [r.getMessage() for r in records if "failed after 2 attempts" in r.getMessage()]
    assert len(failures) == 5, failures
    assert any("HTTP 500" in m and refusing.base in m for m in failures)
    assert any("HTTP 302 (redirects are not followed" in m for m in failures)
    assert any("no answer within 0.5 s" in m for m in failures)
    assert any("cannot connect" in m for m in failures)
    assert any("169.254.169.254" in m and "link-local" in m for m in
               (r.getMessage() for r in records))


# --- the delivery-time check: old rows, and this server itself ------------------------


async def test_old_rows_and_self_targets_are_never_posted_to(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """URLs stored before the CLI checked them are checked again before any attempt.

    ``port``: this server's own port as ``opentim serve`` would have it; the live server
    really listens elsewhere, and the receiver standing in for it listens on that port.
    """
    async with scripted() as itself, scripted() as other:
        port = int(itself.base.rsplit(":", 1)[1])
        async with live_server(f"sqlite:///{tmp_path}/s.db", "memory", port=port) as live:
            urls = [itself.url, f"http://localhost:{port}/im-callback",
                    f"{other.base}/v4/{SVC}/destroy_group",
                    f"{other.base}/%76%34/{SVC}/destroy_group",
                    f"{other.url}#section",
                    "http://user:pw@" + other.url.removeprefix("http://")]
            apps = [await live.new_app(rate_limit=0, callback_url=url,
                                       callback_commands=frozenset({JOIN})) for url in urls]
            for app in apps:
                await joined_groups(live, app, 2)
            await drained(live)
            metrics = live.runtime.webhooks.metrics
            for app in apps:
                assert metrics[(app.sdkappid, "failed")] == 2, app.callback_url
                assert metrics[(app.sdkappid, "retried")] == 0  # refused, not retried
            assert itself.hits == [] and other.hits == []
            # The same app with a good URL delivers again.
            fixed = apps[0]
            await live.runtime.store.apps.save(
                App(sdkappid=fixed.sdkappid, secret_key=fixed.secret_key,
                    callback_url=other.url, callback_commands=frozenset({JOIN})), now=0)
            await live.runtime.apps.refresh()
            await joined_groups(live, fixed, 1)
            await drained(live)
            assert len(other.hits) == 1
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == len(urls)  # once per URL, not per callback
    assert all("user:pw" not in m and "destroy_group" not in m for m in refusals)


# --- one order key cannot fill an app's queue -------------------------------------------


async def test_a_connect_close_storm_leaves_room_for_other_callbacks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One account connecting and closing in a loop (its State.StateChange callbacks all
    share its key) fills only its own share; another group's callback is still sent."""
    answer = slow(0.5, lambda hit: hit.query.get("CallbackCommand") == STATE)
    async with scripted(answer) as receiver, \
            live_server(f"sqlite:///{tmp_path}/st.db", "memory",
                        webhook_queue_size=20) as live:  # 2 per key
        app = await live.new_app(rate_limit=0, callback_url=receiver.url,
                                 callback_commands=frozenset({STATE, JOIN}))
        async with live.client(app) as tim:
            await import_accounts(tim, "storm", "owner", "late")
            group_id = await create_group(tim, "Public", Owner_Account="owner")
        for _ in range(15):  # 30 callbacks for the key u:storm
            async with live.connect(app, "storm", heartbeat_interval=0):
                pass
        metrics = live.runtime.webhooks.metrics
        async with asyncio.timeout(10):  # until every Disconnect has been emitted
            while metrics[(app.sdkappid, "dropped")] + metrics[(app.sdkappid, "sent")] + \
                    live.runtime.webhooks.queued() < 30:
                await asyncio.sleep(0.02)
        assert live.runtime.webhooks.queued() <= 2
        await add_member(live, app, group_id, "late")
        async with asyncio.timeout(10):
            while not receiver.of(JOIN):
                await asyncio.sleep(0.02)
        await drained(live)
        states = receiver.of(STATE)
        dropped = metrics[(app.sdkappid, "dropped")]
        assert dropped > 0 and dropped + len(states) == 30
        assert metrics[(app.sdkappid, "sent")] == len(states) + 1
        assert f'{{sdkappid="{app.sdkappid}",outcome="dropped"}} {dropped}' in \
            live.runtime.webhooks.prometheus()
        times = [h.body["EventTime"] for h in states]
        assert times == sorted(times) and states[0].body["Info"]["Action"] == "Login"


async def test_a_flooded_group_keeps_its_oldest_callbacks_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with scripted() as receiver, \
            live_server(f"sqlite:///{tmp_path}/fl.db", "memory",
                        webhook_queue_size=50) as live:  # 5 per key
        app = await live.new_app(rate_limit=0, callback_url=receiver.url,
                                 callback_commands=frozenset({JOIN}))
        joiners = [f"j{i:02d}" for i in range(30)]
        async with live.client(app) as tim:
            await import_accounts(tim, "owner", "late", *joiners)
            busy = await create_group(tim, "Public", Owner_Account="owner")
            other = await create_group(tim, "Public", Owner_Account="owner")
        receiver.answer = slow(0.3, lambda hit: hit.body["GroupId"] == busy)
        async with live.client(app) as tim:
            for joiner in joiners:
                await tim.ok(f"{SVC}/add_group_member",
                             {"GroupId": busy, "MemberList": [{"Member_Account": joiner}]})
            await tim.ok(f"{SVC}/add_group_member",
                         {"GroupId": other, "MemberList": [{"Member_Account": "late"}]})
        await drained(live)
        arrived = [(h.body["GroupId"], h.body["NewMemberList"][0]["Member_Account"])
                   for h in receiver.of(JOIN)]
        assert (other, "late") in arrived
        sent = [a for g, a in arrived if g == busy]
        assert sent == sorted(sent) and sent[:5] == joiners[:5]  # the oldest, in order
        dropped = live.runtime.webhooks.metrics[(app.sdkappid, "dropped")]
        assert dropped > 0 and dropped + len(sent) == 30


# --- bounded senders, bounded replies ---------------------------------------------------


def webhook_tasks(sdkappid: int) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if not t.done()
            and t.get_name().startswith(f"opentim-webhooks-{sdkappid}")]


async def test_senders_are_bounded_and_an_idle_app_holds_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with scripted(slow(0.2)) as receiver, \
            live_server(f"sqlite:///{tmp_path}/t.db", "memory") as live:
        app = await live.new_app(rate_limit=0, callback_url=receiver.url,
                                 callback_commands=frozenset({JOIN}))
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, len(webhook_tasks(app.sdkappid)))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        try:
            await joined_groups(live, app, 40)  # 40 keys, more than the 32 senders
            await drained(live)
        finally:
            watcher.cancel()
        assert len(receiver.of(JOIN)) == 40
        assert 1 <= most <= 32
        async with asyncio.timeout(5):
            while webhook_tasks(app.sdkappid):
                await asyncio.sleep(0.01)  # the last senders end once nothing is ready
        assert live.runtime.webhooks.senders() == 0


async def test_an_endless_reply_is_not_read_to_its_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A receiver that answers 200 and then streams without end: the callback counts as
    sent after at most 64 KB of the reply, instead of reading until the attempt times out."""
    async def endless(_hit: Hit, send: Any, receive: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        gone = asyncio.create_task(receive())  # http.disconnect once the client hangs up
        deadline = time.monotonic() + 30  # bounded: it ends by itself
        while not gone.done() and time.monotonic() < deadline:
            await send({"type": "http.response.body", "body": b"x" * 65536,
                        "more_body": True})
            await asyncio.sleep(0.01)
        gone.cancel()
        await send({"type": "http.response.body", "body": b""})

    async with scripted(endless) as receiver, \
            live_server(f"sqlite:///{tmp_path}/e.db", "memory", webhook_timeout=10.0) as live:
        app = await live.new_app(rate_limit=0, callback_url=receiver.url,
                                 callback_commands=frozenset({JOIN}))
        await joined_groups(live, app, 1)
        # Not a timing test: reading to the end means waiting the whole 10 s timeout (and
        # then failing); 8 s is a generous bound for what takes milliseconds.
        await drained(live, seconds=8)
        metrics = live.runtime.webhooks.metrics
        assert metrics[(app.sdkappid, "sent")] == 1
        assert metrics[(app.sdkappid, "retried")] == 0


# --- the CLI stores only URLs that pass the rules ---------------------------------------


def opentim_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opentim", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://backend.example/cb#part", "fragment"),
    ("http://user:pw@backend.example/cb", "password"),
    ("http://127.0.0.1:8080/v4/group_open_http_svc/destroy_group", "/v4/"),
])
def test_the_cli_refuses_a_dangerous_callback_url(tmp_path, url: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    db = f"sqlite:///{tmp_path}/cli.db"
    refused = opentim_cli("app", "create", "--sdkappid", "1400000001", "--db", db,
                          "--callback-url", url)
    said = " ".join(refused.stderr.replace("│", " ").split())  # typer boxes and wraps it
    assert refused.returncode == 2, refused.stderr
    assert reason in said and "refused" in said, said
    assert "pw" not in said.replace("password", "")
    assert "1400000001" not in opentim_cli("app", "list", "--db", db).stdout  # nothing stored
    accepted = opentim_cli("app", "create", "--sdkappid", "1400000001", "--db", db,
                           "--callback-url", "http://127.0.0.1:9000/im-callback")
    assert accepted.returncode == 0, accepted.stderr
