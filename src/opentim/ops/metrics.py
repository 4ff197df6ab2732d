"""The REST edge's counters and the gateway's gauges, in Prometheus text format.

Every REST call passes ``RestMetrics.observe`` once: a dict lookup by the request's path
(a string the server made anyway), one counter per ErrorCode and one histogram bucket
incremented, a float added. Nothing else is allocated per call (no label tuples: the
labels are rendered only when /metrics is scraped), so the hot path pays well under a
microsecond (docs/performance.md#metrics-at-the-rest-edge).
The format is written by hand, like the rest of /metrics: prometheus_client would add a
lock and label lookups to every call.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from typing import Any

from opentim.protocol import dispatch

# Upper bounds (seconds) of the REST latency histogram's buckets; +Inf is implied.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
_BOUNDS = tuple(f"{b:g}" for b in LATENCY_BUCKETS)

# Modules whose exceptions are the database's or Redis's (their clients and drivers).
_DATABASE_MODULES = ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite", "alembic")
_REDIS_MODULES = ("redis", "hiredis")

now = time.perf_counter  # what RestMetrics durations are measured with

UNKNOWN = ("unknown", "unknown")  # labels of calls that name no command
# Paths remembered with their command's counters; past this many (clients choose paths),
# a new path is resolved on every call instead.
MAX_PATHS = 4096


class _CommandStats:
    __slots__ = ("buckets", "codes", "command", "seconds", "service")

    def __init__(self, service: str, command: str) -> None:
        self.service = service
        self.command = command
        self.codes: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: over every bound
        self.seconds = 0.0


class RestMetrics:
    """Calls by (service, command) and ErrorCode, latency per command, and the calls that
    ended in an exception of the database or Redis (or in an internal error)."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], _CommandStats] = {}  # by (service, command)
        self._by_path: dict[str, _CommandStats] = {}  # "/v4/<service>/<command>" → those
        self._unknown = _CommandStats(*UNKNOWN)
        self.exceptions = {"database": 0, "redis": 0, "internal": 0}

    def observe(self, path: str, code: int, seconds: float) -> _CommandStats:
        """One answered call to ``path`` (``/v4/<service>/<command>``); returns the counters
        it went to (``service`` and ``command`` are its labels)."""
        stats = self._by_path.get(path)
        if stats is None:
            stats = self._resolve(path)
        codes = stats.codes
        codes[code] = codes.get(code, 0) + 1
        stats.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        stats.seconds += seconds
        return stats

    def _resolve(self, path: str) -> _CommandStats:
        parts = path.split("/")
        command = dispatch.COMMANDS.get((parts[2], parts[3])) if len(parts) == 4 else None
        if command is None:
            stats = self._unknown
        else:
            key = (command.service.name, command.name)
            stats = self._stats.get(key) or self._stats.setdefault(key, _CommandStats(*key))
        if len(self._by_path) < MAX_PATHS:
            self._by_path[path] = stats
        return stats

    def failed(self, exc: BaseException, *, handled: bool) -> None:
        """A call ended in ``exc``: counted when the database or Redis raised it (or caused
        it), or when nothing handled it (``handled`` False: an internal error)."""
        source = exception_source(exc)
        if source is not None:
            self.exceptions[source] += 1
        elif not handled:
            self.exceptions["internal"] += 1

    def _all(self) -> list[_CommandStats]:
        stats = sorted(self._stats.values(), key=lambda s: (s.service, s.command))
        return [*stats, self._unknown] if self._unknown.codes else stats

    def prometheus(self) -> str:
        stats = self._all()
        lines = ["# HELP opentim_rest_requests_total REST calls answered, by command and "
                 "ErrorCode (0: OK)",
                 "# TYPE opentim_rest_requests_total counter"]
        for s in stats:
            for code, count in sorted(s.codes.items()):
                lines.append(f'opentim_rest_requests_total{{service="{s.service}",'
                             f'command="{s.command}",error_code="{code}"}} {count}')
        lines += ["# HELP opentim_rest_request_duration_seconds time from the request's "
                  "arrival to its answer, by command",
                  "# TYPE opentim_rest_request_duration_seconds histogram"]
        for s in stats:
            labels = f'service="{s.service}",command="{s.command}"'
            total = 0
            for bound, count in zip(_BOUNDS, s.buckets, strict=False):
                total += count
                lines.append(f'opentim_rest_request_duration_seconds_bucket{{{labels},'
                             f'le="{bound}"}} {total}')
            total += s.buckets[-1]
            lines += [f'opentim_rest_request_duration_seconds_bucket{{{labels},le="+Inf"}} '
                      f"{total}",
                      f"opentim_rest_request_duration_seconds_sum{{{labels}}} {s.seconds!r}",
                      f"opentim_rest_request_duration_seconds_count{{{labels}}} {total}"]
        lines += ["# HELP opentim_rest_exceptions_total REST calls that ended in an exception "
                  "of the database or Redis, or in an internal error",
                  "# TYPE opentim_rest_exceptions_total counter"]
        lines += [f'opentim_rest_exceptions_total{{source="{source}"}} {count}'
                  for source, count in self.exceptions.items()]
        return "\n".join(lines) + "\n"


def exception_source(exc: BaseException) -> str | None:
    """"database" or "redis" when ``exc`` or an exception that caused it comes from that
    client (or its driver), else None."""
    seen: BaseException | None = exc
    for _ in range(16):  # a chain is short; a cycle must not loop
        if seen is None:
            return None
        module = type(seen).__module__
        if module.startswith(_REDIS_MODULES):
            return "redis"
        if module.startswith(_DATABASE_MODULES):
            return "database"
        if isinstance(seen, OSError):  # refused, reset, timed out: in whose code?
            raised_in = _raised_in(seen)
            if raised_in is not None:
                return raised_in
        seen = seen.__cause__ or seen.__context__
    return None


def _raised_in(exc: BaseException) -> str | None:
    tb = exc.__traceback__
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        if name.startswith(_REDIS_MODULES):
            return "redis"
        if name.startswith(_DATABASE_MODULES):
            return "database"
        tb = tb.tb_next
    return None


def online_members(connections: Iterable[Any]) -> int:
    """Distinct (app, group, account) among this process's connections that joined an
    online-list group: this process's share of the online members (robots and members
    listed only through mark 500 hold no connection, and are not counted)."""
    members: set[tuple[int, str, str]] = set()
    for conn in connections:
        presence = getattr(conn, "presence", None)
        if presence is None:
            continue
        for group_id in presence.groups:
            members.add((conn.sdkappid, group_id, conn.account))
    return len(members)


def gauge(name: str, value: float, help_text: str, kind: str = "gauge") -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{name} {value}\n"
