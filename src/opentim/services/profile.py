"""``v4/profile``: setting and reading account profiles (portrait_set, portrait_get).

Handlers decode, call the profile rules in ``domain/profiles.py`` and build the reply.
Tag_Profile_IM_Nick and Tag_Profile_IM_Image are account_import's ``Nick`` and
``FaceUrl``: the same columns. Setting a profile emits nothing on the event bus; online
lists show the new nick and avatar from the account's next time online
(docs/rest-commands.md#profiles-v4profile).
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors
from opentim.domain import profiles as rules
from opentim.protocol.dispatch import command, service
from opentim.runtime import Context

SERVICE = service(
    "profile",
    invalid_parameter=errors.ProfileInvalidParams,
    internal_error=errors.ProfileInternalError,
    unknown_command=errors.ResourceUrlInvalid,
)

# Profile replies carry ErrorDisplay (Tencent's client-facing text), empty on success.
_DISPLAY = {"ErrorDisplay": ""}


class Item(msgspec.Struct):
    Tag: str
    Value: Any  # a string or an integer, checked per tag (40610 for the wrong type)


class PortraitSet(msgspec.Struct):
    From_Account: str
    ProfileItem: list[Item]


@command(SERVICE, "portrait_set", PortraitSet)
async def portrait_set(ctx: Context, req: PortraitSet) -> dict[str, Any]:
    values = rules.check_set([(item.Tag, item.Value) for item in req.ProfileItem], ctx.app)
    nick, face_url, others = rules.split_columns(values)
    if not await ctx.store.accounts.set_portrait(ctx.sdkappid, req.From_Account, nick=nick,
                                                 face_url=face_url, tags=others):
        raise errors.ProfileAccountNotFound(account=req.From_Account)
    return dict(_DISPLAY)


class PortraitGet(msgspec.Struct):
    # Absent lists are the rules' to refuse, with Tencent's codes (40002, 40001).
    To_Account: list[str] = msgspec.field(default_factory=list)
    TagList: list[str] = msgspec.field(default_factory=list)


# portrait_get's reply items, in Tencent's field order. Structs rather than dicts: 100
# accounts x 4 tags are 500 objects per call, and structs without GC tracking cost less to
# build and to encode (measured: ~90 us against ~140 us per 100-account reply).
class TagValue(msgspec.Struct, gc=False):
    Tag: str
    Value: str | int


class UserProfile(msgspec.Struct, gc=False):
    To_Account: str
    ProfileItem: list[TagValue]
    ResultCode: int = 0
    ResultInfo: str = ""


class UserFailed(msgspec.Struct, gc=False):
    To_Account: str
    ResultCode: int
    ResultInfo: str


@command(SERVICE, "portrait_get", PortraitGet)
async def portrait_get(ctx: Context, req: PortraitGet) -> dict[str, Any]:
    accounts, tags = rules.check_get(req.To_Account, req.TagList, ctx.app)
    found = await ctx.store.accounts.portraits(ctx.sdkappid, accounts)
    if not found:  # nothing to answer for: the call fails (per account otherwise)
        raise (errors.ProfileAccountNotFound(account=accounts[0]) if len(accounts) == 1
               else errors.ProfileAccountNotFound("none of the accounts has been imported"))
    items: list[UserProfile | UserFailed] = []
    failed: list[str] = []
    for account in accounts:
        portrait = found.get(account)
        if portrait is None:
            failed.append(account)
            items.append(UserFailed(account, errors.ProfileAccountNotFound.code,
                                    errors.ProfileAccountNotFound(account=account).info))
            continue
        items.append(UserProfile(account, rules.profile_items(
            tags, portrait.nick, portrait.face_url, portrait.tags, TagValue)))
    reply: dict[str, Any] = {"UserProfileItem": items}
    if failed:  # Tencent: only when some account failed
        reply["Fail_Account"] = failed
    return {**reply, **_DISPLAY}
