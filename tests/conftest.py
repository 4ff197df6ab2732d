"""Shared fixtures, and only fixtures: a server on SQLite or PostgreSQL, admin REST clients
for fresh apps, live servers on both presence backends, a webhook receiver.

Every test gets its own app (a fresh SDKAppID): tenants never see each other's rows, so
tests can share one PostgreSQL database without cleaning up. Helpers (servers, REST and
gateway calls, service checks) are in tests/helpers; tests import them from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from opentim.app import create_app
from opentim.client.rest import RestClient
from opentim.domain.apps import App, Edition
from opentim.runtime import Runtime
from opentim.settings import Settings
from tests.helpers import (
    PG_URL,
    REDIS_URL,
    Clock,
    LiveServer,
    Receiver,
    Server,
    ensure_pg_database,
    live_server,
    require_redis,
    serve_asgi,
    unavailable,
)
from tests.helpers.redis_cluster import ClusterUnavailable, LocalCluster
from tests.helpers.services import PG_URL_GIVEN, drop_pg_database

_pg_checked: dict[str, str | None] = {}  # URL -> why PostgreSQL is unusable, once per run


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/opentim.db"
    if PG_URL not in _pg_checked:
        _pg_checked[PG_URL] = await ensure_pg_database(PG_URL)
    if _pg_checked[PG_URL]:
        unavailable("PostgreSQL", _pg_checked[PG_URL])
    return PG_URL


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[Server]:
    clock = Clock()
    runtime = Runtime.create(Settings(db=db_url, app_refresh_interval=0.2), clock=clock)
    asgi = create_app(runtime=runtime)
    await runtime.start()
    srv = Server(runtime, asgi, clock)
    runtime.events.subscribe(srv.events.append)
    try:
        yield srv
    finally:
        await runtime.close()


@pytest.fixture
async def app(server: Server) -> App:
    """A premium app with the online member list on and no rate limit."""
    return await server.new_app(rate_limit=0)


@pytest.fixture
async def tim(server: Server, app: App) -> AsyncIterator[RestClient]:
    async with server.client(app) as client:
        yield client


@pytest.fixture
async def standard_app(server: Server) -> App:
    return await server.new_app(rate_limit=0, edition=Edition.STANDARD)


@pytest.fixture(params=["memory", "redis"])
def presence_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def live(presence_backend: str, tmp_path) -> AsyncIterator[LiveServer]:  # type: ignore[no-untyped-def]
    async with live_server(f"sqlite:///{tmp_path}/live.db", presence_backend) as srv:
        yield srv


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster | str]:
    """A local 3-master Redis Cluster, started for the session by the first test that
    needs it (tests/helpers/redis_cluster.py) and shut down at its end; or, as a string,
    why it could not start."""
    try:
        cluster = LocalCluster.start()
    except ClusterUnavailable as exc:
        yield str(exc)
        return
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["redis", "redis-cluster"])
async def shared_redis(request: pytest.FixtureRequest) -> str:
    """The ``--redis`` URL of server processes sharing presence: the single test Redis, or
    a node of the local Redis Cluster (each skips, or fails with
    OPENTIM_REQUIRE_SERVICES=1, when it is not there)."""
    if request.param == "redis":
        await require_redis(REDIS_URL)
        return REDIS_URL
    cluster = request.getfixturevalue("redis_cluster")
    if isinstance(cluster, str):
        unavailable("Redis Cluster", cluster)
    return str(cluster.url)


@pytest.fixture(params=[("sqlite", "memory"), ("postgresql", "redis")],
                ids=["sqlite-memory", "postgresql-redis"])
async def live_both(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[LiveServer]:  # type: ignore[no-untyped-def]
    """A live server twice: SQLite with in-process presence, PostgreSQL with Redis (both
    databases and both presence backends, in two runs rather than four)."""
    db, presence = request.param
    if db == "postgresql":
        if PG_URL not in _pg_checked:
            _pg_checked[PG_URL] = await ensure_pg_database(PG_URL)
        if _pg_checked[PG_URL]:
            unavailable("PostgreSQL", _pg_checked[PG_URL])
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path}/live.db"
    async with live_server(url, presence) as srv:
        yield srv


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serve_asgi(rec) as url:
        rec.url = url + "/im-callback"
        yield rec


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this run's own PostgreSQL database (tests/helpers/services.py)."""
    if not PG_URL_GIVEN and _pg_checked.get(PG_URL, "unused") is None:
        asyncio.run(drop_pg_database(PG_URL))
