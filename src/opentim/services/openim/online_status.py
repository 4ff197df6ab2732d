"""``openim/query_online_status`` and its older name ``openim/querystate``.

Tencent: cloud.tencent.com/document/product/269/2566. The status comes from the gateway
connections every server process registers with presence (``PresenceStore.connections``):
``Online`` while the account holds one, ``Offline`` otherwise; never ``PushOnline``
(OpenTIM has no offline push). The rules are in ``domain/login.py``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors
from opentim.domain import login as rules
from opentim.protocol.dispatch import command
from opentim.protocol.fields import UInt32
from opentim.runtime import Context
from opentim.services.openim import SERVICE


class QueryOnlineStatus(msgspec.Struct):
    # Any: a non-string item is Tencent's 90003, not the decoder's invalid-parameter code.
    To_Account: list[Any]
    IsNeedDetail: UInt32 = 0
    # Accepted and ignored: OpenTIM has neither instance IDs nor custom statuses.
    IsReturnInstid: UInt32 = 0
    IsReturnCustomStatus: UInt32 = 0


async def _query(ctx: Context, req: QueryOnlineStatus, status_field: str) -> dict[str, Any]:
    accounts = list(dict.fromkeys(rules.check_query_accounts(req.To_Account)))
    known = await ctx.store.accounts.existing(ctx.sdkappid, accounts)
    found = [a for a in accounts if a in known]
    platforms = await ctx.runtime.presence.connections(ctx.sdkappid, found, now=ctx.now)
    results: list[dict[str, Any]] = []
    for account in found:
        held = platforms.get(account, [])
        result: dict[str, Any] = {"To_Account": account, status_field: rules.status(held)}
        if req.IsNeedDetail and held:  # Tencent lists no Detail for an offline account
            result["Detail"] = rules.detail(held)
        results.append(result)
    reply: dict[str, Any] = {"QueryResult": results}
    missing = [a for a in accounts if a not in known]
    if missing:
        reply["ErrorList"] = [{"To_Account": a, "ErrorCode": errors.AccountNotExist.code}
                              for a in missing]
    return reply


@command(SERVICE, "query_online_status", QueryOnlineStatus)
async def query_online_status(ctx: Context, req: QueryOnlineStatus) -> dict[str, Any]:
    """QueryResult ``[{To_Account, Status[, Detail]}]`` for the accounts that exist, in
    request order (repeats answered once); ErrorList ``[{To_Account, ErrorCode: 70107}]``
    for those that do not."""
    return await _query(ctx, req, "Status")


@command(SERVICE, "querystate", QueryOnlineStatus)
async def querystate(ctx: Context, req: QueryOnlineStatus) -> dict[str, Any]:
    """The older name: the same answer with the account's status in ``State``, as
    Tencent's page for it shows (``Detail`` items keep ``Status``)."""
    return await _query(ctx, req, "State")
