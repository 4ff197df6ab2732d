"""The REST edge: ``POST /v4/{service}/{command}?sdkappid=&identifier=&usersig=&random=``.

A plain ASGI callable, kept thin and fast because every call passes through it: parse the
query string, authenticate, look up the command, rate-limit, decode the body, run the
handler, and answer HTTP 200 with the envelope. Nothing below it sees HTTP.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from opentim import errors
from opentim.events import REST, Origin
from opentim.ops import metrics as ops_metrics
from opentim.ops.logs import log_request
from opentim.protocol import body, dispatch, envelope
from opentim.protocol.auth import authenticate
from opentim.runtime import Context, Runtime

log = logging.getLogger(__name__)

_HEADERS = [(b"content-type", b"application/json; charset=utf-8")]
_MAX_RANDOM = 4294967295
_now = ops_metrics.now
_CODE = "opentim.error_code"  # the scope's note of a failed call's ErrorCode (for metrics)


class RestEndpoint:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # /metrics: calls by command and ErrorCode, latency, database and Redis failures.
        self.metrics = ops_metrics.RestMetrics()
        self.access_log = runtime.settings.access_log

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = _now()
        try:
            reply = await self._respond(scope, receive)
        except _ClientGone:
            return  # nobody to answer, and a cut-off body must not run as if it were whole
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": reply})
        # (counted once answered, by path and the ErrorCode _respond noted in the scope:
        # no command or code passed around on the way)
        code = scope.get(_CODE, 0)
        seconds = _now() - started
        stats = self.metrics.observe(scope["path"], code, seconds)
        if self.access_log:
            log_request(scope, stats.service, stats.command, code, seconds)

    async def _respond(self, scope: dict[str, Any], receive: Any) -> bytes:
        try:
            raw = await self._read_body(receive)
            if scope["method"] != "POST":
                raise errors.HttpParseError(f"method {scope['method']} not allowed: use POST")
            ctx = await self._authenticate(scope["query_string"], scope.get("client"))
        except _ClientGone:
            raise
        except Exception as exc:
            reply, scope[_CODE] = failure(exc, None, self.metrics, scope.get("path"))
            return reply
        params = scope["path_params"]
        reply, code = await run_command(ctx, params["service"], params["command"], raw,
                                        self.metrics, scope.get("path"))
        if code:
            scope[_CODE] = code
        return reply

    async def _read_body(self, receive: Any) -> bytes | None:
        """The whole body, or None when it passes the size limit (then it is drained).

        Raises ``_ClientGone`` when the client disconnected (or was disconnected by the
        body timeout) before the body was complete.
        """
        limit = self.runtime.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size > limit:
            return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _authenticate(self, query_string: bytes,
                            client: tuple[str, int] | None) -> Context:
        query = dict(parse_qsl(query_string.decode("latin-1")))
        now = self.runtime.clock()
        identifier = query.get("identifier", "")
        app = await authenticate(
            self.runtime, sdkappid=query.get("sdkappid", ""), identifier=identifier,
            usersig=query.get("usersig", ""), now=now,
        )
        if identifier not in app.admins:
            raise errors.NotAppAdmin(f"identifier {identifier!r} is not an App admin")
        random = query.get("random", "")
        if not _is_random(random):
            raise errors.HttpParseError(
                f"random must be an integer from 0 to {_MAX_RANDOM}, got {errors.shown(random)}"
            )
        origin = Origin(client_ip=client[0]) if client else REST
        return Context(self.runtime, app, identifier, now, origin)


class _ClientGone(Exception):
    """The request's body never arrived in full."""


async def run_command(ctx: Context, service: str, name: str, raw: bytes | None,
                      metrics: ops_metrics.RestMetrics | None = None,
                      where: str | None = None) -> tuple[bytes, int]:
    """One command once its caller is known (the REST edge, and the console's bridge):
    look it up, rate-limit, check the body (``raw`` None: over the size limit), decode,
    run. Returns the encoded reply and its ErrorCode."""
    cmd: dispatch.Command | None = None
    try:
        cmd = dispatch.lookup(service, name)
        app = ctx.app
        # A limit that is on never rounds down to 0, which would mean "off".
        rate = max(1, int(app.rate_limit * cmd.rate_factor)) if app.rate_limit else 0
        if not ctx.runtime.rate_limiter.allow(ctx.sdkappid, cmd.key, rate, ctx.now):
            raise errors.RestRateLimited(
                f"{cmd.name} is limited to {rate} calls per second for app {ctx.sdkappid}")
        if raw is None:
            raise errors.HttpParseError(
                f"request body exceeds {ctx.runtime.settings.max_body_bytes} bytes")
        doc = body.parse_object(raw)
        nul_at = body.nul_path(raw, doc)
        if nul_at is not None:
            raise cmd.service.invalid_parameter(
                f"invalid request: a string holds U+0000 (NUL) at `{nul_at}`")
        request = cmd.decode(doc)
        return envelope.ok(await cmd.handler(ctx, request)), 0
    except Exception as exc:
        return failure(exc, cmd, metrics, where)


def failure(exc: Exception, cmd: dispatch.Command | None,
            metrics: ops_metrics.RestMetrics | None, where: str | None) -> tuple[bytes, int]:
    """The reply to a call that failed: a Tencent error as it is; an outage of the
    database or Redis as the service's internal error naming it, without a traceback;
    anything else (a bug) as the internal error, logged with its traceback."""
    if isinstance(exc, errors.TimError):
        if metrics is not None and (exc.__cause__ is not None or exc.__context__ is not None):
            metrics.failed(exc, handled=True)  # (did the database or Redis fail?)
        return envelope.fail(exc.code, exc.info), exc.code
    if metrics is not None:
        metrics.failed(exc, handled=False)
    internal = cmd.service.internal_error if cmd else errors.GroupInternalError
    down = unreachable(exc)
    if down is not None:  # not a bug: no traceback, and the caller learns why
        _outages.failed(down, where, exc)
        return envelope.fail(internal.code, f"internal error: {down} is unreachable or not "
                                            f"answering, try again"), internal.code
    log.exception("unhandled error in %s", where)
    return envelope.fail(internal.code, "internal server error, try again"), internal.code


_DB_MODULES = ("asyncpg", "sqlalchemy", "aiosqlite", "sqlite3")


def unreachable(exc: BaseException) -> str | None:
    """``"Redis"`` or ``"the database"`` when ``exc`` (or what caused it) says that service
    is down, refusing connections, not answering in time or cut our connection (a restart,
    a network fault, ``pg_terminate_backend``); None for anything else, which is a bug.

    Used by the REST edge to answer such failures with the service's internal-error code
    and a text that names the dependency (docs/reliability.md), without a traceback.
    """
    import asyncpg
    from sqlalchemy import exc as sa

    from opentim.presence.client import UNREACHABLE as REDIS_UNREACHABLE

    seen: BaseException | None = exc
    for _ in range(8):  # a chain of causes, bounded
        if seen is None:
            return None
        if isinstance(seen, REDIS_UNREACHABLE):
            return "Redis"
        if isinstance(seen, sa.DBAPIError) and (
                seen.connection_invalidated or isinstance(seen, (sa.OperationalError,
                                                                 sa.InterfaceError))):
            return "the database"
        if isinstance(seen, (sa.TimeoutError, sa.DisconnectionError,
                             asyncpg.PostgresConnectionError,  # 08xxx
                             asyncpg.exceptions.OperatorInterventionError)):  # 57xxx
            return "the database"
        if isinstance(seen, asyncpg.InterfaceError) and "closed" in str(seen):
            return "the database"
        if isinstance(seen, OSError) and _raised_in(seen, _DB_MODULES):
            return "the database"  # refused, reset, timed out (TimeoutError is an OSError)
        seen = seen.__cause__ or seen.__context__
    return None


def _raised_in(exc: BaseException, modules: tuple[str, ...]) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "")
        if name.split(".", 1)[0] in modules:
            return True
        tb = tb.tb_next
    return False


class _OutageLog:
    """One warning per dependency every ``every`` seconds, with how many calls failed."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._failed: dict[str, int] = {}

    def failed(self, what: str, path: object, exc: BaseException) -> None:
        self._failed[what] = self._failed.get(what, 0) + 1
        now = time.monotonic()
        if now - self._last.get(what, -self.every) >= self.every:
            self._last[what] = now
            count = self._failed.pop(what)
            log.warning("%s unreachable: %d REST call(s) failed since the last report, the "
                        "latest %s with %s: %s", what, count, path, type(exc).__name__,
                        str(exc).split("\n", 1)[0][:200])


_outages = _OutageLog()


def _is_random(value: str) -> bool:
    """Decimal digits worth at most 4294967295 (leading zeros allowed).

    The length is checked before ``int()``, which refuses strings over 4300 digits.
    """
    if not (value.isascii() and value.isdigit()):
        return False
    digits = value.lstrip("0")
    return len(digits) <= len(str(_MAX_RANDOM)) and (not digits or int(digits) <= _MAX_RANDOM)


class UnknownPath:
    """Any other path under /v4 gets Tencent's bad-URL code, not a 404."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        info = f"unknown REST path {scope.get('path')!r}: expected /v4/<service>/<command>"
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body",
                    "body": envelope.fail(errors.ResourceUrlInvalid.code, info)})
