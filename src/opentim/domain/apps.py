"""Apps (tenants): each SDKAppID has a secret key, admins, an edition and switches."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_ADMIN = "administrator"
DEFAULT_RATE_LIMIT = 200  # calls per second per command: Tencent's default REST frequency limit


class Edition(StrEnum):
    PREMIUM = "premium"  # Tencent's Pro / Pro Plus / Enterprise
    STANDARD = "standard"


@dataclass(frozen=True, slots=True)
class App:
    sdkappid: int
    secret_key: str
    admins: frozenset[str] = frozenset({DEFAULT_ADMIN})
    edition: Edition = Edition.PREMIUM
    online_member_list: bool = True
    callback_url: str | None = None
    callback_token: str | None = None
    # None means every callback command is on.
    callback_commands: frozenset[str] | None = None
    rate_limit: int = DEFAULT_RATE_LIMIT
    # The keywords of the custom profile tags declared for the app ("Test" declares
    # Tag_Profile_Custom_Test); the rules are in domain/profiles.py.
    profile_custom_tags: frozenset[str] = frozenset()
    # Messages per second per group (Tencent's default, domain.messages.GROUP_MSG_RATE);
    # 0 = no limit.
    group_msg_rate: int = 40

    @property
    def has_online_member_list(self) -> bool:
        """The premium feature behind get_members paging, marks and robots."""
        return self.edition is Edition.PREMIUM and self.online_member_list

    def missing_online_list_feature(self) -> str | None:
        """Why the online-member-list feature is unavailable, or None when it is available."""
        missing = []
        if self.edition is not Edition.PREMIUM:
            missing.append("the Premium edition")
        if not self.online_member_list:
            missing.append("the online member list switch")
        if not missing:
            return None
        return "this feature needs " + " and ".join(missing) + f" on app {self.sdkappid}"


def new_secret_key() -> str:
    """A key shaped like the console's: 64 hex characters."""
    return secrets.token_hex(32)
