"""How many gateway connections one account may hold on one server process.

Tencent Cloud Chat's most permissive multi-device setting (Pro editions, "Max Login
Instances per User per Platform") allows 10 concurrent Web instances and 3 devices on each
of Android, iPhone, iPad, Windows, macOS and Linux; mini-programs, uni-app and React Native
count as Web instances. A login beyond the limit succeeds and an older instance of the
same platform is kicked offline ("multi-instance kicked", KICKED_OUT in Tencent's SDKs).
OpenTIM does the same per process: ``platform=Unknown`` (or none) counts as Web. The
platform is the client's own claim, so the limits bound one account to 28 connections on
each process however it names its platforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

WEB_LIKE = frozenset({"Web", "Unknown"})
# Tencent's most permissive setting; Settings.max_web_connections_per_account and
# max_device_connections_per_account default to these.
MAX_WEB_CONNECTIONS = 10
MAX_DEVICE_CONNECTIONS = 3


class HasPlatform(Protocol):
    @property
    def platform(self) -> str: ...


C = TypeVar("C", bound=HasPlatform)


def platform_class(platform: str) -> str:
    return "Web" if platform in WEB_LIKE else platform


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    web: int = MAX_WEB_CONNECTIONS  # Web and Unknown, together
    device: int = MAX_DEVICE_CONNECTIONS  # each native platform

    def cap(self, platform: str) -> int:
        return self.web if platform_class(platform) == "Web" else self.device


TENCENT_LIMITS = ConnectionLimits()


def to_kick(existing: Sequence[C], platform: str,
            limits: ConnectionLimits = TENCENT_LIMITS) -> list[C]:
    """The connections (oldest first, from ``existing`` in connection order) that a new
    connection on ``platform`` pushes over its platform's limit."""
    same = [c for c in existing if platform_class(c.platform) == platform_class(platform)]
    excess = len(same) + 1 - limits.cap(platform)
    return same[:excess] if excess > 0 else []
