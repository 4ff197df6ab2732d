"""Request bodies: JSON decoding and the checks every command's body gets before its own.

- The decoder gives up on nesting deeper than the interpreter's recursion limit (about a
  thousand levels) with a RecursionError, not a DecodeError: that is a 60003 like any other
  body that cannot be read.
- U+0000 is valid JSON (``"\\u0000"``) but PostgreSQL's text columns refuse it, so a NUL in
  any string (or key) of any request is a parameter error on every database alike. The scan
  for it is a substring search of the raw bytes; the document is walked only when that hits.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors

_json = msgspec.json.Decoder()
# A NUL can only reach a decoded string through this escape: the decoder rejects a raw 0x00
# byte inside a string. ``\\u0000`` (an escaped backslash) also matches; the walk sorts it out.
_NUL_ESCAPE = b"\\u0000"
_KEY_SHOWN = 32
_PATH_SHOWN = 160


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; raises 60003 when it is not one."""
    if not raw.strip():
        raise errors.JsonParseError("request body is empty: send {} when there are no fields")
    try:
        doc = _json.decode(raw)
    except msgspec.DecodeError as exc:
        raise errors.JsonParseError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise errors.JsonParseError(
            "request body is not valid JSON: arrays and objects nest too deeply"
        ) from None
    if not isinstance(doc, dict):
        raise errors.JsonParseError("request body must be a JSON object")
    return doc


def nul_path(raw: bytes, doc: Any) -> str | None:
    """Where the first string holding U+0000 is in ``doc`` (decoded from ``raw``), or None."""
    # One-byte search first: memchr is ~20x faster than a substring search (3.7 us -> 0.2 us
    # on an 8 KB body), and most bodies hold no backslash at all.
    if b"\\" not in raw or _NUL_ESCAPE not in raw:
        return None
    return find_nul(doc)


def find_nul(doc: Any) -> str | None:
    """The JSON path (``$.a[0].b``) of a string value or key holding U+0000, or None.

    Iterative, and each node records only its parent, so a deep or wide document costs
    O(size) and no recursion.
    """
    nodes: list[tuple[int, str | int]] = []  # node -> (parent node, key); -1 is the root
    stack: list[tuple[Any, int]] = [(doc, -1)]
    while stack:
        value, node = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return _path(nodes, node)
        elif isinstance(value, dict):
            for key, child in value.items():
                nodes.append((node, key))
                if "\x00" in key:
                    return _path(nodes, len(nodes) - 1)
                stack.append((child, len(nodes) - 1))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                nodes.append((node, index))
                stack.append((child, len(nodes) - 1))
    return None


def _path(nodes: list[tuple[int, str | int]], node: int) -> str:
    keys: list[str | int] = []
    while node >= 0:
        node, key = nodes[node]
        keys.append(key)
    # The path is echoed in ErrorInfo: long keys are cut, a NUL in a key shows as its escape,
    # and a path through hundreds of levels keeps only its end.
    text = "".join(f"[{k}]" if isinstance(k, int) else f".{k[:_KEY_SHOWN]}"
                   for k in reversed(keys)).replace("\x00", "\\u0000")
    return "$" + text if len(text) <= _PATH_SHOWN else "$…" + text[-_PATH_SHOWN:]


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays/objects in ``value`` nest more than ``limit`` levels (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
