"""Account profiles: standard and custom Tag_Profile_* values; per-app custom tags.

``accounts.profile`` (JSON, NULL when none is set) holds every tag but Tag_Profile_IM_Nick
and Tag_Profile_IM_Image, which stay in ``nick`` and ``face_url``. ``apps.profile_custom_tags``
(JSON list, NULL when none is declared) lists the keywords of the app's custom tags.
Existing rows need nothing: NULL reads as "none".

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns with no default: an ALTER in place on both SQLite and PostgreSQL.
    op.add_column("accounts", sa.Column("profile", sa.JSON))
    op.add_column("apps", sa.Column("profile_custom_tags", sa.JSON))


def downgrade() -> None:
    # Batch mode: SQLite rebuilds the tables; PostgreSQL drops in place.
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("profile_custom_tags")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("profile")
