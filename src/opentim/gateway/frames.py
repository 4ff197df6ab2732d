"""What a client frame may be: parsing and the bounds on what the server echoes back.

Pure functions of the frame's bytes (docs/client-protocol.md §2). The frame's size is
bounded before it gets here: uvicorn refuses (1009) a message larger than
``Settings.max_frame_bytes`` after permessage-deflate has inflated it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors

COMMANDS = ("heartbeat", "join_group", "quit_group", "modify_marks", "logout")

# The echoed ``id`` is bounded so that a reply is never much larger than its fixed part:
# a string of at most this many characters, or an integer that fits in 64 bits.
MAX_ID_CHARS = 64
_INT64 = range(-(1 << 63), 1 << 63)
# How much of an unknown ``cmd`` an error text repeats.
MAX_ECHOED_CMD_CHARS = 64


class MarkItem(msgspec.Struct):
    Member_Account: str
    Marks: list[int]


class Frame(msgspec.Struct):
    cmd: str
    id: Any = None  # echoed back as sent (checked by ``frame_id``)
    GroupId: str = ""
    CommandType: int = 0
    MemberList: list[MarkItem] = []


_decode_json = msgspec.json.Decoder().decode


def decode(raw: bytes) -> dict[str, Any]:
    """The frame as a JSON object; 60003 for anything else."""
    try:
        doc = _decode_json(raw)
    except msgspec.DecodeError as exc:
        raise errors.JsonParseError(f"bad frame: {exc}") from None
    except RecursionError:  # msgspec's nesting limit: reachable with a 2 KB frame
        raise errors.JsonParseError("bad frame: JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise errors.JsonParseError("a frame must be a JSON object")
    return doc


def frame_id(doc: dict[str, Any]) -> str | int | None:
    """The ``id`` to echo: null, an integer in [-2**63, 2**63), or a string of at most
    64 characters. Anything else (floats, booleans, arrays, objects, longer strings or
    integers) is refused with 10004, with a null ``id`` in the reply."""
    value = doc.get("id")
    if value is None:
        return None
    if (type(value) is int and value in _INT64) or \
            (type(value) is str and len(value) <= MAX_ID_CHARS):
        return value
    raise errors.InvalidParameter(
        f"id must be null, an integer of at most 64 bits or a string of at most "
        f"{MAX_ID_CHARS} characters")


def parse(doc: dict[str, Any]) -> Frame:
    try:
        return msgspec.convert(doc, Frame, strict=True)
    except msgspec.ValidationError as exc:
        raise errors.InvalidParameter(f"invalid frame: {exc}") from None
    except RecursionError:  # nested within the decoder's limit, but not the converter's
        raise errors.InvalidParameter("invalid frame: nested too deeply") from None


def unknown_command(cmd: str) -> errors.TimError:
    shown = cmd if len(cmd) <= MAX_ECHOED_CMD_CHARS else cmd[:MAX_ECHOED_CMD_CHARS] + "…"
    return errors.InvalidCommand(
        f"unknown gateway command {shown!r}: the commands are {', '.join(all_commands())}")


def all_commands() -> list[str]:
    """The session's commands and those the services registered (``commands.py``)."""
    from opentim.gateway.commands import REGISTRY

    return [*COMMANDS, *sorted(REGISTRY)]
