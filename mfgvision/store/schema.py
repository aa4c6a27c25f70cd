"""Edge database schema (SQLAlchemy Core): ``inference_data``, ``detection_data`` and operators'
``inspection_feedback``.

The table and column names keep those of the original edge database so that existing queries and
reports still read them. Types work on SQLite and on MySQL/MariaDB.

The database is created and upgraded by the Alembic revisions in ``mfgvision/store/migrations``; a change
here needs a new revision there (a test compares the two).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MYSQL_TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")
NAME_LENGTH = 128
#: The rules that fired, as JSON: beyond MySQL's 64 KiB ``TEXT`` when many rules fire at once.
RULES_TYPE = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
IMAGE_FIELD_LENGTH = 255


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC with microseconds and handed back as aware UTC.

    Naive datetimes are refused: their time zone is unknown, so storing them would be a guess.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        """MySQL/MariaDB ``DATETIME`` drops fractions unless asked for 6 digits."""
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware datetime in any zone -> naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timezone-aware datetime required, got naive {value!r}")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Naive UTC from the database -> aware UTC."""
        return None if value is None else value.replace(tzinfo=timezone.utc)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

inference_data = Table(
    "inference_data",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("unique_id", String(36), nullable=False, unique=True),
    Column("camera_id", String(NAME_LENGTH), nullable=False),
    Column("camera_name", String(NAME_LENGTH), nullable=False),
    Column("model_name", String(NAME_LENGTH), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("object_detected", Boolean(), nullable=False),
    Column("detection_count", Integer(), nullable=False),
    Column("inferencing_time", Double(), nullable=False, comment="milliseconds"),
    Column("frame_width", Integer(), nullable=False),
    Column("frame_height", Integer(), nullable=False),
    Column("created", UtcDateTime(), nullable=False, comment="UTC"),
    Column("raw_image_name", String(IMAGE_FIELD_LENGTH)),
    Column("raw_image_path", String(IMAGE_FIELD_LENGTH)),
    Column("annotated_image_name", String(IMAGE_FIELD_LENGTH)),
    Column("annotated_image_path", String(IMAGE_FIELD_LENGTH)),
    Column("image_error", String(IMAGE_FIELD_LENGTH), comment="why images were not stored"),
    Column("prob_threshold", Double(), comment="0..1, detections kept above it"),
    Column("settings_version", BigInteger(), comment="desired twin $version applied"),
    Column("retrain_reason", String(32), comment="why the frame was kept for retraining"),
    Column("retrain_image_name", String(IMAGE_FIELD_LENGTH)),
    Column("retrain_image_path", String(IMAGE_FIELD_LENGTH)),
    Column("verdict", String(2), comment="OK or NG; NULL before 0006: NG when object_detected"),
    Column("fired_rules", RULES_TYPE, comment="JSON list of the rules that fired; NULL: no rules"),
    Index("ix_inference_data_camera_id_created", "camera_id", "created"),
    Index("ix_inference_data_created", "created"),
    **MYSQL_TABLE_OPTIONS,
)

detection_data = Table(
    "detection_data",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column(
        "unique_id",
        String(36),
        ForeignKey("inference_data.unique_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("tag_name", String(NAME_LENGTH), nullable=False, index=True),
    Column("tag_id", Integer(), nullable=False),
    Column("probability", Double(), nullable=False, comment="0..1"),
    Column("x1", Double(), nullable=False, comment="frame pixels"),
    Column("y1", Double(), nullable=False),
    Column("x2", Double(), nullable=False),
    Column("y2", Double(), nullable=False),
    Column("nx1", Double(), nullable=False, comment="normalised 0..1"),
    Column("ny1", Double(), nullable=False),
    Column("nx2", Double(), nullable=False),
    Column("ny2", Double(), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

inspection_feedback = Table(
    "inspection_feedback",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column(
        "unique_id",
        String(36),
        ForeignKey("inference_data.unique_id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("judgement", String(16), nullable=False, comment="correct, false_ng or missed_defect"),
    Column("boxes", Text(), comment="JSON list of the operator's boxes; NULL: the model's stand"),
    Column("note", String(500)),
    Column("operator", String(NAME_LENGTH)),
    Column("created", UtcDateTime(), nullable=False, comment="UTC"),
    **MYSQL_TABLE_OPTIONS,
)
