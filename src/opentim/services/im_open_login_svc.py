"""``v4/im_open_login_svc``: importing, checking, deleting and kicking accounts.

Handlers decode, call the account rules in ``domain/accounts.py`` and build the reply.
Account imports are silent: they emit nothing on the event bus. account_delete emits
AccountsDeleted for the accounts that existed; kick emits AccountKicked.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors
from opentim.domain import accounts as rules
from opentim.events import AccountKicked, AccountsDeleted
from opentim.protocol.dispatch import command, service
from opentim.runtime import Context
from opentim.storage.base import AccountProfile

SERVICE = service(
    "im_open_login_svc",
    invalid_parameter=errors.AccountInvalidParams,
    internal_error=errors.AccountInternalError,
    unknown_command=errors.ResourceUrlInvalid,
)


def _profile(user_id: str, nick: str | None, face_url: str | None) -> AccountProfile:
    return AccountProfile(
        rules.check_user_id(user_id),
        rules.check_profile_value("Nick", nick),
        rules.check_profile_value("FaceUrl", face_url),
    )


class AccountImport(msgspec.Struct):
    UserID: str
    Nick: str | None = None
    FaceUrl: str | None = None


@command(SERVICE, "account_import", AccountImport, legacy_fields=(("Identifier", "UserID"),))
async def account_import(ctx: Context, req: AccountImport) -> None:
    profile = _profile(req.UserID, req.Nick, req.FaceUrl)
    await ctx.store.accounts.import_profiles(ctx.sdkappid, [profile], now=ctx.now_s)


class AccountItem(msgspec.Struct):
    UserID: str
    Nick: str | None = None
    FaceUrl: str | None = None


class MultiAccountImport(msgspec.Struct):
    AccountList: list[AccountItem | str]


@command(SERVICE, "multiaccount_import", MultiAccountImport, rate_factor=0.5,
         legacy_fields=(("Accounts", "AccountList"),))
async def multiaccount_import(ctx: Context, req: MultiAccountImport) -> dict[str, Any]:
    rules.check_account_list(len(req.AccountList))
    profiles: list[AccountProfile] = []
    failed: list[str] = []
    for item in req.AccountList:
        # The legacy body lists bare IDs; the current one lists objects.
        user_id, nick, face = (item, None, None) if isinstance(item, str) else (
            item.UserID, item.Nick, item.FaceUrl)
        try:
            profiles.append(_profile(user_id, nick, face))
        except errors.TimError:
            failed.append(user_id)
    await ctx.store.accounts.import_profiles(ctx.sdkappid, profiles, now=ctx.now_s)
    return {"FailAccounts": failed}


class UserItem(msgspec.Struct):
    UserID: str


class AccountCheck(msgspec.Struct):
    CheckItem: list[UserItem]


@command(SERVICE, "account_check", AccountCheck)
async def account_check(ctx: Context, req: AccountCheck) -> dict[str, Any]:
    rules.check_batch(len(req.CheckItem), "CheckItem")
    ids = [item.UserID for item in req.CheckItem]
    known = await ctx.store.accounts.existing(ctx.sdkappid, ids)
    return {"ResultItem": [
        {"UserID": uid, "ResultCode": 0, "ResultInfo": "",
         "AccountStatus": "Imported" if uid in known else "NotImported"}
        for uid in ids
    ]}


class AccountDelete(msgspec.Struct):
    DeleteItem: list[UserItem]


# account_delete's per-item answer for an account that does not exist: Tencent's
# ResultCode and ResultInfo, from the error class rather than written out here.
_NOT_EXIST = {"ResultCode": errors.AccountNotExist.code,
              "ResultInfo": errors.AccountNotExist.default_info}


@command(SERVICE, "account_delete", AccountDelete)
async def account_delete(ctx: Context, req: AccountDelete) -> dict[str, Any]:
    """Tencent: deleting an account deletes its relationships, profile, groups and
    conversations too (account_delete, cloud.tencent.com/document/product/269/36443).

    Here: the account, its memberships (roles, unread counts) and its ownerships go in one
    transaction; then AccountsDeleted closes its connections and takes it out of online
    lists in every process (the gateway subscribes).
    """
    rules.check_batch(len(req.DeleteItem), "DeleteItem")
    ids = [item.UserID for item in req.DeleteItem]
    deleted = await ctx.store.accounts.delete(ctx.sdkappid, ids)
    if deleted:
        await ctx.runtime.events.emit(AccountsDeleted(
            ctx.sdkappid, tuple(u for u in dict.fromkeys(ids) if u in deleted),
            int(ctx.now * 1000), ctx.origin,
        ))
    return {"ResultItem": [
        {"UserID": uid, "ResultCode": 0, "ResultInfo": ""} if uid in deleted
        else {"UserID": uid, **_NOT_EXIST}
        for uid in ids
    ]}


class Kick(msgspec.Struct):
    UserID: str


@command(SERVICE, "kick", Kick, legacy_fields=(("Identifier", "UserID"),))
async def kick(ctx: Context, req: Kick) -> None:
    """Tencent (cloud.tencent.com/document/product/269/3853): invalidates the account's
    login state; one account per call; 70107 for an account that does not exist.

    Here: AccountKicked closes every gateway connection of the account on every server
    process (this process's before the reply), after a ``kicked`` push with Reason
    ``Kicked``; each leaves its groups as a lost link does. As Tencent says, the UserSigs
    issued before the kick no longer log in (70001): the client needs a new one
    (docs/rest-commands.md#kick).
    """
    user_id = rules.check_user_id(req.UserID)
    if not await ctx.store.accounts.mark_kicked(ctx.sdkappid, user_id, at=ctx.now_s):
        raise errors.AccountNotExist(f"account {errors.shown(user_id)} does not exist")
    await ctx.runtime.events.emit(AccountKicked(
        ctx.sdkappid, user_id, int(ctx.now * 1000), ctx.origin))
