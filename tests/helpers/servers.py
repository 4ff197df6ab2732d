"""OpenTIM servers for tests: in-process (ASGI transport) and live (real loopback sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import msgspec
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.app import create_app
from opentim.client.rest import RestClient
from opentim.domain.apps import App, new_secret_key
from opentim.events import Event
from opentim.runtime import Runtime
from opentim.settings import Settings
from tests.helpers.services import REDIS_URL, drop_redis_keys, require_redis, sdkappids


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
        app = App(sdkappid=next(sdkappids), secret_key=new_secret_key(), **settings)  # type: ignore[arg-type]
        await self.runtime.store.apps.create(app, now=int(time.time()))
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

    def http(self) -> httpx.AsyncClient:
        """A plain HTTP client to the server, for requests RestClient never makes."""
        return httpx.AsyncClient(base_url="http://opentim.test",
                                 transport=httpx.ASGITransport(app=self.asgi))  # type: ignore[arg-type]


@dataclass
class LiveServer(Server):
    url: str = ""
    app_record: App | None = None

    def connect(self, app: App, user: str, **kwargs: object):  # type: ignore[no-untyped-def]
        from opentim.client import connect

        sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(user)
        return connect(self.url, sdkappid=app.sdkappid, identifier=user, usersig=sig,
                       **kwargs)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def raw_connect(self, app: App, user: str, *,
                          receive_buffer: int | None = None) -> AsyncIterator[Any]:
        """A bare gateway WebSocket, past its ``connected`` frame: for frames no client
        library would send.

        ``receive_buffer``: a client that reads from its socket only while ``recv`` is
        awaited (websockets' queue of one message), with this fixed SO_RCVBUF (no
        autotuning to tens of MB; not so small that delayed ACKs make reading crawl —
        64 KiB does): for clients that stop reading."""
        from websockets.asyncio.client import connect as ws_connect

        from opentim.client.session import gateway_url

        sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(user)
        url = gateway_url(self.url, sdkappid=app.sdkappid, identifier=user, usersig=sig)
        options: dict[str, Any] = {}
        if receive_buffer is not None:
            sock = socket.create_connection(("127.0.0.1", int(self.url.rsplit(":", 1)[1])))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            options.update(sock=sock, max_queue=1, max_size=1 << 22, compression=None)
        async with ws_connect(url, ping_interval=None, **options) as ws:
            hello = msgspec.json.decode(await asyncio.wait_for(ws.recv(), 10))
            assert hello.get("event") == "connected", hello
            yield ws

    def client(self, app: App, identifier: str = "administrator",
               usersig: str | None = None) -> RestClient:
        sig = usersig if usersig is not None else \
            TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(identifier)
        return RestClient(self.url, sdkappid=app.sdkappid, usersig=sig, identifier=identifier)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_asgi(asgi, lifespan: Literal["auto", "on", "off"] = "off",  # type: ignore[no-untyped-def]
                     settings: Settings | None = None
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
                      redis: str = REDIS_URL, **settings: object) -> AsyncIterator[LiveServer]:
    """A real uvicorn server on a free loopback port, with the chosen presence backend.

    ``shared_prefix``: Redis keys shared with other servers (see ``live_servers``), left
    for the caller to drop. ``redis``: the Redis URL of the "redis" backend (a single
    Redis or a node of a Redis Cluster).
    """
    options: dict[str, object] = {}
    redis_url = None
    prefix = shared_prefix or f"opentim-test-{uuid.uuid4().hex[:12]}"
    if presence == "redis":
        await require_redis(redis)
        redis_url = redis
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
async def live_servers(count: int, db_url: str, *, redis: str = REDIS_URL,
                       **settings: object) -> AsyncIterator[list[LiveServer]]:
    """``count`` server processes' worth of servers sharing one database and one Redis
    (``redis``: its URL, a single Redis or a node of a Redis Cluster).

    Each has its own runtime (event bus, presence node, webhook dispatcher, relay), as
    separate processes would; they share state only through the database and Redis.
    """
    prefix = f"opentim-test-{uuid.uuid4().hex[:12]}"
    try:
        async with contextlib.AsyncExitStack() as stack:
            yield [await stack.enter_async_context(
                live_server(db_url, "redis", shared_prefix=prefix, redis=redis, **settings))
                for _ in range(count)]
    finally:
        await drop_redis_keys(redis, prefix)
