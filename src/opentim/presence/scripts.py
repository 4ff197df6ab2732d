"""The Lua scripts of the Redis presence store's group operations, and how they run.

Each per-group operation is one script under ``lua/`` with ``common.lua`` (key names of
the group ``KEYS[1]``, shared helpers) prepended, run with EVALSHA: atomic, one round
trip. Scripts that may change what a page shows bump the group's version first, which
is how cached pages are validated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from opentim.presence.leases import lua_source

GROUP_SCRIPTS = (
    "join",
    "leave",
    "leave_node",
    "page",
    "count",
    "set_marks",
    "del_marks",
    "expire",
    "drop",
)
WRITING_SCRIPTS = frozenset(
    {"join", "leave", "leave_node", "set_marks", "del_marks", "expire", "drop"})
_BUMP = "redis.call('INCR', K_VER)\n"


def group_scripts(client: aioredis.Redis) -> dict[str, AsyncScript]:
    common = lua_source("common")
    return {
        name: client.register_script(
            common + "\n" + (_BUMP if name in WRITING_SCRIPTS else "") + lua_source(name))
        for name in GROUP_SCRIPTS
    }


async def run_then(client: aioredis.Redis, script: AsyncScript, base: str,
                   args: Sequence[Any], then: Callable[[Any], None]) -> Any:
    """One round trip: the script, then commands queued by ``then`` on a pipeline.

    redis-py's Script-in-pipeline would add a SCRIPT EXISTS round trip per call, so
    EVALSHA is queued directly and NOSCRIPT (Redis restarted) handled here.
    """
    for attempt in (0, 1):
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, 1, base, *args)
        then(pipe)
        try:
            return (await pipe.execute())[0]
        except NoScriptError:
            if attempt:
                raise
            script.sha = await client.script_load(script.script)
    raise AssertionError("unreachable")
