"""The edge database: schema migrations, batched idempotent writes from the CIS, and pruning.

SQLite (one file, WAL) for a single box, or MySQL/MariaDB for a shared server. The URL decides. The
dashboard's reads are in ``mfgvision.store.queries``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError

from mfgvision.inference.types import Box, Detection
from mfgvision.store.records import InferenceRecord, fired_from_json, fired_json
from mfgvision.store.schema import detection_data, inference_data

logger = logging.getLogger(__name__)

DB_URL_ENV = "MFGVISION_DB_URL"
MYSQL_BACKENDS = ("mysql", "mariadb")
MYSQL_POOL_RECYCLE_S = 1800
MYSQL_CONNECT_TIMEOUT_S = 5
# Positional parameters: the MySQL drivers quote a whole row in one call instead of one per column.
MYSQL_PARAMSTYLE = "format"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE_REVISION = "0001"
SCHEMA_LOCK = "mfgvision_schema"
SCHEMA_LOCK_TIMEOUT_S = 120
# Columns only this product's first schema has; a same-named table without them is someone else's.
_BASELINE_COLUMNS = {"unique_id", "detection_count", "frame_width", "frame_height", "model_version"}


def database_url_from_env(default_sqlite_path: Path | str) -> str:
    """``$MFGVISION_DB_URL`` when set, else a SQLite file at ``default_sqlite_path``."""
    url = os.environ.get(DB_URL_ENV, "").strip()
    return url or f"sqlite:///{Path(default_sqlite_path)}"


class Database:
    """Connection pool, schema and writes of the edge database; safe to share between threads."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.engine: Engine = _create_engine(parsed)
        logger.info(
            "database configured",
            extra={
                "db_url": self.safe_url,
                "dialect": self.engine.dialect.name,
                "driver": _driver(self.engine),
            },
        )

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, fit for logs."""
        return self.engine.url.render_as_string(hide_password=True)

    def create_schema(self) -> None:
        """Bring the schema to the latest revision (see :meth:`migrate`); existing rows are kept."""
        self.migrate()

    def create_schema_if_reachable(self) -> bool:
        """:meth:`create_schema`; False (logged) when the database cannot be reached now.

        Tables that are not this product's still raise ``SchemaError``: that is no outage.
        """
        try:
            self.create_schema()
        except SchemaError:
            raise
        except Exception as exc:
            logger.error(
                "database unreachable, schema not created yet",
                extra={"db_url": self.safe_url, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            return False
        return True

    def migrate(self, revision: str = "head") -> None:
        """Apply the Alembic revisions up to ``revision``, one process at a time.

        A database created before migrations existed (tables, no ``alembic_version``) is stamped with
        the initial revision first, after checking that its tables are this product's; a database
        holding other tables of the same names is refused rather than altered.
        """
        with _schema_lock(self.engine), self.engine.begin() as conn:
            config = _alembic_config(conn)
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" not in tables and "inference_data" in tables:
                _check_baseline(conn)
                command.stamp(config, BASELINE_REVISION)
                logger.info(
                    "existing schema adopted",
                    extra={"db_url": self.safe_url, "revision": BASELINE_REVISION},
                )
            before = _current_revision(conn)
            command.upgrade(config, revision)
            after = _current_revision(conn)
        logger.info(
            "database schema ready",
            extra={"db_url": self.safe_url, "from_revision": before, "revision": after},
        )

    def schema_revision(self) -> str | None:
        """The revision the database is at; None when it has never been migrated."""
        with self.engine.connect() as conn:
            return _current_revision(conn)

    def ping(self) -> None:
        """Run a trivial query; raises when the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def write(self, records: Sequence[InferenceRecord]) -> int:
        """Insert a batch of records and their detections in one transaction (all or nothing).

        Idempotent by ``unique_id``: records already stored are skipped, so replaying a batch whose
        first write did commit (a crash before it was acknowledged) never duplicates rows. A fresh
        batch is inserted straight away; only when the unique key refuses it are the stored ids
        looked up and the rest inserted. Returns the number of records inserted.
        """
        if not records:
            return 0
        try:
            return self._insert(records)
        except IntegrityError:
            stored = self._stored_ids([r.unique_id for r in records])
            if not stored:
                raise
        fresh = [r for r in records if r.unique_id not in stored]
        logger.info(
            "records already stored skipped",
            extra={"records": len(records), "already_stored": len(records) - len(fresh)},
        )
        return self._insert(fresh)

    def _insert(self, records: Sequence[InferenceRecord]) -> int:
        """One transaction: the records' rows, then their detections."""
        if not records:
            return 0
        detections = [row for record in records for row in _detection_rows(record)]
        with self.engine.begin() as conn:
            conn.execute(insert(inference_data), [_inference_row(r) for r in records])
            if detections:
                conn.execute(insert(detection_data), detections)
        logger.debug(
            "records stored", extra={"records": len(records), "detections": len(detections)}
        )
        return len(records)

    def _stored_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` already in ``inference_data``."""
        t = inference_data
        with self.engine.connect() as conn:
            return set(conn.execute(select(t.c.unique_id).where(t.c.unique_id.in_(ids))).scalars())

    def prune(self, before: datetime, batch_size: int = 1000) -> int:
        """Delete inferences created before ``before`` with their detections; returns how many.

        Works in batches of ``batch_size`` oldest rows, one short transaction each, so that a large
        backlog never holds long locks on a busy server.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        t, d = inference_data, detection_data
        pruned = 0
        while True:
            with self.engine.begin() as conn:
                ids = (
                    conn.execute(
                        select(t.c.unique_id)
                        .where(t.c.created < before)
                        .order_by(t.c.created)
                        .limit(batch_size)
                    )
                    .scalars()
                    .all()
                )
                if ids:
                    conn.execute(delete(d).where(d.c.unique_id.in_(ids)))
                    conn.execute(delete(t).where(t.c.unique_id.in_(ids)))
            pruned += len(ids)
            if len(ids) < batch_size:
                break
        if pruned:
            logger.info("old rows pruned", extra={"rows": pruned, "before": before.isoformat()})
        return pruned

    def count_before(self, before: datetime) -> int:
        """Inferences created before ``before`` (what :meth:`prune` would delete)."""
        t = inference_data
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(t).where(t.c.created < before)
                ).scalar_one()
            )

    def row_counts(self) -> dict[str, int]:
        """Stored inferences and detections; zero for both before the schema exists."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(inference_data.name):
                return {"inferences": 0, "detections": 0}
            count = func.count()
            return {
                "inferences": conn.execute(select(count).select_from(inference_data)).scalar_one(),
                "detections": conn.execute(select(count).select_from(detection_data)).scalar_one(),
            }

    def is_empty(self) -> bool:
        """True when the inference table is missing or holds no row (a new or reset database)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(inference_data.name):
                return True
            return conn.execute(select(inference_data.c.id).limit(1)).first() is None

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _create_engine(url: URL) -> Engine:
    """An engine tuned for the backend named by ``url``."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _create_sqlite_engine(url)
    if backend in MYSQL_BACKENDS:
        connect_args: dict[str, Any] = {}
        if url.get_driver_name() == "mysqlconnector" and "connection_timeout" not in url.query:
            connect_args["connection_timeout"] = MYSQL_CONNECT_TIMEOUT_S
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_recycle=MYSQL_POOL_RECYCLE_S,
            connect_args=connect_args,
            paramstyle=MYSQL_PARAMSTYLE,
        )
        event.listen(engine, "connect", _send_without_delay)
        return engine
    raise ValueError(f"unsupported database backend {backend!r}: use sqlite or mysql/mariadb")


def _send_without_delay(dbapi_connection: Any, _record: Any) -> None:
    """Turn Nagle's algorithm off on a pure-Python mysql-connector connection's TCP socket.

    The driver leaves it on, so over TLS the last segment of each statement waited for the
    server's delayed acknowledgement: batched writes ran 6x slower (docs/performance.md). The C
    client library sets it itself; Unix sockets have no such option.
    """
    sock = getattr(getattr(dbapi_connection, "_socket", None), "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _driver(engine: Engine) -> str:
    """The DB-API driver in use, with its version and, for mysql-connector, which protocol code.

    mysql-connector's C extension bundles its own OpenSSL, which does not load beside the system's
    that ONNX Runtime and Python's ``ssl`` use, so the modules run its pure-Python protocol (fast
    enough by far, see docs/performance.md).
    """
    module = engine.dialect.dbapi
    version = getattr(module, "__version__", None) or getattr(module, "sqlite_version", "")
    name = f"{engine.dialect.driver} {version}".strip()
    if engine.dialect.driver == "mysqlconnector":
        name += " (C extension)" if getattr(module, "HAVE_CEXT", False) else " (pure Python)"
    return name


def _create_sqlite_engine(url: URL) -> Engine:
    """SQLite with its folder created, WAL journaling and enforced foreign keys."""
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection pragmas: WAL lets the dashboard read while the CIS writes."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


class SchemaError(RuntimeError):
    """The database holds tables this product cannot adopt or migrate."""


def _alembic_config(conn: Connection) -> Config:
    """An Alembic configuration that runs the packaged revisions on ``conn``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _check_baseline(conn: Connection) -> None:
    """Refuse to stamp tables that are not this product's first schema (e.g. the original's)."""
    columns = {c["name"] for c in inspect(conn).get_columns(inference_data.name)}
    missing = _BASELINE_COLUMNS - columns
    if missing:
        raise SchemaError(
            f"table {inference_data.name} exists but lacks {sorted(missing)}: it was not created by "
            "mfgvision (perhaps by the original system); point MFGVISION_DB_URL at a new database "
            "or migrate those rows first"
        )


@contextlib.contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations between processes: a named lock on MySQL, a file lock for SQLite."""
    backend = engine.url.get_backend_name()
    if backend in MYSQL_BACKENDS:
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT GET_LOCK(:name, :timeout)"),
                {"name": SCHEMA_LOCK, "timeout": SCHEMA_LOCK_TIMEOUT_S},
            ).scalar()
            if got != 1:
                raise SchemaError(
                    f"could not take the schema lock within {SCHEMA_LOCK_TIMEOUT_S} s"
                )
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": SCHEMA_LOCK})
        return
    database = engine.url.database
    if (
        backend != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
    ):
        yield
        return
    import fcntl

    try:
        fd = os.open(f"{database}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        logger.warning("no schema lock file, migrating without it", extra={"error": str(exc)})
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _inference_row(record: InferenceRecord) -> dict[str, Any]:
    """One ``inference_data`` row."""
    return {
        "unique_id": record.unique_id,
        "camera_id": record.camera_id,
        "camera_name": record.camera_name,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "object_detected": record.object_detected,
        "detection_count": len(record.detections),
        "inferencing_time": float(record.inferencing_time_ms),
        "frame_width": record.frame_width,
        "frame_height": record.frame_height,
        "created": record.created,
        "raw_image_name": record.raw_image_name,
        "raw_image_path": record.raw_image_path,
        "annotated_image_name": record.annotated_image_name,
        "annotated_image_path": record.annotated_image_path,
        "image_error": record.image_error,
        "prob_threshold": record.prob_threshold,
        "settings_version": record.settings_version,
        "retrain_reason": record.retrain_reason,
        "retrain_image_name": record.retrain_image_name,
        "retrain_image_path": record.retrain_image_path,
        "verdict": record.given_verdict,
        "fired_rules": _json(fired_json(record.fired_rules)),
    }


def _json(value: Any) -> str | None:
    """A value as compact JSON text; None stays NULL."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _detection_rows(record: InferenceRecord) -> Iterable[dict[str, Any]]:
    """The ``detection_data`` rows of one record."""
    for d in record.detections:
        yield {
            "unique_id": record.unique_id,
            "tag_name": d.label,
            "tag_id": d.label_id,
            "probability": float(d.probability),
            "x1": float(d.box.x1),
            "y1": float(d.box.y1),
            "x2": float(d.box.x2),
            "y2": float(d.box.y2),
            "nx1": float(d.box_norm.x1),
            "ny1": float(d.box_norm.y1),
            "nx2": float(d.box_norm.x2),
            "ny2": float(d.box_norm.y2),
        }


def records_with_detections(conn: Connection, rows: Sequence[Row[Any]]) -> list[InferenceRecord]:
    """Turn inference rows into records, loading all their detections with one query."""
    ids = [r.unique_id for r in rows]
    by_id: dict[str, list[Detection]] = {uid: [] for uid in ids}
    if ids:
        d = detection_data
        query = select(d).where(d.c.unique_id.in_(ids)).order_by(d.c.id)
        for det in conn.execute(query):
            by_id[det.unique_id].append(_detection(det))
    return [_record(r, by_id[r.unique_id]) for r in rows]


def _detection(row: Row[Any]) -> Detection:
    """A ``detection_data`` row as a ``Detection``."""
    return Detection(
        label_id=row.tag_id,
        label=row.tag_name,
        probability=row.probability,
        box=Box(row.x1, row.y1, row.x2, row.y2),
        box_norm=Box(row.nx1, row.ny1, row.nx2, row.ny2),
    )


def _record(row: Row[Any], detections: list[Detection]) -> InferenceRecord:
    """An ``inference_data`` row with its detections as an ``InferenceRecord``."""
    return InferenceRecord(
        unique_id=row.unique_id,
        created=row.created,
        camera_id=row.camera_id,
        camera_name=row.camera_name,
        model_name=row.model_name,
        model_version=row.model_version,
        inferencing_time_ms=row.inferencing_time,
        frame_width=row.frame_width,
        frame_height=row.frame_height,
        detections=detections,
        raw_image_name=row.raw_image_name,
        raw_image_path=row.raw_image_path,
        annotated_image_name=row.annotated_image_name,
        annotated_image_path=row.annotated_image_path,
        image_error=row.image_error,
        prob_threshold=row.prob_threshold,
        settings_version=row.settings_version,
        retrain_reason=row.retrain_reason,
        retrain_image_name=row.retrain_image_name,
        retrain_image_path=row.retrain_image_path,
        given_verdict=row.verdict,
        fired_rules=fired_from_json(
            None if row.fired_rules is None else json.loads(row.fired_rules)
        ),
    )
