"""Faults to inject: a Redis of the test's own, a TCP proxy that can cut or refuse
connections (a PostgreSQL restart without restarting the shared cluster), and real
``opentim serve`` processes to SIGKILL or SIGTERM.

Nothing here touches the machine's shared Redis (6379) or PostgreSQL cluster: each fault
test starts its own ``redis-server`` and its own PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.app import create_app
from opentim.domain.apps import App, new_secret_key
from opentim.runtime import Runtime
from opentim.settings import Settings
from opentim.storage.database import Database
from opentim.storage.sql import SqlStore
from tests.helpers.servers import Clock, LiveServer, free_port, serve_asgi
from tests.helpers.services import (
    PG_URL,
    drop_pg_database,
    ensure_pg_database,
    sdkappids,
    unavailable,
)

OPENTIM = Path(sys.executable).with_name("opentim")


async def _wait(check: Any, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)


# --- Redis ---------------------------------------------------------------------------------


class PrivateRedis:
    """``redis-server --port <free> --save "" --appendonly no``: nothing persisted unless
    the test calls ``save()``, so a restart comes back empty (every presence key gone), or
    with the last snapshot saved."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = log
        self._dir = log.parent
        self.proc: subprocess.Popen[bytes] | None = None
        self._stalling: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--enable-debug-command", "local",
                 "--dir", str(self._dir), "--dbfilename", f"redis-{self.port}.rdb"],
                stdout=out, stderr=out)
        await _wait(self._answers, f"redis-server on port {self.port} answers")

    async def _answers(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self._log.read_text()[-2000:]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), 2)) == b"+PONG\r\n"
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections (the kernel does), nothing answers:
        a hung Redis."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    async def save(self) -> None:
        """``SAVE``: a snapshot the next start loads (what a persistent Redis restores)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(b"SAVE\r\n")
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), 10)) == b"+OK\r\n"
        finally:
            writer.close()

    async def stall(self, seconds: float) -> None:
        """``DEBUG SLEEP``: Redis runs nothing else for ``seconds`` (a slow command, a fork),
        then everything sent meanwhile, so commands that timed out still take effect."""
        _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"DEBUG SLEEP {seconds}\r\n".encode())
        await writer.drain()
        self._stalling = writer  # answered when the sleep ends; closed by then

    def kill(self) -> None:
        """SIGKILL: connections reset, the port refuses; everything in it is lost."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    async def restart(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        await self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        unavailable("Redis", "no redis-server on PATH to start a private one")
    redis = PrivateRedis(tmp_path / f"redis-{uuid.uuid4().hex[:6]}.log")
    await redis.start()
    try:
        yield redis
    finally:
        redis.stop()


# --- a TCP proxy (PostgreSQL "restarts") -------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``. ``cut()`` resets every connection through
    it; ``refuse()`` also stops listening (connections are refused, as by a server that is
    down); ``accept()`` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def accept(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._pipes |= {writer, up_writer}
        pumps = [asyncio.create_task(_pump(reader, up_writer)),
                 asyncio.create_task(_pump(up_reader, writer))]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                self._pipes.discard(w)
                _reset(w)
            self._tasks.difference_update(pumps)

    def cut(self) -> int:
        """Reset every connection through the proxy; how many there were."""
        pipes = list(self._pipes)
        for w in pipes:
            _reset(w)
        return len(pipes) // 2

    async def refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut()

    async def close(self) -> None:
        await self.refuse()
        for task in list(self._tasks):
            task.cancel()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


# --- PostgreSQL --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own (its backends may be terminated at will),
    dropped afterwards; the test skips when PostgreSQL is unreachable."""
    url = make_url(PG_URL).set(database=f"opentim_faults_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    rendered = url.render_as_string(hide_password=False)
    problem = await ensure_pg_database(rendered)
    if problem:
        unavailable("PostgreSQL", problem)
    try:
        yield rendered
    finally:
        await drop_pg_database(rendered)


async def terminate_backends(db_url: str) -> int:
    """``pg_terminate_backend`` every other connection to the URL's database."""
    import asyncpg

    url = make_url(db_url)
    conn = await asyncpg.connect(user=url.username, password=url.password, host=url.host,
                                 port=url.port, database="postgres", timeout=5)
    try:
        return int(await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", url.database))
    finally:
        await conn.close()


def through(db_url: str, proxy: TcpProxy) -> str:
    """The same database, reached through ``proxy``."""
    return make_url(db_url).set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)


# --- servers -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def redis_server(db_url: str, redis_url: str, prefix: str, *,
                       presence: dict[str, Any] | None = None, **settings: Any
                       ) -> AsyncIterator[LiveServer]:
    """An in-process server on real loopback sockets whose presence, relay and send guards
    use ``redis_url`` (``presence``: RedisPresenceStore options such as lease_ttl)."""
    runtime = Runtime.create(
        Settings(db=db_url, redis=redis_url, app_refresh_interval=0.2, **settings),
        clock=Clock(), prefix=prefix, **(presence or {}))
    asgi = create_app(runtime=runtime)
    async with serve_asgi(asgi, lifespan="on", settings=runtime.settings) as url:
        srv = LiveServer(runtime, asgi, runtime.clock, url=url)  # type: ignore[arg-type]
        runtime.events.subscribe(srv.events.append)
        yield srv


async def seed_app(db_url: str, **settings: Any) -> App:
    """A new app written straight into the database (before any server reads it)."""
    db = Database(db_url)
    try:
        await db.migrate()
        app = App(sdkappid=next(sdkappids), secret_key=new_secret_key(), rate_limit=0,
                  **settings)
        await SqlStore(db).apps.create(app, now=int(time.time()))
        return app
    finally:
        await db.close()


def usersig(app: App, user: str) -> str:
    return TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(user)


class ServeProcess:
    """A real ``opentim serve`` process (``kill()``: SIGKILL, ``terminate()``: SIGTERM)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path,
                 metrics_url: str | None) -> None:
        self.proc = proc
        self.url = url
        self.log = log
        self.metrics_url = metrics_url

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def exited(self, seconds: float) -> int:
        """Wait for the process to exit; its exit code."""
        await _wait(lambda: _done(self.proc), "the server process exits", seconds)
        return int(self.proc.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


async def _done(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


def _launch(db_url: str, log: Path, *, redis_url: str | None, prefix: str, metrics: bool,
            log_level: str) -> ServeProcess:
    port = free_port()
    args = [str(OPENTIM), "serve", "--db", db_url, "--port", str(port),
            "--log-level", log_level, "--no-console"]
    if redis_url:
        args += ["--redis", redis_url, "--redis-prefix", prefix]
    metrics_port = free_port() if metrics else None
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out)
    return ServeProcess(proc, f"http://127.0.0.1:{port}", log,
                        f"http://127.0.0.1:{metrics_port}" if metrics_port else None)


async def _ready(server: ServeProcess) -> None:
    async def answers() -> bool:
        assert server.proc.poll() is None, f"server exited: {server.output()[-2000:]}"
        try:
            async with httpx.AsyncClient() as probe:
                await probe.post(f"{server.url}/v4/x/y", content=b"{}")
        except httpx.TransportError:
            return False
        return True

    await _wait(answers, "opentim serve answers", 60)


@contextlib.asynccontextmanager
async def serve_processes(count: int, db_url: str, logs: Path, *, redis_url: str | None = None,
                          prefix: str = "opentim", metrics: bool = False,
                          log_level: str = "warning") -> AsyncIterator[list[ServeProcess]]:
    """``count`` ``opentim serve`` processes on free ports, started together, sharing the
    database (and Redis, under ``prefix``); logs in ``logs/serve-<i>.log``."""
    servers = [_launch(db_url, logs / f"serve-{i}.log", redis_url=redis_url, prefix=prefix,
                       metrics=metrics, log_level=log_level) for i in range(count)]
    try:
        await asyncio.gather(*(_ready(s) for s in servers))
        yield servers
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.kill()
            server.proc.wait(timeout=10)


TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    """The Linux TCP state of a socket (TCP_INFO's first byte): 1 is ESTABLISHED."""
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0])
