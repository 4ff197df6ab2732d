"""Shared fixtures: a server on SQLite or PostgreSQL, and admin REST clients for fresh apps.

Every test gets its own app (a fresh SDKAppID): tenants never see each other's rows, so
tests can share one PostgreSQL database without cleaning up.

PostgreSQL and Redis tests skip with a reason when the service is unreachable; with
OPENTIM_REQUIRE_SERVICES=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.app import create_app
from opentim.client.rest import RestClient
from opentim.domain.apps import App, Edition, new_secret_key
from opentim.events import Event
from opentim.runtime import Runtime
from opentim.settings import Settings

PG_URL = os.environ.get("OPENTIM_TEST_POSTGRES_URL",
                        "postgresql://postgres@127.0.0.1:5432/opentim_test")
REDIS_URL = os.environ.get("OPENTIM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("OPENTIM_REQUIRE_SERVICES") == "1"

_sdkappids = itertools.count(1_400_000_000 + (os.getpid() % 10_000) * 10_000 +
                             int(time.time()) % 10_000)


def unavailable(service: str, reason: str) -> None:
    message = f"{service} not reachable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (OPENTIM_REQUIRE_SERVICES=1)")
    pytest.skip(message)


_pg_checked: dict[str, str | None] = {}


async def _ensure_pg_database(url: str) -> str | None:
    """Create the test database if needed; returns an error text when PG is unreachable."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    try:
        conn = await asyncpg.connect(user=parsed.username, password=parsed.password,
                                     host=parsed.host, port=parsed.port,
                                     database="postgres", timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{url}: {exc}"
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1",
                                     parsed.database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{parsed.database}"')
    except asyncpg.DuplicateDatabaseError:
        pass
    finally:
        await conn.close()
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/opentim.db"
    if PG_URL not in _pg_checked:
        _pg_checked[PG_URL] = await _ensure_pg_database(PG_URL)
    if _pg_checked[PG_URL]:
        unavailable("PostgreSQL", _pg_checked[PG_URL])
    return PG_URL


class Clock:
    """Real time unless a test pins it (``clock.now = …``) or moves it (``clock.advance``)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.pinned: float | None = None

    def __call__(self) -> float:
        return self.pinned if self.pinned is not None else time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if self.pinned is not None:
            self.pinned += seconds
        else:
            self.offset += seconds


@dataclass
class Server:
    runtime: Runtime
    asgi: object
    clock: Clock
    events: list[Event] = field(default_factory=list)

    async def new_app(self, **settings: object) -> App:
        app = App(sdkappid=next(_sdkappids), secret_key=new_secret_key(), **settings)  # type: ignore[arg-type]
        await self.runtime.store.create_app(app, now=int(time.time()))
        await self.runtime.apps.refresh()
        return app

    def client(self, app: App, identifier: str = "administrator",
               usersig: str | None = None) -> RestClient:
        # Sigs come from Tencent's own library, never from OpenTIM's code.
        sig = usersig if usersig is not None else \
            TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(identifier)
        return RestClient("http://opentim.test", sdkappid=app.sdkappid, usersig=sig,
                          identifier=identifier,
                          transport=httpx.ASGITransport(app=self.asgi))  # type: ignore[arg-type]


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[Server]:
    clock = Clock()
    runtime = Runtime.create(Settings(db=db_url, app_refresh_interval=0.2), clock=clock)
    asgi = create_app(runtime=runtime)
    await runtime.start()
    srv = Server(runtime, asgi, clock)
    runtime.events.subscribe(srv.events.append)
    try:
        yield srv
    finally:
        await runtime.close()


@pytest.fixture
async def app(server: Server) -> App:
    """A premium app with the online member list on and no rate limit."""
    return await server.new_app(rate_limit=0)


@pytest.fixture
async def tim(server: Server, app: App) -> AsyncIterator[RestClient]:
    async with server.client(app) as client:
        yield client


@pytest.fixture
async def standard_app(server: Server) -> App:
    return await server.new_app(rate_limit=0, edition=Edition.STANDARD)


async def import_accounts(tim: RestClient, *user_ids: str, nick: str = "") -> None:
    for start in range(0, len(user_ids), 100):
        chunk = user_ids[start:start + 100]
        await tim.ok("im_open_login_svc/multiaccount_import", {
            "AccountList": [{"UserID": u, "Nick": nick or f"nick-{u}",
                             "FaceUrl": f"http://img.test/{u}.png"} for u in chunk]
        })


async def create_group(tim: RestClient, group_type: str = "Public", **fields: object) -> str:
    body = {"Type": group_type, "Name": "g", **fields}
    reply = await tim.ok("group_open_http_svc/create_group", body)
    return reply["GroupId"]


# --- live servers: real sockets, for the gateway ----------------------------------------


async def redis_reachable(url: str) -> str | None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
        return None
    except Exception as exc:  # any connection failure means "not reachable"
        return f"{url}: {exc}"
    finally:
        await client.aclose()


async def drop_redis_keys(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start:start + 500])
    finally:
        await client.aclose()


@dataclass
class LiveServer(Server):
    url: str = ""
    app_record: App | None = None

    def connect(self, app: App, user: str, **kwargs: object):  # type: ignore[no-untyped-def]
        from opentim.client import connect

        sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(user)
        return connect(self.url, sdkappid=app.sdkappid, identifier=user, usersig=sig,
                       **kwargs)  # type: ignore[arg-type]

    def client(self, app: App, identifier: str = "administrator",
               usersig: str | None = None) -> RestClient:
        sig = usersig if usersig is not None else \
            TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(identifier)
        return RestClient(self.url, sdkappid=app.sdkappid, usersig=sig, identifier=identifier)


@contextlib.asynccontextmanager
async def serve_asgi(asgi, lifespan: str = "off", settings: Settings | None = None  # type: ignore[no-untyped-def]
                     ) -> AsyncIterator[str]:
    """Serve any ASGI app on a free loopback port; yields its base URL.

    With ``settings`` (an OpenTIM server), uvicorn is configured as ``opentim serve`` does.
    """
    import uvicorn

    from opentim.serving import uvicorn_config

    config = uvicorn.Config(asgi, host="127.0.0.1", port=0, lifespan=lifespan,
                            log_level="warning") if settings is None else \
        uvicorn_config(asgi, settings, port=0, lifespan=lifespan, log_level="warning")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    while not uv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        async with asyncio.timeout(60):  # a hung shutdown fails the test, it never stalls
            await task


@contextlib.asynccontextmanager
async def live_server(db_url: str, presence: str, *, shared_prefix: str | None = None,
                      **settings: object) -> AsyncIterator[LiveServer]:
    """A real uvicorn server on a free loopback port, with the chosen presence backend.

    ``shared_prefix``: Redis keys shared with other servers (see ``live_servers``), left
    for the caller to drop.
    """
    options: dict[str, object] = {}
    redis_url = None
    prefix = shared_prefix or f"opentim-test-{uuid.uuid4().hex[:12]}"
    if presence == "redis":
        problem = await redis_reachable(REDIS_URL)
        if problem:
            unavailable("Redis", problem)
        redis_url = REDIS_URL
        options["prefix"] = prefix
    clock = Clock()
    runtime = Runtime.create(
        Settings(db=db_url, redis=redis_url, app_refresh_interval=0.2, **settings),  # type: ignore[arg-type]
        clock=clock, **options)
    asgi = create_app(runtime=runtime)
    try:
        async with serve_asgi(asgi, lifespan="on", settings=runtime.settings) as url:
            srv = LiveServer(runtime, asgi, clock, url=url)
            runtime.events.subscribe(srv.events.append)
            yield srv
    finally:
        if redis_url and not shared_prefix:  # after the server stopped writing
            await drop_redis_keys(redis_url, prefix)


@contextlib.asynccontextmanager
async def live_servers(count: int, db_url: str, **settings: object
                       ) -> AsyncIterator[list[LiveServer]]:
    """``count`` server processes' worth of servers sharing one database and one Redis.

    Each has its own runtime (event bus, presence node, webhook dispatcher, relay), as
    separate processes would; they share state only through the database and Redis.
    """
    prefix = f"opentim-test-{uuid.uuid4().hex[:12]}"
    try:
        async with contextlib.AsyncExitStack() as stack:
            yield [await stack.enter_async_context(
                live_server(db_url, "redis", shared_prefix=prefix, **settings))
                for _ in range(count)]
    finally:
        await drop_redis_keys(REDIS_URL, prefix)


@pytest.fixture(params=["memory", "redis"])
def presence_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def live(presence_backend: str, tmp_path) -> AsyncIterator[LiveServer]:  # type: ignore[no-untyped-def]
    async with live_server(f"sqlite:///{tmp_path}/live.db", presence_backend) as srv:
        yield srv


async def next_event(session, kind: str, timeout: float = 5.0) -> dict:  # type: ignore[no-untyped-def]
    """The next pushed event of ``kind`` on a gateway session, skipping other kinds."""
    async with asyncio.timeout(timeout):
        while True:
            event = await session.events.get()
            if event.get("event") == kind:
                return event


# --- a real HTTP receiver for webhooks --------------------------------------------------


@dataclass
class Received:
    query: dict[str, str]
    body: dict


@dataclass
class Receiver:
    """Records every POST; answers with ``statuses`` in turn, then 200."""

    url: str = ""
    calls: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    hits: int = 0  # every request, answered 200 or not

    def commands(self) -> list[str]:
        return [c.query["CallbackCommand"] for c in self.calls]

    def of(self, command: str) -> list[Received]:
        return [c for c in self.calls if c.query["CallbackCommand"] == command]

    async def wait_for(self, count: int, command: str | None = None,
                       seconds: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            got = self.of(command) if command else self.calls
            if len(got) >= count:
                return got
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} {command or 'callbacks'}, got {self.commands()}")

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        from urllib.parse import parse_qsl

        import msgspec

        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.hits += 1
        status = self.statuses.pop(0) if self.statuses else 200
        if self.delay:
            await asyncio.sleep(self.delay)
        if status == 200:
            self.calls.append(Received(dict(parse_qsl(scope["query_string"].decode())),
                                       msgspec.json.decode(body)))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body",
                    "body": b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serve_asgi(rec) as url:
        rec.url = url + "/im-callback"
        yield rec
