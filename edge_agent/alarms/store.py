"""The alarm book's file: alarms and an outbox of records, in one small SQLite file.

One row per alarm (its state as a JSON document), and an outbox of the
records (type, time, body) the book has decided to send but the buffer has
not committed yet.  A state change and the records it makes are written in
one transaction; the book hands the records to the buffer and then removes
them from the outbox.  At start, whatever is still in the outbox goes to the
buffer again: a crash can repeat a record, never lose one.

WAL, `synchronous=FULL`: a commit survives a power cut.  Alarm changes are
rare (a level change, an operator's action), so the fsync per change is cheap.
Alarm ids are never reused (AUTOINCREMENT).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable

import orjson

from edge_agent.fsutil import make_dirs, sync_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,          -- point:<device>/<point id> or item:<name>
    ended INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,  -- ended and acknowledged or disposed of: nothing left to watch
    doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS alarms_live ON alarms(done) WHERE done = 0;
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    time REAL NOT NULL,
    body BLOB NOT NULL);
"""


class BookFile:
    """The alarm book's SQLite file.  Raises sqlite3.Error / OSError; the book turns them into lines."""

    def __init__(self, path: Path):
        self.path = Path(path)
        make_dirs(self.path.parent)        # a folder we create must survive a power cut (fsutil)
        new = not self.path.exists()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5)
        self.db.execute("PRAGMA journal_mode=WAL")
        if new:                             # the new file's (and its WAL's) names, too
            sync_dir(self.path.parent)
        self.db.execute("PRAGMA synchronous=FULL")
        # a small file beside the buffer, on the same disk: keep its WAL small too
        self.db.execute("PRAGMA wal_autocheckpoint=32")
        self.db.execute("PRAGMA journal_size_limit=131072")
        self.db.executescript(SCHEMA)

    def live(self) -> list[tuple[int, dict]]:
        """(id, doc) of every alarm that is not done, oldest first."""
        rows = self.db.execute("SELECT id, doc FROM alarms WHERE done = 0 ORDER BY id").fetchall()
        return [(i, orjson.loads(d)) for i, d in rows]

    def find(self, alarm_id: int) -> dict | None:
        row = self.db.execute("SELECT doc FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def recent(self, *, ended: bool | None, limit: int) -> list[tuple[int, dict]]:
        """The newest alarms (ended ones, open ones, or all), newest first."""
        where = "" if ended is None else f"WHERE ended = {int(ended)}"
        rows = self.db.execute(f"SELECT id, doc FROM alarms {where} ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [(i, orjson.loads(d)) for i, d in rows]

    def write(self, alarms: Iterable[tuple[int, str, bool, bool, dict]],
              records: Iterable[tuple[str, float, bytes]] = ()) -> list[int]:
        """In one transaction: (id, subject, ended, done, doc) rows (inserted or replaced), and records
        for the outbox.  Returns the outbox ids of the records."""
        boxed = []
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO alarms(id, subject, ended, done, doc) VALUES (?,?,?,?,?) "
                           "ON CONFLICT(id) DO UPDATE SET ended = excluded.ended, done = excluded.done, "
                           "doc = excluded.doc",
                           [(i, subject, int(ended), int(done), orjson.dumps(doc))
                            for i, subject, ended, done, doc in alarms])
            for typ, t, body in records:
                boxed.append(db.execute("INSERT INTO outbox(type, time, body) VALUES (?,?,?)",
                                        (typ, t, body)).lastrowid)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return boxed

    def last_id(self) -> int:
        """The highest alarm id ever given (ids are never reused)."""
        return self.db.execute("SELECT coalesce(max(id), 0) FROM alarms").fetchone()[0]

    def outbox(self) -> list[tuple[int, str, float, bytes]]:
        return self.db.execute("SELECT id, type, time, body FROM outbox ORDER BY id").fetchall()

    def sent(self, outbox_ids: list[int]) -> None:
        """The buffer committed these records: forget them."""
        if outbox_ids:
            self.db.execute("DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
                            (orjson.dumps(outbox_ids),))

    def close(self) -> None:
        self.db.close()
