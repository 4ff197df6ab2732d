"""``v4/im_open_login_svc``: importing, checking and deleting accounts (protocol.md §3).

Account imports are silent: they emit nothing on the event bus. account_delete emits
AccountsDeleted for the accounts that existed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors
from opentim.events import AccountsDeleted
from opentim.protocol.dispatch import command, service
from opentim.runtime import Context
from opentim.storage.base import AccountProfile

SERVICE = service(
    "im_open_login_svc",
    invalid_parameter=errors.AccountInvalidParams,
    internal_error=errors.AccountInternalError,
    unknown_command=errors.ResourceUrlInvalid,
)

USER_ID_MAX_BYTES = 32
PROFILE_VALUE_MAX_BYTES = 500
BATCH_MAX = 100


def check_user_id(user_id: str) -> str:
    if not user_id or len(user_id.encode()) > USER_ID_MAX_BYTES:
        raise errors.AccountInvalidParams(
            f"UserID {errors.shown(user_id)} must be 1 to {USER_ID_MAX_BYTES} bytes"
        )
    if not user_id.isprintable():
        raise errors.AccountInvalidParams(
            f"UserID {errors.shown(user_id)} contains unprintable characters")
    return user_id


def _check_profile_value(name: str, value: str | None) -> str | None:
    if value is not None and len(value.encode()) > PROFILE_VALUE_MAX_BYTES:
        raise errors.ProfileValueTooLong(f"{name} exceeds {PROFILE_VALUE_MAX_BYTES} bytes")
    return value


def _profile(user_id: str, nick: str | None, face_url: str | None) -> AccountProfile:
    return AccountProfile(
        check_user_id(user_id),
        _check_profile_value("Nick", nick),
        _check_profile_value("FaceUrl", face_url),
    )


class AccountImport(msgspec.Struct):
    UserID: str
    Nick: str | None = None
    FaceUrl: str | None = None


@command(SERVICE, "account_import", AccountImport, legacy_fields=(("Identifier", "UserID"),))
async def account_import(ctx: Context, req: AccountImport) -> None:
    profile = _profile(req.UserID, req.Nick, req.FaceUrl)
    await ctx.store.import_accounts(ctx.sdkappid, [profile], now=ctx.now_s)


class AccountItem(msgspec.Struct):
    UserID: str
    Nick: str | None = None
    FaceUrl: str | None = None


class MultiAccountImport(msgspec.Struct):
    AccountList: list[AccountItem | str]


@command(SERVICE, "multiaccount_import", MultiAccountImport, rate_factor=0.5,
         legacy_fields=(("Accounts", "AccountList"),))
async def multiaccount_import(ctx: Context, req: MultiAccountImport) -> dict[str, Any]:
    if not req.AccountList:
        raise errors.AccountInvalidParams("AccountList is empty")
    if len(req.AccountList) > BATCH_MAX:
        raise errors.AccountBatchTooLarge(f"at most {BATCH_MAX} accounts per call")
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
    await ctx.store.import_accounts(ctx.sdkappid, profiles, now=ctx.now_s)
    return {"FailAccounts": failed}


class UserItem(msgspec.Struct):
    UserID: str


class AccountCheck(msgspec.Struct):
    CheckItem: list[UserItem]


@command(SERVICE, "account_check", AccountCheck)
async def account_check(ctx: Context, req: AccountCheck) -> dict[str, Any]:
    ids = _batch_ids(req.CheckItem, "CheckItem")
    known = await ctx.store.existing_accounts(ctx.sdkappid, ids)
    return {"ResultItem": [
        {"UserID": uid, "ResultCode": 0, "ResultInfo": "",
         "AccountStatus": "Imported" if uid in known else "NotImported"}
        for uid in ids
    ]}


class AccountDelete(msgspec.Struct):
    DeleteItem: list[UserItem]


@command(SERVICE, "account_delete", AccountDelete)
async def account_delete(ctx: Context, req: AccountDelete) -> dict[str, Any]:
    """Tencent: deleting an account deletes its relationships, profile, groups and
    conversations too (account_delete, cloud.tencent.com/document/product/269/36443).

    Here: the account, its memberships (roles, unread counts) and its ownerships go in one
    transaction; then AccountsDeleted closes its connections and takes it out of online
    lists in every process (the gateway subscribes).
    """
    ids = _batch_ids(req.DeleteItem, "DeleteItem")
    deleted = await ctx.store.delete_accounts(ctx.sdkappid, ids)
    if deleted:
        await ctx.runtime.events.emit(AccountsDeleted(
            ctx.sdkappid, tuple(u for u in dict.fromkeys(ids) if u in deleted),
            int(ctx.now * 1000), ctx.origin,
        ))
    missing = errors.AccountNotExist
    return {"ResultItem": [
        {"UserID": uid, "ResultCode": 0, "ResultInfo": ""} if uid in deleted
        else {"UserID": uid, "ResultCode": missing.code, "ResultInfo": missing.default_info}
        for uid in ids
    ]}


def _batch_ids(items: list[UserItem], field_name: str) -> list[str]:
    if not items:
        raise errors.AccountInvalidParams(f"{field_name} is empty")
    if len(items) > BATCH_MAX:
        raise errors.AccountBatchTooLarge(f"at most {BATCH_MAX} items in {field_name}")
    return [item.UserID for item in items]
