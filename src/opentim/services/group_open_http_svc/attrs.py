"""Group attributes: modify_group_attr, set_group_attr, delete_group_attr, clear_group_attr
(here, in group_open_http_svc, as Tencent has them) and get_group_attr (Tencent puts it in
``group_open_attr_http_svc``: ``services/group_open_attr_http_svc.py``).

The limits are in ``domain/group_admin.py`` (16 keys of 32 bytes, values of 4000 bytes,
16000 bytes together, 5 writes a second per group); the store checks the whole under the
group's lock (``storage/group_attrs.py``). A write that changes the attributes calls
Group.CallbackAfterGroupAttrChanged and pushes ``group_attr_changed`` (every attribute,
as it now is) to the group's online audience.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from opentim import errors, messaging
from opentim.domain import group_admin as rules
from opentim.domain.groups import Group
from opentim.events import GroupAttrChanged
from opentim.protocol.dispatch import command
from opentim.runtime import Context
from opentim.services.group_open_http_svc.common import SERVICE, event_time_ms, load_group


class Attr(msgspec.Struct):
    key: str
    value: str


class AttrKey(msgspec.Struct):
    key: str


class GroupAttrs(msgspec.Struct):
    GroupId: str
    GroupAttr: list[Attr]


class GroupAttrKeys(msgspec.Struct):
    GroupId: str
    GroupAttr: list[AttrKey]


class GroupRef(msgspec.Struct):
    GroupId: str


async def _write(ctx: Context, group: Group, option: str,
                 apply: Callable[[dict[str, str]], dict[str, str]],
                 reported: list[tuple[str, str]]) -> None:
    """One attribute write: the per-group rate (10049), the store, then the callback and
    the push when anything changed."""
    if not await ctx.runtime.guards.take(f"attr:{ctx.sdkappid}:{group.group_id}",
                                         rules.ATTR_WRITES_PER_SECOND, 1.0):
        raise errors.AttrWriteRateLimit(
            f"group {group.group_id!r}: attributes are written at most "
            f"{rules.ATTR_WRITES_PER_SECOND} times a second")
    before: list[dict[str, str]] = []

    def remember(stored: dict[str, str]) -> dict[str, str]:
        before.append(dict(stored))
        return apply(stored)

    after = await ctx.store.attrs.change(ctx.sdkappid, group.group_id, remember)
    if before and before[0] == after:
        return
    await ctx.runtime.events.emit(GroupAttrChanged(
        ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, option,
        tuple(reported), event_time_ms(ctx), ctx.origin))
    await messaging.push_to_group(ctx.runtime.events, group, {
        "event": "group_attr_changed", "GroupId": group.group_id, "OptionType": option,
        "Operator_Account": ctx.identifier, "GroupAttr": rules.attr_list(after)})


@command(SERVICE, "modify_group_attr", GroupAttrs)
async def modify_group_attr(ctx: Context, req: GroupAttrs) -> None:
    group = await load_group(ctx, req.GroupId)
    pairs = rules.attr_pairs(req.GroupAttr)
    await _write(ctx, group, "modify", lambda stored: rules.modified_attrs(stored, pairs),
                 list(pairs.items()))


@command(SERVICE, "set_group_attr", GroupAttrs)
async def set_group_attr(ctx: Context, req: GroupAttrs) -> None:
    group = await load_group(ctx, req.GroupId)
    pairs = rules.attr_pairs(req.GroupAttr)
    await _write(ctx, group, "set", lambda _: rules.check_attr_total(pairs),
                 list(pairs.items()))


@command(SERVICE, "delete_group_attr", GroupAttrKeys)
async def delete_group_attr(ctx: Context, req: GroupAttrKeys) -> None:
    group = await load_group(ctx, req.GroupId)
    keys = rules.attr_keys([a.key for a in req.GroupAttr])
    await _write(ctx, group, "delete", lambda stored: rules.deleted_attrs(stored, keys),
                 [(k, "") for k in keys])


@command(SERVICE, "clear_group_attr", GroupRef)
async def clear_group_attr(ctx: Context, req: GroupRef) -> None:
    group = await load_group(ctx, req.GroupId)
    rules.check_clear_target(group)
    await _write(ctx, group, "clear", lambda _: {}, [])


async def group_attrs(ctx: Context, group_id: str) -> dict[str, Any]:
    """get_group_attr's reply (its command lives in group_open_attr_http_svc)."""
    group = await load_group(ctx, group_id)
    attrs = await ctx.store.attrs.get(ctx.sdkappid, group.group_id)
    return {"GroupAttrAry": rules.attr_list(attrs)}
