"""Server settings. ``opentim serve`` fills the first ones from flags (each also reads an
OPENTIM_* variable); the rest keep their defaults unless code builds Settings itself."""

from __future__ import annotations

from dataclasses import dataclass

from opentim.storage.database import DEFAULT_DB_URL


@dataclass(frozen=True, slots=True)
class Settings:
    db: str = DEFAULT_DB_URL
    redis: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # Seconds before a change made with `opentim app …` reaches a running server.
    app_refresh_interval: float = 2.0
    # Largest accepted REST body; larger ones fail with 60002 before being parsed.
    max_body_bytes: int = 1 << 20
    # A gateway connection silent this long is dropped (HeartbeatInterrupt).
    heartbeat_timeout: float = 30.0
    # A gateway client with more pushed bytes than this unread is closed (4010).
    push_backlog_bytes: int = 1 << 20
    # Largest gateway frame a client may send, measured after decompression.
    max_frame_bytes: int = 128 << 10
    # permessage-deflate on the gateway (off by default: see docs/client-protocol.md).
    ws_compression: bool = False
    # How long mark 500 (and robots) keep a member listed without a connection.
    mark500_ttl: float = 3 * 86400.0
    # How often the in-process presence store looks for lapsed marks 500 (offline events).
    sweep_interval: float = 5.0
    # Webhooks: per-attempt timeout, retries after a failed attempt, queued callbacks per app.
    webhook_timeout: float = 2.0
    webhook_retries: int = 3
    webhook_queue_size: int = 10_000
