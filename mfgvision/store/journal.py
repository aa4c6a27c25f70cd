"""The announcement journal: what a CIS writer is about to store and announce, durable across a crash.

A SQLite file in the data folder (``cis-journal.db``, beside ``images/``). Before a batch of inferences
is stored, each one's row and the messages that announce it are journaled (fsync'd); once the row is
durable (in the database, or in the outage spool) and the messages were handed to the hub, the entry is
removed. A writer that starts finds the entries a crash left behind and does the rest again: the rows are
written idempotently (never twice to the database) and the messages are sent again (consumers drop
duplicates by ``unique_id``).

Several CIS modules may share one data folder: every entry carries its writer's ``owner`` (the module
id) and each writer replays only its own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfgvision.store.records import InferenceRecord
from mfgvision.store.spool import record_from_json, record_to_json
from mfgvision.store.sqlite_file import immediate_transaction, open_durable

JOURNAL_FILE = "cis-journal.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    unique_id TEXT NOT NULL,
    record TEXT NOT NULL,
    messages TEXT NOT NULL,
    journaled_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_entries_owner_seq ON entries (owner, seq);
"""

#: One message: the output it goes to and its JSON body.
Message = tuple[str, dict[str, Any]]


def journal_path(images_dir: Path) -> Path:
    """Where the journal of the CIS writing to ``images_dir`` lives: beside that folder."""
    return images_dir.parent / JOURNAL_FILE


@dataclass
class Announcement:
    """One inference: its row and the messages that announce it; ``seq`` once journaled."""

    record: InferenceRecord
    messages: list[Message] = field(default_factory=list)
    seq: int | None = None


class AnnouncementJournal:
    """The journal file of one writer; safe to share between threads."""

    def __init__(self, path: Path, owner: str) -> None:
        self.path = path
        self.owner = owner
        self._lock = threading.Lock()
        self._conn = open_durable(path, _SCHEMA)

    def append(self, entries: Sequence[Announcement]) -> None:
        """Journal the entries not journaled yet, durably, in one transaction; sets their ``seq``."""
        fresh = [e for e in entries if e.seq is None]
        if not fresh:
            return
        now = time.time()
        with self._lock, immediate_transaction(self._conn):
            for entry in fresh:
                cursor = self._conn.execute(
                    "INSERT INTO entries (owner, unique_id, record, messages, journaled_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        self.owner,
                        entry.record.unique_id,
                        record_to_json(entry.record),
                        json.dumps(entry.messages, separators=(",", ":")),
                        now,
                    ),
                )
                entry.seq = cursor.lastrowid

    def remove(self, entries: Sequence[Announcement]) -> None:
        """The entries are stored and announced: forget them."""
        seqs = [(e.seq,) for e in entries if e.seq is not None]
        if not seqs:
            return
        with self._lock, immediate_transaction(self._conn):
            self._conn.executemany("DELETE FROM entries WHERE seq = ?", seqs)
        for entry in entries:
            entry.seq = None

    def waiting(self) -> list[Announcement]:
        """This owner's entries left by an earlier run, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, record, messages FROM entries WHERE owner = ? ORDER BY seq",
                (self.owner,),
            ).fetchall()
        return [
            Announcement(
                record_from_json(record), [(o, b) for o, b in json.loads(messages)], int(seq)
            )
            for seq, record, messages in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
