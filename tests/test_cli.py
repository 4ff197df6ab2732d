"""The `opentim` command, end to end: a real server process answering Tencent's own sigs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from TLSSigAPIv2 import TLSSigAPIv2

from opentim.protocol import usersig
from tests.helpers import free_port

OPENTIM = [sys.executable, "-m", "opentim"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPENTIM, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def start_server(db: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*OPENTIM, "serve", "--db", db, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read()}") from None  # type: ignore[union-attr]
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def post(port: int, path: str, sdkappid: int, sig: str, body: bytes) -> dict:
    url = f"http://127.0.0.1:{port}/v4/{path}"
    params = {"sdkappid": sdkappid, "identifier": "administrator", "usersig": sig,
              "random": 7, "contenttype": "json"}
    return httpx.post(url, params=params, content=body, timeout=10).json()


def test_serve_bootstraps_a_dev_app_that_answers_tencent_sigs(tmp_path: Path) -> None:
    port = free_port()
    proc = start_server(f"sqlite:///{tmp_path}/first.db", port)
    try:
        time.sleep(0.5)
    finally:
        banner = stop(proc)
    sdkappid = int(re.search(r"SDKAppID:\s+(\d+)", banner).group(1))  # type: ignore[union-attr]
    key = re.search(r"secret key:\s+(\w+)", banner).group(1)  # type: ignore[union-attr]
    assert "curl" in banner and "admin UserSig" in banner

    proc = start_server(f"sqlite:///{tmp_path}/first.db", port)
    try:
        sig = TLSSigAPIv2(sdkappid, key).gen_sig("administrator")
        reply = post(port, "im_open_login_svc/account_import", sdkappid, sig,
                     b'{"UserID":"alice"}')
        assert reply == {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
        reply = post(port, "group_open_http_svc/create_group", sdkappid, sig,
                     b'{"Type":"Public","Name":"n","Owner_Account":"alice"}')
        assert reply["ErrorCode"] == 0 and reply["GroupId"].startswith("@TGS#")
        # the printed curl line works as printed (its sig came from OpenTIM's generator)
        url = re.search(r"curl -s -X POST '([^']+)'", banner).group(1)  # type: ignore[union-attr]
        url = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", url)
        assert httpx.post(url, content=b'{"UserID":"bob"}').json()["ErrorCode"] == 0
    finally:
        second = stop(proc)
    assert "Empty database" not in second  # only an empty database gets a dev app


def test_app_commands_and_a_running_server_sees_changes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/apps.db"
    created = run("app", "create", "--sdkappid", "1400000123", "--admin", "ops",
                  "--admin", "bot", "--edition", "standard", "--no-online-member-list",
                  "--rate-limit", "0", "--db", db)
    assert created.returncode == 0, created.stderr
    key = re.search(r"secret key:\s+(\w+)", created.stdout).group(1)  # type: ignore[union-attr]
    assert "edition:       standard" in created.stdout
    again = run("app", "create", "--sdkappid", "1400000123", "--db", db)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = run("app", "list", env={"OPENTIM_DB": db})
    assert "1400000123" in listed.stdout and key not in listed.stdout
    assert "bot, ops" in listed.stdout

    port = free_port()
    proc = start_server(db, port)
    try:
        sig = TLSSigAPIv2(1400000123, key).gen_sig("ops")
        body = b'{"CheckItem":[{"UserID":"x"}]}'
        url = f"http://127.0.0.1:{port}/v4/im_open_login_svc/account_check"
        params = {"sdkappid": 1400000123, "identifier": "ops", "usersig": sig, "random": 1}
        assert httpx.post(url, params=params, content=body).json()["ErrorCode"] == 0
        updated = run("app", "update", "--sdkappid", "1400000123", "--admin", "newadmin",
                      "--db", db)
        assert updated.returncode == 0, updated.stderr
        deadline = time.monotonic() + 10
        code = 0
        while time.monotonic() < deadline:
            code = httpx.post(url, params=params, content=body).json()["ErrorCode"]
            if code == 60010:
                break
            time.sleep(0.2)
        assert code == 60010  # "ops" is no longer an admin
        created_later = run("app", "create", "--sdkappid", "1400000124", "--key", "k" * 8,
                            "--db", db)
        assert created_later.returncode == 0
        sig = TLSSigAPIv2(1400000124, "k" * 8).gen_sig("administrator")
        params = {"sdkappid": 1400000124, "identifier": "administrator", "usersig": sig,
                  "random": 1}
        assert httpx.post(url, params=params, content=body).json()["ErrorCode"] == 0
    finally:
        stop(proc)


def test_update_unknown_app_fails(tmp_path: Path) -> None:
    result = run("app", "update", "--sdkappid", "5", "--rate-limit", "3",
                 "--db", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_usersig_command_matches_tencents_verifier() -> None:
    result = run("usersig", "--sdkappid", "1400000000", "--key", "secret",
                 "--identifier", "alice", "--expire", "3600")
    sig = result.stdout.strip()
    verified = usersig.verify(sig, sdkappid=1400000000, identifier="alice", key="secret",
                              now=time.time())
    assert verified.identifier == "alice"


@pytest.mark.parametrize(("bad", "message"), [
    ("mysql://x/y",
     "opentim: unsupported database URL 'mysql://x/y': use sqlite:///… or postgresql://…"),
    ("not a url", "opentim: cannot use database not a url: "),
])
def test_unsupported_database_url(bad: str, message: str) -> None:
    """A usage error: exit code 2 and one line saying what is wrong, never a traceback."""
    result = run("app", "list", "--db", bad)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
