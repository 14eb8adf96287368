"""The durable store-and-forward buffer: one SQLite file, WAL, fixed SQL.

A row is one message (many records).  `seq` increases by one per message per
gateway and survives restarts.  Each row carries a bit mask of the sinks that
still have to acknowledge it; it is deleted when the mask reaches zero.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger("edge_agent.buffer")

SINKS = {"mqtt": 1, "files": 2}
ALL_SINKS = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq   INTEGER PRIMARY KEY,
    type  TEXT    NOT NULL,
    sinks INTEGER NOT NULL,
    time  REAL    NOT NULL,
    body  BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    type: str
    time: float
    body: bytes


class Buffer:
    """Append messages in one transaction per batch; each sink peeks and acks independently."""

    def __init__(self, path: str | Path, *, durability: str = "normal", max_size: int = 1024**3,
                 max_age: float = 30 * 86400.0, sync_every: float = 1.0, memory_limit: int = 64 * 1024**2):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.durability = durability
        self.max_size = max_size
        self.max_age = max_age
        self.sync_every = sync_every
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        top = self.db.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0
        self._next_seq = max(row[0] if row else 1, top + 1)
        self.drops: dict[str, int] = {}

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def append(self, messages: Sequence[tuple[str, int, float, bytes]]) -> list[int]:
        """Commit messages (type, sinks mask, epoch time, body) in one transaction; return their seqs."""
        if not messages:
            return []
        first = self._next_seq
        rows = [(first + i, t, s, tm, b) for i, (t, s, tm, b) in enumerate(messages)]
        nxt = first + len(rows)
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO messages(seq, type, sinks, time, body) VALUES (?,?,?,?,?)", rows)
            self.db.execute("INSERT INTO meta(key, value) VALUES ('next_seq', ?) "
                            "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (nxt,))
        self._next_seq = nxt
        return list(range(first, nxt))

    def peek(self, sink: str, limit: int, after_seq: int = 0) -> list[Row]:
        """Rows the sink has not acknowledged, oldest first, with seq > after_seq."""
        bit = SINKS[sink]
        cur = self.db.execute("SELECT seq, type, time, body FROM messages WHERE seq > ? AND (sinks & ?) != 0 "
                              "ORDER BY seq LIMIT ?", (after_seq, bit, limit))
        return [Row(*r) for r in cur]

    def ack(self, sink: str, seqs: Iterable[int]) -> None:
        bit = SINKS[sink]
        params = [(bit, s) for s in seqs]
        if not params:
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE messages SET sinks = sinks & ~? WHERE seq = ?", params)
            self.db.execute("DELETE FROM messages WHERE sinks = 0")

    def backlog(self, sink: str) -> int:
        return self.db.execute("SELECT count(*) FROM messages WHERE (sinks & ?) != 0",
                               (SINKS[sink],)).fetchone()[0]

    def tick(self, now: float | None = None) -> None:
        """Periodic maintenance (checkpoint, bounds); called by the pipeline about once a second."""

    def stats(self) -> dict:
        rows = self.db.execute("SELECT type, count(*), sum(length(body)), min(time) FROM messages GROUP BY type")
        by_type = {t: {"rows": n, "bytes": b or 0} for t, n, b, _ in rows}
        oldest = self.db.execute("SELECT min(time) FROM messages").fetchone()[0]
        return {
            "path": str(self.path),
            "next_seq": self._next_seq,
            "rows": sum(v["rows"] for v in by_type.values()),
            "by_type": by_type,
            "oldest_age": 0.0 if oldest is None else max(0.0, time.time() - oldest),
            "backlog": {s: self.backlog(s) for s in SINKS},
            "drops": dict(self.drops),
        }

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()
