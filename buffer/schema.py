"""The buffer file: schema, migration from older layouts, connection settings, disk errors."""
from __future__ import annotations

import logging
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger("edge_agent.buffer")

SCHEMA_VERSION = 2

# Drop order when a bound is reached: lowest class first, oldest first inside a class.
# Realtime values are superseded by the next snapshot; statistics next; definitions are
# re-sent at start and daily; alarms (YCBJ, and the alarm book's MQTT records) go last of all.
PRIORITY = {"CDSS": 0, "FZSS": 0, "TJSJ": 1, "CDDY": 2, "FZDY": 2, "YCBJ": 3,
            "alarm": 3, "disposal": 3, "escalation": 3}
DEFAULT_PRIORITY = 1          # an unknown type is kept like statistics
PROTECTED = 2                 # classes >= this are never dropped while a lower class has rows

SINKS = {"mqtt": 1, "files": 2}
ALL_SINKS = 3


def priority(msg_type: str) -> int:
    return PRIORITY.get(msg_type, DEFAULT_PRIORITY)


def _sink_indexes() -> str:
    # One partial index per sink: a sink's peek walks only rows it still owes, so a
    # sink with a long backlog never makes the other one scan past its rows.
    return "\n".join(f"CREATE INDEX IF NOT EXISTS pending_{name} ON messages(seq) WHERE sinks & {bit};"
                     for name, bit in SINKS.items())


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS messages (
    seq   INTEGER PRIMARY KEY,
    type  TEXT    NOT NULL,
    prio  INTEGER NOT NULL,
    sinks INTEGER NOT NULL,
    time  REAL    NOT NULL,
    body  BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_prio ON messages(prio, seq);
{_sink_indexes()}
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS type_counts (
    type  TEXT PRIMARY KEY,
    rows  INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sink_counts (
    bit   INTEGER PRIMARY KEY,
    rows  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS drops (
    type       TEXT PRIMARY KEY,
    total      INTEGER NOT NULL DEFAULT 0,
    bytes      INTEGER NOT NULL DEFAULT 0,
    unreported INTEGER NOT NULL DEFAULT 0
);
"""

ADD_DROPS = ("INSERT INTO drops(type, total, bytes, unreported) VALUES (?, ?, ?, ?) ON CONFLICT(type) DO UPDATE "
             "SET total=total+excluded.total, bytes=bytes+excluded.bytes, unreported=unreported+excluded.unreported")

# The v0 layout (messages without prio, meta only) is migrated in place.
_PRIO_CASE = "CASE type " + " ".join(f"WHEN '{t}' THEN {p}" for t, p in PRIORITY.items()) + \
             f" ELSE {DEFAULT_PRIORITY} END"
MIGRATE_V0 = f"""
ALTER TABLE messages ADD COLUMN prio INTEGER NOT NULL DEFAULT {DEFAULT_PRIORITY};
UPDATE messages SET prio = {_PRIO_CASE};
"""

# SQLite primary result codes that mean "the disk or file is in trouble", not a bug.
DISK_ERRORS = {5: "busy", 6: "locked", 7: "out of memory", 8: "read-only", 10: "I/O error",
               11: "corrupt", 13: "disk full", 14: "cannot open", 23: "no permission", 26: "not a database"}


def disk_error(exc: BaseException) -> str | None:
    """A short reason if `exc` is an environmental storage failure, else None (a bug: let it raise)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, (sqlite3.ProgrammingError,
                                                                       sqlite3.IntegrityError)):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None or (code & 0xFF) in DISK_ERRORS:
            return str(exc)
    return None


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (SQLite may already have rolled back)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def connect(path: Path, durability: str, *, busy_ms: int = 200) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        _setup(db, durability, busy_ms)
    except BaseException:
        db.close()
        raise
    return db


def _setup(db: sqlite3.Connection, durability: str, busy_ms: int) -> None:
    db.execute(f"PRAGMA busy_timeout={busy_ms}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    # Checkpoints are driven by tick(); the automatic one only keeps the WAL from growing
    # without bound between ticks.  After a checkpoint the WAL file is cut back to 64 MiB.
    db.execute("PRAGMA wal_autocheckpoint=4096")
    db.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


def migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        from edge_agent.errors import EdgeAgentError
        raise EdgeAgentError(f"buffer file was written by a newer edge-agent (schema {version}, this one "
                             f"knows {SCHEMA_VERSION}); upgrade edge-agent or move the file away")
    cols = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
    if version == SCHEMA_VERSION and "prio" in cols:
        return
    from edge_agent.buffer.counts import recount
    with transaction(db):
        # executescript() would commit first: run the statements one by one inside this transaction
        if cols and "prio" not in cols:
            for stmt in _statements(MIGRATE_V0):
                db.execute(stmt)
            log.info("buffer: migrated %s from schema 0", db.execute("PRAGMA database_list").fetchone()[2])
        for stmt in _statements(SCHEMA):
            db.execute(stmt)
        recount(db)                     # schema 2 keeps running counts; older files start from a scan
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
