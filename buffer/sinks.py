"""Which sinks a buffer file serves: the `sinks` table (name -> bit of a row's `sinks` mask).

A row's `sinks` column is a bit mask of the sinks that still have to acknowledge it.
The bits are the file's own: `register(db, names)` gives each new sink name the lowest
free bit (and its partial index), so a site may add sinks (several of one kind: one
file sink per monitoring system) without a code change, and a bit never changes
meaning within a file.  A sink no longer configured keeps its bit: the rows it still
owes wait for it (within max_size / max_age), as they would for an unreachable one.
Files written before the table existed (schema < 3) served `LEGACY` = mqtt 1, files 2.
"""
from __future__ import annotations

import sqlite3
from typing import Iterable

MAX_SINKS = 62                # bits of a SQLite INTEGER that stay positive
LEGACY = {"mqtt": 1, "files": 2}
TABLE = "CREATE TABLE IF NOT EXISTS sinks (name TEXT PRIMARY KEY, bit INTEGER NOT NULL UNIQUE)"


def index_sql(bit: int) -> str:
    # One partial index per sink: a sink's peek walks only rows it still owes, so a
    # sink with a long backlog never makes another one scan past its rows.
    return f"CREATE INDEX IF NOT EXISTS pending_{bit} ON messages(seq) WHERE sinks & {bit}"


def peek_sql(bit: int, big: int) -> str:
    """The rows a sink owes after a seq; a body longer than `big` comes as NULL (read apart, store.py)."""
    return (f"SELECT seq, type, time, CASE WHEN length(body) > {int(big)} THEN NULL ELSE body END "
            f"FROM messages INDEXED BY pending_{bit} WHERE sinks & {bit} AND seq > ? ORDER BY seq LIMIT ?")


def ack_sql(bit: int) -> str:
    # the seqs as one JSON array parameter, so the SQL stays fixed whatever the batch size
    return (f"UPDATE messages SET sinks = sinks & ~{bit} "
            f"WHERE seq IN (SELECT value FROM json_each(?)) AND sinks & {bit} RETURNING seq")


def read(db: sqlite3.Connection) -> dict[str, int]:
    """{name: bit} of every sink the file knows, in bit order; LEGACY for a file older than the table."""
    try:
        return dict(db.execute("SELECT name, bit FROM sinks ORDER BY bit"))
    except sqlite3.OperationalError:      # schema < 3, not yet opened by the agent
        return dict(LEGACY)


def add(db: sqlite3.Connection, table: dict[str, int]) -> None:
    """Write these (name, bit) pairs and their indexes, inside the caller's transaction."""
    db.executemany("INSERT OR IGNORE INTO sinks(name, bit) VALUES (?, ?)", table.items())
    for bit in table.values():
        db.execute(index_sql(bit))


def assign(db: sqlite3.Connection, names: Iterable[str]) -> dict[str, int]:
    """Give each new name the lowest free bit, inside the caller's transaction; return every sink."""
    table = read(db)
    new = [n for n in dict.fromkeys(names) if n not in table]
    used = set(table.values())
    free = (1 << k for k in range(MAX_SINKS) if 1 << k not in used)
    for name in new:
        bit = next(free, None)
        if bit is None:
            raise ValueError(f"a buffer serves at most {MAX_SINKS} sinks")
        table[name] = bit
    add(db, {n: table[n] for n in new})
    return table


def register(db: sqlite3.Connection, names: Iterable[str]) -> dict[str, int]:
    """`assign` in a transaction of its own (none when every name is known)."""
    from edge_agent.buffer.schema import transaction

    names = list(names)
    if all(n in read(db) for n in names):
        return read(db)
    with transaction(db):
        return assign(db, names)


def names(mask: int, table: dict[str, int]) -> list[str]:
    """The sinks a row's mask still owes."""
    return [n for n, bit in table.items() if mask & bit]


def bits(mask: int) -> Iterable[int]:
    while mask:
        low = mask & -mask
        yield low
        mask ^= low
