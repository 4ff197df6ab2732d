"""Generated bodies for every registered REST command, on SQLite and PostgreSQL.

For each command in ``dispatch.COMMANDS`` (whatever is registered when the tests are
collected), hypothesis sends bodies derived from the command's request Struct
(tests/helpers/strategies.py): mostly well typed and naming the accounts and groups of a
small world built for that command, the rest mutated (wrong types, NUL, huge integers,
deep nesting, long strings, unknown or missing fields, empty lists, bytes that are not
a JSON object). Every answer must be HTTP 200 with a JSON envelope, never the command's
service's internal-error code, and no call may log an error or a traceback.

``OPENTIM_FUZZ_EXAMPLES`` (default 150) is the number of bodies per command and database,
so a CI run sends about 300 per command; a longer run:
``OPENTIM_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/test_fuzz_rest.py``. Generation is
derandomized: a failure reproduces on the next run, and its smallest body is reported.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings

from opentim.client.rest import RestClient
from opentim.protocol import dispatch
from tests.helpers import Server
from tests.helpers.strategies import CUSTOM_TAG, World, build_world, encoded, payloads

dispatch.load_services()

EXAMPLES = int(os.environ.get("OPENTIM_FUZZ_EXAMPLES", "150"))
# Every service's generic failure code: none may ever answer a generated body.
INTERNAL = frozenset({10002, 70500, 91000} |
                     {svc.internal_error.code for svc in dispatch.SERVICES.values()})
SERVICES = sorted({svc for svc, _ in dispatch.COMMANDS})

settings.register_profile(
    "opentim-fuzz",
    max_examples=EXAMPLES,
    derandomize=True,  # the same bodies every run: a CI failure reproduces locally
    database=None,  # no .hypothesis/ directory in the repository
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
FUZZ = settings.get_profile("opentim-fuzz")

# ~0.25 s per 10 bodies on this 2-core machine, and a margin for a loaded one.
pytestmark = pytest.mark.timeout(max(600, EXAMPLES * 5))


def _problems(reply_bytes: bytes, status: int, content_type: str,
              command: dispatch.Command) -> list[str]:
    """What is wrong with one answer (nothing, for a well-formed Tencent envelope)."""
    if status != 200:
        return [f"HTTP {status}"]
    if not content_type.startswith("application/json"):
        return [f"content-type {content_type!r}"]
    try:
        reply = msgspec.json.decode(reply_bytes)
    except msgspec.DecodeError:
        return [f"not JSON: {reply_bytes[:200]!r}"]
    if not isinstance(reply, dict):
        return [f"not an object: {reply_bytes[:200]!r}"]
    out = []
    code, info, status_text = (reply.get("ErrorCode"), reply.get("ErrorInfo"),
                               reply.get("ActionStatus"))
    if type(code) is not int or not isinstance(info, str) or status_text not in ("OK", "FAIL"):
        return [f"no envelope: {reply_bytes[:300]!r}"]
    if (status_text == "OK") != (code == 0):
        out.append(f"ActionStatus {status_text} with ErrorCode {code}")
    if code in INTERNAL or code == command.service.internal_error.code:
        out.append(f"internal error {code}: {info}")
    if "Traceback" in info:
        out.append(f"a traceback in ErrorInfo: {info[:300]}")
    return out


def _logged_errors(caplog: pytest.LogCaptureFixture, since: int) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()[:300]}" +
            (" (with a traceback)" if r.exc_info else "")
            for r in caplog.records[since:] if r.levelno >= logging.ERROR or r.exc_info]


class Fuzzer:
    """Runs one command's hypothesis test in a worker thread; each example's call runs on
    the test's event loop (the server and its stores live there)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, http: httpx.AsyncClient,
                 tim: RestClient, caplog: pytest.LogCaptureFixture) -> None:
        self.loop = loop
        self.http = http
        self.tim = tim
        self.caplog = caplog
        self.codes: dict[str, collections.Counter[int]] = {}
        self.infos: dict[str, collections.Counter[str]] = {}

    async def call(self, command: dispatch.Command, payload: Any) -> None:
        since = len(self.caplog.records)
        response = await self.http.post(f"/v4/{command.service.name}/{command.name}",
                                        content=encoded(payload), params=self.tim.params())
        problems = _problems(response.content, response.status_code,
                             response.headers.get("content-type", ""), command)
        await asyncio.sleep(0)  # let work the call started log before the logs are read
        problems += _logged_errors(self.caplog, since)
        assert not problems, f"{command.key}: " + "; ".join(problems)
        if response.status_code == 200 and not problems:
            reply = msgspec.json.decode(response.content)
            code = reply["ErrorCode"]
            self.codes.setdefault(command.key, collections.Counter())[code] += 1
            if os.environ.get("FUZZ_DEBUG") and isinstance(payload, dict):
                import re
                self.infos.setdefault(command.key, collections.Counter())[
                    re.sub(r"\d+", "N", reply["ErrorInfo"][:90])] += 1

    def run(self, command: dispatch.Command, world: World) -> None:
        @FUZZ
        @given(payload=payloads(command.request_type, world, command.legacy_fields))
        def fuzz(payload: Any) -> None:
            asyncio.run_coroutine_threadsafe(self.call(command, payload), self.loop).result(60)

        fuzz()


@pytest.mark.parametrize("service", SERVICES)
async def test_generated_bodies(server: Server, service: str,
                                caplog: pytest.LogCaptureFixture) -> None:
    commands = [c for (svc, _), c in sorted(dispatch.COMMANDS.items()) if svc == service]
    failures: dict[str, str] = {}
    started = time.monotonic()
    async with server.http() as http:
        for command in commands:
            # A world per command: destroy_group or account_delete must not leave the
            # next command's bodies naming nothing.
            app = await server.new_app(rate_limit=0, group_msg_rate=0,
                                       profile_custom_tags=frozenset({CUSTOM_TAG}))
            async with server.client(app) as tim:
                world = await build_world(tim, int(server.clock()))
                fuzzer = Fuzzer(asyncio.get_running_loop(), http, tim, caplog)
                try:
                    await asyncio.to_thread(fuzzer.run, command, world)
                except Exception as exc:  # the smallest failing body, with hypothesis' notes
                    notes = "\n".join(getattr(exc, "__notes__", []))
                    failures[command.key] = f"{exc}\n{notes}"
            codes = fuzzer.codes.get(command.key, collections.Counter())
            print(f"{command.key}: {sum(codes.values())} bodies, "
                  f"{codes[0]} OK, codes {dict(codes.most_common(6))}")
            for info, n in fuzzer.infos.get(command.key, collections.Counter()).most_common(5):
                print(f"    {n:4} {info}")
    print(f"{service}: {len(commands)} commands in {time.monotonic() - started:.1f} s")
    assert not failures, "\n\n".join(f"{key}:\n{text}" for key, text in failures.items())


def test_every_registered_command_is_fuzzed() -> None:
    """The parametrization covers the whole registry (new commands are fuzzed at once)."""
    assert {svc for svc, _ in dispatch.COMMANDS} == set(SERVICES)
    assert len(dispatch.COMMANDS) >= 50
