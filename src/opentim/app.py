"""Builds the ASGI application; its lifespan owns storage, the app registry and presence."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from opentim.gateway.endpoint import CLOSE_LEASE_LOST, gateway_endpoint
from opentim.gateway.rooms import LocalRooms
from opentim.protocol.dispatch import load_services
from opentim.protocol.rest import RestEndpoint, UnknownPath
from opentim.runtime import Runtime
from opentim.settings import Settings


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Starlette:
    load_services()
    runtime = runtime or Runtime.create(settings or Settings())

    rooms = LocalRooms(runtime.events, runtime.clock)

    async def drop_connections() -> None:
        await rooms.close_all(CLOSE_LEASE_LOST, "presence lease lost: reconnect")

    runtime.lease_lost_hooks.append(drop_connections)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await rooms.close()
            await runtime.close()

    app = Starlette(
        routes=[
            Route("/v4/{service}/{command}", RestEndpoint(runtime)),
            Route("/v4/{rest:path}", UnknownPath()),
            WebSocketRoute("/gateway", gateway_endpoint),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.rooms = rooms
    return app


async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text: webhook deliveries by outcome, queued callbacks."""
    runtime: Runtime = request.app.state.runtime
    return PlainTextResponse(runtime.webhooks.prometheus(),
                             media_type="text/plain; version=0.0.4")
