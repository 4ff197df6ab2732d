"""The messages phase's own parts (bench/fanout.py, bench/bare_ws.py, bench/history.py),
small: the full measurement is `bench/run`'s."""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BENCH = Path(os.environ.get("OPENTIM_BENCH_DIR", "")
             or Path(__file__).resolve().parents[1] / "bench")
sys.path.insert(0, str(BENCH))
import history  # noqa: E402

FRAME = json.dumps({
    "event": "group_message", "GroupId": "g", "MsgSeq": 7, "MsgTime": 1700000000,
    "MsgRandom": 1, "From_Account": "host", "MsgBody": [{
        "MsgType": "TIMTextElem", "MsgContent": {"Text": "bench:" + "0" * 19 + " hi"}}],
}, separators=(",", ":")).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bare() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "bare_ws.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/", timeout=1, trust_env=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_every_connection_gets_every_broadcast_in_both_modes(bare: str) -> None:
    """20 raw connections join through the protocol's join_group; each flat-out and each
    paced message reaches all of them, and the delays are measured."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "fanout.py"), "--gateway", bare, "--send-url",
         f"{bare}/broadcast?group=g", "--sdkappid", "1", "--key", "x", "--group", "g",
         "--count", "20", "--template", base64.b64encode(FRAME).decode()],
        input="flat 1 2\nrate 1 20\nflat 1 2 raw=1\nquit\n", capture_output=True,
        text=True, timeout=60, check=True).stdout.splitlines()
    assert out[0].startswith("READY ")
    results = [json.loads(line[6:]) for line in out if line.startswith("BENCH ")]
    assert len(results) == 3
    for r in results:
        assert r["failures"] == [] and r["lost"] == 0 and r["stray"] == 0
        assert r["messages"] > 0 and r["deliveries"] == 20 * r["messages"]
        assert 0 < r["p50_us"] <= r["p99_us"]
    assert results[1]["messages"] == 20  # 20 a second for 1 s


def newest_page(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT msg_time, msg_seq, msg_random FROM c2c_messages WHERE sdkappid = 1 AND "
            "user_a = 'bench_h_a' AND user_b = 'bench_h_b' ORDER BY msg_time DESC, "
            "msg_seq DESC, msg_random DESC LIMIT 100").fetchall()


def test_history_fill_adds_older_messages_behind_the_newest_page(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    subprocess.run([sys.executable, "-m", "opentim", "app", "create", "--sdkappid", "1",
                    "--key", "ab" * 32, "--db", f"sqlite:///{db}"], check=True,
                   capture_output=True, timeout=60)
    pair = ("bench_h_b", "bench_h_a")  # stored in key order whichever way it is given
    history.fill(f"sqlite:///{db}", 1, pair, first=0, count=1000, newest=1_700_000_000)
    page = newest_page(db)
    assert len(page) == 100 and page[0][0] == 1_700_000_000
    history.fill(f"sqlite:///{db}", 1, pair, first=1000, count=900, newest=1_700_000_000,
                 others=8100)
    assert newest_page(db) == page
    with sqlite3.connect(db) as conn:
        total, own = conn.execute(
            "SELECT COUNT(*), SUM(user_a = 'bench_h_a' AND user_b = 'bench_h_b') "
            "FROM c2c_messages").fetchone()
    assert (total, own) == (10_000, 1900)
