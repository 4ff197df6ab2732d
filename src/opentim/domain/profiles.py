"""Profile rules: the Tag_Profile_* tags, their value types and limits, and batch sizes.

Pure functions of their inputs; the ``v4/profile`` handlers call them
(``services/profile.py``). Tencent's pages: profile fields
(cloud.tencent.com/document/product/269/1500), portrait_set (1640), portrait_get (1639).

Two tags live in account columns that account_import also writes: Tag_Profile_IM_Nick is
``Nick`` and Tag_Profile_IM_Image is ``FaceUrl`` (``COLUMN_TAGS``). Every other tag is
stored by its name with its value (``storage/accounts.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from opentim import errors
from opentim.domain.apps import App
from opentim.protocol.fields import INT64_MAX, UINT32_MAX

NICK = "Tag_Profile_IM_Nick"
IMAGE = "Tag_Profile_IM_Image"
COLUMN_TAGS = (NICK, IMAGE)
CUSTOM_PREFIX = "Tag_Profile_Custom_"

# A string value: at most 500 bytes of UTF-8 (40601), standard and custom tags alike.
VALUE_MAX_BYTES = 500
# A custom tag's keyword (what follows the prefix): English letters, at most 8 bytes.
CUSTOM_KEYWORD_MAX_BYTES = 8
# portrait_get: at most 100 accounts per call.
GET_ACCOUNTS_MAX = 100

Value = str | int
ItemT = TypeVar("ItemT")


class Kind(Enum):
    STRING = "string"
    UINT32 = "uint32"
    CHOICE = "choice"  # a string, one of the tag's listed values


@dataclass(frozen=True, slots=True)
class Tag:
    """A profile tag: its name, its value type and the value an unset tag reads as."""

    name: str
    kind: Kind
    default: Value
    choices: tuple[str, ...] = ()

    def check(self, value: object) -> Value:
        """The value to store: 40610 for the wrong JSON type, 40605 for a value the tag
        does not take, 40601 for a string over 500 bytes."""
        if isinstance(value, int) and not isinstance(value, bool) \
                and not -INT64_MAX - 1 <= value <= INT64_MAX:
            # As everywhere in the REST API: an integer past 64 bits is a bad parameter.
            raise errors.ProfileInvalidParams(f"{self.name}: Value is not a 64-bit integer")
        if self.kind is Kind.UINT32:
            if not isinstance(value, int) or isinstance(value, bool):
                raise errors.ProfileValueTypeInvalid(
                    f"{self.name} takes an integer (uint32), got {_json_type(value)}")
            if not 0 <= value <= UINT32_MAX:
                raise errors.ProfileValueInvalid(
                    f"{self.name} takes an integer from 0 to {UINT32_MAX}, got {value}")
            return value
        if not isinstance(value, str):
            raise errors.ProfileValueTypeInvalid(
                f"{self.name} takes a string, got {_json_type(value)}")
        if self.choices and value not in self.choices:
            raise errors.ProfileValueInvalid(
                f"{self.name} takes one of {', '.join(self.choices)}, got {errors.shown(value)}")
        if len(value.encode()) > VALUE_MAX_BYTES:
            raise errors.ProfileValueTooLong(f"{self.name} exceeds {VALUE_MAX_BYTES} bytes")
        return value


def _string(name: str) -> Tag:
    return Tag(name, Kind.STRING, "")


def _uint32(name: str) -> Tag:
    return Tag(name, Kind.UINT32, 0)


def _choice(name: str, *choices: str) -> Tag:
    """The first choice is the default (Tencent's "not set" or "default" value)."""
    return Tag(name, Kind.CHOICE, choices[0], choices)


# Tencent's standard tags. Location: Tencent's English pages give 16 bytes, its Chinese
# page 500; 500 is taken, so no value Tencent accepts is refused (docs/rest-commands.md).
STANDARD: Mapping[str, Tag] = {tag.name: tag for tag in (
    _string(NICK),
    _choice("Tag_Profile_IM_Gender", "Gender_Type_Unknown", "Gender_Type_Female",
            "Gender_Type_Male"),
    _uint32("Tag_Profile_IM_BirthDay"),
    _string("Tag_Profile_IM_Location"),
    _string("Tag_Profile_IM_SelfSignature"),
    _choice("Tag_Profile_IM_AllowType", "AllowType_Type_NeedConfirm",
            "AllowType_Type_AllowAny", "AllowType_Type_DenyAny"),
    _uint32("Tag_Profile_IM_Language"),
    _string(IMAGE),
    _uint32("Tag_Profile_IM_MsgSettings"),
    _choice("Tag_Profile_IM_AdminForbidType", "AdminForbid_Type_None",
            "AdminForbid_Type_SendOut"),
    _uint32("Tag_Profile_IM_Level"),
    _uint32("Tag_Profile_IM_Role"),
)}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def custom_keyword(name: str) -> str:
    """A custom tag's keyword as an operator declares it (``Test`` or
    ``Tag_Profile_Custom_Test``): 1 to 8 English letters. Raises ValueError."""
    keyword = name.removeprefix(CUSTOM_PREFIX)
    if not (keyword.isascii() and keyword.isalpha()
            and len(keyword) <= CUSTOM_KEYWORD_MAX_BYTES):
        raise ValueError(f"custom profile tag {name!r}: the keyword after {CUSTOM_PREFIX} "
                         f"must be 1 to {CUSTOM_KEYWORD_MAX_BYTES} English letters")
    return keyword


def tag_for(name: str, app: App) -> Tag:
    """The standard tag, or the app's declared custom tag, of this name: 40009 otherwise.

    Custom tags take strings only (Tencent: integer values are for standard tags).
    """
    found = STANDARD.get(name)
    if found is not None:
        return found
    if name.startswith(CUSTOM_PREFIX):
        keyword = name[len(CUSTOM_PREFIX):]
        if keyword in app.profile_custom_tags:
            return _string(name)
        raise errors.ProfileTagNotFound(
            f"custom profile tag {errors.shown(name, 64)} is not declared for app "
            f"{app.sdkappid}: `opentim app update --profile-custom-tag` declares it "
            "(docs/configuration.md#custom-profile-tags)")
    raise errors.ProfileTagNotFound(f"unknown profile tag {errors.shown(name, 64)}")


def check_set(items: Sequence[tuple[str, object]], app: App) -> dict[str, Value]:
    """portrait_set's ProfileItem as tag -> value; a tag given twice takes the later value.
    Any bad item fails the whole call, and nothing is stored."""
    if not items:
        raise errors.ProfileInvalidParams("ProfileItem is empty")
    return {tag: tag_for(tag, app).check(value) for tag, value in items}


def split_columns(values: Mapping[str, Value]) -> tuple[str | None, str | None,
                                                         dict[str, Value]]:
    """(nick, face_url, the other tags): where each value is stored; None leaves a column
    as it is."""
    nick, image = values.get(NICK), values.get(IMAGE)
    others = {tag: value for tag, value in values.items() if tag not in COLUMN_TAGS}
    return (None if nick is None else str(nick), None if image is None else str(image),
            others)


def check_get(accounts: Sequence[str], tags: Sequence[str],
              app: App) -> tuple[list[str], list[Tag]]:
    """portrait_get's accounts (distinct, in request order) and tags (likewise).

    No To_Account: 40002; more than 100 entries: 40001; no TagList: 40001; a tag that is
    neither standard nor declared: 40009.
    """
    if not accounts:
        raise errors.ProfileAccountsMissing("To_Account is missing or empty")
    if len(accounts) > GET_ACCOUNTS_MAX:
        raise errors.ProfileInvalidParams(
            f"To_Account holds {len(accounts)} accounts: at most {GET_ACCOUNTS_MAX} per call")
    if not tags:
        raise errors.ProfileInvalidParams("TagList is missing or empty")
    return list(dict.fromkeys(accounts)), [tag_for(t, app) for t in dict.fromkeys(tags)]


def profile_items(tags: Iterable[Tag], nick: str, face_url: str,
                  others: Mapping[str, Value], item: Callable[[str, Value], ItemT],
                  ) -> list[ItemT]:
    """An account's ``ProfileItem``: ``item(tag, value)`` for each requested tag, with its
    value, or the tag's default when it was never set."""
    return [item(tag.name, nick if tag.name == NICK else face_url if tag.name == IMAGE
                 else others.get(tag.name, tag.default)) for tag in tags]
