"""A small REST client for the Tencent-compatible API, for scripts, tests and benchmarks.

    async with RestClient("http://127.0.0.1:8080", sdkappid=..., usersig=...) as tim:
        reply = await tim.call("group_open_http_svc/create_group", {...})
"""

from __future__ import annotations

import random
from typing import Any

import httpx
import msgspec


class RestError(Exception):
    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.code: int = reply.get("ErrorCode", -1)
        super().__init__(f"{self.code}: {reply.get('ErrorInfo', '')}")


class RestClient:
    def __init__(self, base_url: str, *, sdkappid: int, usersig: str,
                 identifier: str = "administrator",
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 30.0) -> None:
        self.sdkappid = sdkappid
        self.identifier = identifier
        self.usersig = usersig
        self._http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout)

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def params(self, **overrides: Any) -> dict[str, Any]:
        params = {
            "sdkappid": self.sdkappid,
            "identifier": self.identifier,
            "usersig": self.usersig,
            "random": random.randint(0, 4294967295),
            "contenttype": "json",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    async def raw(self, path: str, content: bytes, **params: Any) -> dict[str, Any]:
        """POST raw bytes; returns the decoded reply whatever its ErrorCode."""
        response = await self._http.post(f"/v4/{path}", content=content,
                                         params=self.params(**params))
        response.raise_for_status()
        return msgspec.json.decode(response.content)

    async def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a JSON body and return the reply; a FAIL reply is returned, not raised."""
        return await self.raw(path, msgspec.json.encode({} if body is None else body))

    async def ok(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Like :meth:`call`, but raise :class:`RestError` unless the reply is OK."""
        reply = await self.call(path, body)
        if reply.get("ErrorCode") != 0:
            raise RestError(reply)
        return reply
