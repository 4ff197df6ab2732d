"""Apps (tenants): their settings, one row per SDKAppID."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from opentim.domain.apps import App
from opentim.storage.database import Database
from opentim.storage.pg_reader import prebuilt
from opentim.storage.rows import app_from_row, app_values
from opentim.storage.schema import apps

_GET_APP = prebuilt(select(apps).where(apps.c.sdkappid == bindparam("app")))
_LIST_APPS = prebuilt(select(apps).order_by(apps.c.sdkappid))


class SqlApps:
    """The AppStore on one database."""


    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, app: App, *, now: int) -> None:
        """Raises KeyError when the SDKAppID exists."""
        try:
            async with self.db.write() as conn:
                await conn.execute(apps.insert().values(app_values(app, now)))
        except IntegrityError as exc:
            raise KeyError(app.sdkappid) from exc

    async def save(self, app: App, *, now: int) -> None:
        """Replace an existing app's settings."""
        values = app_values(app, now)
        async with self.db.write() as conn:
            await conn.execute(update(apps).where(apps.c.sdkappid == app.sdkappid).values(values))

    async def get(self, sdkappid: int) -> App | None:
        async with self.db.read() as conn:
            row = (await conn.execute(_GET_APP, {"app": sdkappid})).first()
        return None if row is None else app_from_row(row)

    async def list_all(self) -> list[App]:
        async with self.db.read() as conn:
            rows = (await conn.execute(_LIST_APPS)).all()
        return [app_from_row(row) for row in rows]
