"""A webhook receiver that puts AVChatRoom member marks back when a member comes online.

Marks (``modify_user_info``) live only as long as the member is online in the group: when
its last connection quits, closes or times out, OpenTIM (like Tencent Cloud Chat) clears
them. Tencent's advice is to "reset a mark for the member through a webhook" when it comes
back. This receiver does exactly that: it keeps the marks each member *should* have, and on
``Group.CallbackOnMemberStateChange`` with ``EventType`` ``Online`` it calls
``v4/group_open_avchatroom_http_svc/modify_user_info`` (``CommandType`` 1) for that member.

It answers every callback at once with Tencent's OK body and makes the REST call in the
background, so OpenTIM's delivery (2 s per attempt) never waits on it.

Run it (``pip install starlette uvicorn httpx tls-sig-api-v2``)::

    export OPENTIM_URL=http://127.0.0.1:8080 OPENTIM_SDKAPPID=1400000000
    export OPENTIM_SECRET_KEY=...            # or OPENTIM_ADMIN_USERSIG=...
    export OPENTIM_CALLBACK_TOKEN=s3cret     # optional; must match --callback-token
    echo '{"@TGS#aROOM": {"teacher1": [1000], "ta2": [1001]}}' > marks.json
    python docs/examples/reapply_marks.py --marks-file marks.json --port 9000

    opentim app update --sdkappid 1400000000 \\
        --callback-url http://127.0.0.1:9000/im-callback --callback-token s3cret

It works unchanged against Tencent Cloud Chat: point ``OPENTIM_URL`` at your region's REST
domain and the console's callback URL at this receiver.

It logs no secret at any level: REST URLs carry the admin's UserSig (a long-lived REST
credential), so httpx's request log (INFO) and httpcore's traces are raised to WARNING
(:func:`quiet_http_logs`), errors are described without their text (httpx puts the URL in
it), and uvicorn's access log, which would show each callback's ``Sign``, is off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger("reapply_marks")

# group id -> account -> the marks that account should hold while it is online there.
Desired = dict[str, dict[str, list[int]]]

MEMBER_STATE_CHANGE = "Group.CallbackOnMemberStateChange"
MODIFY_USER_INFO = "v4/group_open_avchatroom_http_svc/modify_user_info"
OK_BODY = {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}
# Tencent: reject signed callbacks whose RequestTime is more than a minute off.
MAX_REQUEST_AGE = 60
# Members coming back together (a room after a server restart) are collected this long and
# sent as one call: modify_user_info is rate-limited (200 calls/s) and takes 500 accounts.
BATCH_DELAY = 0.05
MAX_ACCOUNTS_PER_CALL = 500
ATTEMPTS = 3
# REST codes worth another try: frequency limits and internal errors. Any other failure
# (typically 10004 "none of the accounts is online": the member left again) is final.
RETRYABLE_CODES = {60007, 60011, 10002, 10006, 70169, 70202}
SIG_LIFETIME = 7 * 86400
# Loggers that would write request URLs, and so the UserSig, into the log.
URL_LOGGERS = ("httpx", "httpcore")


def verify(query: Mapping[str, str], *, sdkappid: int, token: str | None,
           now: float) -> str | None:
    """Why this callback must be refused, or None when it is genuine.

    Every callback names its app in ``SdkAppid``. With a callback token, the query also
    carries ``RequestTime`` (unix seconds) and ``Sign = hex(sha256(token + RequestTime))``.
    """
    if query.get("SdkAppid") != str(sdkappid):
        return f"SdkAppid {query.get('SdkAppid')!r} is not {sdkappid}"
    if token is None:
        return None
    request_time, sign = query.get("RequestTime", ""), query.get("Sign", "")
    if not request_time.isdigit() or not sign:
        return "Sign or RequestTime missing"
    if abs(now - int(request_time)) > MAX_REQUEST_AGE:
        return f"RequestTime is more than {MAX_REQUEST_AGE} s off"
    expected = hashlib.sha256(f"{token}{request_time}".encode()).hexdigest()
    if not hmac.compare_digest(expected, sign.lower()):
        return "Sign does not match"
    return None


def quiet_http_logs() -> None:
    """Keep httpx (INFO: every request URL) and httpcore (DEBUG traces) below WARNING."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


def describe(exc: Exception) -> str:
    """What went wrong with a REST call, for the log: never ``str(exc)``, whose text
    httpx makes from the request URL (with the UserSig) for status errors."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


class AdminSig:
    """The App admin's UserSig: a fixed one, or made from the secret key and renewed.

    With the key, the sig is made by Tencent's own library, as any backend does; the key
    stays on this server and never travels.
    """

    def __init__(self, sdkappid: int, admin: str, *, usersig: str | None = None,
                 secret_key: str | None = None, clock: Callable[[], float] = time.time) -> None:
        if (usersig is None) == (secret_key is None):
            raise ValueError("give exactly one of usersig and secret_key")
        self._clock = clock
        self._sig = usersig or ""
        self._renew_at = float("inf") if usersig is not None else 0.0
        self._make: Callable[[], str] | None = None
        if secret_key is not None:
            from TLSSigAPIv2 import TLSSigAPIv2  # pip install tls-sig-api-v2

            signer = TLSSigAPIv2(sdkappid, secret_key)
            self._make = lambda: signer.gen_sig(admin, SIG_LIFETIME)

    def get(self) -> str:
        now = self._clock()
        if self._make is not None and now >= self._renew_at:
            # Renewed halfway through its life, so a call never carries a sig about to expire.
            self._sig, self._renew_at = self._make(), now + SIG_LIFETIME / 2
        return self._sig


class MarkReapplier:
    """Puts desired marks back on members, in the background, batched per group."""

    def __init__(self, *, opentim_url: str, sdkappid: int, admin: str, sig: AdminSig,
                 desired: Desired, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.sdkappid = sdkappid
        self.admin = admin
        self.sig = sig
        # Shared with the caller: changes to it apply to the next member that comes back.
        self.desired = desired
        # What happened, for logs and tests: applied / offline / failed (per account).
        self.counts: Counter[str] = Counter()
        self._http = httpx.AsyncClient(base_url=opentim_url.rstrip("/"), timeout=10.0,
                                       transport=transport)
        self._pending: dict[str, set[str]] = {}  # group -> accounts waiting for a batch
        self._tasks: set[asyncio.Task[None]] = set()

    def member_online(self, group_id: str, accounts: Iterable[str]) -> None:
        """Queue the accounts that have marks to get back; returns at once."""
        wanted = self.desired.get(group_id, {})
        accounts = [a for a in accounts if wanted.get(a)]
        if not accounts:
            return
        batch = self._pending.get(group_id)
        if batch is None:  # the first of a batch starts its timer
            batch = self._pending[group_id] = set()
            task = asyncio.create_task(self._flush(group_id))
            self._tasks.add(task)  # keep a reference: asyncio holds tasks only weakly
            task.add_done_callback(self._tasks.discard)
        batch.update(accounts)

    async def _flush(self, group_id: str) -> None:
        await asyncio.sleep(BATCH_DELAY)
        accounts = sorted(self._pending.pop(group_id, ()))
        wanted = self.desired.get(group_id, {})
        members = [{"Member_Account": a, "Marks": wanted[a]} for a in accounts if wanted.get(a)]
        for start in range(0, len(members), MAX_ACCOUNTS_PER_CALL):
            await self._apply(group_id, members[start:start + MAX_ACCOUNTS_PER_CALL])

    async def _apply(self, group_id: str, members: list[dict[str, Any]]) -> None:
        body = {"GroupId": group_id, "CommandType": 1, "MemberList": members}
        problem = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
            try:
                reply = await self._call(MODIFY_USER_INFO, body)
            except (httpx.HTTPError, ValueError) as exc:
                problem = describe(exc)
                continue
            code = reply.get("ErrorCode")
            if code == 0:
                # The reply lists the accounts that were online; the others left again.
                done = {m.get("Member_Account") for m in reply.get("MemberList", [])}
                self.counts["applied"] += len(done)
                if len(done) < len(members):
                    self.counts["offline"] += len(members) - len(done)
                log.info("marks re-applied in %s to %s", group_id, ", ".join(sorted(done)))
                return
            problem = f"{code}: {reply.get('ErrorInfo', '')}"
            if code not in RETRYABLE_CODES:
                break
        self.counts["failed"] += len(members)
        log.warning("could not re-apply marks in %s to %s (%s)", group_id,
                    ", ".join(m["Member_Account"] for m in members), problem)

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, str | int] = {"sdkappid": self.sdkappid, "identifier": self.admin,
                                        "usersig": self.sig.get(),
                                        "random": random.randint(0, 4294967295),
                                        "contenttype": "json"}
        response = await self._http.post(f"/{path}", params=params, json=body)
        response.raise_for_status()
        reply: dict[str, Any] = response.json()
        return reply

    async def drain(self) -> None:
        """Wait for scheduled re-applications (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, grace: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.drain()
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._http.aclose()


def _members(body: Any) -> list[str]:
    """The accounts named in a member-state callback, ignoring malformed entries."""
    entries = body.get("MemberList") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return []
    return [e["Member_Account"] for e in entries
            if isinstance(e, dict) and isinstance(e.get("Member_Account"), str)]


def create_receiver(*, opentim_url: str, sdkappid: int, desired: Desired,
                    admin: str = "administrator", usersig: str | None = None,
                    secret_key: str | None = None, token: str | None = None,
                    path: str = "/im-callback", clock: Callable[[], float] = time.time,
                    transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """The receiver as an ASGI app; ``app.state.reapplier`` is its :class:`MarkReapplier`.

    ``desired`` is used as given (not copied): change it to change what gets re-applied.
    ``transport`` replaces the network for the REST calls (e.g. ``httpx.MockTransport``).
    """
    quiet_http_logs()
    sig = AdminSig(sdkappid, admin, usersig=usersig, secret_key=secret_key, clock=clock)
    reapplier = MarkReapplier(opentim_url=opentim_url, sdkappid=sdkappid, admin=admin,
                              sig=sig, desired=desired, transport=transport)

    async def callback(request: Request) -> JSONResponse:
        refusal = verify(request.query_params, sdkappid=sdkappid, token=token, now=clock())
        if refusal is not None:
            log.warning("refused a callback: %s", refusal)
            # Any status but 200 counts as a failed delivery to OpenTIM.
            return JSONResponse({"ActionStatus": "FAIL", "ErrorCode": 1, "ErrorInfo": refusal},
                                status_code=403)
        if request.query_params.get("CallbackCommand") == MEMBER_STATE_CHANGE:
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"ActionStatus": "FAIL", "ErrorCode": 1,
                                     "ErrorInfo": "body is not JSON"}, status_code=400)
            # Online covers both causes: Join and HeartbeatRecover. Marks were cleared
            # when the member went offline either way.
            if isinstance(body, dict) and body.get("EventType") == "Online" and \
                    isinstance(body.get("GroupId"), str):
                reapplier.member_online(body["GroupId"], _members(body))
        # Every other command is acknowledged and ignored.
        return JSONResponse(OK_BODY)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await reapplier.aclose()

    app = Starlette(routes=[Route(path, callback, methods=["POST"])], lifespan=lifespan)
    app.state.reapplier = reapplier
    return app


def load_desired(path: str | None) -> Desired:
    """``{"group id": {"account": [1000, 1001]}}`` from a JSON file, or nothing."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected an object of groups")
    desired: Desired = {}
    for group_id, members in data.items():
        if not isinstance(members, dict) or not all(
                isinstance(m, list) and all(isinstance(x, int) for x in m)
                for m in members.values()):
            raise SystemExit(f"{path}: group {group_id!r} must map accounts to lists of marks")
        desired[group_id] = {str(a): list(m) for a, m in members.items()}
    return desired


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="Re-apply AVChatRoom member marks when members come back online.")
    parser.add_argument("--opentim-url", default=env("OPENTIM_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--sdkappid", type=int, default=env("OPENTIM_SDKAPPID"),
                        required=env("OPENTIM_SDKAPPID") is None)
    parser.add_argument("--admin", default=env("OPENTIM_ADMIN", "administrator"))
    # Secrets are better passed in the environment: command lines are visible to `ps`.
    parser.add_argument("--usersig", default=env("OPENTIM_ADMIN_USERSIG"),
                        help="the admin's UserSig (or OPENTIM_ADMIN_USERSIG)")
    parser.add_argument("--secret-key", default=env("OPENTIM_SECRET_KEY"),
                        help="the app's key, to make admin sigs (or OPENTIM_SECRET_KEY)")
    parser.add_argument("--callback-token", default=env("OPENTIM_CALLBACK_TOKEN"))
    parser.add_argument("--marks-file", default=env("MARKS_FILE"))
    parser.add_argument("--host", default=env("RECEIVER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("RECEIVER_PORT", "9000")))
    parser.add_argument("--path", default="/im-callback")
    args = parser.parse_args(argv)
    if (args.usersig is None) == (args.secret_key is None):
        parser.error("give the admin's UserSig or the secret key (exactly one)")

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = create_receiver(opentim_url=args.opentim_url, sdkappid=args.sdkappid,
                          desired=load_desired(args.marks_file), admin=args.admin,
                          usersig=args.usersig, secret_key=args.secret_key,
                          token=args.callback_token or None, path=args.path)
    # No access log: each line would carry the callback's query, Sign included.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
