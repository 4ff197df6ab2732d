"""Who is calling: SDKAppID + identifier + UserSig, shared by REST and the client gateway."""

from __future__ import annotations

from opentim import errors
from opentim.domain.apps import App
from opentim.runtime import Runtime


async def authenticate(runtime: Runtime, *, sdkappid: str, identifier: str, usersig: str,
                       now: float) -> App:
    """The app whose key verifies ``usersig`` for ``identifier``; raises the Tencent code."""
    if not sdkappid:
        raise errors.SdkAppIdMissing()
    if not (sdkappid.isascii() and sdkappid.isdigit()):
        raise errors.SdkAppIdInvalid(f"sdkappid {sdkappid!r} is not a number")
    if not identifier:
        raise errors.IdentifierInvalid("identifier is missing")
    app = await runtime.apps.get_or_refresh(int(sdkappid))
    if app is None:
        raise errors.SdkAppIdNotFound(f"SDKAppID {sdkappid} not found")
    runtime.sigs.verify(usersig, sdkappid=app.sdkappid, identifier=identifier,
                        key=app.secret_key, now=now)
    return app
