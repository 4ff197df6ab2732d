"""The run itself: the Suite holds every row and what the run started, runs the phases in
order (each stopping what it started), and turns REST scenarios into paired wrk probes."""

from __future__ import annotations

import argparse
import base64
import json
import resource
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import httpx
from abuse_phase import phase_abuse
from backends import Backend, Databases
from cluster_phase import phase_cluster
from messages_phase import RATE_SECONDS, phase_messages
from phases import phase_idle, phase_imports, phase_rest, phase_store
from presence_phase import phase_presence
from probes import ClientProbe, Load, Probe, WrkProbe, wait_idle
from processes import BARE, LOG_LEVEL, PY, BenchError, Processes, Server
from report import Row
from scenarios import APPS, PRESENCE, SCENARIOS, Call, count_label
from soak_phase import phase_soak

# Phases that run only when --only names them (never in a plain or --quick run).
BY_NAME_ONLY = ("soak", "abuse")


class Suite:
    """One run: its rows, processes, databases, notes and failures; the phases (bench/phases.py,
    bench/presence_phase.py) fill the rows in through the methods below."""

    def __init__(self, args: argparse.Namespace, tmp: Path, wrk_bin: str) -> None:
        self.args = args
        self.tmp = tmp
        self.wrk_bin = wrk_bin
        self.procs = Processes()
        # A name-only phase's rows are in the table only of runs that name it.
        self.rows = [Row(s, b) for s in SCENARIOS for b in s.backends
                     if not s.only or s.only in args.only]
        self.versions: list[str] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.import_output = ""
        self.db = Databases(args, self.note)
        quick = args.quick
        self.idle_count = 1000 if quick else 10_000
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < self.idle_count + 500:
            self.idle_count = (hard - 500) // 1000 * 1000
            self.note(f"idle connections: the open-file limit ({hard}) allows only "
                      f"{self.idle_count:,}")
        self.store_members = 10_000 if quick else 100_000
        # admin_getroammsg's row: messages stored when it is measured the second time
        self.history_messages = args.history_messages or (100_000 if quick else 1_000_000)
        # Row labels carry the sizes actually measured (quick mode measures less).
        for r in self.rows:
            r.label = r.scenario.name.format(idle=count_label(self.idle_count),
                                             store=count_label(self.store_members),
                                             history=count_label(self.history_messages),
                                             rate_s=min(RATE_SECONDS, args.seconds),
                                             soak=f"{args.soak_minutes:g}")

    def row(self, special: str, backend: str) -> Row:
        return next(r for r in self.rows
                    if r.scenario.special == special and r.backend == backend)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def fail(self, rows: list[Row], exc: BenchError) -> None:
        self.failures.append(str(exc))
        print(f"  FAILED: {exc}", flush=True)
        for r in rows:
            if not r.runs and not r.status:
                r.status = "FAILED"

    def run(self) -> None:
        self.db.announce()
        self.db.create_postgres()
        redis_version = self.db.claim_redis()
        if redis_version is not None:
            self.versions.append(redis_version)
        # Each phase with the rows it measures (marked "not run" when --only leaves it out).
        phases: list[tuple[Callable[[Suite], None], Callable[[Row], bool]]] = [
            (phase_rest, lambda r: r.backend in ("sqlite", "postgresql")
             and r.scenario.call is not None),
            (phase_presence, lambda r: r.backend in PRESENCE
             and not r.scenario.special.startswith(("store", "idle", "fanout"))),
            (phase_messages, lambda r: r.scenario.special.startswith("fanout")),
            (phase_cluster, lambda r: r.scenario.special.startswith("cluster")),
            (phase_idle, lambda r: r.scenario.special == "idle"),
            (phase_store, lambda r: r.scenario.special.startswith("store")),
            (phase_imports, lambda r: r.scenario.special == "imports"),
            (phase_soak, lambda r: r.scenario.only == "soak"),
            (phase_abuse, lambda r: r.scenario.only == "abuse"),
        ]
        for phase, mine in phases:
            name = phase.__name__.removeprefix("phase_")
            if not self.wanted(name):
                for r in self.rows:  # (a name-only phase's rows are not in the table)
                    if mine(r):
                        r.status = r.status or "not run (--only)"
                continue
            doc = (phase.__doc__ or "").format(idle=count_label(self.idle_count),
                                               store=count_label(self.store_members))
            print(f"{phase.__name__}: {doc}", flush=True)
            try:
                phase(self)
            except BenchError as exc:
                self.fail([r for r in self.rows if mine(r)], exc)
            finally:
                self.procs.stop()

    def wanted(self, phase: str) -> bool:
        """Whether this run runs ``phase`` (soak and abuse: only when --only names them)."""
        if phase in BY_NAME_ONLY:
            return phase in self.args.only
        return not self.args.only or phase in self.args.only

    def stop(self) -> None:
        """Stops everything the run started and releases its databases (on every way out)."""
        self.procs.stop()
        self.db.stop()

    # --- REST rows under wrk ------------------------------------------------------------

    def write(self, name: str, data: bytes) -> Path:
        (self.tmp / name).write_bytes(data)
        return self.tmp / name

    def wrk_probe(self, label: str, url: str, calls: list[Call], answers: list[bytes],
                  server: Server, connections: int = 0) -> WrkProbe:
        files = []
        for call, answer in zip(calls, answers, strict=True):
            n = len(list(self.tmp.glob("req-*")))
            files += [self.write(f"req-{n}.json", json.dumps(call.body).encode()),
                      self.write(f"expect-{n}.json", answer)]
        return WrkProbe(label, url, files, server, self.wrk_bin,
                        connections or self.args.connections)

    @staticmethod
    def seed(b: Backend, calls: Iterator[Call]) -> None:
        """Make each setup call once on this backend (calls for apps it lacks are skipped)."""
        seen: set[str] = set()
        for call in calls:
            if call.key() not in seen and call.app in b.queries:
                seen.add(call.key())
                b.post(call)

    def plan_calls(self, backends: dict[str, Backend]) -> Server | None:
        """Probes for the REST rows of these backends; starts the bare app the rows that
        compare with it need (it also serves the WebSocket echo)."""
        bare_rows: list[tuple[Row, list[Call], list[bytes]]] = []
        for row in self.rows:
            s = row.scenario
            if s.call is None or s.special or row.backend not in backends or row.status:
                continue
            b = backends[row.backend]
            assert b.server is not None
            calls = [s.call] + ([s.alternate] if s.alternate else [])
            answers = [b.post(c) for c in calls]
            label = f"{s.call.path} on {b.name}" + ("" if s.call.app == "off" else
                                                    f", rate limit {APPS[s.call.app]:,}")
            row.target = self.wrk_probe(label, b.url(s.call), calls, answers, b.server,
                                        s.connections)
            row.target.drain = s.drain
            if s.varies:
                row.target.script = "vary.lua"
            if isinstance(s.baseline, Call):
                row.base_label = ("OpenTIM, rate limit off" if s.baseline.path == s.call.path
                                  else f"OpenTIM {s.baseline.path}")
                row.base = self.wrk_probe(label + " (baseline)", b.url(s.baseline),
                                          [s.baseline], [b.post(s.baseline)], b.server)
            elif b.redis and s.redis_baseline:
                links = min(8, row.target.connections)
                row.base_label = (f"raw Redis: 500×(HSET+ZADD), then 500×(HDEL+ZREM), each "
                                  f"one pipeline, {links} connection(s)")
                row.same_cpu = False
                row.base = ClientProbe("raw Redis marks", [
                    s.redis_baseline, "--redis", self.db.redis_url, "--prefix", self.db.prefix,
                    "--count", str(links), "--members", "500"])
            else:
                bare_rows.append((row, calls, answers))
        entries = []
        for row, calls, answers in bare_rows:
            reencode = row.scenario.baseline == "reencode"
            if reencode:
                row.base_label = "bare ASGI, msgspec re-encode of the same document"
            assert isinstance(row.target, WrkProbe)
            path, _, query = row.target.url.partition("/v4/")[2].partition("?")
            for call, answer in zip(calls, answers, strict=True):
                entry = {"path": "/v4/" + path, "query": query, "reencode": reencode,
                         "body_b64": base64.b64encode(answer).decode()}
                if not row.scenario.varies:  # a send's bodies all differ: any body matches
                    entry["request_b64"] = base64.b64encode(json.dumps(call.body).encode()
                                                            ).decode()
                entries.append(entry)
        bodies = self.write(f"bare-bodies-{len(list(self.tmp.glob('bare-*')))}.json",
                            json.dumps(entries).encode())
        bare = self.procs.server("bare ASGI", [PY, BARE, "--bodies", str(bodies),
                                               "--log-level", LOG_LEVEL],
                                 self.tmp / f"bare-{bodies.stem}.log")
        for row, calls, answers in bare_rows:
            t = row.target
            assert isinstance(t, WrkProbe)
            row.base = WrkProbe(t.label + " (bare)", bare.url + t.url[len(t.server.url):],
                                t.files, bare, self.wrk_bin, t.connections, script=t.script)
            for call, answer in zip(calls, answers, strict=True):
                got = httpx.post(row.base.url, content=json.dumps(call.body).encode(),
                                 timeout=10, trust_env=False).content
                # Sends (varies) on one URL share one recorded answer: any send's will do.
                if got != answer and not (row.scenario.varies and b'"ErrorCode":0,' in got):
                    raise BenchError(f"bare app answered {got[:200]!r} for {t.label}")
        return bare

    def measure(self, rows: list[Row], rounds: int, servers: Sequence[Server] = ()) -> None:
        """Paired runs of each row's probe and baseline; ``servers``: wait for them to go
        idle after every run, so one run's aftermath (pushes, webhooks) stays in it."""
        pairs = [r for r in rows if r.target and r.base and not r.status]
        seconds = self.args.seconds

        def settled(probe: Probe, seconds: int) -> Load:
            load = probe.run(seconds)
            self.settle(servers)
            return load

        if not self.args.quick:
            for r in pairs:  # warm caches, pools and sigs; not counted
                for probe in (r.base, r.target):
                    assert probe is not None
                    self.guard(r, partial(settled, probe, 1))
        for n in range(rounds):
            for r in pairs:
                if r.status:
                    continue
                assert r.target and r.base
                # Alternate who goes first so a slow spell on the machine hits both sides.
                first, second = (r.base, r.target) if n % 2 == 0 else (r.target, r.base)
                loads = []
                for probe in (first, second):
                    load = self.guard(r, partial(settled, probe, seconds))
                    if load is None:
                        break
                    loads.append(load)
                else:
                    base, measured = loads if first is r.base else loads[::-1]
                    r.runs.append((measured, base))
                    print(f"  round {n + 1}: {r.label[:60]} [{r.backend}]: "
                          f"{measured.value:,.2f} vs baseline {base.value:,.2f}", flush=True)

    def settle(self, servers: Sequence[Server]) -> None:
        if servers and wait_idle(servers) is None:
            self.note("servers still busy 60 s after a run")

    def guard(self, row: Row, work: Callable[[], Load]) -> Load | None:
        if row.status:
            return None
        try:
            return work()
        except BenchError as exc:
            row.status = "FAILED"
            self.failures.append(str(exc))
            print(f"  FAILED: {exc}", flush=True)
            return None

