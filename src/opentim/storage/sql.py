"""The SQL store (SQLite and PostgreSQL): one object holding one store per concept.

``SqlStore(db).apps`` / ``.accounts`` / ``.groups`` / ``.members`` / ``.messages`` are the
concept stores (``apps.py`` ... ``messages.py``), each on the same ``Database``. What the two
dialects spell differently is in ``dialect.py``; the rules a store applies inside its
transactions (import results, the member cap, unread clamps) are in ``domain/imports.py``.
"""

from __future__ import annotations

from opentim.storage.accounts import SqlAccounts
from opentim.storage.apps import SqlApps
from opentim.storage.base import (
    AccountStore,
    AppStore,
    C2CStore,
    GroupAttrStore,
    GroupStore,
    MemberStore,
    MessageStore,
    ModerationStore,
)
from opentim.storage.c2c import SqlC2C
from opentim.storage.database import Database
from opentim.storage.group_attrs import SqlGroupAttrs
from opentim.storage.groups import SqlGroups
from opentim.storage.members import SqlMembers
from opentim.storage.messages import SqlMessages
from opentim.storage.moderation import SqlModeration


class SqlStore:
    """The five concept stores (see ``base.py``) on one SQLAlchemy database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # (typed as the interfaces: the type checker holds each store to its contract)
        self.apps: AppStore = SqlApps(db)
        self.accounts: AccountStore = SqlAccounts(db)
        self.groups: GroupStore = SqlGroups(db)
        self.members: MemberStore = SqlMembers(db)
        self.messages: MessageStore = SqlMessages(db)
        self.moderation: ModerationStore = SqlModeration(db)  # mutes, bans, recall
        self.c2c: C2CStore = SqlC2C(db)  # one-to-one messages (openim)
        self.attrs: GroupAttrStore = SqlGroupAttrs(db)  # group attributes
