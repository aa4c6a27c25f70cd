"""Operators' ``inspection_feedback`` and, on ``inference_data``, the frame kept for retraining
(``retrain_reason``, ``retrain_image_name``, ``retrain_image_path``).

Rows stored before this revision have no retraining columns filled: which of them were kept was not
recorded.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MYSQL_TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column(
        "inference_data",
        sa.Column("retrain_reason", sa.String(32), comment="why the frame was kept for retraining"),
    )
    op.add_column("inference_data", sa.Column("retrain_image_name", sa.String(255)))
    op.add_column("inference_data", sa.Column("retrain_image_path", sa.String(255)))
    op.create_table(
        "inspection_feedback",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column(
            "unique_id",
            sa.String(36),
            nullable=False,
        ),
        sa.Column(
            "judgement", sa.String(16), nullable=False, comment="correct, false_ng or missed_defect"
        ),
        sa.Column(
            "boxes", sa.Text(), comment="JSON list of the operator's boxes; NULL: the model's stand"
        ),
        sa.Column("note", sa.String(500)),
        sa.Column("operator", sa.String(128)),
        sa.Column("created", UTC_DATETIME, nullable=False, comment="UTC"),
        sa.PrimaryKeyConstraint("id", name="pk_inspection_feedback"),
        sa.UniqueConstraint("unique_id", name="uq_inspection_feedback_unique_id"),
        sa.ForeignKeyConstraint(
            ["unique_id"],
            ["inference_data.unique_id"],
            name="fk_inspection_feedback_unique_id_inference_data",
            ondelete="CASCADE",
        ),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("inspection_feedback")
    op.drop_column("inference_data", "retrain_image_path")
    op.drop_column("inference_data", "retrain_image_name")
    op.drop_column("inference_data", "retrain_reason")
