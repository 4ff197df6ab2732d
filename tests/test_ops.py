"""Operations: /healthz and /readyz, the REST and gateway metrics, JSON and request logs,
the TOML config file, --version, and the deployment files (Dockerfile, compose, systemd).

The probes run against real servers whose database or Redis is unreachable, silent, or
cut off mid-run by a TCP proxy; the logs and the config file are checked on a real
``opentim serve`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url
from TLSSigAPIv2 import TLSSigAPIv2
from typer.testing import CliRunner

import opentim
from opentim.app import create_app
from opentim.client.rest import RestClient
from opentim.domain.apps import App, new_secret_key
from opentim.ops import config as ops_config
from opentim.ops.config import ConfigError, resolve
from opentim.ops.logs import JsonFormatter, parse_levels
from opentim.ops.metrics import (
    LATENCY_BUCKETS,
    MAX_PATHS,
    RestMetrics,
    exception_source,
)
from opentim.redact import RedactSecrets
from opentim.runtime import Runtime
from opentim.settings import Settings
from opentim.storage.database import Database
from opentim.storage.sql import SqlStore
from tests.helpers import (
    PG_URL,
    REDIS_URL,
    create_group,
    drop_redis_keys,
    ensure_pg_database,
    eventually,
    free_port,
    import_accounts,
    live_server,
    require_redis,
    serve_asgi,
    unavailable,
)

ROOT = Path(__file__).resolve().parents[1]
OPENTIM = [sys.executable, "-m", "opentim"]
CHECK = "im_open_login_svc/account_check"


def check_body(*users: str) -> dict[str, Any]:
    return {"CheckItem": [{"UserID": u} for u in users]}


# --- a TCP proxy that can cut a service off ----------------------------------------------


class Proxy:
    """127.0.0.1:<port> → ``target``. ``cut()`` drops every connection and refuses new
    ones (accepted, then closed at once); ``restore()`` lets them through again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def cut(self) -> None:
        self.open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.open = True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()


def closed_port() -> int:
    return free_port()  # bound a moment ago and released: nothing listens there


async def pg_or_skip() -> str:
    why = await ensure_pg_database(PG_URL)
    if why:
        unavailable("PostgreSQL", why)
    return PG_URL


def via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by 127.0.0.1:``port``."""
    if url.startswith("redis"):
        return re.sub(r"//([^@/]*@)?[^/]*", lambda m: f"//{m.group(1) or ''}127.0.0.1:{port}",
                      url, count=1)
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(
        hide_password=False)


@contextlib.asynccontextmanager
async def probe_only(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The server's ASGI app without its lifespan (its database may be unreachable, so it
    could not start): probes answered in process."""
    runtime = Runtime.create(settings, prefix=f"opentim-test-{uuid.uuid4().hex[:8]}")
    asgi = create_app(runtime=runtime)
    try:
        async with httpx.AsyncClient(base_url="http://opentim.test",
                                     transport=httpx.ASGITransport(app=asgi)) as http:  # type: ignore[arg-type]
            yield http
    finally:
        await asgi.state.readiness.close()
        await runtime.db.close()


async def ready(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    reply = await http.get("/readyz")
    return reply.status_code, reply.json()


# --- /healthz and /readyz ------------------------------------------------------------------


@pytest.mark.parametrize("presence", ["memory", "redis"])
async def test_healthz_and_readyz_answer_on_the_api_port(presence: str, tmp_path: Path) -> None:
    async with live_server(f"sqlite:///{tmp_path}/h.db", presence) as live, \
            httpx.AsyncClient(base_url=live.url) as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok")
        assert health.headers["cache-control"] == "no-store"
        assert (await http.head("/healthz")).status_code == 200
        status, body = await ready(http)
        expected = {"database": "ok"} | ({"redis": "ok"} if presence == "redis" else {})
        assert (status, body) == (200, {"status": "ready", "checks": expected})
        assert (await http.post("/readyz")).status_code == 405


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    refused = f"postgresql://opentim:pw-{uuid.uuid4().hex}@127.0.0.1:{closed_port()}/x"
    async with probe_only(Settings(db=refused)) as http:
        assert (await http.get("/healthz")).status_code == 200  # the process is up
        started = time.monotonic()
        reply = await http.get("/readyz")
        assert time.monotonic() - started < 2
        assert reply.status_code == 503
        assert reply.json() == {"status": "not ready",
                                "checks": {"database": "connection refused"}}
        assert "pw-" not in reply.text and "Traceback" not in reply.text
    async with silent_server() as port, \
            probe_only(Settings(db=f"postgresql://u@127.0.0.1:{port}/x")) as http:
        started = time.monotonic()
        status, body = await ready(http)
        elapsed = time.monotonic() - started
        assert (status, body["checks"]) == (503, {"database": "timed out after 1 s"})
        assert 0.9 < elapsed < 2.5, elapsed  # bounded: one second per dependency


async def test_readyz_is_503_when_redis_is_unreachable(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    async with probe_only(Settings(db=db, redis=f"redis://127.0.0.1:{closed_port()}/0")) as http:
        assert await ready(http) == (503, {"status": "not ready", "checks": {
            "database": "ok", "redis": "connection refused"}})
    async with silent_server() as port, \
            probe_only(Settings(db=db, redis=f"redis://127.0.0.1:{port}/0")) as http:
        started = time.monotonic()
        status, body = await ready(http)
        assert (status, body["checks"]["redis"]) == (503, "timed out after 1 s")
        assert time.monotonic() - started < 2.5


async def scrape(url: str) -> dict[str, float]:
    """``/metrics`` as {"name{labels}": value}."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


async def test_the_database_going_away_fails_readyz_and_counts_database_errors(
        tmp_path: Path) -> None:
    pg = make_url(await pg_or_skip())
    async with Proxy(pg.host or "127.0.0.1", pg.port or 5432) as proxy, \
            live_server(via(PG_URL, proxy.port), "memory", metrics_port=0) as live, \
            httpx.AsyncClient(base_url=live.url) as http:
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            assert (await tim.call(CHECK, check_body("a")))["ErrorCode"] == 0
            assert (await ready(http))[0] == 200
            proxy.cut()
            failed = await tim.call(CHECK, check_body("a"))
            assert failed["ErrorCode"] != 0 and "Traceback" not in failed["ErrorInfo"]
            await asyncio.sleep(1.0)  # past the reuse of the last probe's answer
            status, body = await ready(http)
            assert status == 503 and body["checks"]["database"] != "ok", body
            metrics = await scrape(live.asgi.state.metrics_url)
            assert metrics['opentim_rest_exceptions_total{source="database"}'] >= 1
            assert metrics['opentim_rest_exceptions_total{source="internal"}'] == 0
            proxy.restore()

            async def back() -> bool:
                return (await ready(http))[0] == 200 and \
                    (await tim.call(CHECK, check_body("a")))["ErrorCode"] == 0

            await eventually(back, "ready again after the database came back", seconds=15)


async def test_redis_going_away_fails_readyz_and_counts_redis_errors(tmp_path: Path) -> None:
    await require_redis(REDIS_URL)
    target = urlsplit(REDIS_URL)
    prefix = f"opentim-test-{uuid.uuid4().hex[:12]}"
    async with Proxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        settings = Settings(db=f"sqlite:///{tmp_path}/r.db", redis=via(REDIS_URL, proxy.port),
                            app_refresh_interval=0.2, metrics_port=0)
        runtime = Runtime.create(settings, prefix=prefix)
        asgi = create_app(runtime=runtime)
        try:
            async with serve_asgi(asgi, lifespan="on", settings=settings) as url, \
                    httpx.AsyncClient(base_url=url) as http:
                app = App(sdkappid=1_400_016_001, secret_key=new_secret_key())
                await runtime.store.apps.create(app, now=int(time.time()))
                await runtime.apps.refresh()
                sig = TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig("administrator")
                async with RestClient(url, sdkappid=app.sdkappid, usersig=sig) as tim:
                    group_id = await create_group(tim, "AVChatRoom")
                    count = "group_open_http_svc/get_online_member_num"
                    assert (await tim.call(count, {"GroupId": group_id}))["ErrorCode"] == 0
                    assert (await ready(http))[0] == 200
                    proxy.cut()
                    failed = await tim.call(count, {"GroupId": group_id})
                    assert failed["ErrorCode"] != 0
                    await asyncio.sleep(1.0)
                    status, body = await ready(http)
                    assert status == 503 and body["checks"]["redis"] != "ok", body
                    assert body["checks"]["database"] == "ok"
                    metrics = await scrape(asgi.state.metrics_url)
                    assert metrics['opentim_rest_exceptions_total{source="redis"}'] >= 1
                    proxy.restore()

                    async def back() -> bool:
                        return (await ready(http))[0] == 200

                    await eventually(back, "ready again after Redis came back", seconds=15)
        finally:
            await drop_redis_keys(REDIS_URL, prefix)


# --- /metrics --------------------------------------------------------------------------------


async def test_rest_and_gateway_metrics_move_with_the_right_labels(tmp_path: Path) -> None:
    async with live_server(f"sqlite:///{tmp_path}/m.db", "memory", metrics_port=0) as live:
        metrics_url = live.asgi.state.metrics_url
        app = await live.new_app(rate_limit=0)
        async with live.client(app) as tim:
            await import_accounts(tim, "alice", "bob")
            for _ in range(3):
                assert (await tim.call(CHECK, check_body("alice")))["ErrorCode"] == 0
            invalid = (await tim.call(CHECK, {"CheckItem": "nope"}))["ErrorCode"]
            assert invalid != 0
            unknown = (await tim.call("group_open_http_svc/no_such_command"))["ErrorCode"]
            group_id = await create_group(tim, "AVChatRoom")
        async with live.client(app, usersig="not-a-sig") as bad:
            bad_sig = (await bad.call(CHECK, check_body("alice")))["ErrorCode"]
        assert bad_sig == 70003

        async with live.connect(app, "alice") as alice, live.connect(app, "bob") as bob, \
                live.connect(app, "bob"):
            await alice.join_group(group_id)
            await bob.join_group(group_id)
            async with live.client(app) as tim:
                sent = await tim.call("group_open_http_svc/send_group_msg", {
                    "GroupId": group_id, "Random": 7, "MsgBody": [
                        {"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]})
            assert sent["ErrorCode"] == 0, sent
            await alice.next_message(timeout=5)
            await bob.next_message(timeout=5)
            m = await scrape(metrics_url)
            assert m["opentim_gateway_connections"] == 3
            assert m["opentim_online_members"] == 2  # bob's second connection joined none
            assert m["opentim_messages_delivered_total"] >= 2
            for name in ("opentim_messages_shed_total", "opentim_messages_late_total"):
                assert m[name] == 0

        def requests(service: str, command: str, code: int) -> float:
            return m.get(f'opentim_rest_requests_total{{service="{service}",'
                         f'command="{command}",error_code="{code}"}}', 0)

        assert requests("im_open_login_svc", "account_check", 0) == 3
        assert requests("im_open_login_svc", "account_check", invalid) == 1
        assert requests("im_open_login_svc", "account_check", 70003) == 1  # (before lookup)
        assert requests("unknown", "unknown", unknown) == 1
        assert requests("im_open_login_svc", "multiaccount_import", 0) == 1
        labels = 'service="im_open_login_svc",command="account_check"'
        hist = "opentim_rest_request_duration_seconds"
        buckets = [m[f'{hist}_bucket{{{labels},le="{b:g}"}}'] for b in LATENCY_BUCKETS]
        assert buckets == sorted(buckets)  # cumulative
        assert m[f'{hist}_bucket{{{labels},le="+Inf"}}'] == m[f"{hist}_count{{{labels}}}"] == 5
        assert 0 < m[f"{hist}_sum{{{labels}}}"] < 5
        assert m['opentim_rest_exceptions_total{source="internal"}'] == 0


def test_the_metrics_registry_counts_codes_buckets_and_sources() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError

    from opentim import errors
    from opentim.protocol import dispatch

    dispatch.load_services()
    registry = RestMetrics()
    registry.observe("/v4/no/such", 60009, 0.0004)
    registry.observe("/v4/no/such", 60009, 20.0)
    text = registry.prometheus()
    assert 'service="unknown",command="unknown",error_code="60009"} 2' in text
    assert 'le="0.0005"} 1' in text and 'le="10"} 1' in text and 'le="+Inf"} 2' in text
    stats = registry.observe(f"/v4/{CHECK}", 0, 0.001)
    assert (stats.service, stats.command) == tuple(CHECK.split("/"))
    for n in range(MAX_PATHS + 100):  # paths are the client's: remembered up to a bound
        registry.observe(f"/v4/im_open_login_svc/x{n}", 10003, 0.001)
    assert len(registry._by_path) == MAX_PATHS
    assert f'command="unknown",error_code="10003"}} {MAX_PATHS + 100}' in registry.prometheus()

    db_error = OperationalError("SELECT 1", {}, ConnectionRefusedError())
    assert exception_source(db_error) == "database"
    assert exception_source(RedisConnectionError("gone")) == "redis"
    try:
        try:
            raise RedisConnectionError("gone")
        except RedisConnectionError:
            raise errors.GroupInternalError("presence failed") from None
    except errors.TimError as wrapped:
        assert exception_source(wrapped) == "redis"  # (its __context__ is kept)
    assert exception_source(KeyError("x")) is None
    registry.failed(KeyError("x"), handled=False)
    registry.failed(KeyError("x"), handled=True)
    registry.failed(db_error, handled=True)
    assert registry.exceptions == {"database": 1, "redis": 0, "internal": 1}


# --- logs ----------------------------------------------------------------------------------


def test_json_lines_carry_redacted_messages_and_tracebacks() -> None:
    secret = "eJw" + uuid.uuid4().hex
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter())
    record: logging.LogRecord | None = None
    try:
        raise RuntimeError(f"GET /v4/a/b?usersig={secret}&x=1")
    except RuntimeError:
        record = logging.getLogger("opentim.test").makeRecord(
            "opentim.test", logging.ERROR, __file__, 1, "calling %s failed", (
                f"http://h/cb?sdkappid=1&usersig={secret}",), sys.exc_info())
    assert handler.filter(record)
    line = handler.format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert set(doc) == {"time", "level", "logger", "message", "exception"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["time"])
    assert (doc["level"], doc["logger"]) == ("ERROR", "opentim.test")
    assert "[usersig hidden]" in doc["message"] and "RuntimeError" in doc["exception"]
    assert secret not in line


def test_log_levels_per_component() -> None:
    assert parse_levels([]) == ("info", {})
    assert parse_levels(["warning", "opentim.webhooks=debug", "uvicorn.error=ERROR"]) == (
        "warning", {"opentim.webhooks": "debug", "uvicorn.error": "error"})
    assert parse_levels(["info opentim.webhooks=trace"]) == ("info", {"opentim.webhooks": "trace"})
    for bad in ("loud", "opentim.webhooks=loud", "=debug", "a b=c", "opentim..x=info"):
        with pytest.raises(ValueError):
            parse_levels([bad])


async def _make_app(db: str) -> App:
    store = SqlStore(Database(db))
    try:
        await store.db.migrate()
        app = App(sdkappid=1_400_016_002, secret_key="ops-key-" + uuid.uuid4().hex)
        await store.apps.create(app, now=int(time.time()))
        return app
    finally:
        await store.db.close()


async def test_a_served_process_takes_its_config_file_and_logs_json_without_secrets(
        tmp_path: Path) -> None:
    """A real ``opentim serve --config``: the port from the environment over the file's,
    the metrics port and the body limit from the file (no flag exists for the latter), the
    levels from the flags over the file's; JSON lines only, the request log on, no sig."""
    db = f"sqlite:///{tmp_path}/ops.db"
    app = await _make_app(db)
    port, file_port, metrics_port = free_port(), free_port(), free_port()
    config = tmp_path / "opentim.toml"
    config.write_text(f'port = {file_port}\nmetrics_port = {metrics_port}\n'
                      f'max_body_bytes = 2048\nlog_format = "json"\naccess_log = true\n'
                      f'log_level = "debug"\n')
    log = tmp_path / "serve.log"
    env = {**os.environ, "OPENTIM_PORT": str(port)}
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *OPENTIM, "serve", "--db", db, "--config", str(config), "--log-level", "warning",
            "--log-level", "opentim.serving=info", stdout=out, stderr=subprocess.STDOUT,
            env=env)
    sigs = [TLSSigAPIv2(app.sdkappid, app.secret_key).gen_sig(u) for u in ("administrator",)]
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                assert proc.returncode is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
            assert (await http.get(f"{url}/readyz")).status_code == 200
            async with RestClient(url, sdkappid=app.sdkappid, usersig=sigs[0]) as tim:
                assert (await tim.call(CHECK, check_body("alice")))["ErrorCode"] == 0
                too_big = await tim.raw(CHECK, b'{"CheckItem":[]' + b" " * 3000 + b"}")
                assert too_big["ErrorCode"] == 60002  # max_body_bytes from the file
                # a sig in the path itself (not only in the query) is still hidden
                await http.post(f"{url}/v4/im_open_login_svc/usersig={sigs[0]}",
                                params=tim.params(), content=b"{}")
            scraped = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            assert ('opentim_rest_requests_total{service="im_open_login_svc",'
                    'command="account_check",error_code="0"} 1') in scraped
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all(set(doc) >= {"time", "level", "logger", "message"} for doc in lines)
    assert any(d["logger"] == "opentim.serving" and "OpenTIM listening on" in d["message"]
               and f":{port}" in d["message"] for d in lines)  # opentim.serving=info
    assert not any(d["logger"] == "uvicorn.error" and d["level"] == "INFO" for d in lines)
    assert not any(d["level"] == "DEBUG" for d in lines)  # the flag won over the file
    access = [d["message"] for d in lines if d["logger"] == "opentim.access"]
    assert any(m.startswith(f"POST /v4/{CHECK} service=im_open_login_svc "
                            "command=account_check ErrorCode=0 latency_ms=") for m in access)
    assert any("ErrorCode=60002" in m for m in access)
    assert any("[usersig hidden]" in m and "service=unknown" in m for m in access), access
    assert "sdkappid=" not in text  # the query is never logged
    assert re.search(r"(?i)usersig=", text) is None
    for secret in [*sigs, app.secret_key]:
        for form in {secret, quote(secret), quote(secret, safe="")}:
            assert form not in text, f"{form[:12]}… in the log"


# --- the config file -------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"c-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text)
    return str(path)


def test_precedence_is_flag_then_environment_then_file_then_default(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 1111\nhost = "0.0.0.0"\nwebhook_retries = 5\n'
                           'webhook_timeout = 4\nmax_body_bytes = 4096\nws_compression = true\n'
                           'log_level = ["warning", "opentim.webhooks=debug"]\n'
                           'log_format = "json"\n')
    env = {"OPENTIM_PORT": "2222", "OPENTIM_WEBHOOK_RETRIES": "7", "OPENTIM_MAX_BODY_BYTES": ""}
    got = resolve({"port": (3333, "--port")}, path, env)
    s = got.settings
    assert (s.port, got.sources["port"]) == (3333, "--port")  # flag > env > file
    assert (s.webhook_retries, got.sources["webhook_retries"]) == (7, "OPENTIM_WEBHOOK_RETRIES")
    assert s.host == "0.0.0.0" and s.webhook_timeout == 4.0  # file > default (int → float)
    assert isinstance(s.webhook_timeout, float)
    assert s.max_body_bytes == 4096  # an empty variable is not set
    assert s.ws_compression is True
    assert (got.log_levels, got.log_format) == (["warning", "opentim.webhooks=debug"], "json")
    assert s.mark500_ttl == Settings().mark500_ttl  # default
    env_only = resolve({}, path, {"OPENTIM_PORT": "2222"})
    assert env_only.settings.port == 2222
    flagged = resolve({"log_level": (["error"], "--log-level")}, path, {})
    assert flagged.log_levels == ["error"]
    assert resolve({}, None, {}).settings == Settings()
    redis_file = write(tmp_path, 'redis = "redis://127.0.0.1:6379/0"\n')
    assert resolve({}, redis_file, {}).settings.redis == "redis://127.0.0.1:6379/0"
    assert resolve({"redis": ("", "--redis")}, redis_file, {}).settings.redis is None


@pytest.mark.parametrize(("text", "env", "message"), [
    ("webhok_timeout = 3\n", {}, "unknown key 'webhok_timeout' (did you mean "
                                 "'webhook_timeout'?)"),
    ("[server]\nport = 1\n", {}, "unknown key 'server'"),
    ('port = "8080"\n', {}, "key 'port' must be an integer from 0 to 65535, got a string"),
    ("port = 70000\n", {}, "key 'port' must be an integer from 0 to 65535, got 70000"),
    ("webhook_timeout = 0\n", {}, "key 'webhook_timeout' must be a number >= 0.1, got 0"),
    ("webhook_retries = 1.5\n", {}, "key 'webhook_retries' must be an integer from 0 to "
                                    "100, got 1.5"),
    ("max_connections = true\n", {}, "key 'max_connections' must be an integer >= 1, "
                                     "got true"),
    ("ws_compression = 1\n", {}, "key 'ws_compression' must be true or false, got 1"),
    ('db = ""\n', {}, "key 'db' must not be empty"),
    ("db = 5\n", {}, "key 'db' must be a string, got 5"),
    ('redis_prefix = "a b"\n', {}, "key 'redis_prefix' must be letters, digits"),
    ("mark500_ttl = inf\n", {}, "key 'mark500_ttl' must be a number >= 1, got inf"),
    ('log_level = "loud"\n', {}, "key 'log_level': 'loud': the level must be one of"),
    ("log_level = 3\n", {}, "key 'log_level' must be a string or an array of strings"),
    ('log_format = "xml"\n', {}, "key 'log_format' must be one of text, json, got 'xml'"),
    ("port = \n", {}, "not valid TOML: Invalid value (at line 1, column 8)"),
    ("", {"OPENTIM_SWEEP_INTERVAL": "often"},
     "OPENTIM_SWEEP_INTERVAL must be a number >= 0.1, got 'often'"),
    ("", {"OPENTIM_WS_COMPRESSION": "maybe"},
     "OPENTIM_WS_COMPRESSION must be true or false, got 'maybe'"),
])
def test_each_bad_value_is_one_line_naming_its_key(tmp_path: Path, text: str,
                                                   env: dict[str, str], message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as failed:
        resolve({}, path, env)
    shown = str(failed.value)
    assert message in shown and "\n" not in shown
    if not env:
        assert shown.startswith(f"config file {path}: ")


def test_a_password_under_the_wrong_key_is_not_shown(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = "postgresql://u:hunter2@h/db"\n')
    with pytest.raises(ConfigError) as failed:
        resolve({}, path, {})
    assert "hunter2" not in str(failed.value)
    with pytest.raises(ConfigError) as failed:
        resolve({}, None, {"OPENTIM_MAX_FRAME_BYTES": "hunter2" * 10})
    assert "hunter2" * 10 not in str(failed.value)  # (shown cut to 40 characters)


def test_serve_refuses_a_bad_config_with_exit_code_2_before_starting(tmp_path: Path) -> None:
    from opentim.cli import cli

    runner = CliRunner()
    missing = runner.invoke(cli, ["serve", "--config", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2
    assert "cannot read it: No such file or directory" in missing.output
    bad = write(tmp_path, "heartbeat_timeout = -1\n")
    done = runner.invoke(cli, ["serve", "--config", bad])
    assert done.exit_code == 2, done.output
    assert done.output.strip() == (f"opentim: config file {bad}: key 'heartbeat_timeout' "
                                   f"must be a number >= 0.1, got -1")
    env = runner.invoke(cli, ["serve"], env={"OPENTIM_WEBHOOK_QUEUE_SIZE": "0"})
    assert env.exit_code == 2
    assert "opentim: OPENTIM_WEBHOOK_QUEUE_SIZE must be an integer >= 1, got 0" in env.output
    flag = runner.invoke(cli, ["serve", "--log-level", "opentim.x=loud"])
    assert flag.exit_code == 2 and "--log-level: 'opentim.x=loud'" in flag.output
    fmt = runner.invoke(cli, ["serve", "--log-format", "xml"])
    assert fmt.exit_code == 2 and "--log-format must be one of text, json" in fmt.output


def _documented_settings() -> set[str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("## Server settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M))


def test_every_setting_is_documented_and_accepted_by_the_file(tmp_path: Path) -> None:
    fields = [f for f in dataclasses.fields(Settings)]
    documented = _documented_settings()
    missing = [f.name for f in fields if f.name not in documented]
    assert not missing, f"not in docs/configuration.md's server settings table: {missing}"
    expected: dict[str, Any] = {}
    for name, field in ops_config.settings_fields().items():
        low, high = ops_config.BOUNDS.get(name, (0, None))
        number = float(low or 0) + 7.5 if high is None else (float(low or 0) + high) / 2
        expected[name] = {int: int(number), float: number,
                          bool: not field.default, str: "x7"}[field.kind]
    lines = [f"{name} = {json.dumps(value)}" for name, value in expected.items()]
    path = write(tmp_path, "\n".join(lines) + "\n")
    got = resolve({}, path, {}).settings
    assert {f.name: getattr(got, f.name) for f in fields} == expected  # each key arrived
    for key in ops_config.LOG_KEYS:
        assert f"| `{key}` |" in (ROOT / "docs" / "configuration.md").read_text(), key
    example = resolve({}, str(ROOT / "docs" / "deploy" / "opentim.toml"), {})
    assert example.log_format == "json"  # the example file is valid


# --- version, licence, deployment files --------------------------------------------------


def test_version_matches_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    shown = subprocess.run([*OPENTIM, "--version"], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"opentim {pyproject['version']}\n"
    assert opentim.__version__ == pyproject["version"]


def test_the_licence_file_is_the_one_pyproject_names() -> None:
    licence = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    spdx = licence["text"] if isinstance(licence, dict) else licence
    first_lines = " ".join((ROOT / "LICENSE").read_text().split()[:8])
    titles = {"Apache-2.0": "Apache License Version 2.0, January 2004", "MIT": "MIT License"}
    assert titles[spdx] in first_lines


def _serve_params() -> list[Any]:
    import typer.main

    from opentim.cli import cli

    return list(typer.main.get_command(cli).commands["serve"].params)  # type: ignore[attr-defined]


def _serve_flags() -> set[str]:
    return {opt for p in _serve_params() for opt in (*p.opts, *p.secondary_opts)}


def _known_env() -> set[str]:
    flags = {p.envvar for p in _serve_params() if isinstance(p.envvar, str)}
    return flags | {f.env for f in ops_config.settings_fields().values()}


def test_the_dockerfile_runs_the_package_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in
                    re.sub(r"\\\n", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    by_name: dict[str, list[str]] = {}
    for name, rest in instructions:
        by_name.setdefault(name, []).append(rest)
    assert by_name["FROM"] == ["python:3.11-slim"]
    user = by_name["USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    assert f"--uid {user.split(':')[0]}" in text
    assert by_name["EXPOSE"] == ["8080"]
    assert any("pip install" in r and " ." in r for r in by_name["RUN"])
    for copied in by_name["COPY"]:
        for source in copied.split()[:-1]:
            assert (ROOT / source).exists(), source
    assert "/healthz" in by_name["HEALTHCHECK"][0]
    assert json.loads(by_name["ENTRYPOINT"][0]) == ["opentim"]
    assert json.loads(by_name["CMD"][0]) == ["serve"]
    for env in by_name["ENV"]:
        for name in re.findall(r"(OPENTIM_[A-Z_]+)=", env):
            assert name in _known_env(), name
    ignored = (ROOT / ".dockerignore").read_text()
    assert "!src/" in ignored and "!pyproject.toml" in ignored


def test_the_compose_file_wires_the_server_to_postgresql_and_redis() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"opentim", "postgres", "redis"}
    server = services["opentim"]
    assert server["build"] == "."
    env = server["environment"]
    assert set(env) <= _known_env(), set(env) - _known_env()
    db = make_url(env["OPENTIM_DB"].replace("${OPENTIM_DB_PASSWORD:-opentim}", "pw"))
    pg_env = services["postgres"]["environment"]
    assert (db.get_backend_name(), db.host, db.port) == ("postgresql", "postgres", 5432)
    assert (db.username, db.database) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])
    assert pg_env["POSTGRES_PASSWORD"] == "${OPENTIM_DB_PASSWORD:-opentim}"
    assert env["OPENTIM_REDIS"].startswith("redis://redis:6379")
    assert services["redis"]["image"].split(":")[1] >= "7"
    assert set(server["depends_on"]) == {"postgres", "redis"}
    assert all(d["condition"] == "service_healthy" for d in server["depends_on"].values())
    assert all("healthcheck" in services[name] for name in services)
    assert "8080:8080" in server["ports"]
    assert f"127.0.0.1:{env['OPENTIM_METRICS_PORT']}:{env['OPENTIM_METRICS_PORT']}" in \
        server["ports"]
    assert "/readyz" in " ".join(server["healthcheck"]["test"])
    assert server["command"][0] == "serve"
    assert set(server["command"][1:]) <= _serve_flags()
    assert env["OPENTIM_LOG_FORMAT"] in ("text", "json")
    assert "pgdata" in compose["volumes"]


def test_the_systemd_unit_starts_serve_with_existing_flags() -> None:
    text = (ROOT / "docs" / "deploy" / "opentim.service").read_text()
    units: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            units[section] = {}
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            units[section][key] = value
    assert set(units) == {"Unit", "Service", "Install"}
    argv = shlex.split(units["Service"]["ExecStart"])
    assert argv[0].endswith("/opentim") and argv[1] == "serve"
    flags = [a for a in argv[2:] if a.startswith("--")]
    assert set(flags) <= _serve_flags() and "--config" in flags
    assert units["Service"]["User"] != "root" and units["Service"]["KillSignal"] == "SIGTERM"
    assert int(units["Service"]["TimeoutStopSec"]) > 30  # the server's own grace period
    assert units["Service"]["RestartPreventExitStatus"] == "2"
    assert units["Install"]["WantedBy"] == "multi-user.target"


def test_running_md_documents_the_probes_and_the_deployment_files() -> None:
    text = (ROOT / "docs" / "running.md").read_text()
    for needle in ("/healthz", "/readyz", "--config", "--log-format", "--access-log",
                   "docker-compose.yml", "docs/deploy/opentim.service", "no Docker engine",
                   "livenessProbe", "readinessProbe"):
        assert needle in text, needle
