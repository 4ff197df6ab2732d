"""The console's JSON API under ``/console/api``.

- ``POST login`` / ``POST logout`` / ``GET session``: sessions (``auth.py``).
- ``POST v4/{service}/{command}``: a Tencent REST command, run through the same dispatch,
  rate limit, body checks and handler as ``/v4`` with the session's App admin as the
  caller, answering the same JSON (same codes).
- ``GET app``, ``POST app``, ``POST app/reveal-key``: the app's settings; the secret key and
  callback token only on an explicit reveal.
- ``GET overview``: connections, online members, messages per second (``stats.py``) and
  webhook counters. ``GET webhooks``: the app's recent deliveries.
- ``GET groups?id=…``: groups' profiles without their member lists (``groups_info``).

Refusals before a command runs are HTTP 401 (no session, or it ended) and 403 (CSRF), with
a JSON body shaped like a REST reply (``ActionStatus``/``ErrorCode``/``ErrorInfo``);
everything else is HTTP 200 with the REST envelope. Nothing here is cached by the browser.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opentim import errors
from opentim.console.auth import (
    COOKIE,
    COOKIE_PATH,
    CSRF_HEADER,
    ConsoleRefused,
    Session,
    Sessions,
)
from opentim.console.stats import ConsoleStats
from opentim.domain.accounts import check_user_id
from opentim.domain.apps import App, Edition
from opentim.events import Origin
from opentim.gateway.rooms import LocalRooms
from opentim.protocol import body, dispatch, envelope, rest
from opentim.runtime import Context, Runtime
from opentim.webhooks.payloads import CALLBACK_COMMANDS

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
NO_STORE = {"cache-control": "no-store"}
MAX_ADMINS = 100  # App admins one settings change may list
MAX_SETTINGS_BODY = 64 << 10


def json_reply(doc: dict[str, Any] | bytes, status: int = 200) -> Response:
    data = doc if isinstance(doc, bytes) else _encode(doc)
    return Response(data, status_code=status, media_type="application/json",
                    headers=NO_STORE)


def refused(exc: ConsoleRefused) -> Response:
    return json_reply(envelope.fail(exc.code, exc.info), exc.status)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The whole body, or None past ``limit`` bytes (the rest is read and dropped)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    return None if size > limit else b"".join(chunks)


def _is_json(request: Request) -> bool:
    # A cross-site form cannot send this content type without a CORS preflight, which
    # nothing here answers: with SameSite=Strict this keeps other sites from logging a
    # browser in (login CSRF) or posting anything.
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind == "application/json"


def _not_json() -> ConsoleRefused:
    return ConsoleRefused(403, errors.HttpParseError.code,
                          "console API changes are JSON: send Content-Type: application/json")


class SettingsChange(msgspec.Struct):
    """``POST /console/api/app``: the fields to change; absent ones stay as they are."""

    Edition: str | msgspec.UnsetType = msgspec.UNSET
    OnlineMemberList: bool | msgspec.UnsetType = msgspec.UNSET
    CallbackUrl: str | msgspec.UnsetType = msgspec.UNSET  # "" removes it
    CallbackToken: str | msgspec.UnsetType = msgspec.UNSET  # "" removes it
    CallbackCommands: list[str] | msgspec.UnsetType | None = msgspec.UNSET  # None: all
    RateLimit: int | msgspec.UnsetType = msgspec.UNSET
    GroupMsgRate: int | msgspec.UnsetType = msgspec.UNSET
    Admins: list[str] | msgspec.UnsetType = msgspec.UNSET


def app_settings(app: App) -> dict[str, Any]:
    """The app as the settings page shows it: no secret key, no callback token."""
    return {
        "SDKAppID": app.sdkappid,
        "Edition": app.edition.value,
        "OnlineMemberList": app.online_member_list,
        "HasOnlineMemberList": app.has_online_member_list,
        "CallbackUrl": app.callback_url or "",
        "CallbackTokenSet": bool(app.callback_token),
        "CallbackCommands": None if app.callback_commands is None
        else sorted(app.callback_commands),
        "KnownCallbackCommands": list(CALLBACK_COMMANDS),
        "RateLimit": app.rate_limit,
        "GroupMsgRate": app.group_msg_rate,
        "Admins": sorted(app.admins),
        "ProfileCustomTags": sorted(app.profile_custom_tags),
    }


def apply_change(app: App, change: SettingsChange, own_host: str = "",
                 own_port: int = 0) -> App:
    """The app with ``change`` applied; 10004 for a value the CLI would refuse too."""
    from opentim.webhooks.urls import OwnAddress, check_callback_url

    changes: dict[str, Any] = {}
    if change.Edition is not msgspec.UNSET:
        try:
            changes["edition"] = Edition(change.Edition)
        except ValueError:
            raise errors.InvalidParameter("Edition must be premium or standard") from None
    if change.OnlineMemberList is not msgspec.UNSET:
        changes["online_member_list"] = change.OnlineMemberList
    if change.CallbackUrl is not msgspec.UNSET:
        url = change.CallbackUrl.strip()
        try:
            changes["callback_url"] = check_callback_url(url, OwnAddress(own_host, own_port)) \
                if url else None
        except ValueError as exc:
            raise errors.InvalidParameter(f"CallbackUrl refused: {exc}") from None
    if change.CallbackToken is not msgspec.UNSET:
        if len(change.CallbackToken) > 256:
            raise errors.InvalidParameter("CallbackToken is longer than 256 characters")
        changes["callback_token"] = change.CallbackToken or None
    if change.CallbackCommands is not msgspec.UNSET:
        commands = change.CallbackCommands
        if commands is not None:
            unknown = sorted(set(commands) - set(CALLBACK_COMMANDS))
            if unknown:
                raise errors.InvalidParameter(
                    f"unknown callback command(s) {', '.join(map(errors.shown, unknown))}")
        changes["callback_commands"] = None if commands is None else frozenset(commands)
    for field, attr in (("RateLimit", "rate_limit"), ("GroupMsgRate", "group_msg_rate")):
        value = getattr(change, field)
        if value is not msgspec.UNSET:
            if not 0 <= value <= 1_000_000:
                raise errors.InvalidParameter(f"{field} must be 0 (off) to 1000000")
            changes[attr] = value
    if change.Admins is not msgspec.UNSET:
        admins = [a.strip() for a in change.Admins if a.strip()]
        if not admins:
            raise errors.InvalidParameter("Admins must name at least one App admin")
        if len(admins) > MAX_ADMINS:
            raise errors.InvalidParameter(f"Admins may name at most {MAX_ADMINS} accounts")
        try:
            changes["admins"] = frozenset(check_user_id(a) for a in admins)
        except errors.TimError as exc:
            raise errors.InvalidParameter(f"Admins: {exc.info}") from None
    return dataclasses.replace(app, **changes)


Handler = Callable[[Request, Session], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class ConsoleApi:
    def __init__(self, runtime: Runtime, rooms: LocalRooms, sessions: Sessions,
                 stats: ConsoleStats) -> None:
        self.runtime = runtime
        self.rooms = rooms
        self.sessions = sessions
        self.stats = stats

    async def _session(self, request: Request, *, change: bool) -> Session:
        session = await self.sessions.check(request.cookies.get(COOKIE))
        if change:
            if not _is_json(request):
                raise _not_json()
            self.sessions.check_csrf(session, request.headers.get(CSRF_HEADER))
        return session

    def endpoint(self, handler: Handler, *, change: bool) -> Endpoint:
        """``handler`` behind the session check (and, for a change, the CSRF check)."""

        async def run(request: Request) -> Response:
            try:
                session = await self._session(request, change=change)
            except ConsoleRefused as exc:
                return refused(exc)
            try:
                return await handler(request, session)
            except ConsoleRefused as exc:
                return refused(exc)
            except errors.TimError as exc:
                return json_reply(envelope.fail(exc.code, exc.info))

        return run

    # --- sessions ------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if not _is_json(request):
            return refused(_not_json())
        raw = await read_body(request, 16 << 10)
        try:
            if raw is None:
                raise errors.HttpParseError("login body exceeds 16 KB")
            doc = body.parse_object(raw)
            code = doc.get("Code")
            if isinstance(code, str) and code:
                session = await self.sessions.login_with_code(code)
            else:
                sdkappid = doc.get("SDKAppID", doc.get("sdkappid", ""))
                fields = (str(sdkappid) if isinstance(sdkappid, int | str) else "",
                          doc.get("Identifier", doc.get("identifier", "")),
                          doc.get("UserSig", doc.get("usersig", "")))
                if not all(isinstance(f, str) for f in fields):
                    raise errors.HttpParseError("SDKAppID, Identifier and UserSig are strings")
                session = await self.sessions.login(*fields)
        except errors.TimError as exc:
            return json_reply(envelope.fail(exc.code, exc.info))
        except Exception as exc:
            # (never the request: it carries a UserSig)
            log.warning("console login failed with %s", type(exc).__name__)
            return json_reply(envelope.fail(errors.AccountInternalError.code,
                                            "internal error, try again"))
        reply = json_reply(envelope.ok(self._session_doc(session)))
        max_age = max(0, int(session.expires_at - self.runtime.clock()))
        reply.set_cookie(COOKIE, session.token, max_age=max_age, path=COOKIE_PATH,
                         secure=request.url.scheme in ("https", "wss"), httponly=True,
                         samesite="strict")
        return reply

    async def logout(self, request: Request) -> Response:
        try:
            session = await self._session(request, change=True)
        except ConsoleRefused as exc:
            if exc.status == 403:
                return refused(exc)
        else:
            self.sessions.revoke(session)
        reply = json_reply(envelope.ok())
        reply.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return reply

    def _session_doc(self, session: Session) -> dict[str, Any]:
        commands: dict[str, list[str]] = {}
        for svc, name in sorted(dispatch.COMMANDS):
            commands.setdefault(svc, []).append(name)
        return {"SDKAppID": session.sdkappid, "Identifier": session.identifier,
                "ExpireTime": session.expires_at, "CSRFToken": session.csrf,
                "Commands": commands}

    async def session(self, _request: Request, session: Session) -> Response:
        return json_reply(envelope.ok(self._session_doc(session)))

    # --- the REST bridge -----------------------------------------------------------------

    async def command(self, request: Request, session: Session) -> Response:
        raw = await read_body(request, self.runtime.settings.max_body_bytes)
        params = request.path_params
        client = request.client
        ctx = Context(self.runtime, session.app, session.identifier, self.runtime.clock(),
                      Origin(client_ip=client.host if client else ""))
        return json_reply(await run_command(ctx, params["service"], params["command"], raw))

    # --- the app's settings --------------------------------------------------------------

    async def get_app(self, _request: Request, session: Session) -> Response:
        app = self.runtime.apps.get(session.sdkappid) or session.app
        return json_reply(envelope.ok(app_settings(app)))

    async def reveal_key(self, _request: Request, session: Session) -> Response:
        app = self.runtime.apps.get(session.sdkappid) or session.app
        log.info("console: %s revealed the secret key of app %s", session.identifier,
                 app.sdkappid)
        return json_reply(envelope.ok({"SecretKey": app.secret_key,
                                       "CallbackToken": app.callback_token or ""}))

    async def change_app(self, request: Request, session: Session) -> Response:
        raw = await read_body(request, MAX_SETTINGS_BODY)
        if raw is None:
            raise errors.HttpParseError(f"body exceeds {MAX_SETTINGS_BODY} bytes")
        try:
            change = msgspec.json.decode(raw, type=SettingsChange)
        except msgspec.ValidationError as exc:
            raise errors.InvalidParameter(f"invalid settings: {exc}") from None
        except msgspec.DecodeError as exc:
            raise errors.JsonParseError(f"request body is not valid JSON: {exc}") from None
        current = await self.runtime.store.apps.get(session.sdkappid)
        if current is None:
            raise errors.SdkAppIdNotFound()
        s = self.runtime.settings
        updated = apply_change(current, change, s.host, s.port)
        await self.runtime.store.apps.save(updated, now=int(self.runtime.clock()))
        await self.runtime.apps.refresh()
        log.info("console: %s changed the settings of app %s", session.identifier,
                 updated.sdkappid)
        return json_reply(envelope.ok(app_settings(updated)))

    # --- groups -----------------------------------------------------------------------------

    async def groups_info(self, request: Request, session: Session) -> Response:
        """``GET groups?id=…&id=…`` (up to 50): what get_group_info answers for each group
        except its MemberList. get_group_info reads every member of a group, seconds for a
        100k-member Community; the console's pages read members a page at a time
        (get_group_member_info) instead."""
        from opentim.domain import groups as group_rules
        from opentim.services.group_open_http_svc.groups import base_info

        ids = request.query_params.getlist("id")
        group_rules.check_group_id_list(ids)
        valid = [g for g in ids if group_rules.is_well_formed_group_id(g)]
        found = await self.runtime.store.groups.get(session.sdkappid, valid)
        items: list[dict[str, Any]] = []
        for group_id in ids:
            group = found.get(group_id)
            if group is None:
                code = errors.GroupNotFound if group_id in valid else errors.InvalidGroupId
                items.append({"GroupId": group_id, "ErrorCode": code.code,
                              "ErrorInfo": code.default_info})
                continue
            items.append({"ErrorCode": 0, "ErrorInfo": "", **base_info(group),
                          "AppDefinedData": [{"Key": k, "Value": v}
                                             for k, v in group.app_defined_data.items()]})
        return json_reply(envelope.ok({"GroupInfo": items}))

    # --- overview and webhooks -----------------------------------------------------------

    def _webhook_counters(self, sdkappid: int) -> dict[str, int]:
        metrics = self.runtime.webhooks.metrics + self.runtime.webhooks.before.metrics
        return {outcome.capitalize(): metrics[(sdkappid, outcome)]
                for outcome in ("sent", "failed", "retried", "dropped")}

    async def overview(self, request: Request, session: Session) -> Response:
        stats = self.stats.of(session.sdkappid)
        try:
            seconds = min(int(request.query_params.get("seconds", "120")), 300)
        except ValueError:
            seconds = 120
        history = list(stats.history)[-seconds:] if seconds > 0 else []
        last = history[-1][3] if history else 0
        return json_reply(envelope.ok({
            "Connections": stats.connections,
            "OnlineMembers": stats.online,
            "MessagesPerSecond": last,
            "History": [list(s) for s in history],
            "Webhooks": self._webhook_counters(session.sdkappid),
            "ProcessConnections": self.rooms.connection_count(),
            "Time": int(self.runtime.clock() * 1000),
        }))

    async def webhooks(self, _request: Request, session: Session) -> Response:
        app = self.runtime.apps.get(session.sdkappid) or session.app
        return json_reply(envelope.ok({
            "CallbackUrlSet": bool(app.callback_url),
            "Counters": self._webhook_counters(session.sdkappid),
            "Deliveries": [{
                "Time": int(d.time * 1000), "Command": d.command, "Outcome": d.outcome,
                "HttpStatus": d.status, "LatencyMs": d.latency_ms, "Attempts": d.attempts,
                "Problem": d.problem,
            } for d in self.runtime.webhooks.recent(session.sdkappid)],
        }))


async def run_command(ctx: Context, service: str, name: str, raw: bytes | None) -> bytes:
    """One REST command exactly as ``protocol/rest.py`` runs it once the caller is known."""
    reply, _ = await rest.run_command(ctx, service, name, raw,
                                      where=f"console {service}/{name}")
    return reply
