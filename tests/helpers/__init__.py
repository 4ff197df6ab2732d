"""Helpers shared by the tests: import them from here (``from tests.helpers import …``).

Fixtures live in tests/conftest.py and only there; tests never import conftest or each
other. The helpers are grouped by what they touch:

- ``services``: where PostgreSQL and Redis are, skipping (or failing) when they are down;
- ``servers``: OpenTIM servers, in process or on real loopback sockets;
- ``calls``: REST calls, gateway sessions, waiting for a condition;
- ``receiver``: a real HTTP receiver for webhooks;
- ``faults`` (imported from there): a private redis-server to pause, stall, kill or
  restart, a TCP proxy that cuts or refuses connections, a PostgreSQL database of a
  test's own, real ``opentim serve`` processes to SIGKILL or SIGTERM.
"""

from tests.helpers.calls import (
    all_pages,
    create_group,
    eventually,
    import_accounts,
    members,
    modify,
    next_event,
    old_group,
    online_num,
    roster,
    sessions,
    statements,
)
from tests.helpers.receiver import Received, Receiver, read_body
from tests.helpers.servers import (
    Clock,
    LiveServer,
    Server,
    free_port,
    live_server,
    live_servers,
    serve_asgi,
)
from tests.helpers.services import (
    PG_URL,
    REDIS_URL,
    REQUIRE_SERVICES,
    drop_redis_keys,
    ensure_pg_database,
    redis_client_or_skip,
    redis_reachable,
    require_redis,
    sdkappids,
    unavailable,
)

__all__ = [
    "PG_URL",
    "REDIS_URL",
    "REQUIRE_SERVICES",
    "Clock",
    "LiveServer",
    "Received",
    "Receiver",
    "Server",
    "all_pages",
    "create_group",
    "drop_redis_keys",
    "ensure_pg_database",
    "eventually",
    "free_port",
    "import_accounts",
    "live_server",
    "live_servers",
    "members",
    "modify",
    "next_event",
    "old_group",
    "online_num",
    "read_body",
    "redis_client_or_skip",
    "redis_reachable",
    "require_redis",
    "roster",
    "sdkappids",
    "serve_asgi",
    "sessions",
    "statements",
    "unavailable",
]
