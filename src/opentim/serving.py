"""How the server process listens: the uvicorn configuration built from ``Settings``.

``opentim serve`` and the test suite's live servers both build their uvicorn server here,
so every bound on what a client controls (WebSocket frame size after decompression,
compression, timeouts, connection limits, what is logged) is the same in both. The
``/metrics`` listener is built here too, with the same protections and a small limit.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.config import LOG_LEVELS

from opentim.http_guard import HttpGuard, HttpLimits
from opentim.ops.logs import ACCESS_LOGGER, apply_levels, formatter_config, level_number
from opentim.settings import Settings

log = logging.getLogger(__name__)

# Descriptors kept free of client connections: database pools (about 30), Redis, webhook
# connections, the metrics listener, files. A quarter of a small limit, at most this many.
FD_RESERVE = 512
# The metrics listener is for a scraper or two, never for clients.
METRICS_MAX_CONNECTIONS = 32


def uvicorn_config(asgi: Any, settings: Settings, *, port: int | None = None,
                   log_level: str = "info", lifespan: str = "on",
                   own_root_logger: bool = False, log_format: str = "text",
                   log_levels: Mapping[str, str] | None = None) -> uvicorn.Config:
    """The uvicorn configuration of the API listener (REST and gateway).

    ``own_root_logger`` (``opentim serve``): the process's root logger gets the secret-
    redacting handler too, so that every library's records go through it. The test suite
    leaves the root logger to pytest. ``log_format``: "text" or "json" (ops/logs.py);
    ``log_levels``: logger name → level, over ``log_level`` (``--log-level NAME=LEVEL``).
    """
    if own_root_logger:
        logging.captureWarnings(True)  # warnings too pass the redacting handler
    guard = HttpGuard(http_limits(settings, connection_limit(settings.max_connections)))
    state = getattr(asgi, "state", None)
    if state is not None:
        state.http_guard = guard  # its counters are part of /metrics
    config = uvicorn.Config(
        asgi,
        host=settings.host,
        port=settings.port if port is None else port,
        lifespan=lifespan,  # type: ignore[arg-type]
        log_level=log_level,
        log_config=log_config(log_level, own_root_logger=own_root_logger,
                              log_format=log_format, log_levels=log_levels,
                              access_log=settings.access_log),
        # No uvicorn access log: request URLs carry UserSigs, which must not end up in log
        # files (settings.access_log is OpenTIM's own, without the query).
        access_log=False,
        http=guard.protocol_class(),
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
        # (the h11 protocol's bound; GuardedHttpProtocol applies max_header_bytes itself)
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # Bounds the message *after* permessage-deflate inflates it (websockets enforces
        # max_size on the decompressed payload).
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=30,
    )
    # (uvicorn set its loggers to log_level while loading the config: a level given for
    # one of them by name wins)
    apply_levels({name: level for name, level in (log_levels or {}).items()
                  if name == "uvicorn" or name.startswith("uvicorn.")})
    return config


def http_limits(settings: Settings, max_connections: int) -> HttpLimits:
    return HttpLimits(max_connections=max_connections, header_timeout=settings.header_timeout,
                      body_timeout=settings.body_timeout,
                      max_header_bytes=settings.max_header_bytes)


def log_config(log_level: str, *, own_root_logger: bool, log_format: str = "text",
               log_levels: Mapping[str, str] | None = None,
               access_log: bool = False) -> dict[str, Any]:
    """uvicorn's logging setup with every handler behind ``redact.RedactSecrets``."""
    level = LOG_LEVELS[log_level.lower()]
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,  # OpenTIM's module loggers exist already
        "filters": {"secrets": {"()": "opentim.redact.RedactSecrets"}},
        "formatters": {"default": formatter_config(log_format)},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "stream": "ext://sys.stderr", "filters": ["secrets"]}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            # The access log stays off: no handler at all (uvicorn then skips the lines).
            "uvicorn.access": {"handlers": [], "level": "INFO", "propagate": False},
        },
    }
    if own_root_logger:
        # Other libraries (aiohttp, asyncio, SQLAlchemy…) log warnings and above; OpenTIM's
        # own loggers follow --log-level. Both reach the one redacting handler.
        config["root"] = {"handlers": ["default"], "level": "WARNING"}
        config["loggers"]["opentim"] = {"level": level}
        if access_log:  # its lines are INFO, whatever the default level
            config["loggers"][ACCESS_LOGGER] = {"level": "INFO"}
        for name, named_level in (log_levels or {}).items():
            config["loggers"].setdefault(name, {})["level"] = level_number(named_level)
    return config


# --- file descriptors and the connection limit ------------------------------------------


@dataclass(frozen=True, slots=True)
class FdLimit:
    before: int
    now: int


def raise_fd_limit() -> FdLimit | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (None where there is none)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return FdLimit(before=soft, now=soft)
    # An "unlimited" hard limit still has a ceiling (Linux: fs.nr_open, often 2**20;
    # macOS: OPEN_MAX, 10240): try those.
    targets = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 10240]
    for target in targets:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return FdLimit(before=soft, now=target)
    return FdLimit(before=soft, now=soft)


def connection_limit(wanted: int) -> int:
    """``wanted``, lowered to keep ``FD_RESERVE`` descriptors (a quarter of a small limit)
    free: past the descriptor limit, accepting fails for every client."""
    try:
        import resource
    except ImportError:
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - min(FD_RESERVE, soft // 4)))


def log_limits(fds: FdLimit | None, settings: Settings) -> None:
    allowed = connection_limit(settings.max_connections)
    lowered = "" if allowed == settings.max_connections else \
        f" (max_connections {settings.max_connections}, lowered to keep descriptors free)"
    if fds is None:
        log.info("accepting up to %d connections%s", allowed, lowered)
        return
    raised = f" (raised from {fds.before})" if fds.now != fds.before else ""
    log.info("file descriptor limit %d%s: accepting up to %d connections%s", fds.now, raised,
             allowed, lowered)


# --- the server -------------------------------------------------------------------------


class Server(uvicorn.Server):
    """uvicorn's server, told which socket to use (``opentim serve`` binds it first, to
    report a port in use in one line); it then says where it listens, as uvicorn would."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            log.info("OpenTIM listening on %s (Ctrl-C to stop)", _url(host, port))


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def metrics_listener(asgi: Any, settings: Settings,
                           sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve ``asgi`` (GET /metrics only) on its own address, on the running loop; yields
    its URL. ``sock``: already bound (``opentim serve``); else bound here from settings."""
    from opentim.startup import listen_socket

    if sock is None:
        assert settings.metrics_port is not None
        sock = listen_socket(settings.metrics_host, settings.metrics_port, "--metrics-port")
    guard = HttpGuard(http_limits(settings, METRICS_MAX_CONNECTIONS))
    config = uvicorn.Config(asgi, lifespan="off", log_config=None, access_log=False,
                            http=guard.protocol_class(), ws="none",
                            timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    try:
        # (what uvicorn's serve() does before startup(); serve() itself would also take
        # over the process's signal handlers, which belong to the API server)
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    log.info("serving /metrics on %s", _url(host, port))
    try:
        yield _url(host, port)
    finally:
        await server.shutdown(sockets=[sock])


__all__ = ["FdLimit", "Server", "connection_limit", "log_config", "metrics_listener",
           "raise_fd_limit", "uvicorn_config"]
