"""Bounds of the buffer: which rows go when it is too big, too old, or the memory hold is full.

Drop order: class 0 (CDSS, FZSS) oldest first, then class 1 (TJSJ), then class
2 (CDDY, FZDY), then class 3 (YCBJ).  `max_age` never drops class >= PROTECTED.
Every function returns what it dropped as {type: (rows, body bytes)}; the file
deletes and their counters are written in one transaction.
"""
from __future__ import annotations

import sqlite3
from typing import Callable

from edge_agent.buffer import counts
from edge_agent.buffer.schema import ADD_DROPS, PROTECTED, transaction

ROW_OVERHEAD = 64            # bytes a row costs beyond its body, for size estimates
CLASSES = (0, 1, 2, 3)       # drop order (registry.PRIORITY_CLASSES)
Counts = dict[str, tuple[int, int]]

OLDEST_IN_CLASS = ("SELECT seq, type, length(body), time, sinks FROM messages WHERE prio = ? AND seq > ? "
                   "ORDER BY seq LIMIT ?")
DELETE = "DELETE FROM messages WHERE seq = ?"


def used_bytes(db: sqlite3.Connection, page_size: int) -> int:
    """Bytes of the file in use (pages minus free pages): what max_size bounds."""
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    return pages * page_size


def _add(counts: Counts, ty: str, size: int) -> None:
    n, b = counts.get(ty, (0, 0))
    counts[ty] = (n + 1, b + size)


def _oldest(db: sqlite3.Connection, cls: int, need: int | None, cutoff: float | None) -> list[tuple]:
    """Oldest rows of a class: enough to free `need` bytes, or all older than `cutoff`."""
    out: list[tuple] = []
    after, freed = 0, 0
    while True:
        chunk = db.execute(OLDEST_IN_CLASS, (cls, after, 256)).fetchall()
        for r in chunk:
            if (cutoff is not None and r[3] >= cutoff) or (need is not None and freed >= need):
                return out
            out.append(r)
            freed += r[2] + ROW_OVERHEAD
        if len(chunk) < 256:
            return out
        after = chunk[-1][0]


def _delete(db: sqlite3.Connection, victims: list[tuple]) -> Counts:
    dropped: Counts = {}
    for _, ty, size, _, _ in victims:
        _add(dropped, ty, size)
    with transaction(db):
        db.executemany(DELETE, [(v[0],) for v in victims])
        counts.add(db, [(ty, sinks, size) for _, ty, size, _, sinks in victims], sign=-1)
        db.executemany(ADD_DROPS, [(t, n, b, n) for t, (n, b) in dropped.items()])
    return dropped


def enforce_size(db: sqlite3.Connection, page_size: int, max_size: int, record: Callable[[Counts], None]) -> None:
    """Drop until the file's used bytes fit max_size; `record` sees each committed batch of drops."""
    for _ in range(1000):
        excess = used_bytes(db, page_size) - max_size
        if excess <= 0:
            return
        for cls in CLASSES:
            victims = _oldest(db, cls, excess, None)
            if victims:
                record(_delete(db, victims))
                break
        else:
            return                  # nothing left to drop


def enforce_age(db: sqlite3.Connection, cutoff: float, record: Callable[[Counts], None]) -> None:
    """Drop rows older than `cutoff` (epoch seconds) below the protected classes."""
    for cls in CLASSES:
        if cls >= PROTECTED:
            return
        victims = _oldest(db, cls, None, cutoff)
        if victims:
            record(_delete(db, victims))


def row_cost(row: tuple) -> int:
    """Memory a held row (seq, type, prio, sinks, time, body) is charged."""
    return len(row[5]) + ROW_OVERHEAD


def shed(held: list[tuple], excess: int) -> tuple[list[tuple], Counts]:
    """Held rows to keep after freeing `excess` bytes, lowest class and oldest first; and what went."""
    gone: set[int] = set()
    counts: Counts = {}
    for cls in CLASSES:
        for r in held:
            if excess <= 0:
                break
            if r[2] == cls:
                gone.add(r[0])
                excess -= row_cost(r)
                _add(counts, r[1], len(r[5]))
    return [r for r in held if r[0] not in gone], counts
