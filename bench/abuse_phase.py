"""The abuse phase (run only when named: ``bench/run --only abuse``): a normal client's
requests timed while abusers of one kind at a time work against the same `opentim serve`
process (SQLite, presence in memory, every limit at its default).

The normal client (bench/abuse.py probe, core 1) holds one gateway connection joined to an
AVChatRoom and one keep-alive HTTP connection, and alternates a heartbeat round trip and a
REST ``get_online_member_num`` of that room every 50 ms. For each kind, in order: a quiet
window (``--abuse-seconds`` / 2, the baseline), then the abuser (bench/abuse.py, core 1 at
nice 10) is started and, once its connections are open, the same client is timed for
``--abuse-seconds``; then the abuser stops, the server is given until its connections are
back to the one normal client (at most 60 s), and a short window is timed again. The row
compares p50 (and p99) under abuse with quiet; the notes give the server's RSS before,
the most during and after, what the abuser saw (opened, closed by the server, how long each
was held, close codes) and the server's own counters (the metrics listener) over the kind.

Kinds: unauthenticated WebSockets (``unauth``), slowloris (``slowloris``), frames beyond
max_frame_bytes (``bigframe``), and clients that never read while messages are pushed to
them (``noread``).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends import Backend
from probes import Load, scrape, wait_idle
from processes import BENCH, BenchError, Processes, Server
from report import Row, dur
from scenarios import Call, av_group, import_accounts

from opentim.settings import Settings

if TYPE_CHECKING:
    from harness import Suite

ABUSE = str(BENCH / "abuse.py")
GROUP, PROBER, SENDER, PREFIX = "bench_abuse", "bench_n_0", "bench_n_host", "bench_a_"
FEW = 50  # bigframe and noread connections
SETTINGS = Settings()  # the server runs with every default: these are its limits


def abusers(kind: str, b: Backend) -> list[str]:
    """bench/abuse.py's argv for ``kind``."""
    assert b.server is not None
    common = ["--url", b.server.url, "--sdkappid", str(b.sdkappids["off"])]
    signed = [*common, "--key", b.keys["off"], "--prefix", PREFIX, "--count", str(FEW)]
    send = Call("group_open_http_svc/send_group_msg", {})
    return {"unauth": ["unauth", *common, "--count", "3000"],
            "slowloris": ["slowloris", *common, "--count", "3000", "--trickle", "1"],
            "bigframe": ["bigframe", *signed, "--size", str(4 * SETTINGS.max_frame_bytes)],
            "noread": ["noread", *signed, "--group", GROUP, "--send-url", b.url(send),
                       "--sender", SENDER, "--rate", "100"]}[kind]


def phase_abuse(suite: Suite) -> None:
    """a normal client's REST and heartbeat latency, quiet and under each kind of abuse"""
    b = Backend("abuse", f"sqlite:///{suite.tmp}/abuse.db", 1400001000)
    b.create_apps({"off": ["--group-msg-rate", "0"]})  # noread's 100/s would be refused
    server = b.start(suite.procs, suite.tmp / "abuse.log")
    for call in (*import_accounts(PREFIX, FEW), Call(
            "im_open_login_svc/multiaccount_import",
            {"AccountList": [{"UserID": PROBER}, {"UserID": SENDER}]}), av_group(GROUP)):
        b.post(call)
    suite.note(f"abuse: the server's limits (defaults): header_timeout "
               f"{SETTINGS.header_timeout:g} s, body_timeout {SETTINGS.body_timeout:g} s, "
               f"max_connections {SETTINGS.max_connections:,}, heartbeat_timeout "
               f"{SETTINGS.heartbeat_timeout:g} s, max_frame_bytes "
               f"{SETTINGS.max_frame_bytes // 1024} KiB, push_backlog_bytes "
               f"{SETTINGS.push_backlog_bytes >> 20} MiB, gateway_write_timeout "
               f"{SETTINGS.gateway_write_timeout:g} s; its descriptor limit: "
               f"{open_files(server)}")
    read = Call("group_open_http_svc/get_online_member_num", {"GroupId": GROUP})
    log = suite.tmp / "abuse-probe.log"
    prober = suite.procs.client(["probe", *b.gateway_args("off"), "--group", GROUP,
                                 "--identifier", PROBER, "--rest-url", b.url(read),
                                 "--server-pid", str(server.proc.pid)],
                                log, script=ABUSE, commands=True)
    suite.procs.ready(prober, log, 60)
    for kind in ("unauth", "slowloris", "bigframe", "noread"):
        rows = [suite.row(f"abuse_{kind}", backend) for backend in
                ("REST get_online_member_num", "gateway heartbeat")]
        try:
            measure(suite, b, server, prober, log, kind, rows)
        except BenchError as exc:
            suite.fail(rows, exc)
        server.check_alive()
    suite.note(f"abuse: the server's log over the four kinds: {server.log_summary()}")


def open_files(server: Server) -> str:
    for line in Path(f"/proc/{server.proc.pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return f"{int(line.split()[3]):,} open files"
    return "unknown"


def timed(proc: subprocess.Popen[str], log: Path, seconds: float) -> dict[str, Any]:
    """One ``run`` of the probe: its BENCH result."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(f"run {seconds}\n")
        proc.stdin.flush()
    except OSError:
        pass  # it exited: said by ready()
    line = Processes.ready(proc, log, seconds + 60, prefix="BENCH")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
    if result["closed"] is not None:
        raise BenchError(f"the normal client's connection was closed ({result['closed']}): "
                         f"{result['failures']}")
    return result


def measure(suite: Suite, b: Backend, server: Server, prober: subprocess.Popen[str],
            probe_log: Path, kind: str, rows: list[Row]) -> None:
    seconds = suite.args.abuse_seconds
    wait_idle([server])
    before_counts, rss_before = scrape(b.metrics_url), server.rss()
    quiet = timed(prober, probe_log, seconds / 2)
    log = suite.tmp / f"abuse-{kind}.log"
    abuser = suite.procs.client(abusers(kind, b), log, script=ABUSE, commands=True)
    ramp = json.loads(suite.procs.ready(abuser, log, 300).removeprefix("READY "))["ramp_s"]
    during = timed(prober, probe_log, seconds)
    assert abuser.stdin is not None
    abuser.stdin.write("stop\n")
    abuser.stdin.flush()
    tally = json.loads(suite.procs.ready(abuser, log, 90, prefix="BENCH")
                       .removeprefix("BENCH "))
    suite.procs.stop_one(abuser)
    stopped = time.monotonic()
    while scrape(b.metrics_url)["opentim_gateway_connections"] > 1 and \
            time.monotonic() - stopped < 60:
        time.sleep(0.5)
    settled = time.monotonic() - stopped
    after = timed(prober, probe_log, 5)
    rss_after = server.rss()
    counts = scrape(b.metrics_url)
    changed = {name.removeprefix("opentim_"): counts[name] - before_counts.get(name, 0.0)
               for name in counts if ("closed" in name or "shed" in name or "late" in name)
               and counts[name] != before_counts.get(name, 0.0)}
    for row, side in zip(rows, ("rest", "heartbeat"), strict=True):
        row.kind, row.unit = "latency", "ms"
        row.base_label = "the same client, quiet, just before"
        q, d = quiet[side], during[side]
        if quiet[side]["errors"] or during[side]["errors"]:
            raise BenchError(f"abuse {kind}: the normal client's {side} failed: "
                             f"{during['failures'] or quiet['failures']}")
        row.runs.append((Load(d["p50_us"] / 1000, d["p50_us"] / 1000, d["p99_us"] / 1000),
                         Load(q["p50_us"] / 1000, q["p50_us"] / 1000, q["p99_us"] / 1000)))

    def shown(side: str, r: dict[str, Any]) -> str:
        x = r[side]
        return (f"{dur(x['p50_us'] / 1000)} / {dur(x['p99_us'] / 1000)} / max "
                f"{dur(x['max_us'] / 1000)} (n {x['n']:,})")

    mib = 2 ** 20
    suite.note(
        f"abuse {kind}: {seconds:g} s under abuse after a {ramp:.1f} s ramp. Normal client "
        f"p50 / p99 / max, quiet → under abuse → after: REST {shown('rest', quiet)} → "
        f"{shown('rest', during)} → {shown('rest', after)}; heartbeat "
        f"{shown('heartbeat', quiet)} → {shown('heartbeat', during)} → "
        f"{shown('heartbeat', after)}. Server RSS {rss_before / mib:.1f} MiB before, "
        f"{during['rss_max'] / mib:.1f} MiB at most during, {rss_after / mib:.1f} MiB "
        f"after ({settled:.1f} s for its connections to drop back to 1). The abuser: "
        f"{tally['opened']:,} opened, {tally['closed_by_server']:,} closed by the server "
        f"(held p50 {tally['held_p50_s']:.2f} s, max {tally['held_max_s']:.2f} s; "
        f"{tally['codes']}), {tally['open_at_stop']:,} open when it stopped, errors "
        f"{tally['errors'] or 'none'}"
        + (f", {tally['messages_sent']:,} messages sent ({tally['messages_failed']} "
           "failed)" if "messages_sent" in tally else "")
        + f". Server counters: {json.dumps(changed) if changed else 'none changed'}")
