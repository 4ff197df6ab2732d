"""What a run measures and how: rates, latencies and server CPU under wrk or bench/clients.py,
idleness from the server's CPU time, the webhook counters of the metrics listener, and the
rate limiter's own cost in process."""

from __future__ import annotations

import json
import os
import select
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from processes import BENCH, CLIENTS, PY, BenchError, Server, pinned, run

from opentim.protocol.ratelimit import RateLimiter


def wait_idle(servers: Sequence[Server], limit: float = 60) -> float | None:
    """Wait until every server uses under 12% of a core over 0.25 s; returns when that
    window began (time.monotonic()), or None after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        start, before = time.monotonic(), [s.cpu_seconds() for s in servers]
        time.sleep(0.25)
        if all(s.cpu_seconds() - b < 0.03 for s, b in zip(servers, before, strict=True)):
            return start
    return None


def bench_line(out: str, label: str) -> Any:
    line = next((x for x in reversed(out.splitlines()) if x.startswith("BENCH ")), None)
    if line is None:
        raise BenchError(f"{label} printed no result:\n{out[-2000:]}")
    return json.loads(line[6:])


@dataclass(frozen=True)
class Load:
    """One measurement: ``value`` is a rate (per second), a size (bytes per unit) or, for
    latency rows, the p50 in ms; cpu_us is the server process's CPU per operation."""

    value: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us: float | None = None


class Probe(Protocol):
    label: str

    def run(self, seconds: int) -> Load: ...


@dataclass
class WrkProbe:
    """wrk -t1 against one URL, POSTing the request files and checking every answer."""

    label: str
    url: str
    files: list[Path]  # request, expected answer[, request, expected answer]
    server: Server
    wrk_bin: str
    connections: int
    drain: bool = False  # count the time until the server is idle again in the rate
    busy: list[float] = field(default_factory=list)  # drain runs: server CPU ÷ wall time
    # post.lua: fixed bodies, answers compared byte for byte; vary.lua: a fresh number in
    # each body (sends: a repeated Random is a duplicate), answers checked for ErrorCode 0.
    script: str = "post.lua"

    def run(self, seconds: int) -> Load:
        argv = [*pinned(1), self.wrk_bin, "-t1", f"-c{self.connections}", f"-d{seconds}s",
                "--timeout", "5s", "--latency", "-s", str(BENCH / self.script), self.url, "--",
                *map(str, self.files)]
        cpu_before = self.server.cpu_seconds()
        out = run(argv, timeout=seconds + 30)
        extra = 0.0
        if self.drain:
            ended = time.monotonic()
            idle = wait_idle([self.server])
            if idle is None:
                raise BenchError(f"{self.label}: the server was still busy 60 s after the run")
            extra = max(0.0, idle - ended)
        cpu = self.server.cpu_seconds() - cpu_before
        r = bench_line(out, f"wrk for {self.label}")
        errors = {k: r[k] for k in ("connect_errors", "read_errors", "write_errors",
                                    "status_errors", "timeouts", "bad_bodies") if r[k]}
        if r["requests"] == 0 or r["checked"] != r["requests"]:
            errors["unchecked"] = r["requests"] - r["checked"]
        if not all(r["matched"]):
            errors["answer kinds never seen"] = r["matched"]
        self.server.check_alive()
        if errors or not r["requests"]:
            raise BenchError(f"{self.label}: {r['requests']} requests, errors {errors}")
        seconds_taken = r["duration_us"] / 1e6 + extra
        if self.drain:
            self.busy.append(cpu / seconds_taken)
        return Load(r["requests"] / seconds_taken, r["p50_us"] / 1000, r["p99_us"] / 1000,
                    cpu / r["requests"] * 1e6)


@dataclass
class ClientProbe:
    """One bench/clients.py run on core 1; ``latency``: the row compares p50s, not rates."""

    label: str
    argv: list[str]
    server: Server | None = None
    latency: bool = False
    last: dict[str, Any] = field(default_factory=dict)  # the last run's raw result

    def run(self, seconds: int) -> Load:
        out = run([*pinned(1), PY, CLIENTS, *self.argv, "--seconds", str(seconds)],
                  seconds + 120)
        r = self.last = bench_line(out, self.label)
        if self.server is not None:
            self.server.check_alive()
        if not r["ops"]:
            raise BenchError(f"{self.label}: no operation completed")
        p50, p99 = r["p50_us"] / 1000, r["p99_us"] / 1000
        return Load(p50 if self.latency else r["ops"] / r["seconds"], p50, p99,
                    r["cpu_s"] / r["ops"] * 1e6)


@dataclass
class FleetProbe:
    """One measurement by a bench/fanout.py process that holds its connections between runs:
    ``mode`` flat (``param`` messages in flight) or rate (``param`` messages/s). The value:
    deliveries/s, or with ``latency`` the p50 in ms; CPU: the servers' per delivery."""

    label: str
    proc: subprocess.Popen[str]
    log: Path
    mode: str
    param: float
    servers: list[Server]
    latency: bool = False
    query: str = ""  # added to the send URL's query string (bench/bare_ws.py: raw=1)
    max_seconds: int = 0  # if set, runs send for at most this long
    results: list[dict[str, Any]] = field(default_factory=list)

    def run(self, seconds: int) -> Load:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        seconds = min(seconds, self.max_seconds or seconds)
        try:
            self.proc.stdin.write(f"{self.mode} {seconds} {self.param} {self.query}\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # it exited: said below
        line = ""
        deadline = time.monotonic() + seconds + 120
        while time.monotonic() < deadline and not line.startswith("BENCH "):
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                line = self.proc.stdout.readline()
                if not line:
                    break
        for server in self.servers:
            server.check_alive()
        if not line.startswith("BENCH "):
            raise BenchError(f"{self.label}: no result (exit {self.proc.poll()}):\n"
                             f"{self.log.read_text()[-1500:]}")
        r = json.loads(line[6:])
        self.results.append(r)
        if r["failures"] or not r["deliveries"]:
            raise BenchError(f"{self.label}: {r['deliveries']:,} deliveries of "
                             f"{r['messages']:,} messages to {r['connections']:,} "
                             f"connections; {'; '.join(r['failures']) or 'none arrived'}")
        p50, p99 = r["p50_us"] / 1000, r["p99_us"] / 1000
        return Load(p50 if self.latency else r["deliveries"] / r["seconds"], p50, p99,
                    r["server_cpu_s"] / r["deliveries"] * 1e6)

    def busy(self) -> tuple[float, float]:
        """Medians over the runs: the client's CPU ÷ wall time, the servers' likewise."""
        return (statistics.median(r["client_busy"] for r in self.results),
                statistics.median(r["server_cpu_s"] / r["seconds"] for r in self.results))


def ensure_wrk(quick: bool) -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if quick and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing it (apt-get install -y wrk)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "install", "-y", "-q", "wrk"],
                     ["sh", "-c", "apt-get update -q && apt-get install -y -q wrk"]):
            if subprocess.run(argv, env=env, capture_output=True, timeout=180).returncode == 0:
                break
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchError("wrk is not installed: install it with `apt-get install wrk` "
                     "(Debian/Ubuntu) or `brew install wrk`")


def scrape(url: str) -> dict[str, float]:
    """Every sample of the server's metrics listener at ``url``: ``name{labels}`` -> value."""
    answer = httpx.get(url, timeout=10, trust_env=False)
    if answer.status_code != 200:
        raise BenchError(f"{url} answered {answer.status_code}: {answer.text[:200]!r}")
    return {name: float(value) for name, _, value in (
        line.rpartition(" ") for line in answer.text.splitlines()
        if line and not line.startswith("#"))}


def webhook_metrics(url: str, app: int) -> dict[str, float]:
    """App ``app``'s webhook delivery counters by outcome, and the queued gauge, from the
    server's metrics listener at ``url``."""
    answer = httpx.get(url, timeout=10, trust_env=False)
    if answer.status_code != 200 or "opentim_webhook_queued " not in answer.text:
        raise BenchError(f"{url} answered {answer.status_code}: "
                         f"{answer.text[:200]!r}")
    text = answer.text
    found = {"sent": 0.0, "dropped": 0.0, "failed": 0.0, "retried": 0.0}
    for line in text.splitlines():
        if line.startswith("opentim_webhook_deliveries_total{") and \
                f'sdkappid="{app}"' in line:
            found[line.split('outcome="')[1].split('"')[0]] = float(line.split()[-1])
        elif line.startswith("opentim_webhook_queued "):
            found["queued"] = float(line.split()[-1])
    return found


def received(receiver: Server) -> int:
    """How many callbacks the bare receiver has answered so far."""
    return int(httpx.get(receiver.url + "/count", timeout=10, trust_env=False).text)


def limiter_cost() -> str:
    """The limiter's own price per call, in process (HTTP figures above carry the noise)."""
    limiter, n = RateLimiter(), 200_000
    costs = {}
    for rate in (0, 1_000_000):
        start = time.perf_counter()
        for i in range(n):
            limiter.allow(1, "account_check", rate, i * 1e-6)
        costs[rate] = (time.perf_counter() - start) / n * 1e9
    return (f"RateLimiter.allow() in process: {costs[1_000_000]:.0f} ns/call at 1,000,000/s, "
            f"{costs[0]:.0f} ns/call with the limit off")
