"""gallery_items: a covering index for footfall (captured_at, camera_id, visitor_id)

GET /metrics counts by time bucket, camera and visitor over a window of captured_at: with this index the
database reads only the index, never the rows (each holds an 8 KB embedding).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_gallery_items_footfall", "gallery_items", ["captured_at", "camera_id", "visitor_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_gallery_items_footfall", table_name="gallery_items")
