"""Read queries of the dashboard: windowed counts, time series, history search, one inference.

Every function takes the ``Engine`` of a :class:`mfgvision.store.database.Database` and runs on SQLite
and MySQL/MariaDB. Aggregation happens in the database (one row per bucket, never one per inference),
and history pages are found by keyset (newest first), so the cost of a request does not grow with the
number of stored rows beyond what the indexes have to touch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    Engine,
    Integer,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from mfgvision.store.database import records_with_detections
from mfgvision.store.records import NG, OK, InferenceRecord
from mfgvision.store.schema import detection_data, inference_data

MAX_PAGE_SIZE = 200
COUNT_CAP = 1000
"""History totals are counted up to this many matches; more reads as "1000+"."""
ANY_RULE = "*"
"""``HistoryFilter.rule`` for inferences on which any rule fired (never a rule's name)."""
_CURSOR = re.compile(r"([0-9]{1,19})_([0-9]{1,19})")


@dataclass(frozen=True)
class HistoryFilter:
    """What the history table shows; ``None`` means no restriction."""

    camera_id: str | None = None
    label: str | None = None
    verdict: str | None = None  # "OK" or "NG"
    start: datetime | None = None
    end: datetime | None = None
    rule: str | None = None  # a rule's name, or ANY_RULE

    def __post_init__(self) -> None:
        if self.verdict not in (None, OK, NG):
            raise ValueError(f"verdict must be OK or NG, got {self.verdict!r}")


@dataclass(frozen=True)
class HistoryPage:
    """One page of history, newest first, with the cursor of the next (older) page."""

    records: list[InferenceRecord]
    next_cursor: str | None
    total: int
    total_capped: bool


def _verdict() -> ColumnElement[str]:
    """Each row's verdict: the one stored with it; for a row stored before verdicts were recorded
    (migration 0006) the verdict without rules (``records.verdict_of``: NG when anything was
    detected)."""
    t = inference_data
    return func.coalesce(t.c.verdict, case((t.c.object_detected.is_(True), NG), else_=OK))


class _epoch_bucket(FunctionElement[int]):
    """``floor(seconds since 1970-01-01 UTC of a naive-UTC column / n)`` on each backend."""

    type = Integer()
    inherit_cache = True
    name = "epoch_bucket"


@compiles(_epoch_bucket, "sqlite")
def _epoch_bucket_sqlite(element: _epoch_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    column, size = list(element.clauses)
    col, n = compiler.process(column, **kw), compiler.process(size, **kw)
    return f"(CAST(strftime('%s', {col}) AS INTEGER) / {n})"


@compiles(_epoch_bucket, "mysql")
@compiles(_epoch_bucket, "mariadb")
def _epoch_bucket_mysql(element: _epoch_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    column, size = list(element.clauses)
    col, n = compiler.process(column, **kw), compiler.process(size, **kw)
    # TIMESTAMPDIFF is independent of the session time zone (UNIX_TIMESTAMP is not).
    return f"(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {col}) DIV {n})"


class _rule_fired(FunctionElement[bool]):
    """Whether a ``fired_rules`` JSON list holds a firing of the rule named, matched exactly by the
    database's JSON functions: never another rule's name, nor a name quoted in a ``detail``."""

    type = Boolean()
    inherit_cache = True
    name = "rule_fired"


class _any_rule_fired(FunctionElement[bool]):
    """Whether a ``fired_rules`` JSON list holds any firing (NULL, no rules, and ``[]`` do not)."""

    type = Boolean()
    inherit_cache = True
    name = "any_rule_fired"


@compiles(_rule_fired, "sqlite")
def _rule_fired_sqlite(element: _rule_fired, compiler: SQLCompiler, **kw: Any) -> str:
    column, rule = list(element.clauses)
    col, name = compiler.process(column, **kw), compiler.process(rule, **kw)
    return (
        f"EXISTS (SELECT 1 FROM json_each({col}) AS fired "
        f"WHERE json_extract(fired.value, '$.rule') = {name})"
    )


@compiles(_rule_fired, "mysql")
@compiles(_rule_fired, "mariadb")
def _rule_fired_mysql(element: _rule_fired, compiler: SQLCompiler, **kw: Any) -> str:
    column, rule = list(element.clauses)
    col, name = compiler.process(column, **kw), compiler.process(rule, **kw)
    return f"(JSON_CONTAINS({col}, JSON_OBJECT('rule', {name})) = 1)"


@compiles(_any_rule_fired, "sqlite")
def _any_rule_fired_sqlite(element: _any_rule_fired, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"(json_array_length({compiler.process(column, **kw)}) > 0)"


@compiles(_any_rule_fired, "mysql")
@compiles(_any_rule_fired, "mariadb")
def _any_rule_fired_mysql(element: _any_rule_fired, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"(JSON_LENGTH({compiler.process(column, **kw)}) > 0)"


def _bucket(column: ColumnElement[Any], bucket_s: int) -> ColumnElement[int]:
    if bucket_s < 1:
        raise ValueError(f"bucket size must be at least 1 s, got {bucket_s}")
    return _epoch_bucket(column, int(bucket_s))  # type: ignore[return-value]


def _bucket_start(index: int, bucket_s: int) -> datetime:
    return datetime.fromtimestamp(int(index) * bucket_s, tz=timezone.utc)


def _in_window(start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    t = inference_data
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(t.c.created >= start)
    if end is not None:
        conditions.append(t.c.created < end)
    return conditions


@dataclass(frozen=True)
class CameraBucket:
    """Aggregates of one camera's inferences in one time bucket."""

    camera_id: str
    bucket: int  # index: start = bucket * bucket_s seconds after 1970-01-01 UTC
    total: int
    ng: int
    sum_ms: float
    max_ms: float


def camera_buckets(
    engine: Engine, start: datetime | None, end: datetime | None, bucket_s: int = 60
) -> list[CameraBucket]:
    """Count, NG count and inference-time sum/max per camera and time bucket in ``[start, end)``."""
    t = inference_data
    bucket = _bucket(t.c.created, bucket_s).label("bucket")
    ng = func.sum(case((_verdict() == NG, 1), else_=0), type_=Integer)
    query = (
        select(
            t.c.camera_id,
            bucket,
            func.count().label("n"),
            ng.label("ng"),
            func.sum(t.c.inferencing_time).label("sum_ms"),
            func.max(t.c.inferencing_time).label("max_ms"),
        )
        .where(*_in_window(start, end))
        .group_by(t.c.camera_id, bucket)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        CameraBucket(
            r.camera_id, int(r.bucket), int(r.n), int(r.ng or 0), float(r.sum_ms), float(r.max_ms)
        )
        for r in rows
    ]


def label_buckets(
    engine: Engine, start: datetime | None, end: datetime | None, bucket_s: int = 60
) -> list[tuple[str, int, str, int]]:
    """``(camera_id, bucket, label, detections)`` for inferences created in ``[start, end)``."""
    t, d = inference_data, detection_data
    bucket = _bucket(t.c.created, bucket_s).label("bucket")
    query = (
        select(t.c.camera_id, bucket, d.c.tag_name, func.count().label("n"))
        .select_from(t.join(d, d.c.unique_id == t.c.unique_id))
        .where(*_in_window(start, end), t.c.object_detected.is_(True))
        .group_by(t.c.camera_id, bucket, d.c.tag_name)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [(r.camera_id, int(r.bucket), r.tag_name, int(r.n)) for r in rows]


def camera_ids(engine: Engine) -> list[str]:
    """Every camera id with stored rows, sorted; one index probe per camera (loose index scan)."""
    t = inference_data
    first = select(func.min(t.c.camera_id).label("camera_id")).cte("cams", recursive=True)
    step = (
        select(func.min(t.c.camera_id)).where(t.c.camera_id > first.c.camera_id).scalar_subquery()
    )
    cams = first.union_all(select(step).where(first.c.camera_id.is_not(None)))
    query = select(cams.c.camera_id).where(cams.c.camera_id.is_not(None))
    with engine.connect() as conn:
        return sorted(conn.execute(query).scalars())


def latest_per_camera(
    engine: Engine, cameras: Sequence[str] | None = None
) -> list[InferenceRecord]:
    """The newest inference of each camera (all cameras when None) with detections, by camera id."""
    t = inference_data
    ids = camera_ids(engine) if cameras is None else sorted(cameras)
    if not ids:
        return []
    with engine.connect() as conn:
        rows = []
        for cam in ids:
            query = (
                select(t)
                .where(t.c.camera_id == cam)
                .order_by(t.c.created.desc(), t.c.id.desc())
                .limit(1)
            )
            rows.extend(conn.execute(query).all())
        return records_with_detections(conn, rows)


def labels(engine: Engine) -> list[str]:
    """Every class name that has at least one stored detection, sorted."""
    d = detection_data
    with engine.connect() as conn:
        return list(conn.execute(select(d.c.tag_name).distinct().order_by(d.c.tag_name)).scalars())


def label_ids(engine: Engine) -> dict[str, int]:
    """Each stored class name and its index in the model's labels (the highest stored, when
    models numbered it differently)."""
    d = detection_data
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.c.tag_name, func.max(d.c.tag_id)).group_by(d.c.tag_name).order_by(d.c.tag_name)
        ).all()
    return {str(name): int(tag_id) for name, tag_id in rows}


def encode_cursor(record: InferenceRecord, row_id: int) -> str:
    """The position after ``record`` in newest-first order: ``<created µs since 1970>_<id>``."""
    delta = record.created.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}_{row_id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created, id) a cursor stands for; raises ValueError for anything malformed."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise ValueError("malformed cursor")
    micros, row_id = int(match.group(1)), int(match.group(2))
    try:
        created = datetime.fromtimestamp(micros // 1_000_000, tz=timezone.utc).replace(
            microsecond=micros % 1_000_000
        )
    except (OverflowError, OSError, ValueError):
        raise ValueError("cursor out of range") from None
    return created, row_id


def _history_conditions(flt: HistoryFilter) -> list[ColumnElement[bool]]:
    t, d = inference_data, detection_data
    conditions = _in_window(flt.start, flt.end)
    if flt.camera_id is not None:
        conditions.append(t.c.camera_id == flt.camera_id)
    if flt.verdict is not None:
        conditions.append(_verdict() == flt.verdict)
    if flt.label is not None:
        # coalesce() keeps the planner on the unique_id index: probing the detections of each
        # inference (newest first) is cheap, while starting from a class's index sorts them all.
        tag = func.coalesce(d.c.tag_name, d.c.tag_name)
        conditions.append(exists().where(and_(d.c.unique_id == t.c.unique_id, tag == flt.label)))
    if flt.rule is not None:
        fired = (
            _any_rule_fired(t.c.fired_rules)
            if flt.rule == ANY_RULE
            else _rule_fired(t.c.fired_rules, literal(flt.rule))
        )
        conditions.append(fired)
    return conditions


def history(
    engine: Engine, flt: HistoryFilter, limit: int = 50, cursor: str | None = None
) -> HistoryPage:
    """A page of inferences matching ``flt``, newest first, starting after ``cursor``.

    Raises ValueError for a malformed cursor or a page size outside 1..``MAX_PAGE_SIZE``.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}")
    t = inference_data
    conditions = _history_conditions(flt)
    page_conditions = list(conditions)
    if cursor is not None:
        created, row_id = decode_cursor(cursor)
        page_conditions.append(
            or_(t.c.created < created, and_(t.c.created == created, t.c.id < row_id))
        )
    query = (
        select(t)
        .where(*page_conditions)
        .order_by(t.c.created.desc(), t.c.id.desc())
        .limit(limit + 1)
    )
    capped = select(t.c.id).where(*conditions).limit(COUNT_CAP + 1).subquery()
    count_query = select(func.count()).select_from(capped)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        total = int(conn.execute(count_query).scalar_one())
        more = len(rows) > limit
        rows = rows[:limit]
        records = records_with_detections(conn, rows)
    next_cursor = encode_cursor(records[-1], int(rows[-1].id)) if more and records else None
    return HistoryPage(records, next_cursor, min(total, COUNT_CAP), total > COUNT_CAP)


def inference(engine: Engine, unique_id: str) -> InferenceRecord | None:
    """One inference with its detections, or None."""
    t = inference_data
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.unique_id == unique_id)).all()
        records = records_with_detections(conn, rows)
    return records[0] if records else None
