"""Client-side load and probes for the bench suite (bench/run); each subcommand is one process.

    hold    N real gateway connections (opentim.client.connect, with heartbeats), optionally
            joined to a group; prints "READY n", then holds them until killed. Exits 3 if
            the server drops any of them meanwhile.
    churn   N gateway connections doing join_group + quit_group round trips (or heartbeat
            pairs, --op heartbeat) for --seconds, flat out or paced (--rate pairs/s).
    redis-churn   the raw-Redis baseline of churn: the writes a join + leave needs (INCR,
            ZADD, HSET, HINCRBY, HSET / HDEL, HDEL, ZREM, HDEL), two pipelines per member,
            redis-py asyncio from this one process, N tasks.
    redis-marks   the raw-Redis baseline of modify_user_info: 500 × (HSET + ZADD) then
            500 × (HDEL + ZREM), each as one pre-encoded pipeline on a plain socket.
    store   the presence store in process (no sockets): memory per member at --members and
            500-row page latency there and at 500 members; or the same rows in plain dicts
            (--backend dict) or in plain Redis keys (--backend redis-raw), as baselines.

Every subcommand but hold prints one line "BENCH {json}": ops, seconds, p50_us, p99_us,
cpu_s (the server's CPU over the timed window: --server-pid's, or Redis's own from INFO).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentim.client import Session, connect
from opentim.presence.rows import encode_row, join_rows
from opentim.protocol import usersig

Result = dict[str, Any]


def emit(result: Result) -> None:
    print("BENCH " + json.dumps(result), flush=True)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def percentiles(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return 0.0, 0.0
    ordered = sorted(seconds)
    return (statistics.median(ordered) * 1e6,
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6)


# --- gateway clients --------------------------------------------------------------------


class Discard(asyncio.Queue[dict[str, Any]]):
    """An events queue that keeps nothing: a holder never reads the pushes it gets."""

    def put_nowait(self, item: dict[str, Any]) -> None:
        return None


async def open_sessions(stack: contextlib.AsyncExitStack, args: argparse.Namespace,
                        count: int, *, concurrency: int = 100,
                        heartbeat_interval: float | None = None) -> list[Session]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Session:
        user = f"{args.prefix}{args.first + i}"
        sig = usersig.generate(args.sdkappid, args.key, user)
        async with gate:
            session = await stack.enter_async_context(connect(
                args.url, sdkappid=args.sdkappid, identifier=user, usersig=sig,
                heartbeat_interval=heartbeat_interval))
            session.events = Discard()
            if args.join:
                await session.join_group(args.join)
            return session

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def quiet(work: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):  # a closed connection is reported by hold()
        await work


async def beat(sessions: list[Session]) -> None:
    """Heartbeats on a fixed timer, as app clients send them: every HeartbeatTimeout / 3,
    a tenth of the sessions each tenth of that. A beat never waits for the previous reply,
    so a burst of pushes (which delays replies) cannot stretch the interval."""
    pending: set[asyncio.Task[None]] = set()
    step = sessions[0].heartbeat_timeout / 30
    while True:
        for first in range(10):
            await asyncio.sleep(step)
            for s in sessions[first::10]:
                task = asyncio.create_task(quiet(s.heartbeat()))
                pending.add(task)
                task.add_done_callback(pending.discard)


async def hold(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as stack:
        sessions = await open_sessions(stack, args, args.count, heartbeat_interval=0)
        # Thousands of live sessions make every cyclic GC pass slow, and decoding pushes
        # triggers many: 750 µs per 25 KB frame instead of 64 µs. Nothing here forms cycles.
        gc.freeze()
        gc.disable()
        beating = asyncio.create_task(beat(sessions))
        print(f"READY {len(sessions)}", flush=True)
        done, _ = await asyncio.wait([asyncio.create_task(s.wait_closed()) for s in sessions],
                                     return_when=asyncio.FIRST_COMPLETED)
        beating.cancel()
        print(f"a held connection was closed by the server ({len(done)})", file=sys.stderr)
        os._exit(3)  # skip closing thousands of sockets politely
    return 3


async def churn(args: argparse.Namespace) -> int:
    groups = args.groups.split(",")
    async with contextlib.AsyncExitStack() as stack:
        sessions = await open_sessions(stack, args, args.count)
        latencies: list[float] = []
        interval = len(sessions) / args.rate if args.rate else 0.0
        cpu0, t0 = proc_cpu(args.server_pid), time.perf_counter()
        deadline = t0 + args.seconds

        async def worker(i: int, s: Session) -> None:
            group = groups[i % len(groups)]
            scheduled = t0 + interval * i / len(sessions)
            while True:
                if interval:
                    await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                start = scheduled if interval else time.perf_counter()
                if time.perf_counter() >= deadline:
                    return
                if args.op == "heartbeat":
                    await s.heartbeat()
                    await s.heartbeat()
                else:
                    await s.join_group(group)
                    await s.quit_group(group)
                latencies.append(time.perf_counter() - start)  # from the schedule, if paced
                scheduled += interval

        await asyncio.gather(*(worker(i, s) for i, s in enumerate(sessions)))
        seconds = time.perf_counter() - t0
        cpu = proc_cpu(args.server_pid) - cpu0
        p50, p99 = percentiles(latencies)
        emit({"ops": len(latencies), "seconds": seconds, "p50_us": p50, "p99_us": p99,
              "cpu_s": cpu})
        sys.stdout.flush()
        os._exit(0)  # the server sees the connections close; no polite goodbyes needed
    return 0


# --- raw Redis baselines ----------------------------------------------------------------


def redis_target(url: str) -> tuple[str, int, int, str | None]:
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return parts.hostname or "127.0.0.1", parts.port or 6379, db, parts.password


async def redis_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def timed_loop(tasks: int, seconds: float, op: Callable[[int], Awaitable[None]],
                     cpu: Callable[[], Awaitable[float]]) -> Result:
    latencies: list[float] = []
    cpu0, t0 = await cpu(), time.perf_counter()
    deadline = t0 + seconds

    async def worker(i: int) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker(i) for i in range(tasks)))
    elapsed = time.perf_counter() - t0
    used = await cpu() - cpu0
    p50, p99 = percentiles(latencies)
    return {"ops": len(latencies), "seconds": elapsed, "p50_us": p50, "p99_us": p99,
            "cpu_s": used}


async def redis_churn(args: argparse.Namespace) -> int:
    import redis.asyncio as aioredis

    r = aioredis.from_url(args.redis, decode_responses=False)
    base = f"{args.prefix}:{{churn}}"
    seqs = itertools.count(1)
    members = [(f"bench_c_{i}", uuid.uuid4().hex) for i in range(args.count)]
    rows = [encode_row(acc, time.time(), "", "") for acc, _ in members]

    async def join_leave(i: int) -> None:
        acc, conn = members[i]
        pipe = r.pipeline(transaction=False)
        pipe.incr(f"{base}:seq")
        pipe.zadd(f"{base}:ord", {acc: next(seqs)})
        pipe.hset(f"{base}:row", acc, rows[i])
        pipe.hincrby(f"{base}:nc", acc, 1)
        pipe.hset(f"{base}:n", conn, acc)
        await pipe.execute()
        pipe = r.pipeline(transaction=False)
        pipe.hdel(f"{base}:n", conn)
        pipe.hdel(f"{base}:nc", acc)
        pipe.zrem(f"{base}:ord", acc)
        pipe.hdel(f"{base}:row", acc)
        await pipe.execute()

    try:
        emit(await timed_loop(args.count, args.seconds, join_leave, lambda: redis_cpu(r)))
    finally:
        await r.delete(*(f"{base}:{k}" for k in ("seq", "ord", "row", "nc", "n")))
        await r.aclose()
    return 0


def resp(*parts: str | int | bytes) -> bytes:
    """One command in the Redis protocol."""
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def redis_marks(args: argparse.Namespace) -> int:
    import hiredis
    import redis.asyncio as aioredis

    host, port, db, password = redis_target(args.redis)
    base = f"{args.prefix}:{{marks}}"
    accounts = [f"bench_m_{i}" for i in range(args.members)]
    set_all = b"".join(resp("HSET", f"{base}:am", a, "1001") +
                       resp("ZADD", f"{base}:m:1001", i + 1, a) for i, a in enumerate(accounts))
    del_all = b"".join(resp("HDEL", f"{base}:am", a) + resp("ZREM", f"{base}:m:1001", a)
                       for a in accounts)
    replies = 2 * len(accounts)
    links: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, Any]] = []
    for _ in range(args.count):
        reader, writer = await asyncio.open_connection(host, port)
        links.append((reader, writer, hiredis.Reader()))

    async def roundtrip(i: int, payload: bytes, expect: int) -> None:
        reader, writer, parser = links[i]
        writer.write(payload)
        while expect:
            parser.feed(await reader.read(1 << 16))
            while expect and parser.gets() is not False:
                expect -= 1

    hello = (resp("AUTH", password) if password else b"") + resp("SELECT", db)
    for i in range(len(links)):
        await roundtrip(i, hello, 2 if password else 1)
    flip = [False] * args.count

    async def pipeline(i: int) -> None:
        flip[i] = not flip[i]
        await roundtrip(i, set_all if flip[i] else del_all, replies)

    r = aioredis.from_url(args.redis)
    try:
        emit(await timed_loop(args.count, args.seconds, pipeline, lambda: redis_cpu(r)))
    finally:
        await r.delete(f"{base}:am", f"{base}:m:1001")
        await r.aclose()
        for _, writer, _ in links:
            writer.close()
    return 0


# --- the presence store in process --------------------------------------------------------


APP, NOW = 1_400_000_999, 1_700_000_000.0


def member(group: str, i: int) -> tuple[str, str, str, str]:
    """account, conn id, nick, avatar: sizes typical of real ids and URLs."""
    return (f"user_{i:07d}", uuid.uuid4().hex, f"Nick {i}",
            f"https://cdn.example.com/a/{group}/{i}.png")


async def page_latency(page: Callable[[], Awaitable[Any]], change: Callable[[int], Awaitable[Any]],
                       calls: int) -> tuple[float, float]:
    """p50/p99 µs of a 500-row page read right after a join + leave changed the group (so
    no cached page can answer; only the page is timed)."""
    times = []
    for i in range(calls):
        await change(i)
        start = time.perf_counter()
        await page()
        times.append(time.perf_counter() - start)
    return percentiles(times)


async def store(args: argparse.Namespace) -> int:
    from opentim.presence import MemoryPresenceStore, PresenceStore

    big, small = "bench_big", "bench_500"
    result: Result = {"members": args.members}
    if args.backend == "dict":
        gc.collect()
        before = rss_bytes()
        rows: dict[str, bytes] = {}
        conns: dict[str, str] = {}
        order: list[str] = []
        for i in range(args.members):
            acc, conn, nick, avatar = member(big, i)
            rows[acc] = encode_row(acc, NOW, nick, avatar)
            conns[conn] = acc
            order.append(acc)
        gc.collect()
        result["bytes"] = rss_bytes() - before
        emit(result)
        return 0
    if args.backend == "redis-raw":
        return await redis_raw_store(args, result)
    s: PresenceStore
    redis_client: Any = None
    if args.backend == "memory":
        s = MemoryPresenceStore(background=False)
    else:
        import redis.asyncio as aioredis

        from opentim.presence.redis import RedisPresenceStore

        redis_client = aioredis.from_url(args.redis, decode_responses=False)
        s = RedisPresenceStore(redis_client, node_id=f"bench{os.getpid()}", prefix=args.prefix,
                               background=False)
    await s.start()
    try:
        gc.collect()
        before = await used_memory(redis_client) if redis_client else rss_bytes()
        t0 = time.perf_counter()
        batch = 1 if args.backend == "memory" else 64
        for start in range(0, args.members, batch):
            await asyncio.gather(*(
                s.join(APP, big, acc, conn, nick=nick, avatar=avatar, now=NOW)
                for acc, conn, nick, avatar in (member(big, i) for i in
                                                range(start, min(start + batch, args.members)))))
        result["join_s"] = time.perf_counter() - t0
        gc.collect()
        if redis_client:
            result["bytes"] = await used_memory(redis_client) - before
            result["usage"] = await key_usage(redis_client, f"{args.prefix}:*")
        else:
            result["bytes"] = rss_bytes() - before
        for i in range(500):
            acc, conn, nick, avatar = member(small, i)
            await s.join(APP, small, acc, conn, nick=nick, avatar=avatar, now=NOW)
        for group, size in ((big, args.members), (small, 500)):
            page = await s.page(APP, group, now=NOW)
            if page.count != 500:
                raise RuntimeError(f"a page of {group} had {page.count} rows")

            async def change(i: int, group: str = group) -> None:
                await s.join(APP, group, "churner", f"c{i}", nick="", avatar="", now=NOW)
                await s.leave(APP, group, "churner", f"c{i}", now=NOW)

            p50, p99 = await page_latency(lambda group=group: s.page(APP, group, now=NOW),
                                          change, args.calls)
            result[f"page_{size}"] = {"p50_us": p50, "p99_us": p99, "bytes": len(page.rows)}
        # modify_user_info's store work alone: mark 1001 set on, then deleted from, 500 members
        items = [(member(small, i)[0], [1001]) for i in range(500)]
        times = []
        for i in range(max(20, args.calls // 10)):
            start = time.perf_counter()
            if i % 2:
                await s.delete_marks(APP, small, items, now=NOW)
            else:
                await s.set_marks(APP, small, items, now=NOW)
            times.append(time.perf_counter() - start)
        p50, p99 = percentiles(times)
        result["marks_500"] = {"p50_us": p50, "p99_us": p99}
    finally:
        if redis_client:
            await s.drop_group(APP, big)
            await s.drop_group(APP, small)
        await s.close()
        if redis_client:
            await unlink_prefix(redis_client, f"{args.prefix}:*")
            await redis_client.aclose()
    emit(result)
    return 0


async def used_memory(client: Any) -> int:
    """Redis's used_memory without client buffers (the store's 64 open connections)."""
    info = await client.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


async def key_usage(client: Any, pattern: str) -> int:
    total = 0
    async for key in client.scan_iter(match=pattern, count=1000):
        total += await client.memory_usage(key, samples=0) or 0
    return total


async def unlink_prefix(client: Any, pattern: str) -> None:
    keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
    for i in range(0, len(keys), 1000):
        await client.unlink(*keys[i:i + 1000])


async def redis_raw_store(args: argparse.Namespace, result: Result) -> int:
    """The same members as plain keys: ZADD (the order), HSET (rows), HSET (conn ids)."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(args.redis, decode_responses=False)
    base = f"{args.prefix}:{{raw}}"
    try:
        before = await used_memory(r)
        for start in range(0, args.members, 1000):
            pipe = r.pipeline(transaction=False)
            for i in range(start, min(start + 1000, args.members)):
                acc, conn, nick, avatar = member("bench_big", i)
                pipe.zadd(f"{base}:ord", {acc: i + 1})
                pipe.hset(f"{base}:row", acc, encode_row(acc, NOW, nick, avatar))
                pipe.hset(f"{base}:n", conn, acc)
            await pipe.execute()
        result["bytes"] = await used_memory(r) - before
        result["usage"] = await key_usage(r, f"{base}:*")

        async def page() -> bytes:
            accs = await r.zrevrange(f"{base}:ord", 0, 499)
            return join_rows(await r.hmget(f"{base}:row", accs))

        async def no_change(i: int) -> None:
            return None

        p50, p99 = await page_latency(page, no_change, args.calls)
        result[f"page_{args.members}"] = {"p50_us": p50, "p99_us": p99}
    finally:
        await unlink_prefix(r, f"{base}:*")
        await r.aclose()
    emit(result)
    return 0


# --- entry point ------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("hold", "churn"):
        s = sub.add_parser(name)
        s.add_argument("--url", required=True)
        s.add_argument("--sdkappid", type=int, required=True)
        s.add_argument("--key", required=True)
        s.add_argument("--prefix", default="bench_m_", help="UserIDs are PREFIX<n>")
        s.add_argument("--first", type=int, default=0)
        s.add_argument("--count", type=int, required=True)
        s.add_argument("--join", default="", help="join this group on connecting")
    churn_p = sub.choices["churn"]
    churn_p.add_argument("--groups", required=True, help="comma-separated; connection i "
                         "churns in group i mod len")
    churn_p.add_argument("--op", choices=["joinquit", "heartbeat"], default="joinquit")
    churn_p.add_argument("--rate", type=float, default=0, help="pairs/s in all; 0: flat out")
    churn_p.add_argument("--server-pid", type=int, required=True)
    for name in ("redis-churn", "redis-marks"):
        s = sub.add_parser(name)
        s.add_argument("--redis", required=True)
        s.add_argument("--prefix", required=True)
        s.add_argument("--count", type=int, default=8, help="tasks / connections")
        s.add_argument("--members", type=int, default=500)
    st = sub.add_parser("store")
    st.add_argument("--backend", choices=["memory", "dict", "redis", "redis-raw"],
                    required=True)
    st.add_argument("--members", type=int, default=100_000)
    st.add_argument("--calls", type=int, default=1000, help="pages timed per size")
    st.add_argument("--redis", default="")
    st.add_argument("--prefix", default="opentim_bench")
    for s in sub.choices.values():
        if s is not st and s is not sub.choices["hold"]:
            s.add_argument("--seconds", type=float, default=5)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    raise_nofile()
    work = {"hold": hold, "churn": churn, "redis-churn": redis_churn,
            "redis-marks": redis_marks, "store": store}[args.cmd]
    return run_loop(work(args))


def run_loop(work: Coroutine[Any, Any, int]) -> int:
    """Run a load process's main coroutine, on uvloop where it is installed."""
    try:
        import uvloop

        return uvloop.run(work)
    except ImportError:
        return asyncio.run(work)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
