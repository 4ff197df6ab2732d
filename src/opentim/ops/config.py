"""``opentim serve --config FILE``: every server setting from a TOML file, with flags and
environment variables on top, checked before anything starts.

Each field of ``settings.Settings`` is a key of the file (its name, e.g.
``webhook_timeout = 5.0``) and an environment variable (``OPENTIM_`` + the name in
capitals); ``log_level``, ``log_format`` and ``access_log`` are keys too. A value comes
from, in this order: a flag on the command line, the environment, the file, the default.
The types come from ``Settings``' annotations and the bounds from ``BOUNDS`` below; every
value (from any source) is checked, and the first problem is a ``ConfigError`` whose text
names the key, the flag or the variable (docs/configuration.md#the-config-file).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentim.ops.logs import LOG_FORMATS, LogLevelError, parse_levels
from opentim.settings import Settings

ENV_PREFIX = "OPENTIM_"

# Inclusive bounds of the numeric settings (None: unbounded). A number not listed here
# must be >= 0.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "port": (0, 65535),
    "metrics_port": (0, 65535),
    "max_connections": (1, None),
    "header_timeout": (0.1, None),
    "body_timeout": (0.1, None),
    "keep_alive_timeout": (0.1, None),
    "max_header_bytes": (1024, None),
    "app_refresh_interval": (0.1, None),
    "max_body_bytes": (1, None),
    "heartbeat_timeout": (0.1, None),
    "push_backlog_bytes": (1024, None),
    "gateway_write_timeout": (0.1, None),
    "gateway_write_delay": (0, 1),
    "max_web_connections_per_account": (1, None),
    "max_device_connections_per_account": (1, None),
    "max_frame_bytes": (1024, None),
    "message_retention_days": (0, None),
    "retention_interval": (1, None),
    "mark500_ttl": (1, None),
    "sweep_interval": (0.1, None),
    "webhook_timeout": (0.1, None),
    "webhook_retries": (0, 100),
    "webhook_queue_size": (1, None),
}
# Strings that may not be empty (all of them: an empty URL or address means nothing).
# Settings whose values may carry a password are never quoted in an error.
SECRET_VALUES = frozenset({"db", "redis"})

# Keys of the file (and environment variables) that are not Settings fields.
LOG_KEYS = ("log_level", "log_format")


class ConfigError(Exception):
    """A setting that cannot be used; its text is the whole message (one line)."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: type  # int, float, bool or str
    optional: bool  # may be None (left out of the file: the default)
    default: Any

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def settings_fields() -> dict[str, Field]:
    """Every Settings field with its type, from the annotations."""
    hints = typing.get_type_hints(Settings)
    found: dict[str, Field] = {}
    for f in dataclasses.fields(Settings):
        hint = hints[f.name]
        optional = False
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            hint = args[0] if len(args) == 1 else str
        if hint not in (int, float, bool, str):
            hint = str
        found[f.name] = Field(f.name, hint, optional, f.default)
    return found


def known_keys() -> list[str]:
    return [*settings_fields(), *LOG_KEYS]


@dataclass(frozen=True, slots=True)
class Resolved:
    settings: Settings
    log_levels: list[str]
    log_format: str
    # Where each value not left at its default came from ("--port", "OPENTIM_PORT",
    # "opentim.toml: port"), for messages.
    sources: dict[str, str]


def resolve(given: Mapping[str, tuple[Any, str]], config_path: str | None,
            environ: Mapping[str, str]) -> Resolved:
    """The settings of one ``opentim serve``.

    ``given``: the values its flags received from the command line or their environment
    variable, by Settings name (and "log_level", "log_format"), each with the flag or
    variable it came from. Other fields read ``OPENTIM_<NAME>`` here, then the file.
    """
    fields = settings_fields()
    from_file = load_file(config_path) if config_path else {}
    label = f"config file {config_path}: " if config_path else ""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, field in fields.items():
        if name in given:
            value, source = given[name]
            values[name], sources[name] = _check(field, value, source), source
        elif environ.get(field.env):  # (an empty variable is not set, as for the flags)
            values[name] = _check(field, _from_env(field, environ[field.env]), field.env)
            sources[name] = field.env
        elif name in from_file:
            source = f"{label}key {name!r}"
            values[name], sources[name] = _check(field, from_file[name], source), source
    levels, format_ = _log_settings(given, from_file, environ, label, sources)
    return Resolved(Settings(**values), levels, format_, sources)


def _log_settings(given: Mapping[str, tuple[Any, str]], from_file: Mapping[str, Any],
                  environ: Mapping[str, str], label: str,
                  sources: dict[str, str]) -> tuple[list[str], str]:
    levels: list[str] = ["info"]
    if "log_level" in given:
        levels, sources["log_level"] = list(given["log_level"][0]), given["log_level"][1]
    elif environ.get("OPENTIM_LOG_LEVEL"):
        levels, sources["log_level"] = [environ["OPENTIM_LOG_LEVEL"]], "OPENTIM_LOG_LEVEL"
    elif "log_level" in from_file:
        value, sources["log_level"] = from_file["log_level"], f"{label}key 'log_level'"
        if isinstance(value, str):
            levels = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            levels = value
        else:
            raise ConfigError(f"{sources['log_level']} must be a string or an array of "
                              f"strings such as [\"info\", \"opentim.webhooks=debug\"], got "
                              f"{_kind(value)}")
    try:
        parse_levels(levels)
    except LogLevelError as exc:
        raise ConfigError(f"{sources.get('log_level', '--log-level')}: {exc}") from None
    format_ = "text"
    if "log_format" in given:
        format_, sources["log_format"] = given["log_format"]
    elif environ.get("OPENTIM_LOG_FORMAT"):
        format_, sources["log_format"] = environ["OPENTIM_LOG_FORMAT"], "OPENTIM_LOG_FORMAT"
    elif "log_format" in from_file:
        format_, sources["log_format"] = from_file["log_format"], f"{label}key 'log_format'"
    if format_ not in LOG_FORMATS:
        shown = repr(format_) if isinstance(format_, str) else _kind(format_)
        raise ConfigError(f"{sources['log_format']} must be one of {', '.join(LOG_FORMATS)}, "
                          f"got {shown}")
    return levels, format_


def load_file(path: str) -> dict[str, Any]:
    """The file's keys, each a known one (else a ConfigError naming it)."""
    try:
        with Path(path).open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: "
                          f"{exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    known = known_keys()
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else \
                " (docs/configuration.md lists the keys)"
            raise ConfigError(f"config file {path}: unknown key {key!r}{hint}")
    return data


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _from_env(field: Field, text: str) -> Any:
    """An environment variable's text as the field's type (a ConfigError when it is not)."""
    stripped = text.strip()
    try:
        if field.kind is bool:
            if stripped.lower() in _TRUE:
                return True
            if stripped.lower() in _FALSE:
                return False
            raise ValueError
        if field.kind is int:
            return int(stripped)
        if field.kind is float:
            return float(stripped)
    except ValueError:
        shown = "" if field.name in SECRET_VALUES else f", got {_short(text)!r}"
        raise ConfigError(f"{field.env} must be {_expected(field)}{shown}") from None
    return text


def _check(field: Field, value: Any, source: str) -> Any:
    """``value`` as the field's type and within its bounds, or a ConfigError."""
    if field.optional and (value is None or value == ""):
        return None  # (`--redis ''`: none, whatever the environment or the file say)
    kind = field.kind
    ok = (isinstance(value, bool) if kind is bool else
          isinstance(value, int) and not isinstance(value, bool) if kind is int else
          isinstance(value, int | float) and not isinstance(value, bool) if kind is float
          else isinstance(value, str))
    if not ok:
        raise ConfigError(f"{source} must be {_expected(field)}, got {_kind(value)}")
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{source} must be {_expected(field)}, got {value}")
    if kind in (int, float):
        low, high = BOUNDS.get(field.name, (0, None))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{source} must be {_expected(field)}, got {value:g}")
    if kind is str:
        _check_text(field, value, source)
    return value


def _check_text(field: Field, value: str, source: str) -> None:
    if not value:
        raise ConfigError(f"{source} must not be empty")
    if field.name == "redis_prefix" and any(c.isspace() or c in "{}*?[]" for c in value):
        raise ConfigError(f"{source} must be letters, digits and punctuation other than "
                          f"{{}}*?[] only, no spaces, got {_short(value)!r}")


def _expected(field: Field) -> str:
    what = {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}[field.kind]
    low, high = BOUNDS.get(field.name, (0, None)) if field.kind in (int, float) else \
        (None, None)
    if low is not None and high is not None:
        what += f" from {low:g} to {high:g}"
    elif low is not None:
        what += f" >= {low:g}"
    return what


def _kind(value: Any) -> str:
    """How a wrong value is shown: numbers and booleans as they are, anything else by its
    TOML type only (a string could be a password put under the wrong key)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}"
    names: dict[type, str] = {str: "a string", list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"
