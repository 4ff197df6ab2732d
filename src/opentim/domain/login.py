"""Login state: what the online-status query answers.

Pure functions of their inputs; the handler is ``services/openim/online_status.py``
(query_online_status, querystate). Kicking is ``im_open_login_svc/kick``.

Tencent (cloud.tencent.com/document/product/269/2566): ``Online`` while a client holds a
connection, ``PushOnline`` for a native app whose connection ended but which still gets
offline pushes (up to 7 days), ``Offline`` otherwise. OpenTIM has no offline push, so an
account is ``Online`` while it holds at least one gateway connection on any server
process and ``Offline`` otherwise: it never reports ``PushOnline``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentim import errors

# query_online_status / querystate: To_Account holds at most this many UserIDs.
MAX_QUERY_ACCOUNTS = 500

ONLINE = "Online"
OFFLINE = "Offline"
PUSH_ONLINE = "PushOnline"  # Tencent's; OpenTIM never reports it (no offline push)

# Detail[].Platform: the gateway's platform names, except that Tencent's samples name an
# iOS client "iPhone".
_DETAIL_PLATFORM = {"iOS": "iPhone"}


def check_query_accounts(accounts: Sequence[Any]) -> list[str]:
    """To_Account: 1 to 500 strings. 90001 when empty (Tencent's code for an empty
    array), 90003 for a non-string item, 90011 for more than 500."""
    if not accounts:
        raise errors.OpenimInvalidRequest("To_Account is empty")
    if len(accounts) > MAX_QUERY_ACCOUNTS:
        raise errors.OpenimTooManyRecipients(
            f"To_Account lists {len(accounts)} accounts: at most {MAX_QUERY_ACCOUNTS}")
    for item in accounts:
        if type(item) is not str:
            raise errors.OpenimToAccountInvalid("every To_Account item must be a string")
    return list(accounts)


def status(platforms: Sequence[str]) -> str:
    """An account's status from its open connections' platforms (on every process)."""
    return ONLINE if platforms else OFFLINE


def detail(platforms: Sequence[str]) -> list[dict[str, str]]:
    """``Detail``: one entry per open connection (as Tencent lists one per device
    instance), ordered by platform. Each is ``Online``: a connection that ended is gone."""
    return [{"Platform": name, "Status": ONLINE}
            for name in sorted(_DETAIL_PLATFORM.get(p, p) for p in platforms)]
