"""SIGKILL a real server while it imports members; after a restart nothing is half-applied.

Every request imports its own accounts (plus a few that do not exist), so a request that was
applied in part would show as a request whose accounts are only partly present.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
from TLSSigAPIv2 import TLSSigAPIv2

from tests.helpers import free_port

SVC = "group_open_http_svc"
REQUESTS = 60
REAL_PER_REQUEST = 290
GHOSTS_PER_REQUEST = 10
CLIENTS = 6
KILL_AFTER_ACKS = 12  # then SIGKILL, with about CLIENTS requests in flight
OPENTIM = Path(sys.executable).with_name("opentim")


class Api:
    """Admin calls on one app, with a UserSig from Tencent's own library."""

    def __init__(self, port: int, sdkappid: int, key: str) -> None:
        sig = TLSSigAPIv2(sdkappid, key).gen_sig("administrator")
        self.params = {"sdkappid": sdkappid, "identifier": "administrator", "usersig": sig,
                       "random": 1, "contenttype": "json"}
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)

    async def post(self, command: str, body: bytes) -> dict[str, Any]:
        response = await self.http.post(f"/v4/{command}", content=body, params=self.params)
        return msgspec.json.decode(response.content)

    async def ok(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self.post(command, msgspec.json.encode(body))
        assert reply["ErrorCode"] == 0, reply
        return reply


@contextlib.asynccontextmanager
async def running_server(db_url: str, port: int,
                         log: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([str(OPENTIM), "serve", "--db", db_url, "--port", str(port),
                                 "--log-level", "warning"], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"server exited: {log.read_text()[-2000:]}"
            try:
                async with httpx.AsyncClient() as probe:
                    await probe.post(f"http://127.0.0.1:{port}/v4/x/y", content=b"{}")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start in 30 s"
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def read_roster(api: Api, group_id: str) -> tuple[int, set[str]]:
    present: set[str] = set()
    body: dict[str, Any] = {"GroupId": group_id, "Limit": 6000, "MemberInfoFilter": ["Role"]}
    while True:
        reply = await api.ok(f"{SVC}/get_group_member_info", body)
        present.update(m["Member_Account"] for m in reply["MemberList"])
        if not reply["Next"]:
            return reply["MemberNum"], present
        body["Next"] = reply["Next"]


async def stream(api: Api, bodies: list[bytes], acked: dict[int, list[int]],
                 enough: asyncio.Event) -> list[int]:
    """CLIENTS workers send the requests in order until the server dies.

    Returns the requests that were in flight when it died (sent, never answered).
    """
    queue = iter(range(len(bodies)))
    cut_off: list[int] = []

    async def worker() -> None:
        for index in queue:
            try:
                reply = await api.post(f"{SVC}/import_group_member", bodies[index])
            except httpx.TransportError:
                cut_off.append(index)
                return  # the server is gone: this request is unacknowledged
            assert reply["ErrorCode"] == 0, reply
            acked[index] = [m["Result"] for m in reply["MemberList"]]
            if len(acked) >= KILL_AFTER_ACKS:
                enough.set()

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return cut_off


async def test_sigkill_mid_import_leaves_no_half_applied_request(db_url: str,
                                                                 tmp_path: Path) -> None:
    sdkappid = 1_500_000_000 + secrets.randbelow(400_000_000)  # a fresh tenant on shared PG
    key = secrets.token_hex(32)
    subprocess.run([str(OPENTIM), "app", "create", "--sdkappid", str(sdkappid), "--key", key,
                    "--rate-limit", "0", "--db", db_url], check=True, capture_output=True)
    port = free_port()
    log = tmp_path / "server.log"
    real = [[f"r{i:02d}m{j:03d}" for j in range(REAL_PER_REQUEST)] for i in range(REQUESTS)]
    bodies = [msgspec.json.encode({"GroupId": "", "MemberList": []})] * REQUESTS
    acked: dict[int, list[int]] = {}

    async with running_server(db_url, port, log) as proc:
        api = Api(port, sdkappid, key)
        accounts = list(itertools.chain.from_iterable(real))
        for start in range(0, len(accounts), 100):
            await api.ok("im_open_login_svc/multiaccount_import",
                         {"AccountList": accounts[start:start + 100]})
        group_id = (await api.ok(f"{SVC}/create_group",
                                 {"Type": "Community", "Name": "crash"}))["GroupId"]
        bodies = [msgspec.json.encode({"GroupId": group_id, "MemberList": [
            {"Member_Account": a} for a in
            [*members, *(f"ghost{i}-{g}" for g in range(GHOSTS_PER_REQUEST))]]})
            for i, members in enumerate(real)]
        enough = asyncio.Event()
        streaming = asyncio.create_task(stream(api, bodies, acked, enough))
        await asyncio.wait_for(enough.wait(), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        cut_off = await asyncio.wait_for(streaming, timeout=30)
        await api.http.aclose()
    assert KILL_AFTER_ACKS <= len(acked) < REQUESTS, "the kill must land mid-stream"
    assert cut_off, "some requests must have been in flight at the kill"

    async with running_server(db_url, port, log):
        api = Api(port, sdkappid, key)
        member_num, present = await read_roster(api, group_id)
        applied = set()
        for index, members in enumerate(real):
            there = present.intersection(members)
            assert there in (set(), set(members)), f"request {index} is half-applied"
            if there:
                applied.add(index)
            if index in acked:
                assert acked[index] == [1] * REAL_PER_REQUEST + [0] * GHOSTS_PER_REQUEST
                assert index in applied, f"acknowledged request {index} was lost"
        assert member_num == len(present) == len(applied) * REAL_PER_REQUEST
        # Retrying everything is safe: applied requests answer 2, the others import now.
        for index, body in enumerate(bodies):
            reply = await api.post(f"{SVC}/import_group_member", body)
            expected = 2 if index in applied else 1
            assert [m["Result"] for m in reply["MemberList"]] == \
                [expected] * REAL_PER_REQUEST + [0] * GHOSTS_PER_REQUEST, index
        member_num, present = await read_roster(api, group_id)
        assert member_num == len(present) == REQUESTS * REAL_PER_REQUEST
        await api.http.aclose()
