"""Unread counts derive from the member's read mark: drop group_members.unread_msg_num.

A member's unread count is (groups.next_msg_seq - 1) - group_members.msg_seq. Until this
revision no API could add messages (every group had next_msg_seq = 1 and every member
msg_seq = 0), so every stored count was 0 and the derived one is 0 too: nothing to carry
over.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite rebuilds the table (indexes included); PostgreSQL drops in place.
    with op.batch_alter_table("group_members") as batch:
        batch.drop_column("unread_msg_num")


def downgrade() -> None:
    import sqlalchemy as sa

    with op.batch_alter_table("group_members") as batch:
        batch.add_column(sa.Column("unread_msg_num", sa.BigInteger, nullable=False,
                                   server_default="0"))
