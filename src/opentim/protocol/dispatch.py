"""Command registry: ``/v4/{service}/{command}`` → a typed request and a handler.

Service modules declare their commands with :func:`command`; the REST edge looks them up,
decodes the body into the command's request type, and calls the handler. This registry is
the one list of OpenTIM's REST commands (docs/rest-commands.md#coverage is generated from
it). A command's handler sits next to its request type in ``services/`` and calls its
rules in ``domain/`` by name: ``Command.handler.__module__`` is one step from the rules.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from opentim import errors
from opentim.protocol import tencent_commands

if TYPE_CHECKING:
    from opentim.runtime import Context

RequestT = TypeVar("RequestT", bound=msgspec.Struct)
Handler = Callable[["Context", Any], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Service:
    """A Tencent service: its name and the codes its commands use for generic failures."""

    name: str
    invalid_parameter: type[errors.TimError]
    internal_error: type[errors.TimError]
    unknown_command: type[errors.TimError]


@dataclass(frozen=True, slots=True)
class Command:
    service: Service
    name: str
    request_type: type[msgspec.Struct]
    handler: Handler
    # Share of the app's per-command rate this command gets (multiaccount_import: half).
    rate_factor: float = 1.0
    # Renames legacy field names that deployed clients still send.
    legacy_fields: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """Service and command: what the rate limit counts (names repeat across services)."""
        return f"{self.service.name}/{self.name}"

    def decode(self, doc: dict[str, Any]) -> Any:
        for old, new in self.legacy_fields:
            if old in doc and new not in doc:
                doc[new] = doc.pop(old)
        try:
            return msgspec.convert(doc, self.request_type, strict=True)
        except msgspec.ValidationError as exc:
            raise self.service.invalid_parameter(f"invalid request: {exc}") from None
        except RecursionError:  # the decoder's limit, met a few frames deeper
            raise self.service.invalid_parameter(
                "invalid request: arrays and objects nest too deeply") from None


SERVICES: dict[str, Service] = {}
COMMANDS: dict[tuple[str, str], Command] = {}


def service(name: str, *, invalid_parameter: type[errors.TimError],
            internal_error: type[errors.TimError],
            unknown_command: type[errors.TimError]) -> Service:
    svc = Service(name, invalid_parameter, internal_error, unknown_command)
    SERVICES[name] = svc
    return svc


def command(svc: Service, name: str, request_type: type[RequestT], *, rate_factor: float = 1.0,
            legacy_fields: tuple[tuple[str, str], ...] = ()
            ) -> Callable[[Callable[[Context, RequestT], Awaitable[dict[str, Any] | None]]],
                          Callable[[Context, RequestT], Awaitable[dict[str, Any] | None]]]:
    def register(handler: Callable[[Context, RequestT], Awaitable[dict[str, Any] | None]]
                 ) -> Callable[[Context, RequestT], Awaitable[dict[str, Any] | None]]:
        COMMANDS[(svc.name, name)] = Command(
            svc, name, request_type, handler, rate_factor, legacy_fields
        )
        return handler

    return register


def lookup(service_name: str, command_name: str) -> Command:
    found = COMMANDS.get((service_name, command_name))
    if found is not None:
        return found
    # (long names are not cached: 1024 of them could hold megabytes)
    why = _missing if len(service_name) + len(command_name) <= 128 else _missing.__wrapped__
    error, info = why(service_name, command_name)
    raise error(info)


COVERAGE = "docs/rest-commands.md#coverage"


@functools.lru_cache(maxsize=1024)
def _missing(service_name: str, command_name: str) -> tuple[type[errors.TimError], str]:
    """Why a path names no command: a Tencent command OpenTIM lacks, or a typo.

    Only failed lookups get here, so the hot path never pays for the comparisons; the
    answers are cached because a misconfigured client repeats the same wrong path (the
    "did you mean" comparison costs ~90 us, more than a whole successful call's edge).
    """
    svc = SERVICES.get(service_name)
    error = svc.unknown_command if svc is not None else errors.ResourceUrlInvalid
    page = tencent_commands.doc_page(service_name, command_name)
    if page is not None:
        return error, (f"{service_name}/{command_name} is a Tencent Cloud Chat command not "
                       f"implemented by OpenTIM (see {COVERAGE}; Tencent's page: {page})")
    tencent = tencent_commands.COMMANDS.get(service_name)
    if svc is None and tencent is None:
        known = set(SERVICES) | set(tencent_commands.COMMANDS)
        return error, (f"unknown service {errors.shown(service_name)}"
                       + _did_you_mean(service_name, known))
    known = {name for svc_name, name in COMMANDS if svc_name == service_name}
    known |= set(tencent or ())
    return error, (f"unknown command {errors.shown(command_name)} in service "
                   f"{service_name!r}" + _did_you_mean(command_name, known))


def _did_you_mean(word: str, known: set[str]) -> str:
    if len(word) > 64:  # difflib is quadratic; no real name is this long
        return ""
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.75)
    return f": did you mean {close[0]!r}?" if close else ""


def load_services() -> None:
    """Import every service module so their commands register (group_open_http_svc is a
    package whose ``__init__`` imports its groups, members and messages modules)."""
    from opentim.services import (  # noqa: F401
        group_open_attr_http_svc,
        group_open_avchatroom_http_svc,
        group_open_http_svc,
        im_open_login_svc,
        openim,
        profile,
    )
