"""The outage spool: inference rows wait here, on local disk, while the database cannot be reached.

A SQLite file in the data folder (``row-spool.db``, beside ``images/``) holds the rows in arrival order.
The CIS writer appends to it whenever a direct write fails, and keeps appending for as long as rows
are waiting, so the order of a camera's rows is kept. A drainer thread writes the waiting rows to the
database oldest first, in batches, with a capped back-off while the database stays away, and removes
them only after the database committed them. ``Database.write`` skips rows it already has, so a crash
between the commit and the removal replays the batch without duplicating it.

Several writers (one per camera, possibly in different containers sharing the data folder) may use
one spool file: every row carries its target database (its URL without password) and each writer
drains only its own; a lock file lets one drainer at a time work on the file. A row the database
refuses for its content (not for an outage) is moved to a ``dead`` table, kept for inspection, so that
it never blocks the rows behind it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from mfgvision.inference.types import Box, Detection
from mfgvision.store.database import Database
from mfgvision.store.records import InferenceRecord, fired_from_json, fired_json
from mfgvision.store.sqlite_file import immediate_transaction, open_durable

log = logging.getLogger(__name__)

ROW_SPOOL_FILE = "row-spool.db"
DRAIN_BATCH = 500
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    unique_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    spooled_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_rows_target_seq ON rows (target, seq);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    unique_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    spooled_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    error TEXT NOT NULL
);
"""


def row_spool_path(images_dir: Path) -> Path:
    """Where the spool of the CIS writing to ``images_dir`` lives: beside that folder."""
    return images_dir.parent / ROW_SPOOL_FILE


def is_data_error(exc: BaseException) -> bool:
    """True when the database refused the rows themselves; anything else counts as an outage."""
    if isinstance(exc, (IntegrityError, DataError)):
        return True
    # A value that cannot be bound (e.g. a naive datetime) fails before reaching the server.
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def record_to_json(record: InferenceRecord) -> str:
    """A record as one JSON document, every field kept exactly (floats round-trip)."""
    return json.dumps(
        {
            "unique_id": record.unique_id,
            "created": record.created.isoformat(),
            "camera_id": record.camera_id,
            "camera_name": record.camera_name,
            "model_name": record.model_name,
            "model_version": record.model_version,
            "inferencing_time_ms": record.inferencing_time_ms,
            "frame_width": record.frame_width,
            "frame_height": record.frame_height,
            "detections": [
                [d.label_id, d.label, d.probability, d.box.as_list(), d.box_norm.as_list()]
                for d in record.detections
            ],
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
            "given_verdict": record.given_verdict,
            "fired_rules": fired_json(record.fired_rules),
        },
        separators=(",", ":"),
    )


def record_from_json(text: str) -> InferenceRecord:
    """The inverse of :func:`record_to_json`; a record written before a field existed reads it as
    None (its default)."""
    data: dict[str, Any] = json.loads(text)
    detections = [
        Detection(int(i), str(label), float(p), Box(*box), Box(*norm))
        for i, label, p, box, norm in data.pop("detections")
    ]
    data["created"] = datetime.fromisoformat(data["created"])
    data["fired_rules"] = fired_from_json(data.get("fired_rules"))
    return InferenceRecord(detections=detections, **data)


@dataclass(frozen=True)
class DrainResult:
    """What one drain pass did: rows written, rows moved to ``dead``, rows still waiting."""

    written: int
    dead: int
    remaining: int
    error: str | None = None
    skipped: bool = False


class RowSpool:
    """A durable FIFO of inference rows for one target database; safe to share between threads."""

    def __init__(
        self,
        path: Path,
        db: Database,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        batch_size: int = DRAIN_BATCH,
        schema_ready: bool = True,
    ) -> None:
        self.path = path
        self.db = db
        self.target = db.safe_url
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.batch_size = batch_size
        self.schema_ready = schema_ready
        self.last_error: str | None = None
        self.written = 0
        self.dead = 0
        self._lock = threading.Lock()
        self._conn = open_durable(path, _SCHEMA)
        self._pending = self._count()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._pending:
            log.warning(
                "rows waiting in the spool from an earlier run",
                extra={"rows": self._pending, "spool": str(path)},
            )

    @property
    def pending(self) -> int:
        """Rows of this target waiting in the spool (as of the last append or drain)."""
        return self._pending

    def append(self, records: Sequence[InferenceRecord]) -> None:
        """Add rows at the end, durably (fsync'd) before returning; then nudge the drainer."""
        if not records:
            return
        now = time.time()
        rows = [(self.target, r.unique_id, record_to_json(r), now) for r in records]
        with self._lock, immediate_transaction(self._conn):
            self._conn.executemany(
                "INSERT INTO rows (target, unique_id, payload, spooled_at) VALUES (?, ?, ?, ?)",
                rows,
            )
        self._pending += len(rows)
        self._wake.set()

    def drain(self, max_batches: int | None = None) -> DrainResult:
        """Write waiting rows to the database, oldest first, until none is left or it fails.

        Returns without waiting when another process is draining the same target.
        """
        written = dead = batches = 0
        with self._drain_lock() as mine:
            if not mine:
                return DrainResult(0, 0, self._refresh(), None, skipped=True)
            error = self._prepare_schema()
            if error is not None:
                return DrainResult(0, 0, self._refresh(), error)
            while max_batches is None or batches < max_batches:
                batch = self._oldest(self.batch_size)
                if not batch:
                    break
                batches += 1
                records = [record_from_json(payload) for _, payload in batch]
                try:
                    self.db.write(records)
                except Exception as exc:
                    if not is_data_error(exc):
                        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                        return DrainResult(written, dead, self._refresh(), self.last_error)
                    w, d = self._write_one_by_one(batch, records)
                    written, dead = written + w, dead + d
                    continue
                self._remove([seq for seq, _ in batch])
                written += len(batch)
        self.written += written
        self.dead += dead
        if written or dead:
            self.last_error = None
            log.info(
                "spooled rows written",
                extra={"rows": written, "dead": dead, "remaining": self._pending},
            )
        return DrainResult(written, dead, self._refresh(), None)

    def _prepare_schema(self) -> str | None:
        """Create or upgrade the schema once, when it could not be at start; the error, if any."""
        if self.schema_ready:
            return None
        if not self.db.create_schema_if_reachable():
            self.last_error = "database unreachable, schema not created yet"
            return self.last_error
        self.schema_ready = True
        log.info("database reachable again, schema ready", extra={"rows": self._pending})
        return None

    def start(self) -> None:
        """Start the drainer thread: drains whenever rows wait, backing off while it fails."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="row-spool", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the drainer (a batch being written is finished first); rows stay spooled."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._conn.close()

    def dead_rows(self) -> list[tuple[str, str]]:
        """``(unique_id, error)`` of every row the database refused, oldest first."""
        with self._lock:
            return self._conn.execute(
                "SELECT unique_id, error FROM dead WHERE target = ? ORDER BY seq", (self.target,)
            ).fetchall()

    def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stop.is_set():
            if self._pending == 0 and self._refresh() == 0:
                self._wake.wait(timeout=self.backoff_max_s)
                self._wake.clear()
                continue
            try:
                result = self.drain()
            except Exception as exc:  # a broken spool file must not kill the thread silently
                self.last_error = f"spool: {type(exc).__name__}: {exc}"[:500]
                log.exception("draining the row spool failed")
                result = DrainResult(0, 0, self._pending, self.last_error)
            if result.skipped:  # another process is draining this file
                self._stop.wait(self.backoff_initial_s)
                continue
            if result.error is None:
                delay = self.backoff_initial_s
                continue
            log.warning(
                "database still unreachable, rows stay spooled",
                extra={"rows": result.remaining, "retry_in_s": delay, "error": result.error},
            )
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff_max_s)

    def _write_one_by_one(
        self, batch: list[tuple[int, str]], records: list[InferenceRecord]
    ) -> tuple[int, int]:
        """Find the rows the database refuses: write each alone, move refused ones to ``dead``."""
        written = dead = 0
        for (seq, _), record in zip(batch, records, strict=True):
            try:
                self.db.write([record])
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                self._bury(seq, f"{type(exc).__name__}: {exc}"[:1000])
                dead += 1
                log.error(
                    "row refused by the database, kept in the spool's dead table",
                    extra={"unique_id": record.unique_id, "error": str(exc)[:300]},
                )
                continue
            self._remove([seq])
            written += 1
        return written, dead

    def _oldest(self, limit: int) -> list[tuple[int, str]]:
        with self._lock:
            return self._conn.execute(
                "SELECT seq, payload FROM rows WHERE target = ? ORDER BY seq LIMIT ?",
                (self.target, limit),
            ).fetchall()

    def _remove(self, seqs: list[int]) -> None:
        with self._lock, immediate_transaction(self._conn):
            self._conn.executemany("DELETE FROM rows WHERE seq = ?", [(s,) for s in seqs])
        self._pending = max(self._pending - len(seqs), 0)

    def _bury(self, seq: int, error: str) -> None:
        with self._lock, immediate_transaction(self._conn):
            self._conn.execute(
                "INSERT INTO dead (seq, target, unique_id, payload, spooled_at, failed_at, error) "
                "SELECT seq, target, unique_id, payload, spooled_at, ?, ? FROM rows WHERE seq = ?",
                (time.time(), error, seq),
            )
            self._conn.execute("DELETE FROM rows WHERE seq = ?", (seq,))
        self._pending = max(self._pending - 1, 0)

    def _count(self) -> int:
        return int(
            self._conn.execute(
                "SELECT COUNT(*) FROM rows WHERE target = ?", (self.target,)
            ).fetchone()[0]
        )

    def _refresh(self) -> int:
        with self._lock:
            self._pending = self._count()
        return self._pending

    @contextlib.contextmanager
    def _drain_lock(self) -> Iterator[bool]:
        """One drainer per target across processes (an advisory lock file beside the spool)."""
        lock_path = self.path.with_name(f"{self.path.name}.drain.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)
