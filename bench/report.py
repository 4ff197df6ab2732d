"""The run's output: one Row per scenario and backend, the table of them with same-run
ratios, the targets summary, the machine line, and the copy written to bench/results/."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from probes import Load, Probe, limiter_cost
from processes import BENCH, LOG_LEVEL, pinned
from scenarios import Scenario


@dataclass
class Row:
    """One line of the table: a scenario on one backend, its probes and their paired runs."""

    scenario: Scenario
    backend: str
    target: Probe | None = None
    base: Probe | None = None
    base_label: str = "bare ASGI, same bytes"
    unit: str = "req/s"
    kind: str = "rate"  # rate: higher is better; size: bytes per unit; latency: p50 in ms
    runs: list[tuple[Load, Load]] = field(default_factory=list)  # (measured, baseline)
    status: str = ""  # why there are no numbers, when there are none
    label: str = ""  # the scenario's name with this run's sizes filled in
    same_cpu: bool = True  # False: the baseline's CPU is another process's (Redis)


def dur(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:,.2f} ms" if abs(ms) >= 1 else f"{ms * 1000:,.0f} µs"


def size(n: float) -> str:
    return f"{n / 1024:,.1f} KB" if abs(n) >= 1024 else f"{n:,.0f} B"


def med(values: Iterator[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def cells(row: Row, loads: list[Load]) -> list[str]:
    value = statistics.median(x.value for x in loads)
    per = f"/{row.unit}" if row.unit else ""  # (a soak row's unit is empty: a whole size)
    shown = {"rate": f"{value:,.0f} {row.unit}", "size": size(value) + per,
             "latency": f"{dur(value)} p50"}[row.kind]
    cpu = med(x.cpu_us for x in loads)
    return [shown, dur(med(x.p50_ms for x in loads)), dur(med(x.p99_ms for x in loads)),
            "—" if cpu is None else f"{cpu:,.1f} µs"]


def render(rows: list[Row]) -> str:
    head = ("| scenario | backend | result | p50 | p99 | server CPU/op | baseline | base result "
            "| base p50 | base p99 | base CPU/op | ratio (range) | added per op | added CPU/op |")
    lines = [head, "|---|---|" + "---:|" * 4 + "---|" + "---:|" * 7]
    for r in rows:
        if not r.runs or r.status:
            lines.append(f"| {r.label} | {r.backend} | {r.status or 'no result'} |"
                         + " — |" * 11)
            continue
        ratios = [x.value / y.value for x, y in r.runs]
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        if r.kind == "rate":
            per_op = statistics.median(1e6 / x.value - 1e6 / y.value for x, y in r.runs)
            added = f"{per_op:+,.1f} µs"
        elif r.kind == "size":
            diff = statistics.median(x.value - y.value for x, y in r.runs)
            added = ("+" if diff >= 0 else "−") + size(abs(diff))
        else:
            diff = statistics.median(x.value - y.value for x, y in r.runs)
            added = ("+" if diff >= 0 else "−") + dur(abs(diff))
        cpu = med(x.cpu_us - y.cpu_us if x.cpu_us is not None and y.cpu_us is not None
                  and r.same_cpu else None for x, y in r.runs)
        row = [r.label, r.backend, *cells(r, [x for x, _ in r.runs]), r.base_label,
               *cells(r, [y for _, y in r.runs]), f"{statistics.median(ratios):.2f}×{spread}",
               added, "—" if cpu is None else f"{cpu:+,.1f} µs"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets(rows: list[Row]) -> list[str]:
    """The issue's targets, each with its same-run ratio; reported, never enforced."""
    out = []

    def find(name: str, backend: str) -> Row | None:
        return next((r for r in rows if r.label.startswith(name)
                     and r.backend == backend and r.runs and not r.status), None)

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    for name in ("get_members, 500-row", "get_members, Mark 1000"):
        memory, redis = find(name, "memory"), find(name, "redis")
        if memory:
            ratio = statistics.median(x.value / y.value for x, y in memory.runs)
            out.append(f"- {name}…, memory backend: {ratio:.2f}× the bare re-encoding app "
                       f"(target ≥ 0.50×): {verdict(ratio >= 0.5)}")
        if memory and redis:
            pairs = list(zip(redis.runs, memory.runs, strict=False))
            direct = statistics.median(r[0].value / m[0].value for r, m in pairs)
            normal = statistics.median((r[0].value / r[1].value) / (m[0].value / m[1].value)
                                       for r, m in pairs)
            out.append(f"- {name}…, Redis backend: {direct:.2f}× memory's req/s (memory is "
                       f"{1 / direct:.2f}× faster; each against its own bare baseline: "
                       f"{normal:.2f}×) (target: within 2×): {verdict(direct >= 0.5)}")
    for r in rows:
        special = r.scenario.special
        if not r.runs or r.status:
            continue
        ratio = statistics.median(x.value / y.value for x, y in r.runs)
        if special.startswith("fanout_") and special != "fanout_rate":
            out.append(f"- {r.label.split(' (')[0]} [{r.backend}]: {ratio:.2f}× the bare "
                       f"broadcast's deliveries/s (target ≥ 0.50×): {verdict(ratio >= 0.5)}")
        elif special == "fanout_rate":
            p99 = statistics.median(x.p99_ms or 0.0 for x, _ in r.runs)
            base = statistics.median(y.p99_ms or 0.0 for _, y in r.runs)
            out.append(f"- {r.label}: p99 {dur(p99)} (the bare broadcast's: {dur(base)}) "
                       f"(target < 50 ms): {verdict(p99 < 50)}")
        elif special == "history":
            out.append(f"- {r.label.split(' (')[0]} [{r.backend}]: {ratio:.2f}× the rate at "
                       f"10k (target: flat, ≥ 0.85×): {verdict(ratio >= 0.85)}")
    for r in rows:
        if r.scenario.special == "imports" and r.runs:
            ratio = r.runs[0][0].value / r.runs[0][1].value
            out.append(f"- import_group_member, {r.backend}: {ratio:.0%} of the {r.base_label}"
                       f" (target ≥ 50%): {verdict(ratio >= 0.5)}")
    return out


def machine(versions: list[str], wrk_bin: str) -> str:
    import uvicorn
    import websockets

    def first(path: str, key: str) -> str:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return "?"

    wrk_version = subprocess.run([wrk_bin, "-v"], capture_output=True, text=True).stdout
    mem_gib = int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20
    return (f"{os.cpu_count()} cores ({first('/proc/cpuinfo', 'model name')}), "
            f"{mem_gib:.1f} GiB RAM, Linux {platform.release()}; Python "
            f"{platform.python_version()}, uvicorn {uvicorn.__version__}, websockets "
            f"{websockets.__version__}; {wrk_version.split(' [')[0].strip() or 'wrk'}; "
            f"open files {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; "
            + ", ".join(versions))


def compose(argv: list[str], args: argparse.Namespace, rows: list[Row], versions: list[str],
            databases: list[str], notes: list[str], wrk_bin: str, started: float) -> str:
    """The whole report: what ran where, the table, how to read it, targets and notes."""
    mode = "quick" if args.quick else "full"
    pin = ("servers on core 0, wrk and clients on core 1" if pinned(0)
           else "no CPU pinning (taskset missing)")
    return "\n".join([
        f"OpenTIM bench ({mode}): `{' '.join(['bench/run', *argv])}`",
        f"machine: {machine(versions, wrk_bin)}",
        *(f"databases: {line}" for line in databases),
        f"load: wrk -t1 -c{args.connections}; REST {args.rounds} round(s), presence "
        f"{args.presence_rounds} round(s), {args.seconds} s per run, medians; {pin}; server "
        f"log level {LOG_LEVEL}",
        "",
        render(rows),
        "",
        "ratio: measured ÷ baseline, median (and range) of paired rounds; for memory and "
        "latency rows lower is better. Added per op: 1/rate − 1/base rate (rates), or the "
        "difference (sizes, latencies); added CPU: the server process's own CPU time per "
        "operation minus the baseline's (/proc; excludes PostgreSQL's and Redis's processes, "
        "except in raw-Redis baselines, which show Redis's own CPU).",
        "",
        "targets (reported, not enforced):",
        *targets(rows),
        "",
        limiter_cost(),
        *notes,
        f"took {time.monotonic() - started:.0f} s",
    ])


def save(report: str, import_output: str, mode: str) -> Path:
    """bench/results/<time>-<mode>.md: the report and the import script's own table."""
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = results / f"{stamp}-{mode}.md"
    path.write_text(f"{report}\n\n{import_output}")
    return path
