"""gallery_items.track_ref: the person track a crop was cut from (video ingest)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gallery_items") as batch:
        batch.add_column(sa.Column("track_ref", sa.String(length=128), nullable=True))
        batch.create_index("ix_gallery_items_track_ref", ["track_ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gallery_items") as batch:
        batch.drop_index("ix_gallery_items_track_ref")
        batch.drop_column("track_ref")
