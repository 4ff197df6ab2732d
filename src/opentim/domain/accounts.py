"""Account rules: what a UserID may be, profile field sizes, batch sizes.

Pure functions of their inputs; the im_open_login_svc handlers call them
(``services/im_open_login_svc.py``).
"""

from __future__ import annotations

from opentim import errors

USER_ID_MAX_BYTES = 32
PROFILE_VALUE_MAX_BYTES = 500
# multiaccount_import AccountList, account_check CheckItem, account_delete DeleteItem.
BATCH_MAX = 100


def check_user_id(user_id: str) -> str:
    """A UserID is 1 to 32 bytes of UTF-8, printable: 70402 otherwise."""
    if not user_id or len(user_id.encode()) > USER_ID_MAX_BYTES:
        raise errors.AccountInvalidParams(
            f"UserID {errors.shown(user_id)} must be 1 to {USER_ID_MAX_BYTES} bytes"
        )
    if not user_id.isprintable():
        raise errors.AccountInvalidParams(
            f"UserID {errors.shown(user_id)} contains unprintable characters")
    return user_id


def check_profile_value(name: str, value: str | None) -> str | None:
    """Nick and FaceUrl hold at most 500 bytes: 40601 otherwise."""
    if value is not None and len(value.encode()) > PROFILE_VALUE_MAX_BYTES:
        raise errors.ProfileValueTooLong(f"{name} exceeds {PROFILE_VALUE_MAX_BYTES} bytes")
    return value


def check_account_list(count: int) -> None:
    """multiaccount_import takes 1 to 100 accounts."""
    if not count:
        raise errors.AccountInvalidParams("AccountList is empty")
    if count > BATCH_MAX:
        raise errors.AccountBatchTooLarge(f"at most {BATCH_MAX} accounts per call")


def check_batch(count: int, field_name: str) -> None:
    """account_check and account_delete take 1 to 100 items."""
    if not count:
        raise errors.AccountInvalidParams(f"{field_name} is empty")
    if count > BATCH_MAX:
        raise errors.AccountBatchTooLarge(f"at most {BATCH_MAX} items in {field_name}")
