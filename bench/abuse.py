"""The processes of bench/run's abuse phase (bench/abuse_phase.py): one normal client whose
requests are timed, and the abusers, one kind per process.

    probe       one gateway session (joined to --group, reading every push) and one
                keep-alive HTTP connection; prints READY, then takes commands on stdin,
                ``run SECONDS``: a heartbeat round trip and a REST read (--rest-url) every
                --interval s, alternating, for SECONDS, answered with one line
                ``BENCH {json}``: per kind n, p50_us, p99_us, max_us and errors, and the
                --server-pid process's RSS (max and last of samples every 0.5 s).
    unauth      --count WebSockets at a time that complete the upgrade with no UserSig (even
                workers) or a bad one (odd), each reopened as soon as the server closes it.
    slowloris   --count TCP connections at a time that never finish a request: the request
                line (even workers) or the headers (odd) trickled a byte every --trickle s,
                each reopened as soon as the server closes it.
    bigframe    --count authenticated gateway connections, each sending one frame of --size
                bytes (beyond max_frame_bytes) and reconnecting once the server closes it.
    noread      --count authenticated gateway connections joined to --group that never read
                again (4 KiB receive buffers) while this process sends --rate group
                messages/s of about 2 KB to that group (--send-url); each reconnects once the
                server has dropped it.

An abuser prints READY once its first --count connections are open (upgraded, or sent
their first bytes), keeps going until a line (or EOF) arrives on stdin, and then prints
``BENCH {json}``: connections opened, closed by the server (by close code where a close
frame was read), how long the server held them (p50/max from open to close), errors, and
still open when told to stop. Abusers lower their own priority (nice 10), since they share
core 1 with the probe: the probe's figures are the server's, not a starved client's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from clients import Discard, emit, percentiles, raise_nofile, rss_bytes, run_loop
from fanout import Http, frame

from opentim.client import connect
from opentim.protocol import usersig

TCP_ESTABLISHED = 1
TEXT = "x" * 2000  # noread: the body of each group message


# --- the normal client ------------------------------------------------------------------


def figures(seconds: list[float], errors: int) -> dict[str, Any]:
    p50, p99 = percentiles(seconds)
    return {"n": len(seconds), "p50_us": p50, "p99_us": p99,
            "max_us": max(seconds, default=0.0) * 1e6, "errors": errors}


async def probe(args: argparse.Namespace) -> int:
    user = args.identifier
    sig = usersig.generate(args.sdkappid, args.key, user)
    http = Http(args.rest_url, 1)
    await http.open()
    body = json.dumps({"GroupId": args.group}).encode()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with connect(args.url, sdkappid=args.sdkappid, identifier=user, usersig=sig,
                       heartbeat_interval=0) as session:
        session.events = Discard()
        session.message_queue = Discard()
        await session.join_group(args.group)
        print("READY", flush=True)
        while True:
            line = (await reader.readline()).decode().split()
            if not line or line[0] != "run":
                break
            times: dict[str, list[float]] = {"heartbeat": [], "rest": []}
            errors = {"heartbeat": 0, "rest": 0}
            failures: list[str] = []
            rss: list[int] = []

            async def timed(kind: str, work: Callable[[], Awaitable[Any]],
                            times: dict[str, list[float]] = times,
                            errors: dict[str, int] = errors,
                            failures: list[str] = failures) -> None:
                start = time.perf_counter()
                try:
                    async with asyncio.timeout(30):
                        await work()
                    times[kind].append(time.perf_counter() - start)
                except Exception as exc:
                    errors[kind] += 1
                    failures.append(f"{kind}: {exc!r}"[:200])

            async def sample(rss: list[int] = rss) -> None:
                while True:
                    rss.append(rss_bytes(args.server_pid))
                    await asyncio.sleep(0.5)

            sampler = asyncio.create_task(sample())
            deadline = time.perf_counter() + float(line[1])
            scheduled = time.perf_counter()
            turn = 0
            while scheduled < deadline:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                if turn % 2:
                    await timed("rest", lambda: http.post(body))
                else:
                    await timed("heartbeat", session.heartbeat)
                turn += 1
                scheduled += args.interval
            sampler.cancel()
            emit({**{k: figures(v, errors[k]) for k, v in times.items()},
                  "rss_max": max(rss), "rss_last": rss[-1], "failures": failures[:5],
                  "closed": session.close_code})
    return 0


# --- abusers ----------------------------------------------------------------------------


class Tally:
    """What one abuser process did: connections opened, closed by the server, held for."""

    def __init__(self) -> None:
        self.opened = 0
        self.held: list[float] = []  # open -> closed by the server, seconds
        self.codes: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.open_now = 0
        self.stop = asyncio.Event()
        self.extra: dict[str, Any] = {}

    def opening(self, ready: asyncio.Event, count: int) -> None:
        """One more connection open; ``ready`` once ``count`` have been."""
        self.opened += 1
        self.open_now += 1
        if self.opened >= count:
            ready.set()

    def closed(self, since: float, code: str) -> None:
        self.held.append(time.monotonic() - since)
        self.codes[code] += 1

    def error(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1

    def result(self) -> dict[str, Any]:
        p50, _ = percentiles(self.held)
        return {"opened": self.opened, "closed_by_server": len(self.held),
                "held_p50_s": p50 / 1e6, "held_max_s": max(self.held, default=0.0),
                "codes": dict(self.codes), "errors": dict(self.errors), **self.extra}


def target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def upgrade(host: str, port: int, query: str) -> bytes:
    return (f"GET /gateway?{query} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: "
            f"{base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"\r\n").encode()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(length)


async def until_closed(reader: asyncio.StreamReader) -> str:
    """Read frames until the server's close frame (its code) or the end of the stream."""
    try:
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 8:
                return str(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else "none"
    except (asyncio.IncompleteReadError, ConnectionError):
        return "eof"


async def gateway_open(host: str, port: int, query: str, rcvbuf: int = 0
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A WebSocket upgraded (its first frame read): reader, writer, that frame."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(upgrade(host, port, query))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        raise ConnectionRefusedError(head.split(b"\r\n", 1)[0].decode("latin-1"))
    _, first = await read_frame(reader)
    return reader, writer, first


def signed(args: argparse.Namespace, i: int) -> str:
    user = f"{args.prefix}{i}"
    return (f"sdkappid={args.sdkappid}&identifier={user}&usersig="
            f"{usersig.generate(args.sdkappid, args.key, user)}")


async def refused(args: argparse.Namespace, tally: Tally, ready: asyncio.Event, query: str,
                  send: bytes) -> None:
    """Upgrade with ``query``, send ``send``, read until the server closes; again and again."""
    host, port = target(args.url)
    while not tally.stop.is_set():
        since = time.monotonic()
        try:
            async with asyncio.timeout(60):
                reader, writer, _ = await gateway_open(host, port, query)
                tally.opening(ready, args.count)
                try:
                    writer.write(send)
                    tally.closed(since, await until_closed(reader))
                    writer.write(frame(8, struct.pack("!H", 1000)))
                finally:
                    tally.open_now -= 1
                    writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            tally.error(exc)
            await asyncio.sleep(0.1)


async def unauth_worker(args: argparse.Namespace, tally: Tally, i: int,
                        ready: asyncio.Event) -> None:
    """Held from connecting to the server's close: the handshake's wait counts too."""
    bad = "&usersig=eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwokpuZl5mcUlRYkl" if i % 2 else ""
    await refused(args, tally, ready, f"sdkappid={args.sdkappid}&identifier=bench_x_{i}{bad}",
                  b"")


async def slowloris_worker(args: argparse.Namespace, tally: Tally, i: int,
                           ready: asyncio.Event) -> None:
    host, port = target(args.url)
    first = (b"GET /v4/group_open_http_svc/get_group_info?sdkappid=" if i % 2 == 0 else
             b"POST /v4/group_open_http_svc/get_group_info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await asyncio.sleep(args.trickle * i / args.count)  # the trickles spread over a period
    while not tally.stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            tally.error(exc)
            await asyncio.sleep(0.1)
            continue
        since = time.monotonic()
        tally.opening(ready, args.count)
        writer.write(first)
        eof = asyncio.create_task(reader.read())
        try:
            while not tally.stop.is_set():
                done, _ = await asyncio.wait([eof], timeout=args.trickle)
                if done:
                    tally.closed(since, "eof")
                    break
                writer.write(b"1")
        except ConnectionError as exc:
            tally.error(exc)
        finally:
            eof.cancel()
            tally.open_now -= 1
            writer.close()


async def bigframe_worker(args: argparse.Namespace, tally: Tally, i: int,
                          ready: asyncio.Event) -> None:
    payload = b'{"cmd":"heartbeat","x":"' + b"a" * args.size + b'"}'
    await refused(args, tally, ready, signed(args, i), frame(1, payload))


async def noread_worker(args: argparse.Namespace, tally: Tally, i: int,
                        ready: asyncio.Event) -> None:
    host, port = target(args.url)
    join = frame(1, json.dumps({"id": 1, "cmd": "join_group", "GroupId": args.group}).encode())
    while not tally.stop.is_set():
        try:
            async with asyncio.timeout(60):
                reader, writer, _ = await gateway_open(host, port, signed(args, i), rcvbuf=4096)
                writer.write(join)
                while not (await read_frame(reader))[1].startswith(b'{"id":1,'):
                    pass
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            tally.error(exc)
            await asyncio.sleep(0.1)
            continue
        since = time.monotonic()  # joined: from now on nothing is read
        tally.opening(ready, args.count)
        sock = writer.get_extra_info("socket")
        try:
            while not tally.stop.is_set():
                await asyncio.sleep(0.25)
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
                if info[0] != TCP_ESTABLISHED:  # the server closed or reset it
                    tally.closed(since, "dropped")
                    break
        finally:
            tally.open_now -= 1
            writer.close()


async def noread_sender(args: argparse.Namespace, tally: Tally) -> None:
    """--rate group messages a second into --group, as the App admin for --sender."""
    http = Http(args.send_url, 4)
    await http.open()
    sent = failed = 0
    tasks: set[asyncio.Task[bytes]] = set()
    random = int.from_bytes(os.urandom(3), "big")
    start = time.perf_counter()
    while not tally.stop.is_set():
        await asyncio.sleep(max(0.0, start + sent / args.rate - time.perf_counter()))
        if len(tasks) >= 4:  # at most 4 in flight: a slow server gets fewer, not a queue
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        random += 1
        body = json.dumps({"GroupId": args.group, "Random": random, "From_Account": args.sender,
                           "MsgBody": [{"MsgType": "TIMTextElem",
                                        "MsgContent": {"Text": TEXT}}]}).encode()
        task = asyncio.create_task(http.post(body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    if tasks:
        done, _ = await asyncio.wait(tasks, timeout=30)
        failed = sum(1 for t in done if t.exception() is not None)
    tally.extra.update({"messages_sent": sent, "messages_failed": failed})


WORKERS = {"unauth": unauth_worker, "slowloris": slowloris_worker, "bigframe": bigframe_worker,
           "noread": noread_worker}


async def abuse(args: argparse.Namespace) -> int:
    os.nice(10)
    tally, ready = Tally(), asyncio.Event()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    worker = WORKERS[args.cmd]
    started = time.monotonic()
    tasks = [asyncio.create_task(worker(args, tally, i, ready)) for i in range(args.count)]
    if args.cmd == "noread":
        tasks.append(asyncio.create_task(noread_sender(args, tally)))
    waiting = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait([waiting, *tasks], timeout=300,
                                 return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        print(f"{args.cmd}: {tally.opened} of {args.count} connections opened: "
              f"{tally.result()}", file=sys.stderr)
        for task in done:
            task.result()  # a worker's own failure, if that is what ended the wait
        return 2
    print("READY " + json.dumps({"ramp_s": time.monotonic() - started}), flush=True)
    await stdin.readline()
    tally.extra["open_at_stop"] = tally.open_now
    tally.stop.set()
    await asyncio.wait(tasks, timeout=40)
    emit(tally.result())
    sys.stdout.flush()
    os._exit(0)  # the sockets still open close with the process


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("probe")
    pr.add_argument("--rest-url", required=True, help="a REST read answering ErrorCode 0")
    pr.add_argument("--identifier", default="bench_n_0")
    pr.add_argument("--interval", type=float, default=0.05)
    pr.add_argument("--server-pid", type=int, required=True)
    for name in ("probe", *WORKERS):
        s = sub.choices.get(name) or sub.add_parser(name)
        s.add_argument("--url", required=True, help="the server's base URL")
        s.add_argument("--sdkappid", type=int, required=True)
        if name != "probe":
            s.add_argument("--count", type=int, required=True, help="connections at a time")
        if name in ("probe", "bigframe", "noread"):
            s.add_argument("--key", required=True)
        if name in ("probe", "noread"):
            s.add_argument("--group", required=True)
        if name in ("bigframe", "noread"):
            s.add_argument("--prefix", required=True, help="UserIDs are PREFIX<n>")
    sub.choices["slowloris"].add_argument("--trickle", type=float, default=1.0)
    sub.choices["bigframe"].add_argument("--size", type=int, required=True)
    sub.choices["noread"].add_argument("--send-url", required=True)
    sub.choices["noread"].add_argument("--sender", required=True)
    sub.choices["noread"].add_argument("--rate", type=float, default=100)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    raise_nofile()
    return run_loop((probe if args.cmd == "probe" else abuse)(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
