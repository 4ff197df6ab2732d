"""`opentim crowd` end to end: the real command, as a process, against a live server.

The viewers are real gateway connections; what they do is checked through REST
(get_members, get_online_member_num) and through a real client in the same room.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from typer.testing import CliRunner

from opentim.cli import cli
from opentim.client.rest import RestClient
from opentim.crowd import CrowdOptions
from opentim.crowd import run as run_crowd
from opentim.domain.apps import App
from tests.helpers import (
    LiveServer,
    all_pages,
    create_group,
    eventually,
    free_port,
    import_accounts,
    live_server,
    online_num,
)

OPENTIM = [sys.executable, "-m", "opentim"]
VIEWERS = [f"viewer-{i}" for i in range(1, 51)]


@dataclass
class Output:
    code: int
    out: str
    err: str


async def _run(*args: str) -> Output:
    """The command to its end, for the refusals (which exit before any viewer connects):
    the same typer command, in a thread (it runs its own event loop), without the second
    of imports a process costs."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["crowd", *args])
    return Output(result.exit_code, result.stdout, result.stderr)


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    result: list[Output]

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(how)


@contextlib.asynccontextmanager
async def crowd(srv: LiveServer, app: App, *args: str) -> AsyncIterator[Running]:
    """A running crowd; the block stops it (``Running.stop``); its output is then in
    ``Running.result`` (SIGKILL after 20 s)."""
    proc = await asyncio.create_subprocess_exec(
        *OPENTIM, "crowd", "--server", srv.url, "--sdkappid", str(app.sdkappid), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    result: list[Output] = []
    try:
        yield Running(proc, result)
    finally:
        try:
            async with asyncio.timeout(20):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
        assert proc.returncode is not None
        result.append(Output(proc.returncode, out.decode(), err.decode()))


def totals(out: str) -> dict[str, int]:
    """The counts of the last line: joins, leaves, reconnects, errors, received, sent."""
    line = next(x for x in out.splitlines() if x.startswith("crowd: stopped:"))
    return {k: int(v) for k, v in re.findall(
        r"(joins|leaves|reconnects|errors|received|sent|churned) (\d+)", line)}


async def test_crowd_fills_the_room_holds_it_chats_and_logs_out(presence_backend: str,
                                                                 tmp_path) -> None:  # type: ignore[no-untyped-def]
    # heartbeat_timeout 1.5 s: the viewers stay only if they heartbeat (every 0.5 s).
    # The key comes from the server's database or from --key, the stop from SIGINT or
    # SIGTERM: one of each per backend.
    db = f"sqlite:///{tmp_path}/crowd.db"
    async with live_server(db, presence_backend, heartbeat_timeout=1.5) as srv:
        app = await srv.new_app(rate_limit=0)
        key, how = (["--db", db], signal.SIGINT) if presence_backend == "memory" else \
            (["--key", app.secret_key], signal.SIGTERM)
        async with srv.client(app) as tim:
            await import_accounts(tim, "watcher")
            async with crowd(srv, app, *key, "--group", "crowd-room", "--users", "50",
                             "--chatter", "10") as running:
                await eventually(lambda: _online_is(tim, "crowd-room", 50), "50 viewers", 20)
                assert sorted(await all_pages(tim, "crowd-room")) == sorted(VIEWERS)
                info = (await tim.ok("group_open_http_svc/get_group_info",
                                     {"GroupIdList": ["crowd-room"]}))["GroupInfo"][0]
                assert info["Type"] == "AVChatRoom"
                async with srv.connect(app, "watcher") as watcher:
                    await watcher.join_group("crowd-room")
                    started = time.monotonic()
                    got = [await watcher.next_message(timeout=5) for _ in range(10)]
                    assert all(m["event"] == "group_message" for m in got)
                    assert all(m["From_Account"] in VIEWERS for m in got)
                    assert all(m["MsgBody"][0]["MsgType"] == "TIMTextElem" for m in got)
                    # Past a heartbeat timeout, every viewer is still there.
                    await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
                    assert await online_num(tim, "crowd-room") == 51
                    # A kicked viewer stays offline; the others stay.
                    await tim.ok("im_open_login_svc/kick", {"UserID": "viewer-7"})
                    await asyncio.sleep(1.5)  # longer than a reconnect's first wait
                    listed = await all_pages(tim, "crowd-room")
                    assert "viewer-7" not in listed
                    assert len(listed) == 50
                    # Stopped: every viewer logs out, the watcher stays.
                    running.stop(how)
                    await eventually(lambda: _listed_is(tim, "crowd-room", ["watcher"]),
                                     "the viewers gone", 5)
    done = running.result[0]
    assert done.code == 0, done
    assert "group 'crowd-room' did not exist: created it as an AVChatRoom" in done.out
    assert "all 50 viewers online after" in done.out
    assert "viewer-7: kicked (close 4013); not reconnecting" in done.out
    assert "49 of 49 connected viewers logged out" in done.out
    counts = totals(done.out)
    assert counts["reconnects"] == 0 and counts["errors"] == 0, done
    assert counts["joins"] == 50 and counts["leaves"] == 50
    assert counts["sent"] >= 10 and counts["received"] >= counts["sent"]
    assert done.err == ""


async def test_crowd_churns_around_the_target_and_a_cancel_logs_everyone_out(
        presence_backend: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The async entry point in this process (the same code the command runs).
    async with live_server(f"sqlite:///{tmp_path}/crowd.db", presence_backend) as srv:
        app = await srv.new_app(rate_limit=0)
        async with srv.client(app) as tim:
            room = await create_group(tim, "AVChatRoom")
            options = CrowdOptions(server=srv.url, sdkappid=app.sdkappid, key=app.secret_key,
                                   admin="administrator", group=room, users=50, churn=True,
                                   join_rate=100)
            out = io.StringIO()
            task = asyncio.create_task(run_crowd(options, stop=asyncio.Event(), out=out))
            await eventually(lambda: _online_is(tim, room, 50), "50 viewers", 20)
            seen = []
            for _ in range(30):
                seen.append(await online_num(tim, room))
                await asyncio.sleep(0.1)
            assert min(seen) < 50, seen  # moving...
            assert min(seen) >= 40, seen  # ...around the target
            assert max(seen[15:]) >= 47, seen  # and back towards it
            task.cancel()  # everyone offline within seconds
            await eventually(lambda: _online_is(tim, room, 0), "the viewers gone", 5)
            with contextlib.suppress(asyncio.CancelledError):
                await task
    text = out.getvalue()
    assert "did not exist" not in text
    took = float(re.search(r"all 50 viewers online after ([\d.]+) s", text)[1])  # type: ignore[index]
    assert took >= 0.45  # 50 joins at 100 a second
    counts = totals(text)
    assert counts["churned"] >= 2, text
    assert counts["leaves"] == counts["joins"] >= 50
    assert counts["reconnects"] == 0 and counts["errors"] == 0, text


async def test_crowd_in_process_over_the_message_rate_and_in_a_dismissed_room(
        tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    # The async entry point, in this process: the server's message rate refuses part of
    # the chatter (10023), and a dismissed room is not rejoined.
    async with live_server(f"sqlite:///{tmp_path}/crowd.db", "memory") as srv:
        app = await srv.new_app(rate_limit=0, group_msg_rate=2)
        async with srv.client(app) as tim:
            room = await create_group(tim, "AVChatRoom")
            options = CrowdOptions(server=srv.url, sdkappid=app.sdkappid, key=app.secret_key,
                                   admin="administrator", group=room, users=5, chatter=20,
                                   prefix="fan-")
            out, stop = io.StringIO(), asyncio.Event()
            task = asyncio.create_task(run_crowd(options, stop=stop, out=out))
            await eventually(lambda: _online_is(tim, room, 5), "5 viewers")
            err = ""

            async def refused() -> bool:
                nonlocal err
                err += capsys.readouterr().err
                return "send_group_msg refused: 10023" in err

            await eventually(refused, "the message rate refusing chatter")
            await tim.ok("group_open_http_svc/destroy_group", {"GroupId": room})
            await eventually(lambda: _said(out, "removed from the group (GroupDestroyed); "
                                                "not rejoining"), "the removal noticed")
            await asyncio.sleep(1.0)  # (a rejoin would come within 0.5 s)
            stop.set()
            stats = await task
    assert stats.joins == 5 and stats.online == 0 and stats.reconnects == 0
    assert stats.leaves == 5 and stats.sent >= 1 and stats.errors >= 1
    assert out.getvalue().count("not rejoining") == 1  # said once, not once per viewer
    assert "5 of 5 connected viewers logged out" in out.getvalue()


async def _said(out: io.StringIO, text: str) -> bool:
    return text in out.getvalue()


async def test_crowd_refuses_to_start_with_a_clear_reason(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = f"sqlite:///{tmp_path}/crowd.db"
    async with live_server(db, "memory") as srv:
        app = await srv.new_app(rate_limit=0)
        async with srv.client(app) as tim:
            public = await create_group(tim, "Public")
        base = ["--server", srv.url, "--sdkappid", str(app.sdkappid), "--users", "2"]
        key = ["--key", app.secret_key]
        missing = await _run(*base, *key, "--group", "nowhere", "--no-create")
        public_run = await _run(*base, *key, "--group", public)
        bad_key = await _run(*base, "--key", "0" * 64, "--group", "g")
        no_app = await _run("--db", db, "--sdkappid", "999", "--group", "g", "--users", "1")
        bad_url = await _run("--server", "ftp://x", *key, "--sdkappid", "1", "--group", "g",
                             "--users", "1")
        unreachable = await _run("--server", f"http://127.0.0.1:{free_port()}", *key,
                                 "--sdkappid", "1", "--group", "g", "--users", "1")
        platform = await _run(*base, *key, "--group", "g", "--platform", "Amiga")
    assert (missing.code, public_run.code, bad_key.code) == (1, 1, 1)
    assert "group 'nowhere' does not exist (10010)" in missing.err
    assert f"group {public!r} is a Public group" in public_run.err
    assert "multiaccount_import refused: 70009" in bad_key.err
    assert no_app.code == 1 and "app 999 is not in" in no_app.err
    assert bad_url.code == 1 and "give the server's http:// or https:// URL" in bad_url.err
    assert unreachable.code == 1 and "cannot reach the server at" in unreachable.err
    assert platform.code == 2 and "--platform" in platform.err
    for refused in (missing, public_run, bad_key, no_app, bad_url, unreachable):
        assert "Traceback" not in refused.err
        assert app.secret_key not in refused.err + refused.out


async def _online_is(tim: RestClient, group_id: str, count: int) -> bool:
    # False while the crowd has not created the group yet. (get_group_info reads the
    # database: asking the online count first would have the server cache "no such group"
    # for 2 s, refusing the viewers' first joins.)
    reply = await tim.ok("group_open_http_svc/get_group_info", {"GroupIdList": [group_id]})
    if reply["GroupInfo"][0]["ErrorCode"]:
        return False
    return await online_num(tim, group_id) == count


async def _listed_is(tim: RestClient, group_id: str, accounts: list[str]) -> bool:
    return await all_pages(tim, group_id) == accounts
