"""Who is calling: SDKAppID + identifier + UserSig, shared by REST and the client gateway."""

from __future__ import annotations

from opentim import errors
from opentim.domain.apps import App
from opentim.runtime import Runtime

# SDKAppIDs are stored as 64-bit integers: 19 digits hold every one. Checking the length
# first also keeps int() away from strings past its 4300-digit limit (a ValueError).
SDKAPPID_MAX_DIGITS = 19


def parse_sdkappid(sdkappid: str) -> int:
    """The SDKAppID of a query string; raises 60012 or 60006."""
    if not sdkappid:
        raise errors.SdkAppIdMissing()
    if not (sdkappid.isascii() and sdkappid.isdigit()):
        raise errors.SdkAppIdInvalid(f"sdkappid {errors.shown(sdkappid)} is not a number")
    digits = sdkappid.lstrip("0")
    if len(digits) > SDKAPPID_MAX_DIGITS:
        raise errors.SdkAppIdInvalid(
            f"sdkappid {errors.shown(sdkappid)} has more than {SDKAPPID_MAX_DIGITS} digits: "
            "no SDKAppID is that large"
        )
    return int(digits or "0")


async def authenticate(runtime: Runtime, *, sdkappid: str, identifier: str, usersig: str,
                       now: float) -> App:
    """The app whose key verifies ``usersig`` for ``identifier``; raises the Tencent code."""
    number = parse_sdkappid(sdkappid)
    if not identifier:
        raise errors.IdentifierInvalid("identifier is missing")
    app = await runtime.apps.get_or_refresh(number)
    if app is None:
        raise errors.SdkAppIdNotFound(
            f"SDKAppID {number} not found on this server: create it with "
            f"`opentim app create --sdkappid {number}` (docs/running.md#opentim-app-create)"
        )
    runtime.sigs.verify(usersig, sdkappid=app.sdkappid, identifier=identifier,
                        key=app.secret_key, now=now)
    return app


async def authenticate_user(runtime: Runtime, *, sdkappid: str, identifier: str,
                            usersig: str, now: float) -> App:
    """``authenticate`` for a user logging in (the gateway): also refuses a UserSig issued
    before the account was last kicked (Tencent: after a kick only a new UserSig logs in).
    One read of the account: a login, not every call."""
    app = await authenticate(runtime, sdkappid=sdkappid, identifier=identifier,
                             usersig=usersig, now=now)
    kicked = await runtime.store.accounts.kicked_at(app.sdkappid, identifier)
    if kicked:
        sig = runtime.sigs.verify(usersig, sdkappid=app.sdkappid, identifier=identifier,
                                  key=app.secret_key, now=now)
        if sig.issued_at < kicked:
            raise errors.UserSigExpired(
                f"this UserSig was issued before {identifier!r} was kicked "
                f"(im_open_login_svc/kick): generate a new UserSig")
    return app
