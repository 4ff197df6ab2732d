"""Fan-out load for bench/run's messages phase: one process, N raw gateway connections in one
room, and the sender whose messages they receive.

The connections are plain asyncio protocols speaking the client protocol
(docs/client-protocol.md) on a minimal WebSocket implementation of their own: the HTTP
upgrade, unmasked server frames parsed in place, masked client frames, pongs. Each one
opens ``GET /gateway?sdkappid&identifier&usersig`` and waits for the ``connected`` frame;
once all are open, each sends ``{"cmd":"join_group","GroupId":…}`` (all at once) and
waits for its reply; heartbeats go out every 10 s (HeartbeatTimeout / 3).
``opentim.client`` is not used: at 10,000 connections its per-frame cost would make the
client, not the server, the thing measured.

A message carries its send time: its text starts ``bench:<19 digits>`` (time.monotonic_ns()
when the sender wrote the request; the schedule's time in rate mode). A connection finds
that marker in each frame it receives, without decoding the JSON, and records the
delay. The sender posts ``send_group_msg`` (OpenTIM) or ``POST /broadcast`` (the bare
server of bench/bare_ws.py, with the frame OpenTIM pushed, its time digits replaced).

Once every connection has joined, the process prints ``READY {json}`` (with the frame it
received from a warm-up message when it is given ``--capture``) and then takes commands,
one per stdin line, each answered with one ``BENCH {json}`` line:

    flat SECONDS WINDOW [QUERY]   messages flat out for SECONDS, at most WINDOW not yet
                          received by every connection (QUERY: added to the send URL's)
    rate SECONDS RATE [QUERY]     RATE messages a second on a fixed schedule for SECONDS

The result: messages, deliveries, seconds (first send to last delivery), p50_us and p99_us
of the delays, server_cpu_s (the --server-pid processes' CPU time over the run), client_busy
(this process's CPU time ÷ wall time) and lost (deliveries still missing once none has
arrived for 30 s: a failure in flat mode; in rate mode an overloaded room may shed them).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import gc
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentim.protocol import usersig

MARKER = b"bench:"
JOIN_ID = 1
JOIN_REPLY = b'{"id":1,'  # the gateway's and bench/bare_ws.py's replies begin so
DIGITS = 19  # the send time's width in the message text
TEXT = " what a goal!!! replay please, that was the best play of the night"


def now_ns() -> int:
    return time.monotonic_ns()


def stamp(ns: int) -> bytes:
    return str(ns).zfill(DIGITS).encode()


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
    return head + mask + masked


class Conn(asyncio.Protocol):
    """One gateway connection: handshake, frames, and the one request it may have pending."""

    def __init__(self, fleet: Fleet, handshake: bytes) -> None:
        self.fleet = fleet
        self.handshake = handshake
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport's
        self.upgraded = False
        self.buf = b""
        self.hello: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.reply: asyncio.Future[bytes] | None = None
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.handshake)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fleet.lost_connection(self)
        for fut in (self.hello, self.reply):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    def send(self, payload: bytes, opcode: int = 1) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame(opcode, payload))

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data, self.buf = self.buf + data, b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self.hello.set_exception(ConnectionError(data[:200].decode("latin-1")))
                return
            self.upgraded = True
            data = data[end + 4:]
        pos, size = 0, len(data)
        while size - pos >= 2:
            length, head = data[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            opcode = data[pos] & 0x0F
            payload = data[pos + head:end]
            pos = end
            if opcode in (1, 2):
                self.message(payload)
            elif opcode == 9:  # ping: uvicorn sends one every 20 s
                self.send(payload, 0xA)
            elif opcode == 8:
                self.closed = True
                self.fleet.closed_by_server(self, payload)
        if pos < size:
            self.buf = data[pos:]

    def message(self, payload: bytes) -> None:
        at = payload.find(MARKER)
        if at >= 0:
            self.fleet.delivered(int(payload[at + 6:at + 6 + DIGITS]), payload)
        elif payload.startswith(JOIN_REPLY):  # (heartbeats' replies carry "id":null)
            if self.reply is not None and not self.reply.done():
                self.reply.set_result(payload)
        elif not self.hello.done() and payload.startswith(b'{"event":"connected"'):
            self.hello.set_result(payload)


class Http:
    """Keep-alive HTTP/1.1 connections to one server: POST a body, read the answer."""

    def __init__(self, url: str, size: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.target = parts.path + ("?" + parts.query if parts.query else "")
        self.size = size
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def post(self, body: bytes, query: str = "") -> bytes:
        """POST ``body``; ``query``: added to the URL's query string. A connection the
        server closed while it was idle (keep-alive timeout) is opened again, once."""
        reader, writer = await self.idle.get()
        target = self.target + ("&" if "?" in self.target else "?") + query if query \
            else self.target
        request = (b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (target.encode(), self.host.encode(),
                                                      self.port, len(body), body))
        for attempt in (1, 2):
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                writer.close()
                if attempt == 2 or (isinstance(exc, asyncio.IncompleteReadError)
                                    and exc.partial):
                    raise
                reader, writer = await asyncio.open_connection(self.host, self.port)
        length, chunked = 0, False
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            elif line.startswith(b"transfer-encoding:") and b"chunked" in line:
                chunked = True
        if chunked:  # OpenTIM's answers (no content-length)
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append((await reader.readexactly(size + 2))[:-2])
            await reader.readuntil(b"\r\n")  # the empty trailer
            answer = b"".join(parts)
        else:
            answer = await reader.readexactly(length)
        self.idle.put_nowait((reader, writer))
        if not head.startswith(b"HTTP/1.1 200") or b'"ErrorCode":0' not in answer:
            raise RuntimeError(f"the send was refused: {head[:40]!r} {answer[:300]!r}")
        return answer


class Fleet:
    """Every connection, the sender, and what they measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.conns: list[Conn] = []
        self.pending: dict[int, int] = {}  # send time -> connections yet to receive it
        self.delays = array.array("q")
        self.window: asyncio.Semaphore | None = None
        self.last_delivery = 0
        self.stray = 0
        self.captured = b""
        self.failures: list[str] = []
        self.ready = False
        self.drained = asyncio.Event()
        self.last_ts = 0
        self.make_body: Callable[[int], bytes] = self.opentim_body
        self.random = random.randrange(1, 1 << 31)
        self.open_s = self.join_s = 0.0

    # --- connections ------------------------------------------------------------------

    async def connect(self) -> None:
        """Every connection opened (``concurrency`` handshakes at a time), then every one's
        join_group sent at once: the room fills in as few seconds as the server allows,
        and each second of filling costs a members_changed frame to everyone already in."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.args.concurrency)
        gateways = self.args.gateway
        started = time.monotonic()

        async def one(i: int) -> None:
            user = f"{self.args.prefix}{self.args.first + i}"
            gw = urlsplit(gateways[i % len(gateways)])
            sig = usersig.generate(self.args.sdkappid, self.args.key, user)
            path = f"/gateway?sdkappid={self.args.sdkappid}&identifier={user}&usersig={sig}"
            handshake = (f"GET {path} HTTP/1.1\r\nHost: {gw.hostname}:{gw.port}\r\n"
                         f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
            async with gate:
                conn = Conn(self, handshake)
                await loop.create_connection(lambda: conn, gw.hostname, gw.port)
                async with asyncio.timeout(60):
                    await conn.hello
                self.conns.append(conn)

        await asyncio.gather(*(one(i) for i in range(self.args.count)))
        self.open_s = time.monotonic() - started
        join = json.dumps({"id": JOIN_ID, "cmd": "join_group",
                           "GroupId": self.args.group}).encode()
        replies = []
        for conn in self.conns:
            conn.reply = loop.create_future()
            replies.append(conn.reply)
            conn.send(join)
        async with asyncio.timeout(60 + len(self.conns) / 20):
            answers = await asyncio.gather(*replies)
        for conn, answer in zip(self.conns, answers, strict=True):
            conn.reply = None
            if b'"ErrorCode":0' not in answer:
                raise RuntimeError(f"join_group answered {answer[:300]!r}")
        self.join_s = time.monotonic() - started - self.open_s
        self.ready = True

    async def heartbeats(self) -> None:
        """{"cmd":"heartbeat"} from every connection each HeartbeatTimeout / 3, spread."""
        beat = json.dumps({"cmd": "heartbeat"}).encode()
        interval = self.args.heartbeat_interval
        while True:
            for i in range(10):
                await asyncio.sleep(interval / 10)
                for conn in self.conns[i::10]:
                    conn.send(beat)

    def lost_connection(self, conn: Conn) -> None:
        if self.ready:
            self.failures.append("a connection was lost")

    def closed_by_server(self, conn: Conn, payload: bytes) -> None:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
        self.failures.append(f"the server closed a connection: {code} "
                             f"{payload[2:].decode(errors='replace')}")

    # --- deliveries ---------------------------------------------------------------------

    def delivered(self, ts: int, payload: bytes) -> None:
        now = now_ns()
        left = self.pending.get(ts)
        if left is None:
            self.stray += 1
            return
        if not self.captured:
            self.captured = payload
        self.delays.append(now - ts)
        self.last_delivery = now
        if left == 1:
            del self.pending[ts]
            if self.window is not None:
                self.window.release()
            if not self.pending:
                self.drained.set()
        else:
            self.pending[ts] = left - 1

    def next_ts(self, at: int = 0) -> int:
        ts = max(at or now_ns(), self.last_ts + 1)
        self.last_ts = ts
        return ts

    def opentim_body(self, ts: int) -> bytes:
        self.random = self.random % 4_000_000_000 + 1
        return json.dumps({
            "GroupId": self.args.group, "Random": self.random,
            "From_Account": self.args.sender,
            "MsgBody": [{"MsgType": "TIMTextElem",
                         "MsgContent": {"Text": f"bench:{stamp(ts).decode()}{TEXT}"}}],
        }).encode()

    def bare_body(self, template: bytes) -> Callable[[int], bytes]:
        at = template.find(MARKER) + len(MARKER)
        head, tail = template[:at], template[at + DIGITS:]
        return lambda ts: head + stamp(ts) + tail

    async def warm_up(self, http: Http) -> None:
        """One message every connection must get, not measured; the first frame received
        is kept (--capture prints it)."""
        ts = self.next_ts()
        self.pending[ts] = len(self.conns)
        self.drained.clear()
        await http.post(self.make_body(ts))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await self.drained.wait()
        if self.pending:
            raise RuntimeError(f"the warm-up message reached {len(self.conns) - self.pending[ts]}"
                               f" of {len(self.conns)} connections in 30 s")

    async def run(self, http: Http, mode: str, seconds: float, param: float,
                  query: str = "") -> dict[str, Any]:
        n = len(self.conns)
        self.delays = array.array("q")
        self.drained.clear()
        self.stray = 0
        pids = self.args.server_pid
        cpu0 = sum(proc_cpu(p) for p in pids)
        own0, t0 = time.process_time(), now_ns()
        sent = 0
        tasks: set[asyncio.Task[bytes]] = set()

        def post(ts: int) -> None:
            task = asyncio.create_task(http.post(self.make_body(ts), query))
            tasks.add(task)
            task.add_done_callback(done)

        def done(task: asyncio.Task[bytes]) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self.failures.append(str(task.exception()))

        end = t0 + int(seconds * 1e9)
        if mode == "flat":
            self.window = asyncio.Semaphore(int(param))
            while now_ns() < end and not self.failures:
                try:
                    async with asyncio.timeout(30):
                        await self.window.acquire()
                except TimeoutError:
                    self.failures.append("no message was fully delivered for 30 s")
                    break
                ts = self.next_ts()
                self.pending[ts] = n
                self.drained.clear()
                post(ts)
                sent += 1
        else:
            self.window = None
            interval = 1e9 / param
            for k in range(int(seconds * param)):
                at = t0 + int(k * interval)
                delay = (at - now_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                if self.failures:
                    break
                ts = self.next_ts(at)  # delays count from the schedule
                self.pending[ts] = n
                self.drained.clear()
                post(ts)
                sent += 1
        lost = 0
        while self.pending:  # an overloaded server may take long: wait while it delivers
            progress = self.last_delivery
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await self.drained.wait()
            if self.last_delivery == progress:
                break
        if self.pending:
            lost = sum(self.pending.values())
            if mode == "flat":  # (rate mode reports them: an overloaded room may shed)
                self.failures.append(f"{lost} deliveries of {len(self.pending)} messages "
                                     "missing, none arriving for 30 s")
            self.pending.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        elapsed = ((self.last_delivery if self.last_delivery > t0 else now_ns()) - t0) / 1e9
        own, cpu = time.process_time() - own0, sum(proc_cpu(p) for p in pids) - cpu0
        ordered = sorted(self.delays)
        count = len(ordered)
        p50 = ordered[count // 2] / 1000 if count else 0.0
        p99 = ordered[min(count - 1, int(count * 0.99))] / 1000 if count else 0.0
        return {"messages": sent, "deliveries": count, "seconds": elapsed,
                "connections": n, "p50_us": p50, "p99_us": p99, "server_cpu_s": cpu,
                "client_busy": own / ((now_ns() - t0) / 1e9), "lost": lost,
                "stray": self.stray, "failures": self.failures[:5]}


async def main_async(args: argparse.Namespace) -> int:
    gc.disable()  # nothing here forms cycles; thousands of protocols make GC passes slow
    fleet = Fleet(args)
    http = Http(args.send_url, args.http_connections)
    await http.open()
    if args.template:
        fleet.make_body = fleet.bare_body(base64.b64decode(args.template))
    beating = asyncio.create_task(fleet.heartbeats())  # the first joined wait for the last
    await fleet.connect()
    gc.freeze()
    await fleet.warm_up(http)
    ready: dict[str, Any] = {"connections": len(fleet.conns), "open_s": fleet.open_s,
                             "join_s": fleet.join_s}
    if args.capture:
        ready["frame_b64"] = base64.b64encode(fleet.captured).decode()
    print("READY " + json.dumps(ready), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "quit":
            break
        mode, seconds, param = line[0], float(line[1]), float(line[2])
        result = await fleet.run(http, mode, seconds, param, line[3] if len(line) > 3 else "")
        print("BENCH " + json.dumps(result), flush=True)
        if fleet.failures:
            break
    beating.cancel()
    sys.stdout.flush()
    os._exit(1 if fleet.failures else 0)  # no polite goodbyes to thousands of sockets


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", action="append", required=True,
                   help="a server's base URL; connections go to each in turn")
    p.add_argument("--send-url", required=True, help="the URL messages are POSTed to")
    p.add_argument("--sdkappid", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--prefix", default="bench_f_", help="UserIDs are PREFIX<n>")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--sender", default="bench_f_host", help="From_Account of the messages")
    p.add_argument("--template", default="", help="base64 of the frame to broadcast (bare)")
    p.add_argument("--capture", action="store_true", help="print the warm-up frame")
    p.add_argument("--server-pid", type=int, action="append", default=[])
    p.add_argument("--http-connections", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=200, help="connections opening at once")
    p.add_argument("--heartbeat-interval", type=float, default=10.0)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.count + 256) if hard != resource.RLIM_INFINITY else args.count + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < args.count + 64:
        print(f"fanout: the open-file limit ({hard}) is too low for {args.count} "
              "connections", file=sys.stderr)
        return 2
    try:
        import uvloop

        return uvloop.run(main_async(args))
    except ImportError:
        return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
