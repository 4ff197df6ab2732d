"""The Lua scripts of the Redis presence store's group operations, and how they run.

Each per-group operation is one script under ``lua/`` with ``common.lua`` (key names of
the group ``KEYS[1]``, shared helpers) prepended, run with EVALSHA: atomic, one round
trip. Every key a script touches is derived from ``KEYS[1]`` and carries its hash tag, so
on a Redis Cluster the script runs on the one master of that slot. A script followed by
other commands runs through ``presence.client.script_then``. Scripts that may change what
a page shows bump the group's version first, which is how cached pages are validated.
"""

from __future__ import annotations

from redis.commands.core import AsyncScript

from opentim.presence.client import AnyRedis
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


def group_scripts(client: AnyRedis) -> dict[str, AsyncScript]:
    common = lua_source("common")
    return {
        name: client.register_script(
            common + "\n" + (_BUMP if name in WRITING_SCRIPTS else "") + lua_source(name))
        for name in GROUP_SCRIPTS
    }
