"""A local 3-master Redis Cluster for the test session (and for bench/cluster_phase.py).

``LocalCluster.start()`` runs three ``redis-server --cluster-enabled yes`` on free loopback
ports (their cluster bus ports, +10000, free too), joins them with
``redis-cli --cluster create … --cluster-replicas 0 --cluster-yes``, and waits until every
node reports ``cluster_state:ok``; ``stop()`` shuts the servers down (by the pids they
wrote) and removes their directory. Nothing is persisted (``--save "" --appendonly no``).

``LocalCluster.start(cluster_mode=False)`` starts one plain ``redis-server`` the same way
(the bench's single-Redis baseline). Standard library only at import, and no import of the
``tests`` package, so the bench can load this file by its path. When ``redis-server`` /
``redis-cli`` are missing (or older than 7) or the cluster does not form, ``start`` raises
``ClusterUnavailable`` with the reason; the ``redis_cluster`` fixture in tests/conftest.py
turns that into a visible skip (a failure with OPENTIM_REQUIRE_SERVICES=1). The servers
are also stopped when the interpreter exits, if nobody did.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MASTERS = 3
BUS_OFFSET = 10_000  # Redis Cluster's bus port is the client port + 10000


class ClusterUnavailable(Exception):
    """The local cluster could not be started; the text says why."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int = MASTERS) -> list[int]:
    """``count`` ports each free with its bus port (random in 20000-45000, so that the
    bus port stays below 65536 and clear of the usual ephemeral range's busiest part)."""
    ports: list[int] = []
    for _ in range(2000):
        port = random.randrange(20_000, 45_000)
        if port in ports or port + BUS_OFFSET in ports:
            continue
        if _port_free(port) and _port_free(port + BUS_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ClusterUnavailable("no free port pairs for a local Redis Cluster")


def _cli(port: int, *args: str, timeout: float = 10) -> str:
    done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout + done.stderr


def server_version() -> tuple[int, ...] | None:
    """The installed redis-server's version, or None when it is missing."""
    if shutil.which("redis-server") is None:
        return None
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                         timeout=10, check=False).stdout
    for word in out.split():
        if word.startswith("v="):
            return tuple(int(x) for x in word[2:].split(".") if x.isdigit())
    return None


class LocalCluster:
    """Three masters on loopback; ``url`` names the first (any node would do). With
    ``cluster_mode=False``: one standalone Redis."""

    def __init__(self, ports: list[int], directory: Path, cluster_mode: bool = True) -> None:
        self.ports = ports
        self.dir = directory
        self.cluster_mode = cluster_mode

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def node_urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{p}/0" for p in self.ports]

    @classmethod
    def start(cls, masters: int = MASTERS, timeout: float = 30.0, *,
              cluster_mode: bool = True) -> LocalCluster:
        version = server_version()
        if version is None or shutil.which("redis-cli") is None:
            raise ClusterUnavailable("redis-server / redis-cli are not installed")
        if version < (7,):
            raise ClusterUnavailable(f"redis-server {'.'.join(map(str, version))} is older "
                                     "than 7 (OpenTIM needs Redis >= 7)")
        last = ""
        for _attempt in range(3):  # a port taken between probing and binding: again
            cluster = cls(free_cluster_ports(masters if cluster_mode else 1),
                          Path(tempfile.mkdtemp(prefix="opentim-cluster-")), cluster_mode)
            try:
                cluster._launch(timeout)
                atexit.register(cluster.stop)  # also if the caller never gets to stop it
                return cluster
            except ClusterUnavailable as exc:
                last = str(exc)
                cluster.stop()
        raise ClusterUnavailable(last)

    def _launch(self, timeout: float) -> None:
        for port in self.ports:
            mode = (["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                     "--cluster-node-timeout", "5000"] if self.cluster_mode else [])
            done = subprocess.run([
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", *mode,
                "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--daemonize", "yes",
                "--pidfile", str(self.dir / f"redis-{port}.pid"),
                "--logfile", str(self.dir / f"redis-{port}.log")],
                capture_output=True, text=True, timeout=30, check=False)
            if done.returncode != 0:
                raise ClusterUnavailable(f"redis-server on port {port} did not start: "
                                         f"{(done.stdout + done.stderr).strip()[:300]}")
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while "PONG" not in _cli(port, "ping"):
                if time.monotonic() > deadline:
                    raise ClusterUnavailable(f"redis-server on port {port} never answered; "
                                             f"see {self.dir}/redis-{port}.log")
                time.sleep(0.05)
        if not self.cluster_mode:
            return
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        done = subprocess.run(["redis-cli", "--cluster", "create", *nodes,
                               "--cluster-replicas", "0", "--cluster-yes"],
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise ClusterUnavailable("redis-cli --cluster create failed: "
                                     f"{(done.stdout + done.stderr).strip()[-300:]}")
        for port in self.ports:  # every node must see every slot served
            while True:
                info = _cli(port, "cluster", "info")
                if "cluster_state:ok" in info and "cluster_slots_ok:16384" in info:
                    break
                if time.monotonic() > deadline:
                    raise ClusterUnavailable(f"the cluster never reached cluster_state:ok "
                                             f"(node {port}: {info.strip()[:200]})")
                time.sleep(0.1)

    def stop(self) -> None:
        """Shut every node down (only the servers this cluster started) and remove its
        directory. Idempotent."""
        pids = []
        for port in self.ports:
            try:
                pids.append(int((self.dir / f"redis-{port}.pid").read_text().strip()))
            except (OSError, ValueError):
                continue
        for pid in pids:  # all at once: each takes a moment to shut down
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def node_urls(url: str) -> list[str]:
    """The URL of every master of the Redis Cluster that ``url`` is a node of, or just
    ``[url]`` for a single Redis (for tests that must reach each node, e.g. CLIENT LIST)."""
    from redis.asyncio.cluster import RedisCluster

    from opentim.presence.client import open_redis

    client = await open_redis(url)
    try:
        if not isinstance(client, RedisCluster):
            return [url]
        return [f"redis://{node.host}:{node.port}/0" for node in client.get_primaries()]
    finally:
        await client.aclose()
