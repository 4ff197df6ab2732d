"""Gateway commands registered by the services that own them (messages, for one).

The session's own commands (heartbeat, join_group, quit_group, modify_marks, logout) are
in ``endpoint.py``; every other command is a msgspec Struct (Tencent's field names) and a
handler registered here with ``@gateway_command``. The handler gets the connection as a
``Caller`` (who is calling, from where) and returns the reply's fields.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from opentim import errors
from opentim.online import Presence
from opentim.runtime import Runtime


class Caller(Protocol):
    """The connection a command arrived on."""

    @property
    def runtime(self) -> Runtime: ...

    @property
    def presence(self) -> Presence: ...  # sdkappid, account, conn_id, origin


S = TypeVar("S", bound=msgspec.Struct)
Handler = Callable[[Caller, Any, float], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class GatewayCommand:
    name: str
    request: type[msgspec.Struct]
    handler: Handler

    def parse(self, doc: dict[str, Any]) -> Any:
        """The frame as this command's request; unknown fields are ignored, 10004 else."""
        try:
            return msgspec.convert(doc, self.request, strict=True)
        except msgspec.ValidationError as exc:
            raise errors.InvalidParameter(f"invalid frame: {exc}") from None
        except RecursionError:
            raise errors.InvalidParameter("invalid frame: nested too deeply") from None


REGISTRY: dict[str, GatewayCommand] = {}


def gateway_command(name: str, request: type[S]
                    ) -> Callable[[Callable[[Caller, S, float], Awaitable[dict[str, Any]]]],
                                  Callable[[Caller, S, float], Awaitable[dict[str, Any]]]]:
    """Register ``handler(caller, request, now) -> reply fields`` for frames ``cmd: name``."""
    def register(handler: Callable[[Caller, S, float], Awaitable[dict[str, Any]]]
                 ) -> Callable[[Caller, S, float], Awaitable[dict[str, Any]]]:
        if name in REGISTRY:
            raise ValueError(f"gateway command {name!r} registered twice")
        REGISTRY[name] = GatewayCommand(name, request, handler)
        return handler
    return register
