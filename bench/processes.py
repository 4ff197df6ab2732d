"""The processes a run starts: servers and clients, each pinned to a core and in its own
process group, and the signals that unwind the run (SIGTERM, --time-limit) so that every
``finally`` block stops what it started."""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
CLIENTS = str(BENCH / "clients.py")
BARE = str(BENCH / "bare.py")
BARE_WS = str(BENCH / "bare_ws.py")
FANOUT = str(BENCH / "fanout.py")
LOG_LEVEL = "warning"  # `opentim serve` defaults to info


class BenchError(Exception):
    pass


class Terminated(BaseException):
    """SIGTERM: unwinds like Ctrl-C, so every finally block stops what it started."""


class OverTime(BaseException):
    """--time-limit passed: the whole run stops (a phase's BenchError handler won't catch it)."""


def on_term(*_: Any) -> None:
    raise Terminated


def over_time(*_: Any) -> None:
    raise OverTime


def unwind_on_signals(time_limit: int) -> None:
    """SIGTERM raises Terminated; ``time_limit`` seconds from now SIGALRM raises OverTime."""
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, over_time)
    signal.alarm(time_limit)


def pinned(core: int) -> list[str]:
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def free_port(avoid: Sequence[int] = ()) -> int:
    """A port free now on 127.0.0.1, other than ``avoid`` (ports already handed out)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


def raise_nofile() -> None:
    """`ulimit -n <hard>` for this process and so for every server and client it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (utime, stime in /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise BenchError(f"{self.name}: no VmRSS")

    def log_summary(self) -> str:
        """How much the server has logged so far (at the run's level): lines, tracebacks."""
        text = self.log.read_text(errors="replace")
        return (f"{text.count(chr(10)):,} log lines at level {LOG_LEVEL}, "
                f"{text.count('Traceback'):,} tracebacks")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} server exited ({self.proc.returncode}):\n"
                             + self.log.read_text()[-2000:])


@dataclass
class Processes:
    """Everything the current phase started; stop() ends each by its own process group."""

    started: list[subprocess.Popen[Any]] = field(default_factory=list)

    def server(self, name: str, argv: list[str], log: Path, *, core: int = 0,
               timeout: float = 60, avoid: Sequence[int] = ()) -> Server:
        port = free_port(avoid)
        with log.open("wb") as out:
            proc = subprocess.Popen([*pinned(core), *argv, "--port", str(port)], cwd=ROOT,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.started.append(proc)
        server = Server(name, port, proc, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server.check_alive()
            with contextlib.suppress(httpx.TransportError):
                httpx.get(server.url + "/", timeout=2, trust_env=False)
                return server
            time.sleep(0.1)
        raise BenchError(f"{name} server did not answer within {timeout:.0f} s; see {log}")

    def client(self, argv: list[str], log: Path, *, script: str = CLIENTS,
               commands: bool = False) -> subprocess.Popen[str]:
        """A client process (bench/clients.py unless ``script``) on core 1 that prints READY
        when it is set up; ``commands``: its stdin is a pipe the run writes commands to."""
        with log.open("w") as err:
            proc = subprocess.Popen([*pinned(1), PY, script, *argv], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=err, start_new_session=True,
                                    stdin=subprocess.PIPE if commands else subprocess.DEVNULL)
        self.started.append(proc)
        return proc

    @staticmethod
    def ready(proc: subprocess.Popen[str], log: Path, timeout: float,
              prefix: str = "READY") -> str:
        """Wait for the client's line starting with ``prefix``; returns that line."""
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                line = proc.stdout.readline()
                if line.startswith(prefix):
                    return line
                if not line:
                    break
        argv = proc.args if isinstance(proc.args, list) else [proc.args]
        raise BenchError(f"client {' '.join(map(str, argv))[-120:]}: no {prefix} line "
                         f"(exit {proc.poll()}):\n{log.read_text()[-1500:]}")

    def stop_one(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            killpg(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            killpg(proc, signal.SIGKILL)
            proc.wait(timeout=5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def stop(self) -> None:
        for proc in reversed(self.started):  # all told first: they stop in parallel
            if proc.poll() is None:
                killpg(proc, signal.SIGTERM)
        for proc in reversed(self.started):
            self.stop_one(proc)
        self.started.clear()


def killpg(proc: subprocess.Popen[Any], sig: int) -> None:
    """Signal a child's whole process group (it may have exited already)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a child to completion in its own process group; on timeout or interruption the
    group gets SIGINT (time to clean up its own children), then SIGKILL. ``env``: added to
    this process's environment."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, **env} if env else None)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        killpg(proc, signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            killpg(proc, signal.SIGKILL)
            proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from None
        raise
    if proc.returncode != 0:
        raise BenchError(f"failed ({proc.returncode}): {' '.join(argv)}\n"
                         f"{out[-2000:]}\n{err[-2000:]}")
    return out
