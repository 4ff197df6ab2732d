"""Integer field types for request Structs: every integer a client sends has a range.

JSON integers are unbounded and Python's are too, but the databases store 64-bit integers
(SQLite raises OverflowError past 2**63 - 1, asyncpg a DataError), so an integer that reaches
SQL or presence unbounded is an internal error waiting to happen. A field typed with one of
these fails decoding instead, with the service's invalid-parameter code (70402 / 10004),
before any handler runs.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1

# Any 64-bit signed integer: times, counts and flags whose handler checks the value itself.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=INT64_MAX)]
# Offsets, cursors and counts: never negative, and storable.
NonNegInt64 = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
# Tencent's 32-bit unsigned fields (Random, marks).
UInt32 = Annotated[int, msgspec.Meta(ge=0, le=UINT32_MAX)]
