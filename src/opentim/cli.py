"""The ``opentim`` command: serve, manage apps, make UserSigs."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, NoReturn, TypeVar

import typer

from opentim import __version__
from opentim.domain.apps import DEFAULT_ADMIN, DEFAULT_RATE_LIMIT, App, Edition, new_secret_key
from opentim.domain.messages import GROUP_MSG_RATE
from opentim.domain.profiles import CUSTOM_PREFIX, custom_keyword
from opentim.protocol import usersig
from opentim.settings import Settings
from opentim.startup import (
    StartupError,
    check_redis,
    describe_db_error,
    listen_socket,
    safe_db_url,
)
from opentim.storage.database import DEFAULT_DB_URL, Database
from opentim.storage.sql import SqlStore
from opentim.webhooks.payloads import CALLBACK_COMMANDS

T = TypeVar("T")

# No local variables in tracebacks: they would print keys, sigs and database passwords.
cli = typer.Typer(help="OpenTIM: a self-hosted Tencent Cloud Chat REST server.",
                  no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False)
apps_cli = typer.Typer(help="Create, list and change apps (SDKAppIDs).", no_args_is_help=True,
                       pretty_exceptions_show_locals=False)
cli.add_typer(apps_cli, name="app")

DEV_SDKAPPID = 1400000000

DbOption = Annotated[str, typer.Option("--db", envvar="OPENTIM_DB",
                                       help="sqlite:///path or postgresql://…")]


def _fail(exc: StartupError) -> NoReturn:
    typer.echo(f"opentim: {exc}", err=True)
    raise typer.Exit(1)


async def _open_store(db_url: str) -> SqlStore:
    """The database, migrated; a StartupError in one line when that fails."""
    try:
        db = Database(db_url)
    except Exception as exc:  # a bad URL: say so instead of a traceback
        shown = safe_db_url(db_url)
        text = str(exc).replace(db_url, shown)
        typer.echo(f"opentim: {text}" if shown in text else
                   f"opentim: cannot use database {shown}: {text}", err=True)
        raise typer.Exit(2) from None
    try:
        await db.migrate()
    except Exception as exc:
        await db.close()
        raise StartupError(describe_db_error(db_url, exc)) from None
    return SqlStore(db)


async def _with_store(db_url: str, work: Callable[[SqlStore], Awaitable[T]]) -> T:
    try:
        store = await _open_store(db_url)
    except StartupError as exc:
        _fail(exc)
    try:
        return await work(store)
    finally:
        await store.db.close()


def _print_app(app: App, *, show_key: bool = True) -> None:
    typer.echo(f"SDKAppID:      {app.sdkappid}")
    if show_key:
        typer.echo(f"secret key:    {app.secret_key}")
    typer.echo(f"admins:        {', '.join(sorted(app.admins))}")
    typer.echo(f"edition:       {app.edition.value}")
    typer.echo(f"online list:   {'on' if app.online_member_list else 'off'}")
    typer.echo(f"rate limit:    {app.rate_limit or 'off'}"
               f"{' calls/s per command' if app.rate_limit else ''}")
    typer.echo(f"message rate:  {app.group_msg_rate or 'off'}"
               f"{' messages/s per group' if app.group_msg_rate else ''}")
    if app.callback_url:
        typer.echo(f"callback URL:  {app.callback_url}")
        commands = app.callback_commands
        typer.echo(f"callbacks:     {'all' if commands is None else ', '.join(sorted(commands))}")
    if app.profile_custom_tags:
        tags = (CUSTOM_PREFIX + t for t in sorted(app.profile_custom_tags))
        typer.echo(f"profile tags:  {', '.join(tags)}")


@cli.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(envvar="OPENTIM_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="OPENTIM_PORT", min=0, max=65535)] = 8080,
    db: DbOption = DEFAULT_DB_URL,
    redis: Annotated[str | None, typer.Option(
        envvar="OPENTIM_REDIS", help="redis://… to share presence between processes")] = None,
    redis_prefix: Annotated[str, typer.Option(
        envvar="OPENTIM_REDIS_PREFIX", help="prefix of OpenTIM's Redis keys and channel "
        "(the same for processes that share presence)")] = "opentim",
    heartbeat_timeout: Annotated[float, typer.Option(
        envvar="OPENTIM_HEARTBEAT_TIMEOUT", help="seconds of silence before a client is "
        "dropped")] = 30.0,
    log_level: Annotated[list[str] | None, typer.Option(
        envvar="OPENTIM_LOG_LEVEL", help="LEVEL, or LOGGER=LEVEL for one component, e.g. "
        "opentim.webhooks=debug (repeatable; default info)")] = None,
    log_format: Annotated[str, typer.Option(
        envvar="OPENTIM_LOG_FORMAT", help="text, or json: one JSON object per line")] = "text",
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", envvar="OPENTIM_ACCESS_LOG",
        help="log each REST call (method, path without the query, command, ErrorCode, "
        "latency)")] = False,
    config: Annotated[str | None, typer.Option(
        "--config", envvar="OPENTIM_CONFIG", help="a TOML file of settings (flags and "
        "environment variables win over it)")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        envvar="OPENTIM_METRICS_PORT", min=0, max=65535,
        help="serve GET /metrics on this port (off when not given)")] = None,
    metrics_host: Annotated[str, typer.Option(
        envvar="OPENTIM_METRICS_HOST", help="address of the /metrics listener")] = "127.0.0.1",
    max_connections: Annotated[int, typer.Option(
        envvar="OPENTIM_MAX_CONNECTIONS", min=1,
        help="open client connections (HTTP and gateway) at most")] = 20_000,
    header_timeout: Annotated[float, typer.Option(
        envvar="OPENTIM_HEADER_TIMEOUT", min=0.1,
        help="seconds to receive a request's line and headers")] = 10.0,
    body_timeout: Annotated[float, typer.Option(
        envvar="OPENTIM_BODY_TIMEOUT", min=0.1,
        help="seconds to receive a request's body (and to read a response)")] = 30.0,
    keep_alive_timeout: Annotated[float, typer.Option(
        envvar="OPENTIM_KEEP_ALIVE_TIMEOUT", min=0.1,
        help="seconds an idle keep-alive connection stays open")] = 5.0,
    message_retention_days: Annotated[int | None, typer.Option(
        envvar="OPENTIM_MESSAGE_RETENTION_DAYS", min=0,
        help="days stored messages are kept (default: Tencent's 7 standard / 30 premium; "
        "0 keeps everything)")] = None,
    console: Annotated[bool, typer.Option(
        "--console/--no-console", envvar="OPENTIM_CONSOLE",
        help="serve the web console at /console")] = True,
) -> None:
    """Run the server (REST under /v4, client gateway on the same port)."""
    from opentim.app import create_app
    from opentim.ops.config import ConfigError, resolve
    from opentim.ops.logs import parse_levels
    from opentim.serving import Server, log_limits, raise_fd_limit, uvicorn_config

    # Each setting from its flag, else its environment variable, else --config's file,
    # else its default; every value checked here (ops/config.py), before anything starts.
    try:
        resolved = resolve(_given_flags(ctx), config, os.environ)
    except ConfigError as exc:
        typer.echo(f"opentim: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = resolved.settings
    default_level, component_levels = parse_levels(resolved.log_levels)
    host, port = settings.host, settings.port
    metrics_host, metrics_port = settings.metrics_host, settings.metrics_port
    fds = raise_fd_limit()  # before the sockets and pools that use descriptors
    try:
        # What can fail is checked first (the addresses, the database, Redis); only then
        # may an empty database get its development app.
        sock = listen_socket(host, port, "--port")
        # (--port 0: the port the system chose, for the banner and the webhooks' check
        # that a callback URL is not this server)
        settings = dataclasses.replace(settings, port=sock.getsockname()[1])
        metrics_sock = None if metrics_port is None else \
            listen_socket(metrics_host, metrics_port, "--metrics-port")
        asyncio.run(_prepare(settings))
    except StartupError as exc:
        _fail(exc)
    uvicorn = uvicorn_config(create_app(settings, metrics_socket=metrics_sock), settings,
                             log_level=default_level, own_root_logger=True,
                             log_format=resolved.log_format, log_levels=component_levels)
    log_limits(fds, settings)
    Server(uvicorn).run(sockets=[sock])


def _given_flags(ctx: typer.Context) -> dict[str, tuple[object, str]]:
    """The serve options set on the command line or by their environment variable (not
    left at their default), by name, each with the flag or variable that set it."""
    given: dict[str, tuple[object, str]] = {}
    for param in ctx.command.params:
        name = param.name
        if name is None or name == "config":
            continue
        source = getattr(ctx.get_parameter_source(name), "name", None)
        if source == "COMMANDLINE":
            given[name] = (ctx.params[name], param.opts[0])
        elif source == "ENVIRONMENT":
            envvar = param.envvar if isinstance(param.envvar, str) else name
            given[name] = (ctx.params[name], envvar)
    return given


async def _prepare(settings: Settings) -> None:
    store = await _open_store(settings.db)
    try:
        if settings.redis:
            await check_redis(settings.redis)
        await _bootstrap(store, settings.host, settings.port, console=settings.console)
    finally:
        await store.db.close()


async def _bootstrap(store: SqlStore, host: str, port: int, *, console: bool = False) -> None:
    """On an empty database, create a development app and show how to call it (and, with
    the console on, a link that logs its admin in to the console once)."""
    if await store.apps.list_all():
        return
    app = App(sdkappid=DEV_SDKAPPID, secret_key=new_secret_key())
    await store.apps.create(app, now=int(time.time()))
    sig = usersig.generate(app.sdkappid, app.secret_key, DEFAULT_ADMIN)
    url = (f"http://{host}:{port}/v4/im_open_login_svc/account_import?sdkappid={app.sdkappid}"
           f"&identifier={DEFAULT_ADMIN}&usersig={sig}&random=1&contenttype=json")
    typer.echo("Empty database: created a development app.")
    _print_app(app)
    typer.echo(f"admin UserSig: {sig}")
    typer.echo("Try it:")
    typer.echo(f"  curl -s -X POST {shlex.quote(url)} -d '{{\"UserID\":\"alice\"}}'")
    if console:
        from opentim.console.auth import LOGIN_CODE_TTL, LOGIN_CODES

        code = LOGIN_CODES.issue(app.sdkappid, DEFAULT_ADMIN)
        typer.echo(f"Web console (this link logs {DEFAULT_ADMIN} in once, within "
                   f"{int(LOGIN_CODE_TTL // 60)} minutes):")
        typer.echo(f"  http://{host}:{port}/console/#login={code}")


CallbackCommandOption = Annotated[list[str] | None, typer.Option(
    "--callback-command",
    help=f"switch on one callback command (repeatable; default: all of "
         f"{', '.join(CALLBACK_COMMANDS)})")]


def _callback_commands(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    unknown = sorted(set(values) - set(CALLBACK_COMMANDS))
    if unknown:
        raise typer.BadParameter(f"unknown callback command(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(CALLBACK_COMMANDS)}")
    return frozenset(values)


def _callback_url(value: str | None) -> str | None:
    """'' or None: no callbacks; otherwise the URL as webhooks.urls normalises it, or a
    usage error saying why it is refused (webhooks/urls.py lists the rules)."""
    if not value:
        return None
    from opentim.redact import redact
    from opentim.webhooks.urls import check_callback_url

    try:
        return check_callback_url(value)
    except ValueError as exc:
        # (redacted: a refused URL may carry a password or a Sign)
        raise typer.BadParameter(f"callback URL {redact(value)!r} refused: {exc}") from None


ProfileCustomTagOption = Annotated[list[str] | None, typer.Option(
    "--profile-custom-tag",
    help=f"declare a custom profile tag {CUSTOM_PREFIX}NAME: NAME is 1 to 8 English "
         "letters (repeatable)")]


GroupMsgRateOption = Annotated[int, typer.Option(
    min=0, help="messages/s per group (Tencent's default 40); 0 = off")]


def _profile_custom_tags(values: list[str] | None) -> frozenset[str]:
    try:
        return frozenset(custom_keyword(value) for value in values or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile-custom-tag") from None


def _edition(value: str) -> Edition:
    try:
        return Edition(value)
    except ValueError:
        raise typer.BadParameter("edition must be premium or standard") from None


@apps_cli.command("create")
def app_create(
    sdkappid: Annotated[int, typer.Option(min=1)],
    key: Annotated[str | None, typer.Option(help="secret key; generated when omitted")] = None,
    admin: Annotated[list[str] | None, typer.Option(help="App admin (repeatable)")] = None,
    edition: Annotated[str, typer.Option(help="premium or standard")] = "premium",
    online_member_list: Annotated[bool, typer.Option(
        "--online-member-list/--no-online-member-list")] = True,
    callback_url: Annotated[str | None, typer.Option()] = None,
    callback_token: Annotated[str | None, typer.Option()] = None,
    callback_command: CallbackCommandOption = None,
    rate_limit: Annotated[int, typer.Option(min=0, help="calls/s per command; 0 = off")]
    = DEFAULT_RATE_LIMIT,
    group_msg_rate: GroupMsgRateOption = GROUP_MSG_RATE,
    profile_custom_tag: ProfileCustomTagOption = None,
    db: DbOption = DEFAULT_DB_URL,
) -> None:
    """Create an app."""
    app = App(
        sdkappid=sdkappid,
        secret_key=key or new_secret_key(),
        admins=frozenset(admin or [DEFAULT_ADMIN]),
        edition=_edition(edition),
        online_member_list=online_member_list,
        callback_url=_callback_url(callback_url),
        callback_token=callback_token,
        callback_commands=_callback_commands(callback_command),
        rate_limit=rate_limit,
        group_msg_rate=group_msg_rate,
        profile_custom_tags=_profile_custom_tags(profile_custom_tag),
    )

    async def work(store: SqlStore) -> None:
        try:
            await store.apps.create(app, now=int(time.time()))
        except KeyError:
            typer.echo(f"app {sdkappid} already exists (use `opentim app update`)", err=True)
            raise typer.Exit(1) from None

    asyncio.run(_with_store(db, work))
    _print_app(app)


@apps_cli.command("update")
def app_update(
    sdkappid: Annotated[int, typer.Option(min=1)],
    key: Annotated[str | None, typer.Option()] = None,
    admin: Annotated[list[str] | None, typer.Option(help="replaces the admin list")] = None,
    edition: Annotated[str | None, typer.Option()] = None,
    online_member_list: Annotated[bool | None, typer.Option(
        "--online-member-list/--no-online-member-list")] = None,
    callback_url: Annotated[str | None, typer.Option(help="'' removes it")] = None,
    callback_token: Annotated[str | None, typer.Option(help="'' removes it")] = None,
    callback_command: CallbackCommandOption = None,
    all_callback_commands: Annotated[bool, typer.Option(
        help="switch every callback command on")] = False,
    rate_limit: Annotated[int | None, typer.Option(min=0)] = None,
    group_msg_rate: Annotated[int | None, typer.Option(
        min=0, help="messages/s per group; 0 = off")] = None,
    profile_custom_tag: ProfileCustomTagOption = None,
    no_profile_custom_tags: Annotated[bool, typer.Option(
        help="remove every custom profile tag declaration")] = False,
    db: DbOption = DEFAULT_DB_URL,
) -> None:
    """Change an app's settings; a running server picks them up within seconds."""
    custom_tags = _profile_custom_tags(profile_custom_tag)  # (refused before any I/O)

    async def work(store: SqlStore) -> App:
        app = await store.apps.get(sdkappid)
        if app is None:
            typer.echo(f"app {sdkappid} does not exist", err=True)
            raise typer.Exit(1)
        changes: dict[str, object] = {}
        if key is not None:
            changes["secret_key"] = key
        if admin:
            changes["admins"] = frozenset(admin)
        if edition is not None:
            changes["edition"] = _edition(edition)
        if online_member_list is not None:
            changes["online_member_list"] = online_member_list
        if callback_url is not None:
            changes["callback_url"] = _callback_url(callback_url)
        if callback_token is not None:
            changes["callback_token"] = callback_token or None
        if rate_limit is not None:
            changes["rate_limit"] = rate_limit
        if group_msg_rate is not None:
            changes["group_msg_rate"] = group_msg_rate
        if callback_command:
            changes["callback_commands"] = _callback_commands(callback_command)
        if all_callback_commands:
            changes["callback_commands"] = None
        if profile_custom_tag:
            changes["profile_custom_tags"] = custom_tags
        if no_profile_custom_tags:
            changes["profile_custom_tags"] = frozenset()
        updated = dataclasses.replace(app, **changes)  # type: ignore[arg-type]
        await store.apps.save(updated, now=int(time.time()))
        return updated

    _print_app(asyncio.run(_with_store(db, work)), show_key=key is not None)


@apps_cli.command("list")
def app_list(
    db: DbOption = DEFAULT_DB_URL,
    show_keys: Annotated[bool, typer.Option(help="also print each app's secret key")] = False,
) -> None:
    """List apps (keys only with --show-keys)."""
    apps = asyncio.run(_with_store(db, lambda store: store.apps.list_all()))
    for app in apps:
        _print_app(app, show_key=show_keys)
        typer.echo("")
    if not apps:
        typer.echo("no apps")


@cli.command("usersig")
def make_usersig(
    sdkappid: Annotated[int, typer.Option()],
    key: Annotated[str, typer.Option()],
    identifier: Annotated[str, typer.Option()],
    expire: Annotated[int, typer.Option(help="seconds")] = 180 * 86400,
) -> None:
    """Print a UserSig, as Tencent's tls-sig-api-v2 libraries make them."""
    typer.echo(usersig.generate(sdkappid, key, identifier, expire))


@cli.command("crowd")
def crowd_command(
    sdkappid: Annotated[int, typer.Option(min=1)],
    group: Annotated[str, typer.Option(help="the AVChatRoom's GroupId (created when missing)")],
    users: Annotated[int, typer.Option(min=1, help="simulated viewers")],
    join_rate: Annotated[float | None, typer.Option(
        min=0.01, help="joins per second (default: as fast as the server takes)")] = None,
    churn: Annotated[bool, typer.Option(
        help="viewers keep leaving and coming back (2% of them a second)")] = False,
    chatter: Annotated[float, typer.Option(
        min=0, metavar="M", help="group messages per second from the crowd, in total")] = 0.0,
    server: Annotated[str, typer.Option(envvar="OPENTIM_SERVER")] = "http://127.0.0.1:8080",
    key: Annotated[str | None, typer.Option(
        help="the app's secret key (default: read from --db)")] = None,
    admin: Annotated[str | None, typer.Option(
        help="App admin for the REST calls (default: the app's first admin)")] = None,
    prefix: Annotated[str, typer.Option(help="viewers are PREFIX1 … PREFIXN")] = "viewer-",
    platform: Annotated[str, typer.Option(
        help="Android, iOS, Web, Windows, Mac, iPad, Linux or Unknown")] = "Web",
    create: Annotated[bool, typer.Option(
        "--create/--no-create", help="create a missing group as an AVChatRoom")] = True,
    db: DbOption = DEFAULT_DB_URL,
) -> None:
    """Bring N simulated viewers into a live room through the gateway, until Ctrl-C."""
    from opentim import crowd
    from opentim.gateway.endpoint import PLATFORMS

    if platform not in PLATFORMS:
        raise typer.BadParameter(f"one of {', '.join(PLATFORMS)}", param_hint="--platform")
    if key is None:
        app = asyncio.run(_with_store(db, lambda store: store.apps.get(sdkappid)))
        if app is None:
            typer.echo(f"opentim crowd: app {sdkappid} is not in {safe_db_url(db)}: give the "
                       "server's --db, or --key", err=True)
            raise typer.Exit(1)
        key = app.secret_key
        if admin is None:
            admin = DEFAULT_ADMIN if DEFAULT_ADMIN in app.admins else min(app.admins)
    options = crowd.CrowdOptions(
        server=server.rstrip("/"), sdkappid=sdkappid, key=key, admin=admin or DEFAULT_ADMIN,
        group=group, users=users, join_rate=join_rate, churn=churn, chatter=chatter,
        prefix=prefix, platform=platform, create=create)
    raise typer.Exit(crowd.main(options))


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"opentim {__version__}")
        raise typer.Exit()


@cli.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="print the version and exit")] = False) -> None:
    """OpenTIM: a self-hosted Tencent Cloud Chat REST server."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
