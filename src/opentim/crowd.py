"""``opentim crowd``: N simulated viewers in a live room, through real gateway connections.

Each viewer is one WebSocket to ``/gateway`` with its own UserSig, exactly as an app
client connects (docs/client-protocol.md): it joins the group, sends ``heartbeat`` every
``HeartbeatTimeout / 3`` seconds, counts the ``group_message`` frames it receives, and on
stop sends ``logout``. Everything runs on one event loop with no task per viewer besides
its reader: replies are told apart by their ``id`` (``"join"``, ``"quit"``, ``"send"``,
``"logout"``), heartbeats go out from one ticker spread over the interval, and pushes are
recognised from their first bytes without decoding them. So one process holds thousands
of viewers (docs/running.md#crowd-simulator-opentim-crowd).

Before the viewers connect, the accounts are imported over REST (``multiaccount_import``,
100 a call) as an App admin, and the group is looked up (``get_group_info``); a missing
group is created as an AVChatRoom unless ``create`` is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from opentim.client.rest import RestClient, RestError
from opentim.client.session import gateway_url
from opentim.protocol import usersig

IMPORT_BATCH = 100  # multiaccount_import takes at most 100 accounts a call
IN_FLIGHT = 32  # connection handshakes + joins waiting for the server at once
TICK = 0.5  # seconds between heartbeat ticker rounds
OPEN_TIMEOUT = 30.0  # seconds for a connection to be open and joined
LOGOUT_GRACE = 10.0  # seconds the viewers get to log out on stop
# --churn: this share of the target leaves each second (at least one viewer), and each
# comes back after CHURN_PAUSE seconds; half quit the group on their open connection,
# half close the connection and reconnect.
CHURN_SHARE = 0.02
CHURN_PAUSE = (1.0, 3.0)
BACKOFF = (0.5, 10.0)  # an unplanned reconnect waits 0.5 s, doubling to 10 s, jittered
RETRIES_RATE_LIMITED = 20  # REST calls refused with 60007 are retried a second later
MAX_ERROR_LINES = 20  # distinct errors printed (each is counted anyway)
STATUS_EVERY_TTY = 1.0
STATUS_EVERY_PIPE = 5.0
KICK_CODES = {4011: "account deleted", 4012: "logged in elsewhere", 4013: "kicked"}

HEARTBEAT = msgspec.json.encode({"cmd": "heartbeat"})  # its reply has "id": null
LOGOUT = msgspec.json.encode({"id": "logout", "cmd": "logout"})
_EVENT = re.compile(rb'\{"event":"([A-Za-z_]+)"')

_WS_LOG = logging.getLogger("opentim.crowd.websocket")  # (request lines carry the sig)
_WS_LOG.setLevel(logging.INFO)


class CrowdError(Exception):
    """A reason to stop before any viewer connects, in one line for the user."""


@dataclass(frozen=True)
class CrowdOptions:
    server: str
    sdkappid: int
    key: str
    admin: str
    group: str
    users: int
    join_rate: float | None = None  # joins per second; None: as fast as the server takes
    churn: bool = False
    chatter: float = 0.0  # group messages per second from the crowd, in total
    prefix: str = "viewer-"
    platform: str = "Web"
    create: bool = True

    def account(self, index: int) -> str:
        return f"{self.prefix}{index + 1}"


@dataclass
class Stats:
    online: int = 0
    joins: int = 0
    leaves: int = 0
    reconnects: int = 0
    errors: int = 0
    received: int = 0
    sent: int = 0
    churned: int = 0  # leaves made on purpose by --churn


# --- before the viewers: accounts and the group ---------------------------------------


@dataclass
class Admin:
    """REST calls as the App admin."""

    tim: RestClient
    server: str


async def _rest(admin: Admin, path: str, body: dict[str, Any]) -> dict[str, Any]:
    tim, server = admin.tim, admin.server
    for _ in range(RETRIES_RATE_LIMITED):
        try:
            return await tim.ok(path, body)
        except RestError as exc:
            if exc.code != 60007:
                raise CrowdError(f"{path} refused: {exc.code} "
                                 f"{exc.reply.get('ErrorInfo', '')}") from None
        except httpx.HTTPStatusError as exc:
            raise CrowdError(f"{path}: HTTP {exc.response.status_code} from {server} "
                             "(is it an OpenTIM server?)") from None
        except httpx.HTTPError as exc:
            raise CrowdError(f"cannot reach the server at {server}: "
                             f"{exc or type(exc).__name__}") from None
        except msgspec.DecodeError:
            raise CrowdError(f"{path}: {server} did not answer with JSON "
                             "(is it an OpenTIM server?)") from None
        await asyncio.sleep(1)
    raise CrowdError(f"{path} stayed rate limited (60007) for {RETRIES_RATE_LIMITED} s")


async def import_accounts(tim: Admin, accounts: list[str]) -> None:
    for start in range(0, len(accounts), IMPORT_BATCH):
        batch = accounts[start:start + IMPORT_BATCH]
        reply = await _rest(tim, "im_open_login_svc/multiaccount_import",
                            {"AccountList": [{"UserID": a} for a in batch]})
        failed = reply.get("FailAccounts") or []
        if failed:
            raise CrowdError(f"multiaccount_import could not import {len(failed)} account(s), "
                             f"e.g. {failed[0]!r}")


async def ensure_group(tim: Admin, group_id: str, *, create: bool) -> bool:
    """True when the group had to be created (as an AVChatRoom)."""
    reply = await _rest(tim, "group_open_http_svc/get_group_info",
                        {"GroupIdList": [group_id],
                         "ResponseFilter": {"GroupBaseInfoFilter": ["Type"]}})
    item = (reply.get("GroupInfo") or [{}])[0]
    code = item.get("ErrorCode", 0)
    if code == 0:
        kind = item.get("Type")
        if kind != "AVChatRoom":
            raise CrowdError(f"group {group_id!r} is a {kind} group: opentim crowd fills "
                             "AVChatRoom groups (live rooms)")
        return False
    if code != 10010:
        raise CrowdError(f"group {group_id!r}: {code} {item.get('ErrorInfo', '')}")
    if not create:
        raise CrowdError(f"group {group_id!r} does not exist (10010); create it, or leave "
                         "out --no-create to have it created as an AVChatRoom")
    name = group_id if len(group_id.encode()) <= 30 else "crowd"
    await _rest(tim, "group_open_http_svc/create_group",
                {"Type": "AVChatRoom", "GroupId": group_id, "Name": name})
    return True


# --- the viewers ----------------------------------------------------------------------


class Gate:
    """At most IN_FLIGHT connections opening at once, started at ``rate`` per second."""

    def __init__(self, rate: float | None) -> None:
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        await self._slots.acquire()
        if self._interval:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
            if slot > now:
                try:
                    await asyncio.sleep(slot - now)
                except BaseException:
                    self._slots.release()
                    raise

    def release(self) -> None:
        self._slots.release()


class Viewer:
    __slots__ = ("account", "beating", "churning", "crowd", "gone", "joined", "pause", "task",
                 "ws")

    def __init__(self, crowd: Crowd, index: int) -> None:
        self.crowd = crowd
        self.account = crowd.options.account(index)
        self.ws: ClientConnection | None = None  # open and past its "connected" frame
        self.joined = False
        self.churning = False  # out of the group for a while, on purpose
        self.pause = 0.0  # closed on purpose: reconnect after this many seconds
        self.gone = ""  # kicked or removed: why it stays offline
        self.task: asyncio.Task[None] | None = None
        self.beating = False  # a heartbeat is being written

    async def run(self) -> None:
        crowd = self.crowd
        failures = 0
        first = True
        while not crowd.stopping:
            await crowd.gate.acquire()
            try:
                ws = await self._open()
            finally:
                crowd.gate.release()
            if first:
                first = False
                crowd.attempted()
            if ws is not None:
                failures = 0
                await self._read(ws)
            if crowd.stopping or self.gone:
                return
            if self.pause:
                delay, self.pause = self.pause, 0.0
            else:
                if ws is not None:
                    crowd.stats.reconnects += 1
                else:
                    failures += 1
                delay = min(BACKOFF[1], BACKOFF[0] * 2 ** failures) * random.uniform(0.5, 1.5)
            await asyncio.sleep(delay)

    async def _open(self) -> ClientConnection | None:
        """Connect and join; the open connection, or None (the error is counted)."""
        crowd = self.crowd
        options = crowd.options
        url = gateway_url(options.server, sdkappid=options.sdkappid, identifier=self.account,
                          usersig=usersig.generate(options.sdkappid, options.key, self.account),
                          platform=options.platform)
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                # (proxy=None: straight to the server; looking proxies up in the
                # environment cost a fifth of the crowd's CPU)
                ws = await ws_connect(url, compression=None, ping_interval=None, proxy=None,
                                      open_timeout=None, close_timeout=2, max_size=1 << 22,
                                      logger=_WS_LOG)
                hello = msgspec.json.decode(await ws.recv())
                if hello.get("event") != "connected":
                    crowd.error("gateway refused the connection", hello.get("ErrorCode"),
                                hello.get("ErrorInfo", ""))
                    await ws.close()
                    return None
                crowd.heartbeat_timeout = float(hello.get("HeartbeatTimeout") or 30.0)
                self.ws = ws
                if crowd.stopping:
                    return ws  # (logged out by stop(); read its reply and close)
                await ws.send(crowd.join_frame)
                while True:
                    raw = await ws.recv()
                    if self._frame(raw) == "join":
                        break
            if not self.joined:  # refused: counted by _frame
                await ws.close()
                self.ws = None
                return None
            return ws
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed,
                msgspec.DecodeError) as exc:
            crowd.error("cannot connect", type(exc).__name__, str(exc))
            if ws is not None:
                await ws.close()
            self._offline()
            return None

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._frame(raw)
        except ConnectionClosed:
            pass
        finally:
            self._offline()
        code = ws.close_code
        if self.crowd.stopping or self.pause:
            return
        if code in KICK_CODES:
            self.gone = KICK_CODES[code]
            self.crowd.once(("kicked", code),
                            f"{self.account}: {self.gone} (close {code}); not reconnecting")
        else:
            self.crowd.dropped(code, ws.close_reason)

    def _offline(self) -> None:
        self.ws = None
        self.churning = False
        if self.joined:
            self.joined = False
            self.crowd.left()

    def _frame(self, raw: bytes | str) -> str | None:
        """Account for one server frame; returns the reply's id, if it is a reply."""
        crowd = self.crowd
        data = raw.encode() if isinstance(raw, str) else raw
        event = _EVENT.match(data)
        if event is not None:
            name = event.group(1)
            if name == b"group_message":
                crowd.stats.received += 1
            elif name == b"removed_from_group":
                doc = msgspec.json.decode(data)
                if doc.get("GroupId") == crowd.options.group and self.joined:
                    self.joined = False
                    self.gone = f"removed from the group ({doc.get('Reason', '')})"
                    crowd.left()
                    crowd.once(("removed", doc.get("Reason")),
                               f"{self.account}: {self.gone}; not rejoining")
            return None
        doc = msgspec.json.decode(data)
        if "event" in doc:
            return None
        frame_id, code = doc.get("id"), doc.get("ErrorCode", 0)
        if code:
            crowd.error(_WHAT.get(frame_id, "gateway command"), code, doc.get("ErrorInfo", ""))
        if frame_id == "join" and not code and not self.joined:
            self.joined = True
            self.churning = False
            crowd.stats.joins += 1
            crowd.stats.online += 1
            if crowd.full_at is None and crowd.stats.online == crowd.options.users:
                crowd.full_at = time.monotonic()
        elif frame_id == "quit" and not code and self.joined:
            self.joined = False
            crowd.left()
        elif frame_id == "send" and not code:
            crowd.stats.sent += 1
        return frame_id if isinstance(frame_id, str) else None

    def send(self, data: bytes) -> None:
        """Send a frame without waiting (a failure means the reader sees the close)."""
        if self.ws is not None:
            self.crowd.spawn(_send(self.ws, data))

    def beat(self) -> None:
        """Send a heartbeat unless the last one is still being written: one connection
        the server stopped reading must not hold up the others' heartbeats."""
        if self.ws is not None and not self.beating:
            self.beating = True
            self.crowd.spawn(self._beat(self.ws))

    async def _beat(self, ws: ClientConnection) -> None:
        try:
            await _send(ws, HEARTBEAT)
        finally:
            self.beating = False


_WHAT = {"join": "join_group refused", "quit": "quit_group refused",
         "send": "send_group_msg refused", None: "heartbeat refused"}


async def _send(ws: ClientConnection, data: bytes) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(data)


class Crowd:
    def __init__(self, options: CrowdOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.tty = out.isatty()
        self.stats = Stats()
        self.stopping = False
        self.gate = Gate(options.join_rate)
        self.heartbeat_timeout = 30.0
        self.join_frame = msgspec.json.encode(
            {"id": "join", "cmd": "join_group", "GroupId": options.group})
        self.quit_frame = msgspec.json.encode(
            {"id": "quit", "cmd": "quit_group", "GroupId": options.group})
        self.viewers = [Viewer(self, i) for i in range(options.users)]
        self._spawned: set[asyncio.Task[None]] = set()
        self._said: set[tuple[str, object]] = set()  # what once() printed
        self._status_shown = False
        self._chatter_count = 0
        self._attempts = 0
        self.full_at: float | None = None  # when every viewer was first online
        # Set once every viewer has tried to join once: churn and chatter start then.
        self.ramped = asyncio.Event()

    # --- output ---------------------------------------------------------------------

    def _line(self, text: str, *, err: bool = False) -> None:
        if self.tty and self._status_shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._status_shown = False
        stream = sys.stderr if err else self.out
        stream.write(text + "\n")
        stream.flush()

    def note(self, text: str) -> None:
        self._line(f"crowd: {text}")

    def once(self, key: tuple[str, object], text: str, *, err: bool = False) -> None:
        """Print ``text`` the first time ``key`` happens (MAX_ERROR_LINES keys at most):
        a thousand viewers kicked or refused say so once, not a thousand times."""
        if key in self._said or len(self._said) >= MAX_ERROR_LINES:
            return
        self._said.add(key)
        more = "" if len(self._said) < MAX_ERROR_LINES else " (from now on only counted)"
        self._line(f"crowd: {text}{more}", err=err)

    def error(self, what: str, code: object, info: str) -> None:
        self.stats.errors += 1
        self.once((what, code), f"{what}: {code} {info[:200]}", err=True)

    def dropped(self, code: int | None, reason: str | None) -> None:
        """An unplanned close (reconnected): said once per close code."""
        shown = "no close frame" if code is None else f"close {code} {reason or ''}"
        self.once(("closed", code),
                  f"the server closed connections ({shown.strip()}): reconnecting them")

    def attempted(self) -> None:
        self._attempts += 1
        if self._attempts == len(self.viewers):
            self.ramped.set()

    def left(self) -> None:
        self.stats.online -= 1
        self.stats.leaves += 1

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def status(self, joins_per_s: float, received_per_s: float, sent_per_s: float) -> str:
        s = self.stats
        text = (f"online {s.online}/{self.options.users}  joins/s {joins_per_s:.0f}  "
                f"leaves {s.leaves}  reconnects {s.reconnects}  errors {s.errors}  "
                f"msgs/s {received_per_s:.0f}")
        if self.options.chatter:
            text += f"  sent/s {sent_per_s:.0f}"
        return text

    # --- the background loops -------------------------------------------------------

    async def _status(self) -> None:
        every = STATUS_EVERY_TTY if self.tty else STATUS_EVERY_PIPE
        started = last_at = time.monotonic()
        last = Stats()
        announced = False
        while True:
            await asyncio.sleep(0.25 if not announced else every)
            now = time.monotonic()
            s = self.stats
            if not announced and self.full_at is not None:
                announced = True
                took = self.full_at - started
                self.note(f"all {self.options.users} viewers online after {took:.1f} s "
                          f"({s.joins / took if took else 0:.0f} joins/s)")
            elif not announced and now - last_at < every:
                continue
            dt = now - last_at or 1.0
            line = self.status((s.joins - last.joins) / dt, (s.received - last.received) / dt,
                               (s.sent - last.sent) / dt)
            last, last_at = Stats(**vars(s)), now
            if self.tty:
                self.out.write("\r\x1b[K" + line)
                self._status_shown = True
            else:
                self.out.write(line + "\n")
            self.out.flush()

    async def _heartbeats(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(TICK)
            buckets = max(1, round(self.heartbeat_timeout / 3 / TICK))
            for viewer in self.viewers[rounds % buckets::buckets]:
                viewer.beat()
            rounds += 1

    def _online(self) -> Viewer | None:
        for _ in range(20):
            viewer = random.choice(self.viewers)
            if viewer.joined:
                return viewer
        return None

    async def _chatter(self) -> None:
        rate = self.options.chatter
        await self.ramped.wait()
        started = time.monotonic()
        due = 0
        while True:
            await asyncio.sleep(max(0.05, min(1.0, 1.0 / rate)))
            target = int((time.monotonic() - started) * rate)
            while due < target:
                due += 1
                viewer = self._online()
                if viewer is None:
                    continue
                self._chatter_count += 1
                viewer.send(msgspec.json.encode({
                    "id": "send", "cmd": "send_group_msg", "GroupId": self.options.group,
                    "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {
                        "Text": f"chatter {self._chatter_count} from {viewer.account}"}}],
                    "MsgPriority": "Low"}))

    async def _churn(self) -> None:
        per_second = max(1, round(self.options.users * CHURN_SHARE))
        loop = asyncio.get_running_loop()
        await self.ramped.wait()
        while True:
            await asyncio.sleep(1.0)
            present = [v for v in self.viewers if v.joined and not v.churning]
            for viewer in random.sample(present, min(per_second, len(present))):
                pause = random.uniform(*CHURN_PAUSE)
                viewer.churning = True
                self.stats.churned += 1
                if random.random() < 0.5:
                    viewer.send(self.quit_frame)
                    loop.call_later(pause, self._rejoin, viewer)
                elif viewer.ws is not None:
                    viewer.pause = pause
                    self.spawn(viewer.ws.close())

    def _rejoin(self, viewer: Viewer) -> None:
        if not self.stopping and viewer.ws is not None and not viewer.joined:
            viewer.send(self.join_frame)

    # --- running and stopping -------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        for viewer in self.viewers:
            viewer.task = asyncio.create_task(viewer.run())
        loops = [asyncio.create_task(self._status()), asyncio.create_task(self._heartbeats())]
        if self.options.chatter:
            loops.append(asyncio.create_task(self._chatter()))
        if self.options.churn:
            loops.append(asyncio.create_task(self._churn()))
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._stop()

    async def _stop(self) -> None:
        """Every connected viewer logs out (the server takes it out of the group and
        closes); the others stop where they are."""
        self.stopping = True
        self.note("stopping: every viewer logs out")
        connected: list[asyncio.Task[None]] = []
        for viewer in self.viewers:
            if viewer.task is None or viewer.task.done():
                continue
            if viewer.ws is not None:
                viewer.send(LOGOUT)
                connected.append(viewer.task)
            else:
                viewer.task.cancel()
        tasks = [v.task for v in self.viewers if v.task is not None]
        _, pending = await asyncio.wait(tasks, timeout=LOGOUT_GRACE)
        late = sum(1 for task in connected if task in pending)
        for task in pending:
            task.cancel()
        closing = [v.ws.close() for v in self.viewers if v.ws is not None]
        await asyncio.gather(*pending, *closing, return_exceptions=True)
        for task in list(self._spawned):
            task.cancel()
        s = self.stats
        self.note(f"stopped: {len(connected) - late} of {len(connected)} connected viewers "
                  f"logged out; joins {s.joins}, leaves {s.leaves}, reconnects {s.reconnects}, "
                  f"errors {s.errors}, messages received {s.received}, sent {s.sent}"
                  f"{f', churned {s.churned}' if self.options.churn else ''}")


async def run(options: CrowdOptions, *, stop: asyncio.Event | None = None,
              out: TextIO | None = None) -> Stats:
    """Import the accounts, make sure the group is there, bring the viewers online and
    keep them there until ``stop`` is set (or SIGINT/SIGTERM when it is not given)."""
    out = out or sys.stdout
    parts = urlsplit(options.server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CrowdError(f"--server {options.server!r}: give the server's http:// or https:// "
                         "URL, e.g. http://127.0.0.1:8080")
    accounts = [options.account(i) for i in range(options.users)]
    admin_sig = usersig.generate(options.sdkappid, options.key, options.admin)
    async with RestClient(options.server, sdkappid=options.sdkappid, usersig=admin_sig,
                          identifier=options.admin) as tim:
        admin = Admin(tim, options.server)
        await import_accounts(admin, accounts)
        created = await ensure_group(admin, options.group, create=options.create)
    crowd = Crowd(options, out)
    shown = accounts[0] if len(accounts) == 1 else f"{accounts[0]} … {accounts[-1]}"
    crowd.note(f"imported {len(accounts)} account(s): {shown}")
    if created:
        crowd.note(f"group {options.group!r} did not exist: created it as an AVChatRoom")
    pace = f"at {options.join_rate:g} joins/s" if options.join_rate else \
        "as fast as the server takes"
    extras = "".join([", churning" if options.churn else "",
                      f", chatter {options.chatter:g} msgs/s" if options.chatter else ""])
    crowd.note(f"bringing {options.users} viewer(s) into {options.group!r} {pace}{extras}; "
               "Ctrl-C stops")
    if stop is None:
        stop = asyncio.Event()
        _on_signals(stop.set)
    await crowd.run(stop)
    return crowd.stats


def _on_signals(handler: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # (Windows)
            loop.add_signal_handler(sig, handler)


@dataclass
class _Descriptors:
    limit: int | None = None
    notes: list[str] = field(default_factory=list)


def _descriptors(users: int) -> _Descriptors:
    from opentim.serving import raise_fd_limit

    fds = raise_fd_limit()
    found = _Descriptors(None if fds is None else fds.now)
    if found.limit is not None and found.limit < users + 64:
        found.notes.append(f"this process may open {found.limit} descriptors: about "
                           f"{max(0, found.limit - 64)} viewers can connect (raise the hard "
                           "limit, `ulimit -Hn`)")
    return found


def main(options: CrowdOptions) -> int:
    """The ``opentim crowd`` command: 0 once stopped, 1 when it could not start."""
    for note in _descriptors(options.users).notes:
        print(f"crowd: {note}", file=sys.stderr)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run(options))
    except CrowdError as exc:
        print(f"opentim crowd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the viewers started: nothing is online
        return 130
    return 0
