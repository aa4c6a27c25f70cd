"""``inference_data.prob_threshold`` and ``settings_version``: the settings an inspection was made with.

Rows stored before this revision keep both empty (NULL): their threshold and settings were not recorded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "inference_data",
        sa.Column("prob_threshold", sa.Double(), comment="0..1, detections kept above it"),
    )
    op.add_column(
        "inference_data",
        sa.Column("settings_version", sa.BigInteger(), comment="desired twin $version applied"),
    )


def downgrade() -> None:
    op.drop_column("inference_data", "settings_version")
    op.drop_column("inference_data", "prob_threshold")
