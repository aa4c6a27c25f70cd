"""Initial schema: ``inference_data`` and ``detection_data``.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

The tables as the first release created them with ``metadata.create_all``. A database created that way
(tables present, no ``alembic_version``) is stamped with this revision by ``Database.migrate()``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MYSQL_TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
NAME = 128
IMAGE_FIELD = 255


def upgrade() -> None:
    op.create_table(
        "inference_data",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("unique_id", sa.String(36), nullable=False),
        sa.Column("camera_id", sa.String(NAME), nullable=False),
        sa.Column("camera_name", sa.String(NAME), nullable=False),
        sa.Column("model_name", sa.String(NAME), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("object_detected", sa.Boolean(), nullable=False),
        sa.Column("detection_count", sa.Integer(), nullable=False),
        sa.Column("inferencing_time", sa.Double(), nullable=False, comment="milliseconds"),
        sa.Column("frame_width", sa.Integer(), nullable=False),
        sa.Column("frame_height", sa.Integer(), nullable=False),
        sa.Column("created", UTC_DATETIME, nullable=False, comment="UTC"),
        sa.Column("raw_image_name", sa.String(IMAGE_FIELD)),
        sa.Column("raw_image_path", sa.String(IMAGE_FIELD)),
        sa.Column("annotated_image_name", sa.String(IMAGE_FIELD)),
        sa.Column("annotated_image_path", sa.String(IMAGE_FIELD)),
        sa.PrimaryKeyConstraint("id", name="pk_inference_data"),
        sa.UniqueConstraint("unique_id", name="uq_inference_data_unique_id"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_inference_data_camera_id_created", "inference_data", ["camera_id", "created"]
    )
    op.create_index("ix_inference_data_created", "inference_data", ["created"])
    op.create_table(
        "detection_data",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("unique_id", sa.String(36), nullable=False),
        sa.Column("tag_name", sa.String(NAME), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Double(), nullable=False, comment="0..1"),
        sa.Column("x1", sa.Double(), nullable=False, comment="frame pixels"),
        sa.Column("y1", sa.Double(), nullable=False),
        sa.Column("x2", sa.Double(), nullable=False),
        sa.Column("y2", sa.Double(), nullable=False),
        sa.Column("nx1", sa.Double(), nullable=False, comment="normalised 0..1"),
        sa.Column("ny1", sa.Double(), nullable=False),
        sa.Column("nx2", sa.Double(), nullable=False),
        sa.Column("ny2", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_detection_data"),
        sa.ForeignKeyConstraint(
            ["unique_id"],
            ["inference_data.unique_id"],
            name="fk_detection_data_unique_id_inference_data",
            ondelete="CASCADE",
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_detection_data_unique_id", "detection_data", ["unique_id"])


def downgrade() -> None:
    op.drop_index("ix_detection_data_unique_id", table_name="detection_data")
    op.drop_table("detection_data")
    op.drop_index("ix_inference_data_created", table_name="inference_data")
    op.drop_index("ix_inference_data_camera_id_created", table_name="inference_data")
    op.drop_table("inference_data")
