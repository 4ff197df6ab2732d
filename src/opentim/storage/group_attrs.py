"""Group attributes: one row per (group, key) in ``group_attrs``.

A write locks the group row first (the order every group write takes, see members.py),
reads the group's attributes, lets the caller's rule compute the new whole (the limits
of domain/group_admin.py are checked on it, under the lock) and writes the difference.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, delete, select

from opentim.storage.database import Database
from opentim.storage.pg_reader import prebuilt
from opentim.storage.rows import GET_GROUP, GroupLock
from opentim.storage.schema import group_attrs

_A = group_attrs.c
_ATTRS = prebuilt(select(_A.attr_key, _A.attr_value).where(
    _A.sdkappid == bindparam("app"), _A.group_id == bindparam("grp")).order_by(_A.attr_key))


class SqlGroupAttrs:
    """The GroupAttrStore on one database (see ``base.GroupAttrStore``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock_group = GroupLock(db.dialect.locking(GET_GROUP))

    async def get(self, sdkappid: int, group_id: str) -> dict[str, str]:
        async with self.db.read() as conn:
            rows = await conn.execute(_ATTRS, {"app": sdkappid, "grp": group_id})
            return {r.attr_key: r.attr_value for r in rows}

    async def change(self, sdkappid: int, group_id: str,
                     apply: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
        key = {"app": sdkappid, "grp": group_id}
        async with self.db.write() as conn:
            await self._lock_group(conn, sdkappid, group_id)
            stored = {r.attr_key: r.attr_value for r in await conn.execute(_ATTRS, key)}
            new = apply(dict(stored))
            gone = [k for k in stored if k not in new]
            changed = {k: v for k, v in new.items() if stored.get(k) != v}
            where = (_A.sdkappid == sdkappid, _A.group_id == group_id)
            if gone or changed:
                await conn.execute(delete(group_attrs).where(
                    *where, _A.attr_key.in_(sorted(gone + list(changed)))))
            if changed:
                await conn.execute(group_attrs.insert(), [
                    {"sdkappid": sdkappid, "group_id": group_id, "attr_key": k,
                     "attr_value": v} for k, v in sorted(changed.items())])
        return dict(sorted(new.items()))


__all__ = ["SqlGroupAttrs"]
