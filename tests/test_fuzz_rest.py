"""Generated bodies for every registered REST command, on SQLite and PostgreSQL.

For each command in ``dispatch.COMMANDS`` (whatever is registered when the tests are
collected), hypothesis sends bodies derived from the command's request Struct
(tests/helpers/strategies.py): mostly well typed and naming the accounts and groups of a
small world built for that command, the rest mutated (wrong types, NUL, huge integers,
deep nesting, long strings, unknown or missing fields, empty lists, bytes that are not
a JSON object). Every answer must be HTTP 200 with a JSON envelope, never the command's
service's internal-error code, and no call may log an error or a traceback.

``OPENTIM_FUZZ_EXAMPLES`` (default 150) is the number of bodies per command and database:
a CI run sends 300 per command, about 15,900 in all: 82 s on an idle 2-core machine, under
4 minutes on one busy with other work (docs/reliability.md#fuzzing). A longer run:
``OPENTIM_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/test_fuzz_rest.py``. Generation is
derandomized: a failure reproduces on the next run, and its smallest body is reported.
Run with ``-s`` to see, per command, how many bodies were answered OK and the commonest
error codes (how deep the generated bodies get).
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
from hypothesis import HealthCheck, settings

from opentim.client.rest import RestClient
from opentim.protocol import dispatch
from tests.helpers import Server
from tests.helpers.strategies import (
    CUSTOM_TAG,
    build_world,
    encoded,
    failure_text,
    fuzz,
    payloads,
)

dispatch.load_services()

EXAMPLES = int(os.environ.get("OPENTIM_FUZZ_EXAMPLES", "150"))
# Every service's generic failure code: none may ever answer a generated body.
INTERNAL = frozenset({10002, 70500, 91000} |
                     {svc.internal_error.code for svc in dispatch.SERVICES.values()})
SERVICES = sorted({svc for svc, _ in dispatch.COMMANDS})

# Named for this file only: loading it globally would change every other property test.
settings.register_profile(
    "fuzz-ci",
    max_examples=EXAMPLES,
    derandomize=True,  # the same bodies every run: a CI failure reproduces locally
    database=None,  # no .hypothesis/ directory in the repository
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
FUZZ = settings.get_profile("fuzz-ci")

# The largest service (group_open_http_svc, 32 commands) takes up to ~30 ms a body on a
# loaded machine: the bound scales with the number of bodies.
pytestmark = [
    pytest.mark.timeout(max(600, EXAMPLES * 5)),
    # Hypothesis generates in a worker thread while the server's own code on the event
    # loop's thread uses `random` (RestClient's random=, jitter): not the strategies.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]


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


class CallCheck:
    """One generated call to one command, and what must hold of its answer."""

    def __init__(self, command: dispatch.Command, http: httpx.AsyncClient, tim: RestClient,
                 caplog: pytest.LogCaptureFixture) -> None:
        self.command = command
        self.http = http
        self.tim = tim
        self.caplog = caplog
        self.codes: collections.Counter[int] = collections.Counter()

    async def __call__(self, payload: Any) -> None:
        command = self.command
        since = len(self.caplog.records)
        response = await self.http.post(f"/v4/{command.service.name}/{command.name}",
                                        content=encoded(payload), params=self.tim.params())
        problems = _problems(response.content, response.status_code,
                             response.headers.get("content-type", ""), command)
        await asyncio.sleep(0)  # let what the call started log before the logs are read
        problems += _logged_errors(self.caplog, since)
        assert not problems, f"{command.key}: " + "; ".join(problems)
        self.codes[msgspec.json.decode(response.content)["ErrorCode"]] += 1


@pytest.mark.parametrize("service", SERVICES)
async def test_generated_bodies(server: Server, service: str,
                                caplog: pytest.LogCaptureFixture) -> None:
    """A hypothesis search per command of ``service``, each against a world of its own."""
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
                check = CallCheck(command, http, tim, caplog)
                try:
                    await fuzz(payloads(command.request_type, world, command.legacy_fields),
                               check, FUZZ)
                except Exception as exc:
                    failures[command.key] = failure_text(exc)
            codes = check.codes
            print(f"{command.key}: {sum(codes.values())} bodies, {codes[0]} OK, "
                  f"most frequent codes {dict(codes.most_common(5))}")
    print(f"{service}: {len(commands)} commands in {time.monotonic() - started:.1f} s")
    assert not failures, "\n\n".join(f"{key}:\n{text}" for key, text in failures.items())


def test_the_checks_catch_what_they_look_for() -> None:
    command = dispatch.COMMANDS[("openim", "sendmsg")]
    ok, json_type = b'{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}', "application/json"
    assert _problems(ok, 200, json_type, command) == []
    assert _problems(ok, 500, json_type, command) == ["HTTP 500"]
    assert _problems(ok, 200, "text/html", command) == ["content-type 'text/html'"]
    assert _problems(b"oops", 200, json_type, command) == ["not JSON: b'oops'"]
    assert _problems(b'{"ErrorCode":0}', 200, json_type, command)[0].startswith("no envelope")
    internal = b'{"ActionStatus":"FAIL","ErrorCode":91000,"ErrorInfo":"x"}'
    assert _problems(internal, 200, json_type, command) == ["internal error 91000: x"]
    mixed = b'{"ActionStatus":"OK","ErrorCode":90001,"ErrorInfo":"Traceback (most"}'
    assert len(_problems(mixed, 200, json_type, command)) == 2


def test_every_registered_command_is_fuzzed() -> None:
    """The parametrization covers the whole registry (new commands are fuzzed at once)."""
    assert {svc for svc, _ in dispatch.COMMANDS} == set(SERVICES)
    assert len(dispatch.COMMANDS) >= 50
