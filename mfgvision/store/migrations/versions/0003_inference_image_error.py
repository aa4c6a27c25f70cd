"""``inference_data.image_error``: why an inference's images were not stored (e.g. a full disk).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "inference_data",
        sa.Column("image_error", sa.String(255), comment="why images were not stored"),
    )


def downgrade() -> None:
    op.drop_column("inference_data", "image_error")
