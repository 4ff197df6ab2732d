"""No secret reaches a log: the filter every log handler of the server runs.

REST and gateway URLs carry UserSigs in their query (an App admin's sig is a REST
credential for up to 180 days), webhook URLs carry ``Sign``, database and Redis URLs may
carry passwords. Libraries log those URLs in places OpenTIM does not control: uvicorn logs
each WebSocket accept with its query at INFO, websockets logs the request line at DEBUG,
uvicorn's TRACE logger prints whole ASGI scopes, an HTTP client error names the URL it
failed on. So instead of trusting each call site, the handlers themselves rewrite every
record (message, arguments, traceback text) before it is formatted.

A secret is written as ``[usersig hidden]``: the parameter's name stays, so a line still
says what it was about, but neither the value nor ``usersig=`` (which an operator may grep
for to check the logs) appears.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

# Query parameters and field names whose values are secrets, compared case-insensitively:
# OpenTIM's (usersig, Sign of a callback), and the usual names other software uses.
SECRET_NAMES = ("usersig", "user_sig", "sign", "signature", "sig", "token", "access_token",
                "callback_token", "secret", "secret_key", "key", "password", "passwd", "pwd",
                "authorization", "cookie")

_NAMES = "|".join(sorted(SECRET_NAMES, key=len, reverse=True))
# name=value in a query string, URL-encoded or not (an encoded "=" is %3D); the value runs
# to the next separator.
_QUERY = re.compile(rf"(?i)(?<![A-Za-z0-9_\-])({_NAMES})(?:=|%3D)[^&\s'\"<>#;,]*")
# 'name': 'value', "name": "value", ('name', 'value'), (b'name', b'value'): dicts, JSON,
# and parsed query/header lists.
_QUOTED = re.compile(rf"(?i)(['\"])({_NAMES})\1(\s*[:,]\s*)b?(['\"])(?:\\.|(?!\4).)*\4")
# An HTTP header line as websockets logs it at DEBUG ("< Authorization: …").
_HEADER = re.compile(r"(?im)^([<>] )(authorization|proxy-authorization|cookie|set-cookie):.*$")
# user:password@ in any URL.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*):[^@\s/]*@")


def redact(text: str) -> str:
    """``text`` with every secret it carries replaced by ``[<name> hidden]``."""
    if not text:
        return text
    text = _QUERY.sub(lambda m: f"[{m.group(1)} hidden]", text)
    text = _QUOTED.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}"
                                 f"{m.group(4)}[hidden]{m.group(4)}", text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}: [hidden]", text)
    return _USERINFO.sub(lambda m: f"{m.group(1)}:[hidden]@", text)


# uvicorn's and websockets' per-connection lines for the gateway: its access log, which is
# off like the REST one (any client could otherwise write lines to the log at will).
_GATEWAY_ACCESS_LINES = frozenset({
    '%s - "WebSocket %s" [accepted]',
    '%s - "WebSocket %s" 403',
    '%s - "WebSocket %s" %d',
    "connection open",
    "connection closed",
})

# uvicorn's warnings about a client's malformed request: one per bad request, so any client
# could fill the log with them. At most one of each per FLOOD_INTERVAL gets through, saying
# how many were held back since the last.
_CLIENT_FAULT_LINES = frozenset({
    "Invalid HTTP request received.",
    "Unsupported upgrade request.",
    "Invalid HTTP request: request line too long.",
})
FLOOD_INTERVAL = 10.0

_formatter = logging.Formatter()


class RedactSecrets(logging.Filter):
    """A handler filter: drops the gateway's access lines, holds back floods of uvicorn's
    client-fault warnings, redacts everything else."""

    def __init__(self, name: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and record.levelno == logging.INFO and \
                record.msg in _GATEWAY_ACCESS_LINES:
            return False
        if record.name.startswith("uvicorn") and record.msg in _CLIENT_FAULT_LINES \
                and not self._let_through(record):
            return False
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it
            return True
        # Rendered once, here: the arguments cannot be redacted separately.
        record.msg = redact(message)
        record.args = None
        record.__dict__.pop("color_message", None)  # uvicorn's coloured copy of the template
        if record.exc_info and not record.exc_text:
            record.exc_text = _formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True

    def _let_through(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        key = str(record.msg)
        if now - self._last.get(key, -FLOOD_INTERVAL) < FLOOD_INTERVAL:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{key} ({held} more like it not logged since the last one)"
        return True
