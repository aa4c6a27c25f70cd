"""What the durable SQLite files in the data folder (outbox, row spool) share."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

SQLITE_TIMEOUT_S = 30.0


def open_durable(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to ``path`` (created with ``schema`` when new): autocommit, WAL, fsync'd
    commits, shareable between threads (callers hold their own lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=SQLITE_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(schema)
    return conn


@contextlib.contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taken at once; rolled back when the block or the commit fails (a commit
    refused by a full disk would otherwise leave the transaction open, and every later one would
    fail until a restart)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
