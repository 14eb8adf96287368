"""Running counts kept in the buffer file: rows and bytes per type, rows each sink still owes.

They change in the same transaction as the rows they count, so `stats()` and
`backlog()` read a few small rows instead of scanning the table (a scan of a
million rows takes seconds, and stats are read on every status publish and
metrics scrape).
"""
from __future__ import annotations

import sqlite3
from typing import Iterable

from edge_agent.buffer import sinks as sink_table

TYPE_ADD = ("INSERT INTO type_counts(type, rows, bytes) VALUES (?, ?, ?) ON CONFLICT(type) DO UPDATE "
            "SET rows = rows + excluded.rows, bytes = bytes + excluded.bytes")
SINK_ADD = ("INSERT INTO sink_counts(bit, rows) VALUES (?, ?) ON CONFLICT(bit) DO UPDATE "
            "SET rows = rows + excluded.rows")


def add(db: sqlite3.Connection, rows: Iterable[tuple[str, int, int]], sign: int = 1) -> None:
    """Count rows (type, sinks mask, body bytes) in (sign=1) or out (sign=-1); inside the caller's transaction."""
    by_type: dict[str, list[int]] = {}
    by_sink: dict[int, int] = {}
    for ty, sinks, size in rows:
        c = by_type.setdefault(ty, [0, 0])
        c[0] += 1
        c[1] += size
        for bit in sink_table.bits(sinks):
            by_sink[bit] = by_sink.get(bit, 0) + 1
    db.executemany(TYPE_ADD, [(t, sign * n, sign * b) for t, (n, b) in by_type.items()])
    db.executemany(SINK_ADD, [(bit, sign * n) for bit, n in by_sink.items() if n])


def acked(db: sqlite3.Connection, bit: int, cleared: int, deleted: Iterable[tuple[str, int]]) -> None:
    """`cleared` rows lost the sink's bit; `deleted` rows (type, body bytes) are gone."""
    if cleared:
        db.execute(SINK_ADD, (bit, -cleared))
    by_type: dict[str, list[int]] = {}
    for ty, size in deleted:
        c = by_type.setdefault(ty, [0, 0])
        c[0] += 1
        c[1] += size
    if by_type:
        db.executemany(TYPE_ADD, [(t, -n, -b) for t, (n, b) in by_type.items()])


def recount(db: sqlite3.Connection) -> None:
    """Rebuild the counts from the rows (one scan: at migration and after a salvage)."""
    db.execute("DELETE FROM type_counts")
    db.execute("DELETE FROM sink_counts")
    db.execute("INSERT INTO type_counts(type, rows, bytes) "
               "SELECT type, count(*), coalesce(sum(length(body)), 0) FROM messages GROUP BY type")
    for bit in sink_table.read(db).values():
        db.execute("INSERT INTO sink_counts(bit, rows) SELECT ?, count(*) FROM messages WHERE sinks & ?", (bit, bit))


def read(db: sqlite3.Connection) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """({type: (rows, bytes)} for types with rows, {sink: rows owed})."""
    by_type = {t: (n, b) for t, n, b in db.execute("SELECT type, rows, bytes FROM type_counts WHERE rows > 0 "
                                                     "ORDER BY type")}
    owed = dict(db.execute("SELECT bit, rows FROM sink_counts"))
    return by_type, {name: owed.get(bit, 0) for name, bit in sink_table.read(db).items()}
