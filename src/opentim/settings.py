"""Server settings. ``opentim serve`` fills the first ones from flags (each also reads an
OPENTIM_* variable); the rest keep their defaults unless code builds Settings itself."""

from __future__ import annotations

from dataclasses import dataclass

from opentim.domain.marks import DEFAULT_MARK500_TTL
from opentim.storage.database import DEFAULT_DB_URL


@dataclass(frozen=True, slots=True)
class Settings:
    db: str = DEFAULT_DB_URL
    redis: str | None = None
    # Prefix of every Redis key and of the room relay's channel: processes that share
    # presence use the same one; deployments sharing one Redis each use their own.
    redis_prefix: str = "opentim"
    host: str = "127.0.0.1"
    port: int = 8080
    # /metrics is served on its own listener, only when a port is set (0: any free port).
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    # Open client connections (HTTP and gateway WebSockets) per process; capped at start
    # below the process's file-descriptor limit (see serving.connection_limit).
    max_connections: int = 20_000
    # Seconds to receive a request's line and headers (from connecting, or from the first
    # byte of a keep-alive connection's next request), and then its body; a response left
    # unread may stall for at most body_timeout too. Idle keep-alive connections close
    # after keep_alive_timeout.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    # Largest request line plus headers (431 beyond).
    max_header_bytes: int = 16 << 10
    # Seconds before a change made with `opentim app …` reaches a running server.
    app_refresh_interval: float = 2.0
    # Largest accepted REST body; larger ones fail with 60002 before being parsed.
    max_body_bytes: int = 1 << 20
    # A gateway connection silent this long is dropped (HeartbeatInterrupt).
    heartbeat_timeout: float = 30.0
    # A gateway client with more pushed bytes than this unread is closed (4010).
    push_backlog_bytes: int = 1 << 20
    # A gateway frame the client leaves unread this long drops its connection.
    gateway_write_timeout: float = 10.0
    # Messages for one connection within this many seconds go out in one write (0: those
    # of one event-loop pass); see gateway/outbox.py.
    gateway_write_delay: float = 0.005
    # Gateway connections one account may hold per process (Tencent's multi-instance rule:
    # Web and Unknown share the first, each native platform has the second); a new one
    # over the limit kicks the oldest (4012).
    max_web_connections_per_account: int = 10
    max_device_connections_per_account: int = 3
    # Largest gateway frame a client may send, measured after decompression.
    max_frame_bytes: int = 128 << 10
    # permessage-deflate on the gateway (off by default: see docs/client-protocol.md).
    ws_compression: bool = False
    # Days a stored message (group history, one-to-one history) is kept: None keeps what
    # Tencent keeps by edition (7 days standard, 30 premium), 0 keeps everything.
    message_retention_days: int | None = None
    # How often expired messages are deleted (seconds).
    retention_interval: float = 3600.0
    # How long mark 500 (and robots) keep a member listed without a connection.
    mark500_ttl: float = DEFAULT_MARK500_TTL
    # How often the in-process presence store looks for lapsed marks 500 (offline events).
    sweep_interval: float = 5.0
    # Webhooks: per-attempt timeout, retries after a failed attempt, queued callbacks per app.
    webhook_timeout: float = 2.0
    webhook_retries: int = 3
    webhook_queue_size: int = 10_000
    # One log line per REST call (method, path without the query, command, ErrorCode,
    # latency) on the logger opentim.access.
    access_log: bool = False
    # The web console at /console (docs/console.md); `opentim serve --no-console` turns it off.
    console: bool = True
