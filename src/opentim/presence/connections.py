"""Which gateway connections each account holds, on every server process.

Not per group: every connection is registered while it is open, in a group or not, so
``openim/query_online_status`` can answer for any account. Two implementations of the
same three operations, one per presence backend; ``PresenceStore`` exposes them as
``add_connection`` / ``remove_connection`` / ``connections`` (see ``contract.py``).

Redis keys (``P`` = prefix; each hash tag names one account or one node, so no command
spans two slots; on a Redis Cluster they spread over the masters):

    P:uc:{<sdkappid>:<account>}  hash  conn id -> "<node>|<platform>": the account's
                                       connections on every node
    P:nc:{<node>}                hash  conn id -> "<sdkappid>:<account>": what a node
                                       registered, for cleaning up after it

A connection is filed in its node's index BEFORE its account's hash (and unfiled after),
so a crash in between leaves at worst an index entry pointing at nothing (one pipeline on
one Redis; ``presence.client.in_order`` keeps that order on a cluster too). Reads report
only connections of nodes whose lease is still valid, so a crashed process's users read
as offline once its lease (``lease_ttl``) has run out, before any sweep removed them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:  # the memory backend runs without importing redis
    from opentim.presence.client import AnyRedis

# conn ids removed per round trip when cleaning up after a node
_CLEANUP_BATCH = 1000


class ConnectionRegistry(Protocol):
    async def add(self, app: int, account: str, conn_id: str, platform: str) -> None: ...

    async def remove(self, app: int, account: str, conn_id: str) -> None: ...

    async def platforms(self, app: int, accounts: Sequence[str], now: float
                        ) -> dict[str, list[str]]: ...


class MemoryConnections:
    """This process's connections; the memory store is single-process, so that is all."""

    def __init__(self) -> None:
        self._by_account: dict[tuple[int, str], dict[str, str]] = {}

    async def add(self, app: int, account: str, conn_id: str, platform: str) -> None:
        self._by_account.setdefault((app, account), {})[conn_id] = platform

    async def remove(self, app: int, account: str, conn_id: str) -> None:
        conns = self._by_account.get((app, account))
        if conns is not None:
            conns.pop(conn_id, None)
            if not conns:
                del self._by_account[(app, account)]

    async def platforms(self, app: int, accounts: Sequence[str], now: float
                        ) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for account in accounts:
            conns = self._by_account.get((app, account))
            if conns:
                out[account] = list(conns.values())
        return out


class RedisConnections:
    """The registry in Redis; ``node`` is this process, ``leases_key`` the lease table."""

    def __init__(self, client: AnyRedis, prefix: str, node: str, leases_key: str) -> None:
        self._r = client
        self._prefix = prefix
        self._node = node
        self._leases = leases_key
        # Ours, to file again after a sweeper removed them (we had lost our lease).
        self._mine: dict[str, tuple[str, str]] = {}  # conn id -> (ref, platform)

    def _account_key(self, ref: str) -> str:
        return f"{self._prefix}:uc:{{{ref}}}"

    def _node_key(self, node: str) -> str:
        return f"{self._prefix}:nc:{{{node}}}"

    async def add(self, app: int, account: str, conn_id: str, platform: str) -> None:
        ref = f"{app}:{account}"
        self._mine[conn_id] = (ref, platform)
        await self._file([(conn_id, ref, platform)])

    async def _file(self, conns: Iterable[tuple[str, str, str]]) -> None:
        from opentim.presence.client import in_order

        conns = list(conns)
        node_key = self._node_key(self._node)

        def index(pipe: Any) -> None:
            for conn_id, ref, _platform in conns:
                pipe.hset(node_key, conn_id, ref)

        def accounts(pipe: Any) -> None:
            for conn_id, ref, platform in conns:
                pipe.hset(self._account_key(ref), conn_id, f"{self._node}|{platform}")

        await in_order(self._r, index, accounts)

    async def remove(self, app: int, account: str, conn_id: str) -> None:
        from opentim.presence.client import in_order

        self._mine.pop(conn_id, None)
        await in_order(self._r,
                       lambda pipe: pipe.hdel(self._account_key(f"{app}:{account}"), conn_id),
                       lambda pipe: pipe.hdel(self._node_key(self._node), conn_id))

    async def platforms(self, app: int, accounts: Sequence[str], now: float
                        ) -> dict[str, list[str]]:
        """One round trip: the live nodes and every account's hash."""
        from opentim.presence.leases import num, text

        wanted = list(dict.fromkeys(accounts))
        pipe = self._r.pipeline(transaction=False)
        pipe.zrangebyscore(self._leases, f"({num(now)}", "+inf")
        for account in wanted:
            pipe.hvals(self._account_key(f"{app}:{account}"))
        res: list[Any] = await pipe.execute()
        # A node being cleaned up holds a claim (a future deadline) and so reads as live
        # for the moment the cleanup takes; its entries are being removed meanwhile.
        live = {text(node) for node in res[0]}
        out: dict[str, list[str]] = {}
        for account, values in zip(wanted, res[1:], strict=True):
            platforms = []
            for raw in values:
                node, _, platform = text(raw).rpartition("|")
                if node in live:
                    platforms.append(platform)
            if platforms:
                out[account] = platforms
        return out

    async def refile(self) -> None:
        """After our lease was lost: a sweeper may have removed our connections."""
        await self._file([(c, ref, p) for c, (ref, p) in list(self._mine.items())])

    async def cleanup(self, node: str) -> None:
        """Remove every connection ``node`` registered (it died, or it is us starting or
        closing), a batch per round trip."""
        await self._unfile_all(node)
        if node == self._node:
            self._mine.clear()

    async def resync(self) -> None:
        """Writes of ours may have failed (Redis was unreachable): remove everything this
        node filed, then file again the connections open now (``_mine`` is changed before
        each write, so it holds exactly those)."""
        await self._unfile_all(self._node)
        await self.refile()

    async def _unfile_all(self, node: str) -> None:
        key = self._node_key(node)
        cursor: Any = 0
        while True:
            cursor, found = await self._r.hscan(key, cursor, count=_CLEANUP_BATCH)
            batch = cast(dict[Any, Any], found)  # conn id -> "<sdkappid>:<account>"
            if batch:
                await self._unfile_batch(key, batch)
            if not int(cursor):
                break

    async def _unfile_batch(self, key: str, batch: dict[Any, Any]) -> None:
        """Conn ids of one node index, from their accounts' hashes first, then from it."""
        from opentim.presence.client import in_order
        from opentim.presence.leases import text

        def accounts(pipe: Any) -> None:
            for conn_id, ref in batch.items():
                pipe.hdel(self._account_key(text(ref)), conn_id)

        await in_order(self._r, accounts, lambda pipe: pipe.hdel(key, *batch))
