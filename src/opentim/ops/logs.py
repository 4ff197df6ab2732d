"""Log lines: the JSON format, levels per component, and the opt-in REST request log.

Every handler of ``opentim serve`` runs ``redact.RedactSecrets`` before its formatter (see
``serving.log_config``): the filter rewrites the record's message and traceback text, and
the formatters here write only those (and the record's time, level and logger name), so a
JSON line carries no more than a text line does.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentim.redact import redact

LOG_FORMATS = ("text", "json")
# uvicorn's names (its "trace" is level 5), lowest last.
LEVEL_NAMES = ("critical", "error", "warning", "info", "debug", "trace")
_LOGGER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

ACCESS_LOGGER = "opentim.access"
access_log = logging.getLogger(ACCESS_LOGGER)


class LogLevelError(ValueError):
    """A ``--log-level`` value that is neither a level nor ``logger=level``."""


def parse_levels(values: Iterable[str]) -> tuple[str, dict[str, str]]:
    """``["info", "opentim.webhooks=debug"]`` → ("info", {"opentim.webhooks": "debug"}).

    A bare level is the default of uvicorn's and OpenTIM's loggers (the last one given
    wins; "info" when none is); ``name=level`` sets that logger and its children, whoever
    wrote it (``opentim.webhooks``, ``uvicorn.error``, ``sqlalchemy.engine``…).
    """
    default = "info"
    levels: dict[str, str] = {}
    for value in values:
        for item in value.replace(",", " ").split():
            name, sep, level = item.rpartition("=")
            level = level.lower()
            if level not in LEVEL_NAMES:
                raise LogLevelError(f"{item!r}: the level must be one of "
                                    f"{', '.join(LEVEL_NAMES)}")
            if not sep:
                default = level
            elif not _LOGGER_NAME.fullmatch(name):
                raise LogLevelError(f"{item!r}: expected LEVEL or LOGGER=LEVEL, a logger "
                                    f"name such as opentim.webhooks")
            else:
                levels[name] = level
    return default, levels


def level_number(name: str) -> int:
    return 5 if name == "trace" else int(logging.getLevelName(name.upper()))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601, milliseconds), ``level``,
    ``logger``, ``message``, and ``exception`` / ``stack`` when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds)
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            # (behind RedactSecrets this was done, and redacted, already)
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = redact(record.stack_info)
        return json.dumps(doc, ensure_ascii=True)


def formatter_config(log_format: str) -> dict[str, Any]:
    """The ``logging.config`` formatter entry for ``log_format`` (text: uvicorn's)."""
    if log_format == "json":
        return {"()": "opentim.ops.logs.JsonFormatter"}
    return {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None}


def apply_levels(levels: Mapping[str, str]) -> None:
    """Set each named logger's level (after uvicorn set its own loggers' from the default)."""
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level_number(level))


# --- the REST request log ----------------------------------------------------------------

_MAX_PATH = 200


def shown_path(scope: Mapping[str, Any]) -> str:
    """The request's path as sent, never its query (where the UserSig is): percent-encoded
    (no line breaks), other bytes escaped, at most 200 characters."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        text = raw[:_MAX_PATH].decode("ascii", "backslashreplace")
    else:
        text = str(scope.get("path", ""))[:_MAX_PATH]
    text = text.split("?", 1)[0]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def log_request(scope: Mapping[str, Any], service: str, command: str, code: int,
                seconds: float) -> None:
    """One line per REST call: method, path, service/command, ErrorCode, latency."""
    method = str(scope.get("method", ""))[:16]
    access_log.info("%s %s service=%s command=%s ErrorCode=%d latency_ms=%.3f",
                    method if method.isalpha() else "?", shown_path(scope), service,
                    command, code, seconds * 1000)
