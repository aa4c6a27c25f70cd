"""The durable SQLite files' transactions: a failed commit leaves no transaction open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mfgvision.store.sqlite_file import immediate_transaction, open_durable

SCHEMA = """
CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS child (
    id INTEGER PRIMARY KEY,
    parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED
);
"""


def test_a_refused_commit_is_rolled_back_and_the_next_transaction_works(tmp_path: Path) -> None:
    conn = open_durable(tmp_path / "f.db", SCHEMA)
    conn.execute("PRAGMA foreign_keys=ON")
    # the deferred check refuses the COMMIT itself
    with pytest.raises(sqlite3.IntegrityError), immediate_transaction(conn):
        conn.execute("INSERT INTO child (id, parent) VALUES (1, 99)")
    assert not conn.in_transaction
    with immediate_transaction(conn):
        conn.execute("INSERT INTO parent (id) VALUES (1)")
    assert conn.execute("SELECT COUNT(*) FROM child").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM parent").fetchone() == (1,)
