"""The webhook client's DNS resolver: refuses the addresses a callback must never reach.

:func:`opentim.webhooks.urls.check_callback_url` judges the host as written; a host *name*
can still resolve to a metadata address (``169.254.169.254.nip.io``), or be re-pointed
after it was checked. This resolver applies the same address rules to what the name
resolves to, at connect time, so the address checked is the address connected to.

Bounded: it runs only when aiohttp opens a connection to a name it has not resolved in the
last 10 s (its DNS cache), never per callback; the lookup itself is aiohttp's own (a thread
or aiodns) and sits inside the attempt's timeout. IP literals skip the resolver: the URL
check already judged them.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp import DefaultResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from opentim.webhooks.urls import OwnAddress, refused_address


class GuardedResolver(AbstractResolver):
    def __init__(self, own: OwnAddress) -> None:
        self._inner = DefaultResolver()
        self._own = own

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed, why = [], ""
        for result in results:
            problem = self.refusal(result["host"], result["port"])
            if problem is None:
                allowed.append(result)
            else:
                why = problem
        if not allowed:
            # aiohttp turns an OSError here into a failed connection attempt.
            raise OSError(f"{host} resolves only to refused addresses: {why}")
        return allowed

    def refusal(self, address: str, port: int) -> str | None:
        try:
            problem = refused_address(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return f"{address} is not an IP address"
        if problem is None and self._own.is_own(address, port):
            problem = f"{address}:{port} is this server's own address"
        return problem

    async def close(self) -> None:
        await self._inner.close()
