"""The console's routes under ``/console``: the page, its assets, the API, the live socket.

The page and its scripts are plain files shipped in the package (``static/``; no build
step, no CDN). Every response carries a strict Content-Security-Policy (scripts and
styles from this server only, no inline script, no framing) and ``nosniff``.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opentim.console.api import ConsoleApi, Endpoint, Handler
from opentim.console.auth import LOGIN_CODES, LoginCodes, Sessions
from opentim.console.live import LiveRooms
from opentim.console.stats import ConsoleStats
from opentim.gateway.rooms import LocalRooms
from opentim.runtime import Runtime

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon"}


class _Headers:
    """Adds the security headers to every HTTP response under /console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StaticFiles:
    """The files of ``static/``, read once; anything else is a 404 (no path walking)."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, str, str]] = {}
        root = resources.files("opentim.console") / "static"
        for entry in root.iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            if entry.is_file() and suffix in TYPES:
                data = entry.read_bytes()
                etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                self._files[entry.name] = (data, TYPES[suffix], etag)

    def response(self, name: str, request: Request) -> Response:
        found = self._files.get(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        data, kind, etag = found
        headers = {"etag": etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=kind, headers=headers)

    async def asset(self, request: Request) -> Response:
        return self.response(request.path_params["name"], request)

    async def index(self, request: Request) -> Response:
        return self.response("index.html", request)


async def _to_slash(_request: Request) -> Response:
    return RedirectResponse("/console/", status_code=308)


def console_routes(runtime: Runtime, rooms: LocalRooms, *,
                   login_codes: LoginCodes = LOGIN_CODES) -> list[BaseRoute]:
    """The routes app.py mounts when ``Settings.console`` is on."""
    sessions = Sessions(runtime, login_codes)
    stats = ConsoleStats(runtime.events, runtime.clock)
    api = ConsoleApi(runtime, rooms, sessions, stats)
    live = LiveRooms(runtime, rooms, sessions)
    files = StaticFiles()

    def read(handler: Handler) -> Endpoint:
        return api.endpoint(handler, change=False)

    def change(handler: Handler) -> Endpoint:
        return api.endpoint(handler, change=True)

    inner = [
        Route("/", files.index, methods=["GET", "HEAD"]),
        Route("/static/{name}", files.asset, methods=["GET", "HEAD"]),
        Route("/api/login", api.login, methods=["POST"]),
        Route("/api/logout", api.logout, methods=["POST"]),
        Route("/api/session", read(api.session), methods=["GET"]),
        Route("/api/app", read(api.get_app), methods=["GET"]),
        Route("/api/app", change(api.change_app), methods=["POST"]),
        Route("/api/app/reveal-key", change(api.reveal_key), methods=["POST"]),
        Route("/api/overview", read(api.overview), methods=["GET"]),
        Route("/api/webhooks", read(api.webhooks), methods=["GET"]),
        Route("/api/groups", read(api.groups_info), methods=["GET"]),
        Route("/api/v4/{service}/{command}", change(api.command), methods=["POST"]),
        WebSocketRoute("/api/live", live.endpoint),
    ]
    return [Route("/console", _to_slash, methods=["GET", "HEAD"]),
            Mount("/console", app=_Headers(Router(routes=inner)))]
