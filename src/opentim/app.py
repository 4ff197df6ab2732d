"""Builds the ASGI application; its lifespan owns storage, the app registry and presence."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute

from opentim.gateway.audience import GroupMembers
from opentim.gateway.endpoint import CLOSE_LEASE_LOST, gateway_endpoint, gateway_http
from opentim.gateway.limits import ConnectionLimits
from opentim.gateway.relay import RedisRoomRelay, RoomRelay
from opentim.gateway.rooms import LocalRooms
from opentim.http_guard import HttpGuard
from opentim.ops.health import Readiness, healthz
from opentim.ops.metrics import online_members
from opentim.protocol.dispatch import load_services
from opentim.protocol.rest import RestEndpoint, UnknownPath
from opentim.runtime import Runtime
from opentim.sdkbridge import frames as sdk_frames
from opentim.sdkbridge.endpoint import sdk_endpoint, sdk_http
from opentim.serving import metrics_listener
from opentim.settings import Settings


class OpenTim:
    """The server's ASGI callable: REST calls go straight to the REST edge.

    Every ``/v4/<service>/<command>`` request skips Starlette's middleware and router, which
    cost more than the REST edge itself on a hot path; everything else (lifespan, the
    gateway WebSocket, other /v4 paths) goes through the Starlette app.
    """

    def __init__(self, rest: RestEndpoint, starlette: Starlette) -> None:
        self.rest = rest
        self.starlette = starlette
        self.state = starlette.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            parts = scope["path"].split("/")
            # ["", "v4", service, command]
            if len(parts) == 4 and parts[1] == "v4" and parts[2] and parts[3]:
                scope["path_params"] = {"service": parts[2], "command": parts[3]}
                await self.rest(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None,
               metrics_socket: socket.socket | None = None) -> OpenTim:
    """The server. With ``settings.metrics_port`` set, its lifespan also serves /metrics on
    that port (``metrics_socket``: already bound there, as ``opentim serve`` does); the URL
    is then ``app.state.metrics_url``."""
    load_services()
    if runtime is None:
        settings = settings or Settings()
        runtime = Runtime.create(settings, prefix=settings.redis_prefix)

    rooms = LocalRooms(runtime.clock, connection_limits=ConnectionLimits(
        web=runtime.settings.max_web_connections_per_account,
        device=runtime.settings.max_device_connections_per_account),
        members=GroupMembers(runtime.store.members.accounts),
        write_delay=runtime.settings.gateway_write_delay)
    settings = runtime.settings
    relay = RoomRelay(runtime.events, rooms) if not settings.redis else RedisRoomRelay(
        runtime.events, rooms, redis_url=settings.redis, prefix=runtime.redis_prefix,
        node_id=runtime.node_id, on_remote_destroyed=runtime.group_types.forget,
        on_remote_removed=runtime.online.bans.forget)

    async def drop_connections() -> None:
        await rooms.close_all(CLOSE_LEASE_LOST, "presence lease lost: reconnect")

    runtime.lease_lost_hooks.append(drop_connections)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await runtime.start()
        await relay.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if settings.metrics_port is not None:
                    app.state.metrics_url = await stack.enter_async_context(
                        metrics_listener(metrics_app(app.state), settings, metrics_socket))
                yield
        finally:
            # The runtime first: closing presence may take members offline, and the
            # relay should still carry that to the other processes.
            await runtime.close()
            await relay.close()
            await rooms.close()
            await readiness.close()

    rest = RestEndpoint(runtime)
    readiness = Readiness(runtime)  # GET /readyz (docs/running.md#health-checks)
    app = Starlette(
        routes=[
            Route("/v4/{service}/{command}", rest),
            Route("/v4/{rest:path}", UnknownPath()),
            WebSocketRoute("/gateway", gateway_endpoint),
            Route("/gateway", gateway_http, methods=["GET", "HEAD"]),
            # Tencent's web SDK with proxyServer ws://HOST:PORT/sdk (docs/tencent-sdk.md)
            WebSocketRoute(sdk_frames.PATH, sdk_endpoint),
            Route(sdk_frames.PATH, sdk_http, methods=["GET", "HEAD"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readiness.endpoint, methods=["GET"]),
            *_console(runtime, rooms),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.rooms = rooms
    app.state.relay = relay
    app.state.rest_metrics = rest.metrics
    app.state.readiness = readiness
    app.state.metrics_url = None
    return OpenTim(rest, app)


def _console(runtime: Runtime, rooms: LocalRooms) -> list[BaseRoute]:
    """The web console's routes at /console (docs/console.md), unless switched off."""
    if not runtime.settings.console:
        return []
    from opentim.console import console_routes

    return console_routes(runtime, rooms)


def metrics_app(state: State) -> Starlette:
    """The /metrics listener's application: GET /metrics and nothing else.

    Not on the API port: the counters name the apps that have webhooks, and the API port
    is the one exposed to the internet (docs/running.md#metrics).
    """

    async def endpoint(_request: Request) -> PlainTextResponse:
        return PlainTextResponse(metrics_text(state), media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])


def metrics_text(state: State) -> str:
    """Prometheus text: webhook deliveries by outcome, queued callbacks, the gateway's
    connections, online members, messages delivered, shed and late, slow clients closed
    and room events not relayed, the HTTP connections the API listener closed for a limit
    (http_guard), and the REST calls by command and ErrorCode with their latency and the
    database and Redis failures among them (ops/metrics.py)."""
    runtime: Runtime = state.runtime
    rooms: LocalRooms = state.rooms
    relay: RoomRelay = state.relay
    gateway = (
        "# TYPE opentim_gateway_connections gauge\n"
        f"opentim_gateway_connections {rooms.connection_count()}\n"
        "# TYPE opentim_gateway_connections_in_groups gauge\n"
        f"opentim_gateway_connections_in_groups {len(rooms.connections())}\n"
        "# TYPE opentim_gateway_slow_clients_closed_total counter\n"
        f"opentim_gateway_slow_clients_closed_total {rooms.slow_clients_closed}\n"
        "# TYPE opentim_gateway_frames_total counter\n"
        f'opentim_gateway_frames_total{{path="direct"}} {rooms.write_counts.direct}\n'
        f'opentim_gateway_frames_total{{path="queued"}} {rooms.write_counts.queued}\n'
        "# TYPE opentim_room_events_unrelayed_total counter\n"
        f"opentim_room_events_unrelayed_total {relay.dropped}\n"
        "# TYPE opentim_online_members gauge\n"
        f"opentim_online_members {online_members(rooms.connections())}\n"
        "# TYPE opentim_messages_delivered_total counter\n"
        f"opentim_messages_delivered_total {rooms.messages_delivered}\n"
        "# TYPE opentim_messages_shed_total counter\n"
        f"opentim_messages_shed_total {rooms.messages_shed}\n"
        "# TYPE opentim_messages_late_total counter\n"
        f"opentim_messages_late_total {rooms.messages_late}\n"
    )
    guard: HttpGuard | None = getattr(state, "http_guard", None)
    rest = state.rest_metrics.prometheus() if hasattr(state, "rest_metrics") else ""
    return (runtime.webhooks.prometheus() + gateway + (guard.prometheus() if guard else "")
            + rest)
