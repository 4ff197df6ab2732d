"""Bounds on what one TCP connection may hold: time, header bytes, and a place in the limit.

uvicorn's HTTP protocol (httptools) times out only *idle keep-alive* connections, after a
response: a connection that never sends a byte, or sends its request line and headers (or
its body) a byte at a time, is kept forever, and with it a file descriptor. A thousand such
connections exhaust a 1,024-descriptor process, after which every accept fails. Its
``limit_concurrency`` does not help: it answers 503 only once a request's headers are
complete (an idle or trickling connection never gets there), it does not apply to
WebSocket upgrades, and it counts tasks as well as connections.

``GuardedHttpProtocol`` (uvicorn's ``HttpToolsProtocol`` with timers around it) adds:

- **header timeout**: a connection must complete a request's line and headers within
  ``header_timeout`` of opening, or of the first byte of its next request;
- **body timeout**: the body must then arrive within ``body_timeout``, and a response the
  client leaves unread (the socket's send buffer full) may stall for at most as long; a
  connection closed by a timeout with responses still unsent is reset (SO_LINGER 0), not
  closed, since a close would wait for the client to read them;
- **header size**: more than ``max_header_bytes`` before the headers end gets 431;
- **connection limit**: at ``max_connections`` open connections (HTTP and WebSocket alike)
  a new connection first evicts the oldest one that is *waiting* (idle between requests, or
  still sending its headers); only when none is waiting is the newcomer refused with 503.
  So idle and slowloris connections can delay a real request by at most one eviction, and
  connections in a request or upgraded to the gateway are never dropped for a newcomer.

A WebSocket upgrade is covered until its request's headers are complete; after that the
gateway's heartbeat timeout bounds a silent connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from opentim.gateway.transport import abort

_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n")
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
              b"content-type: text/plain; charset=utf-8\r\ncontent-length: 33\r\n"
              b"connection: close\r\n\r\nrequest line and headers too big\n")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float
    max_header_bytes: int


class HttpGuard:
    """One listener's limits, its waiting (evictable) connections and its counters."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        # insertion-ordered: the first key is the connection waiting the longest
        self.waiting: dict[GuardedHttpProtocol, None] = {}
        self.counters = {"header_timeout": 0, "body_timeout": 0, "send_timeout": 0,
                         "headers_too_large": 0, "evicted": 0, "refused": 0}

    def protocol_class(self) -> type[GuardedHttpProtocol]:
        """The class to pass to uvicorn as ``http=``, bound to this guard."""
        return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"guard": self})

    def prometheus(self) -> str:
        lines = ["# TYPE opentim_http_connections_closed_total counter"]
        lines += [f'opentim_http_connections_closed_total{{reason="{reason}"}} {count}'
                  for reason, count in self.counters.items()]
        return "\n".join(lines) + "\n"


class GuardedHttpProtocol(HttpToolsProtocol):
    guard: HttpGuard  # set on the subclass made by HttpGuard.protocol_class

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._in_headers = True  # between requests, or receiving a request's headers
        self._header_bytes = 0
        self._running: Any = None  # the request whose application task runs

    # --- connection life -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.guard.limits.max_connections
        super().connection_made(transport)
        if full and not self._evict_one():
            self.guard.counters["refused"] += 1
            transport.write(_REFUSED)
            transport.close()
            return
        self._wait()
        self._arm("header_timeout", self.guard.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._cancel_send_timer()
        self.guard.waiting.pop(self, None)
        running = self._running
        super().connection_lost(exc)
        # uvicorn marks only the newest *parsed* request as disconnected; with pipelined
        # requests queued behind it, the one actually running (say, waiting for the
        # socket to drain when a send timeout closed it) would go on writing to the dead
        # transport. Tell it too.
        if running is not None and not running.response_complete:
            running.disconnected = True
            running.message_event.set()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def _evict_one(self) -> bool:
        for victim in self.guard.waiting:
            if victim is not self and not victim.transport.is_closing():
                self.guard.waiting.pop(victim)
                self.guard.counters["evicted"] += 1
                victim.transport.close()
                return True
        return False

    def _wait(self) -> None:
        self.guard.waiting.pop(self, None)
        self.guard.waiting[self] = None

    # --- reading a request ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
            if self._timer is None:  # the first byte of a request after a keep-alive wait
                self._arm("header_timeout", self.guard.limits.header_timeout)
        super().data_received(data)
        if self._in_headers and self._header_bytes > self.guard.limits.max_header_bytes \
                and not self.transport.is_closing():
            self.guard.counters["headers_too_large"] += 1
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self.guard.waiting.pop(self, None)
        self._arm("body_timeout", self.guard.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_headers = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # (not when it went on to a pipelined request, which is now running)
        if self._in_headers and self.cycle.response_complete and \
                not self.transport.is_closing():
            self._wait()  # idle until the next request (uvicorn's keep-alive timer runs)

    def handle_websocket_upgrade(self) -> None:
        # The connection now belongs to the WebSocket protocol (and the gateway's timeouts).
        self._disarm()
        self.guard.waiting.pop(self, None)
        super().handle_websocket_upgrade()

    # --- a response the client does not read --------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(
                self.guard.limits.body_timeout, self._close_for, "send_timeout")

    def resume_writing(self) -> None:
        self._cancel_send_timer()
        super().resume_writing()

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # --- timers --------------------------------------------------------------------------

    def _arm(self, reason: str, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expire, reason)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, reason: str) -> None:
        self._timer = None
        self._close_for(reason)

    def _close_for(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.guard.counters[reason] += 1
            if self.transport.get_write_buffer_size():
                # close() would first flush responses the client is not reading: the
                # descriptor and the kernel's send buffer would stay for as long as the
                # client keeps its window shut. Reset the connection instead.
                abort(self.transport)
            else:
                self.transport.close()
