"""What a run runs OpenTIM on: a Backend is one server with its database, apps and URLs;
Databases are the scratch PostgreSQL and Redis databases the run writes to, which
bench/scratch.py lets it take only when they are provably its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import scratch
from processes import LOG_LEVEL, PY, BenchError, Processes, Server, free_port, run
from scenarios import APPS, Call

from opentim.protocol import usersig

ADMIN = "administrator"
# Where a run writes unless told otherwise (--pg-url, --redis-url): bench/scratch.py checks
# that each is absent/empty or a dead bench run's before using it.
PG_URL = "postgresql://postgres@127.0.0.1:5432/opentim_bench"
REDIS_URL = "redis://127.0.0.1:6379/15"


@dataclass
class Backend:
    name: str
    db_url: str
    first_sdkappid: int  # distinct per backend: the bare app tells URLs apart by query
    version: str = ""
    redis: str | None = None  # presence in Redis; None: in process memory
    sdkappids: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)  # app label -> query string
    server: Server | None = None
    metrics_port: int = 0  # the server's /metrics listener (not on the API port)

    def create_apps(self, labels: dict[str, list[str]]) -> None:
        """One `opentim app create` per label (extra flags as given)."""
        for label, flags in labels.items():
            sdkappid = self.first_sdkappid + list(APPS).index(label)
            key = os.urandom(32).hex()
            run([PY, "-m", "opentim", "app", "create", "--sdkappid", str(sdkappid), "--key",
                 key, "--rate-limit", str(APPS[label]), "--db", self.db_url, *flags], 60)
            sig = usersig.generate(sdkappid, key, ADMIN)
            self.sdkappids[label], self.keys[label] = sdkappid, key
            self.queries[label] = (f"sdkappid={sdkappid}&identifier={ADMIN}&usersig={sig}"
                                   f"&random=99999999&contenttype=json")

    def start(self, procs: Processes, log: Path) -> Server:
        # Every server gets its metrics listener, as deployments that scrape it run; the
        # webhook rows read their counters from it.
        self.metrics_port = free_port()
        argv = [PY, "-m", "opentim", "serve", "--db", self.db_url, "--log-level", LOG_LEVEL,
                "--metrics-port", str(self.metrics_port)]
        self.server = procs.server(f"OpenTIM ({self.name})",
                                   argv + (["--redis", self.redis] if self.redis else []), log,
                                   avoid=[self.metrics_port])
        return self.server

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def url(self, call: Call) -> str:
        assert self.server is not None
        return f"{self.server.url}/v4/{call.path}?{self.queries[call.app]}"

    def post(self, call: Call) -> bytes:
        answer = httpx.post(self.url(call), json=call.body, timeout=30, trust_env=False).content
        code = json.loads(answer).get("ErrorCode")
        if code != call.expect:
            raise BenchError(f"{self.name}: {call.path} answered ErrorCode {code}, expected "
                             f"{call.expect}: {answer[:300]!r}")
        return answer

    def gateway_args(self, app: str) -> list[str]:
        assert self.server is not None
        return ["--url", self.server.url, "--sdkappid", str(self.sdkappids[app]),
                "--key", self.keys[app]]


def pg(work: Any) -> Any:
    """Run one of scratch.py's PostgreSQL coroutines, bounded in time."""
    return asyncio.run(asyncio.wait_for(work, 30))



class Databases:
    """The run's scratch databases: announced before any is touched, claimed, and released
    by stop() on every way out."""

    def __init__(self, args: argparse.Namespace, note: Callable[[str], None]) -> None:
        self.args = args
        self.note = note  # the run's notes, repeated in the report
        self.lines: list[str] = []  # what announce() printed, repeated in the report
        self.pg_url: str = args.pg_url  # '' : no PostgreSQL
        self.pg_version: str | None = None
        self.pg_created = False  # the database exists now, made and marked by this run
        self.redis_url = ""  # the Redis database this run owns, once claimed
        self.prefix = f"opentim_bench_{os.getpid()}"  # bench/clients.py's own keys in it

    def selected(self, *phases: str) -> bool:
        return not self.args.only or any(p in self.args.only for p in phases)

    def unreachable(self, what: str, url: str, exc: Exception) -> None:
        reason = f"{what} not reachable at {scratch.shown(url)}: {exc!r}"
        if os.environ.get("OPENTIM_REQUIRE_SERVICES") == "1":
            raise BenchError(reason + " (OPENTIM_REQUIRE_SERVICES=1)") from None
        self.note("skipped " + reason)

    def announce(self) -> None:
        """Say exactly which databases the run will write to, before it touches any."""
        if not self.pg_url:
            self.say("PostgreSQL: none (--pg-url '')")
        elif not self.selected("rest", "imports"):
            self.say("PostgreSQL: not used by these phases (--only)")
        else:
            users = [w for p, w in (("rest", "the REST phase"),
                                    ("imports", "bench/import_members.py")) if self.selected(p)]
            self.say(f"PostgreSQL: {scratch.pg_describe(self.pg_url)} "
                     f"({scratch.shown(self.pg_url)}): created, marked as this run's and "
                     f"dropped by {' and again by '.join(users)} "
                     f"(refused if it exists and is not a dead bench run's)")
        url = self.args.redis_url
        if not url:
            self.say("Redis: none (--redis-url '')")
        elif not self.selected("presence", "messages", "store", "soak"):
            self.say("Redis: not used by these phases (--only)")
        else:
            self.say(f"Redis: {scratch.redis_describe(url)} ({scratch.shown(url)}): taken only "
                     f"if empty (claim key {scratch.CLAIM}); the servers write opentim:* keys "
                     f"and publish on channel opentim:rooms (pub/sub is server-wide, not per "
                     f"database), bench/clients.py writes {self.prefix}:*; those keys are "
                     f"unlinked at the end (never FLUSHDB)")

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(f"bench: {line}", flush=True)

    def claim_redis(self) -> str | None:
        """The run's Redis database, taken now if it is free; returns the server version."""
        url = self.args.redis_url
        if not url or not self.selected("presence", "messages", "store", "soak"):
            return None
        try:
            version, how = scratch.claim_redis(url, self.args.time_limit + 3600)
        except scratch.Refused as exc:
            raise BenchError(str(exc)) from None
        except Exception as exc:
            self.unreachable("Redis", url, exc)
            return None
        self.redis_url = url
        self.say(f"Redis: claimed {scratch.redis_describe(url)} ({how})")
        return str(version)

    def create_postgres(self) -> None:
        """The run's PostgreSQL database, made now (pg_version: its server's version)."""
        if not self.pg_url or not self.selected("rest"):
            return
        try:
            version = str(pg(scratch.create_pg(self.pg_url)))
        except scratch.Refused as exc:
            raise BenchError(str(exc)) from None
        except Exception as exc:
            self.unreachable("PostgreSQL", self.pg_url, exc)
            return
        self.pg_created, self.pg_version = True, version
        self.say(f"PostgreSQL: created {scratch.pg_describe(self.pg_url)}")

    def drop_postgres(self) -> None:
        if not self.pg_created:
            return
        self.pg_created = False
        where = scratch.pg_describe(self.pg_url)
        try:
            dropped = pg(scratch.drop_pg(self.pg_url))
        except Exception as exc:  # still marked as this run's: the next run takes it over
            self.note(f"PostgreSQL {where}: could not drop it: {exc!r}")
            return
        if not dropped:
            self.note(f"PostgreSQL {where} no longer carries this run's mark: left alone")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.drop_postgres()
        if self.redis_url:
            with contextlib.suppress(Exception):
                scratch.release_redis(self.redis_url)
