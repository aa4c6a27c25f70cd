"""``inference_data.verdict`` and ``fired_rules``: the verdict given by the camera's rules, and the
rules that fired.

Rows stored before this revision keep both empty (NULL): their verdict is the one without rules, NG
when ``object_detected`` (the queries and ``InferenceRecord.verdict`` derive it so).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

RULES_TYPE = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column(
        "inference_data",
        sa.Column(
            "verdict", sa.String(2), comment="OK or NG; NULL before 0006: NG when object_detected"
        ),
    )
    op.add_column(
        "inference_data",
        sa.Column(
            "fired_rules", RULES_TYPE, comment="JSON list of the rules that fired; NULL: no rules"
        ),
    )


def downgrade() -> None:
    op.drop_column("inference_data", "fired_rules")
    op.drop_column("inference_data", "verdict")
