"""UserSig v2: decoding, verification (with a bounded cache) and generation.

The format is the one the official ``tls-sig-api-v2`` libraries produce
(https://github.com/tencentyun/tls-sig-api-v2-python; docs/running.md#usersigs-opentim-usersig):
base64 with ``+/=`` mapped to ``*-_`` over a zlib stream of a JSON document whose
``TLS.sig`` is ``HMAC-SHA256(secret_utf8, content)``. The secret is used as its UTF-8 text,
exactly as the libraries do, not hex-decoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from opentim import errors

_TO_STD = bytes.maketrans(b"*-_", b"+/=")
_FROM_STD = bytes.maketrans(b"+/=", b"*-_")
# A legitimate sig inflates to a few hundred bytes; cap inflation so a crafted one cannot.
_MAX_INFLATED = 4096


class _SigDoc(msgspec.Struct, frozen=True):
    identifier: str = msgspec.field(name="TLS.identifier")
    sdkappid: int = msgspec.field(name="TLS.sdkappid")
    time: int = msgspec.field(name="TLS.time")
    expire: int = msgspec.field(name="TLS.expire")
    sig: str = msgspec.field(name="TLS.sig")
    userbuf: str | None = msgspec.field(name="TLS.userbuf", default=None)


_decoder = msgspec.json.Decoder(_SigDoc)


@dataclass(frozen=True, slots=True)
class VerifiedSig:
    sdkappid: int
    identifier: str
    expires_at: int
    issued_at: int = 0  # TLS.time


def _content(identifier: str, sdkappid: int, issued: int, expire: int,
             userbuf: str | None) -> bytes:
    text = (
        f"TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\n"
        f"TLS.time:{issued}\nTLS.expire:{expire}\n"
    )
    if userbuf is not None:
        text += f"TLS.userbuf:{userbuf}\n"
    return text.encode()


def _hmac(key: str, content: bytes) -> bytes:
    return base64.b64encode(hmac.new(key.encode(), content, hashlib.sha256).digest())


_NOT_A_SIG = ("UserSig is not a valid UserSig: {why}. Generate one with a tls-sig-api-v2 "
              "library or `opentim usersig` from the app's secret key")


def _undecodable(why: str) -> errors.TimError:
    # Python's own exception texts ("Incorrect padding") mean nothing to a caller.
    return errors.UserSigUndecodable(_NOT_A_SIG.format(why=why))


def decode(usersig: str) -> _SigDoc:
    """Decode without verifying; raises 70003 when the sig is not a UserSig v2."""
    try:
        raw = base64.b64decode(usersig.encode().translate(_TO_STD), validate=True)
    except (binascii.Error, UnicodeError):
        raise _undecodable("it is not base64 (with * - _ in place of + / =)") from None
    try:
        inflater = zlib.decompressobj()
        doc = inflater.decompress(raw, _MAX_INFLATED)
    except zlib.error:
        raise _undecodable("its base64 does not hold a zlib stream") from None
    if inflater.unconsumed_tail:
        raise _undecodable(f"it inflates to more than {_MAX_INFLATED} bytes")
    try:
        return _decoder.decode(doc)
    except (msgspec.DecodeError, RecursionError):  # 4 KB of "[[[[…" reaches the limit
        raise _undecodable(
            "it does not hold the JSON document of a UserSig v2 (TLS.identifier, "
            "TLS.sdkappid, TLS.time, TLS.expire, TLS.sig)") from None


def expired(expires_at: int) -> errors.TimError:
    """70001, saying when (UTC) and what to do."""
    try:
        when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # a time no calendar holds
        when = f"Unix time {expires_at}"
    return errors.UserSigExpired(
        f"UserSig expired at {when} (TLS.time + TLS.expire): generate a new UserSig"
    )


def verify(usersig: str, *, sdkappid: int, identifier: str, key: str, now: float) -> VerifiedSig:
    """Check a sig in the order Tencent's reference verifier does: decode, sdkappid,
    identifier, expiry, then the HMAC (docs/errors.md#usersig-failures)."""
    if not usersig:
        raise errors.UserSigEmpty()
    doc = decode(usersig)
    if doc.sdkappid != sdkappid:
        raise errors.UserSigSdkAppIdMismatch(
            f"sdkappid {sdkappid} does not match the UserSig's sdkappid {doc.sdkappid}"
        )
    if doc.identifier != identifier:
        raise errors.UserSigIdentifierMismatch(
            f"identifier {identifier!r} does not match the UserSig's identifier "
            f"{doc.identifier!r}"
        )
    expires_at = doc.time + doc.expire
    if now > expires_at:
        raise expired(expires_at)
    if doc.userbuf is not None:
        # IM sigs carry no userbuf; one that does was made for another product (TRTC).
        raise errors.UserSigVerifyFailed("UserSig carries a userbuf, which IM does not accept")
    expected = _hmac(key, _content(doc.identifier, doc.sdkappid, doc.time, doc.expire, None))
    if not hmac.compare_digest(expected, doc.sig.encode()):
        raise errors.UserSigVerifyFailed()
    return VerifiedSig(doc.sdkappid, doc.identifier, expires_at, doc.time)


def generate(sdkappid: int, key: str, identifier: str, expire: int = 180 * 86400,
             *, now: float | None = None) -> str:
    """Make a UserSig the way ``tls-sig-api-v2`` does (used by the CLI and examples)."""
    issued = int(time.time() if now is None else now)
    sig = _hmac(key, _content(identifier, sdkappid, issued, expire, None)).decode()
    doc = {
        "TLS.ver": "2.0",
        "TLS.identifier": identifier,
        "TLS.sdkappid": sdkappid,
        "TLS.expire": expire,
        "TLS.time": issued,
        "TLS.sig": sig,
    }
    return base64.b64encode(zlib.compress(msgspec.json.encode(doc))).translate(_FROM_STD).decode()


class SigCache:
    """Bounded cache of verified sigs, keyed by (sig, key) so a key rotation invalidates it.

    Verification inflates and HMACs on every request; most REST callers reuse one admin sig
    for its whole life, so a hit skips all of that. Entries are re-checked against the
    request's sdkappid/identifier and against expiry on every hit.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._entries: dict[tuple[str, str], VerifiedSig] = {}

    def verify(self, usersig: str, *, sdkappid: int, identifier: str, key: str,
               now: float) -> VerifiedSig:
        hit = self._entries.get((usersig, key))
        if hit is not None and hit.sdkappid == sdkappid and hit.identifier == identifier:
            if now > hit.expires_at:
                del self._entries[(usersig, key)]
                raise expired(hit.expires_at)
            return hit
        verified = verify(usersig, sdkappid=sdkappid, identifier=identifier, key=key, now=now)
        if len(self._entries) >= self._max:
            # Drop the oldest insertion (dicts keep insertion order): cheap FIFO bound.
            del self._entries[next(iter(self._entries))]
        self._entries[(usersig, key)] = verified
        return verified
