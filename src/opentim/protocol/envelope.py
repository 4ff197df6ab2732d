"""The REST envelope: every answer is HTTP 200 with ActionStatus/ErrorCode/ErrorInfo."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_OK_HEAD = b'{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""'


def ok(body: dict[str, Any] | None = None) -> bytes:
    """Encode a success; body fields follow the envelope, as in Tencent's samples.

    Values may be ``msgspec.Raw`` to splice pre-encoded JSON (the online list does).
    """
    if not body:
        return _OK_HEAD + b"}"
    # Splicing the fixed head avoids building a merged dict on the hot path.
    return _OK_HEAD + b"," + _encoder.encode(body)[1:]


def fail(code: int, info: str, extra: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info}
    if extra:
        doc.update(extra)
    return _encoder.encode(doc)
