"""Index ``detection_data.tag_name``: counts and lists per defect class stay fast as rows grow.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_detection_data_tag_name", "detection_data", ["tag_name"])


def downgrade() -> None:
    op.drop_index("ix_detection_data_tag_name", table_name="detection_data")
