"""Console sessions: login with a UserSig (or the one-time link), the cookie, CSRF, logout.

A session is a stateless token in the ``opentim_console`` cookie::

    v1.<base64url(JSON [sdkappid, identifier, expires_at, csrf nonce])>.<base64url(HMAC)>

The HMAC-SHA256 is keyed by the app's secret key, so every server process accepts the
token and changing the key ends every session of the app. ``expires_at`` is the UserSig's
own expiry (TLS.time + TLS.expire): the session ends when the sig would have. Every change
(a non-GET call) must carry the nonce in the ``X-CSRF-Token`` header.

Logout clears the cookie and puts the token on this process's revocation list (bounded,
kept until the token would expire): other processes sharing the database keep accepting a
copied token until it expires or the key changes (docs/console.md#sessions).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import msgspec

from opentim import errors
from opentim.domain.apps import App
from opentim.protocol.auth import authenticate
from opentim.runtime import Runtime

COOKIE = "opentim_console"
COOKIE_PATH = "/console"
CSRF_HEADER = "x-csrf-token"
_VERSION = "v1"
_MAC_CONTEXT = b"opentim console session\n"
# A cookie holding more is not ours (browsers cap a cookie near 4 KB anyway).
_MAX_TOKEN = 2048
# Logged-out tokens remembered per process; past this the earliest-expiring go first.
MAX_REVOKED = 10_000
# The one-time link: a code is good once, for this long, in the process that printed it.
LOGIN_CODE_TTL = 600.0
MAX_LOGIN_CODES = 16
# A session opened with the one-time link lasts this long (there is no UserSig to end it).
CODE_SESSION_SECONDS = 24 * 3600

_payload = msgspec.json.Decoder(tuple[int, str, int, str])


class ConsoleRefused(Exception):
    """A console call refused before any command ran: HTTP ``status`` and a Tencent-style
    ``code``/``info`` for the JSON reply."""

    def __init__(self, status: int, code: int, info: str) -> None:
        super().__init__(f"{code}: {info}")
        self.status = status
        self.code = code
        self.info = info


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(app: App, body: str) -> str:
    return _b64(hmac.new(app.secret_key.encode(), _MAC_CONTEXT + body.encode(),
                         hashlib.sha256).digest())


@dataclass(frozen=True, slots=True)
class Session:
    app: App
    identifier: str
    expires_at: int
    csrf: str
    token: str

    @property
    def sdkappid(self) -> int:
        return self.app.sdkappid


def issue(app: App, identifier: str, expires_at: int) -> Session:
    """A new session token for an App admin of ``app``."""
    nonce = secrets.token_urlsafe(24)
    body = _b64(msgspec.json.encode([app.sdkappid, identifier, expires_at, nonce]))
    token = f"{_VERSION}.{body}.{_mac(app, body)}"
    return Session(app, identifier, expires_at, nonce, token)


def _not_logged_in(info: str = "not logged in to the console: log in with a UserSig"
                   ) -> ConsoleRefused:
    return ConsoleRefused(401, errors.UserSigEmpty.code, info)


class LoginCodes:
    """One-time login codes (``opentim serve`` on a fresh database prints one)."""

    def __init__(self) -> None:
        self._codes: dict[str, tuple[int, str, float]] = {}

    def issue(self, sdkappid: int, identifier: str) -> str:
        now = time.monotonic()
        self._codes = {c: v for c, v in self._codes.items() if v[2] > now}
        while len(self._codes) >= MAX_LOGIN_CODES:
            del self._codes[next(iter(self._codes))]
        code = secrets.token_urlsafe(32)
        self._codes[code] = (sdkappid, identifier, now + LOGIN_CODE_TTL)
        return code

    def take(self, code: str) -> tuple[int, str] | None:
        """The (sdkappid, identifier) a code logs in, once; None when unknown, used or old."""
        found = self._codes.pop(code, None)
        if found is None or found[2] < time.monotonic():
            return None
        return found[0], found[1]


# The codes of this process: `opentim serve` issues one before the server starts.
LOGIN_CODES = LoginCodes()


class Sessions:
    """Checks and ends console sessions for one server process."""

    def __init__(self, runtime: Runtime, codes: LoginCodes = LOGIN_CODES) -> None:
        self.runtime = runtime
        self.codes = codes
        self._revoked: dict[str, int] = {}  # token MAC -> when the token expires

    # --- logging in ----------------------------------------------------------------------

    async def login(self, sdkappid: str, identifier: str, usersig: str) -> Session:
        """Checked exactly as a REST call's query (same order, same codes), then the
        identifier must be an App admin (60010)."""
        runtime = self.runtime
        now = runtime.clock()
        app = await authenticate(runtime, sdkappid=sdkappid, identifier=identifier,
                                 usersig=usersig, now=now)
        verified = runtime.sigs.verify(usersig, sdkappid=app.sdkappid, identifier=identifier,
                                       key=app.secret_key, now=now)
        if identifier not in app.admins:
            raise errors.NotAppAdmin(f"identifier {identifier!r} is not an App admin")
        return issue(app, identifier, verified.expires_at)

    async def login_with_code(self, code: str) -> Session:
        found = self.codes.take(code) if len(code) <= 128 else None
        if found is None:
            raise errors.UserSigVerifyFailed(
                "this login link was already used or is more than 10 minutes old: log in "
                "with the SDKAppID, an App admin and its UserSig")
        app = await self.runtime.apps.get_or_refresh(found[0])
        if app is None or found[1] not in app.admins:
            raise errors.NotAppAdmin("the login link's identifier is no longer an App admin")
        return issue(app, found[1], int(self.runtime.clock()) + CODE_SESSION_SECONDS)

    # --- checking ------------------------------------------------------------------------

    async def check(self, token: str | None) -> Session:
        """The session a cookie holds; ConsoleRefused (401) when there is none or it ended."""
        if not token:
            raise _not_logged_in()
        parts = token.split(".") if len(token) <= _MAX_TOKEN else []
        if len(parts) != 3 or parts[0] != _VERSION:
            raise _not_logged_in()
        try:
            sdkappid, identifier, expires_at, nonce = _payload.decode(_unb64(parts[1]))
        except (binascii.Error, ValueError, msgspec.DecodeError):
            raise _not_logged_in() from None
        app = await self.runtime.apps.get_or_refresh(sdkappid)
        if app is None or not hmac.compare_digest(_mac(app, parts[1]), parts[2]):
            # (a key change lands here: the old token's MAC no longer matches)
            raise _not_logged_in("the console session is no longer valid: log in again")
        if self.runtime.clock() > expires_at:
            raise ConsoleRefused(401, errors.UserSigExpired.code,
                                 "the console session ended with its UserSig: log in again")
        if parts[2] in self._revoked:
            raise _not_logged_in("logged out: log in again")
        if identifier not in app.admins:
            raise ConsoleRefused(401, errors.NotAppAdmin.code,
                                 f"identifier {identifier!r} is no longer an App admin")
        return Session(app, identifier, expires_at, nonce, token)

    def still_valid(self, session: Session) -> str | None:
        """Why an open session (a live WebSocket) must end now, or None."""
        app = self.runtime.apps.get(session.sdkappid)
        if app is None or app.secret_key != session.app.secret_key:
            return "the app's key changed"
        if self.runtime.clock() > session.expires_at:
            return "the session's UserSig expired"
        if session.token.rsplit(".", 1)[-1] in self._revoked:
            return "logged out"
        if session.identifier not in app.admins:
            return "no longer an App admin"
        return None

    @staticmethod
    def check_csrf(session: Session, header: str | None) -> None:
        if not header or not hmac.compare_digest(header.encode(), session.csrf.encode()):
            raise ConsoleRefused(403, errors.HttpParseError.code,
                                 "missing or wrong X-CSRF-Token header: every change made "
                                 "through the console carries the token its login returned")

    # --- logging out ---------------------------------------------------------------------

    def revoke(self, session: Session) -> None:
        now = self.runtime.clock()
        if len(self._revoked) >= MAX_REVOKED:
            self._revoked = {m: t for m, t in self._revoked.items() if t >= now}
            while len(self._revoked) >= MAX_REVOKED:  # keep the ones that last longest
                del self._revoked[min(self._revoked, key=self._revoked.__getitem__)]
        self._revoked[session.token.rsplit(".", 1)[-1]] = session.expires_at
