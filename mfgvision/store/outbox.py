"""The upload outbox: images waiting to reach cloud storage, durable across restarts.

A SQLite file in the data folder (``upload-outbox.db``, beside ``images/``). The ImageUpload module
adds one item per ``imageUpload`` message (the message is acknowledged once the item is committed) and
removes it only after the blob exists. FileCleanup reads it to never delete an image still waiting.

An item is ``queued`` (due at ``next_attempt``) or ``failed`` (parked after too many failures of its
own; retried later or on request). ``tries`` counts failed attempts of any kind, ``failures`` only
those the item itself caused (an unreadable file, a refused name), which lead to parking.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfgvision.store.sqlite_file import SQLITE_TIMEOUT_S, immediate_transaction, open_durable

OUTBOX_FILE = "upload-outbox.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    container TEXT NOT NULL,
    blob_name TEXT NOT NULL,
    img_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    metadata TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    tries INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    enqueued_at REAL NOT NULL,
    UNIQUE (container, blob_name)
);
CREATE INDEX IF NOT EXISTS ix_items_due ON items (state, next_attempt, id);
CREATE INDEX IF NOT EXISTS ix_items_img_name ON items (img_name);
"""


def outbox_path(images_dir: Path) -> Path:
    """Where the outbox for the images in ``images_dir`` lives: beside that folder."""
    return images_dir.parent / OUTBOX_FILE


@dataclass
class OutboxItem:
    """One image to upload."""

    container: str
    blob_name: str
    img_name: str
    kind: str
    metadata: dict[str, str] = field(default_factory=dict)
    id: int = 0
    state: str = "queued"
    tries: int = 0
    failures: int = 0
    next_attempt: float = 0.0
    last_error: str | None = None
    enqueued_at: float = 0.0


class UploadOutbox:
    """The outbox file; safe to share between threads, and between processes (SQLite locking)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = open_durable(path, _SCHEMA)
        self._conn.row_factory = sqlite3.Row

    def enqueue(self, item: OutboxItem) -> bool:
        """Add an item durably; False when the same container/blob is already waiting."""
        with self._lock, immediate_transaction(self._conn):
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO items "
                "(container, blob_name, img_name, kind, metadata, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    item.container,
                    item.blob_name,
                    item.img_name,
                    item.kind,
                    json.dumps(item.metadata, sort_keys=True),
                    time.time(),
                ),
            )
            return cursor.rowcount == 1

    def next_due(self, now: float | None = None) -> OutboxItem | None:
        """The oldest queued item whose retry time has come, or None."""
        now = time.time() if now is None else now
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM items WHERE state = 'queued' AND next_attempt <= ? "
                "ORDER BY next_attempt, id LIMIT 1",
                (now,),
            ).fetchone()
        return None if row is None else _item(row)

    def ack(self, item_id: int) -> None:
        """The blob exists: remove the item."""
        with self._lock, immediate_transaction(self._conn):
            self._conn.execute("DELETE FROM items WHERE id = ?", (item_id,))

    def retry_later(self, item_id: int, delay_s: float, error: str, count_failure: bool) -> int:
        """Put the item back for ``delay_s``; returns its failures so far."""
        with self._lock, immediate_transaction(self._conn):
            self._conn.execute(
                "UPDATE items SET next_attempt = ?, last_error = ?, tries = tries + 1, "
                "failures = failures + ? WHERE id = ?",
                (time.time() + delay_s, error[:1000], 1 if count_failure else 0, item_id),
            )
            row = self._conn.execute(
                "SELECT failures FROM items WHERE id = ?", (item_id,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def note_outage(self, item_id: int, error: str) -> None:
        """An attempt failed for a reason outside the item: it keeps its place in line."""
        with self._lock, immediate_transaction(self._conn):
            self._conn.execute(
                "UPDATE items SET last_error = ?, tries = tries + 1 WHERE id = ?",
                (error[:1000], item_id),
            )

    def park(self, item_id: int, error: str) -> None:
        """Stop retrying the item for now: it stays, as ``failed``, and keeps its image."""
        with self._lock, immediate_transaction(self._conn):
            self._conn.execute(
                "UPDATE items SET state = 'failed', last_error = ?, next_attempt = ? WHERE id = ?",
                (error[:1000], time.time(), item_id),
            )

    def requeue_failed(self, parked_before: float | None = None) -> int:
        """Queue failed items again (those parked before ``parked_before``, or all); returns how many."""
        limit = time.time() if parked_before is None else parked_before
        with self._lock, immediate_transaction(self._conn):
            cursor = self._conn.execute(
                "UPDATE items SET state = 'queued', failures = 0, next_attempt = 0 "
                "WHERE state = 'failed' AND next_attempt <= ?",
                (limit,),
            )
            return cursor.rowcount

    def counts(self) -> dict[str, int]:
        """Items per state: ``{"queued": n, "failed": m}``."""
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall()
        counts = {"queued": 0, "failed": 0}
        counts.update({state: int(n) for state, n in rows})
        return counts

    def oldest_age_s(self) -> float | None:
        """Seconds since the oldest waiting item was added; None when nothing waits."""
        with self._lock:
            row = self._conn.execute("SELECT MIN(enqueued_at) FROM items").fetchone()
        return None if row[0] is None else max(time.time() - float(row[0]), 0.0)

    def items(self) -> list[OutboxItem]:
        """Every waiting item, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM items ORDER BY id").fetchall()
        return [_item(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class OutboxReader:
    """Read-only view for FileCleanup: which image files are still waiting to be uploaded.

    Use it as a context manager for one pass; a missing outbox (no ImageUpload module) holds nothing.
    Reads raise ``sqlite3.Error`` when the outbox exists but cannot be read: then nothing can be known
    to be safe to delete.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> OutboxReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def waiting_names(self) -> set[str]:
        """Names of the images still in the outbox."""
        conn = self._connection()
        if conn is None:
            return set()
        return {row[0] for row in conn.execute("SELECT img_name FROM items")}

    def is_waiting(self, img_name: str) -> bool:
        """True when ``img_name`` is in the outbox (asked again right before each delete)."""
        conn = self._connection()
        if conn is None:
            return False
        row = conn.execute("SELECT 1 FROM items WHERE img_name = ? LIMIT 1", (img_name,))
        return row.fetchone() is not None

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None and self.path.exists():
            self._conn = sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT_S)
        return self._conn


def _item(row: sqlite3.Row) -> OutboxItem:
    data: dict[str, Any] = dict(row)
    data["metadata"] = json.loads(data["metadata"])
    return OutboxItem(**data)
