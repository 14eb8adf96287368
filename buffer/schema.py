"""The buffer file: schema, migration from older layouts, connection settings, disk errors."""
from __future__ import annotations

import logging
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edge_agent import registry
from edge_agent.buffer import sinks

log = logging.getLogger("edge_agent.buffer")

SCHEMA_VERSION = 3

# Drop order when a bound is reached: lowest class first, oldest first inside a class.
# Each record type's class is its registry entry (edge_agent/profile/types.py): realtime
# values (0) are superseded by the next snapshot; statistics (1) next; definitions (2) are
# re-sent at start and daily; alarms (3) go last of all.
PROTECTED = 2                 # classes >= this are never dropped while a lower class has rows
UNREGISTERED = 1              # a row of a type this version does not know (in an older or newer file)


def priority(msg_type: str) -> int:
    """The drop class of a record type; KeyError (naming the registered ones) for an unregistered type."""
    return registry.record_type(msg_type.rpartition("/")[2]).priority     # `shfz/CGKCDSS`: the type's


def stored_priority(msg_type: str) -> int:
    """The class of a row already in a file (migration, salvage): an unregistered type is kept
    like statistics, never lost for it."""
    known = registry.record_types().get(msg_type.rpartition("/")[2])
    return known.priority if known is not None else UNREGISTERED


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
{sinks.TABLE};
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

INSERT = "INSERT INTO messages(seq, type, prio, sinks, time, body) VALUES (?,?,?,?,?,?)"
# A body above BIG (the start-up CDDY: ~23 MB at 50,000 points) goes in as a zeroblob written through
# an incremental blob handle, a chunk at a time, and is read back through one: bound as a parameter
# SQLite copies it twice more (its own copy and the record), and a SELECT of it twice too.
BIG = 1 << 20
CHUNK = 1 << 20
INSERT_BIG = "INSERT INTO messages(seq, type, prio, sinks, time, body) VALUES (?,?,?,?,?,zeroblob(?))"
SET_META = "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
# the seqs as one JSON array parameter, so the SQL stays fixed whatever the batch size
# the rows an ack leaves no sink for, read (type, bytes, whether the sink had it) without their bodies
# and then deleted: an UPDATE of their mask first would rewrite each whole row (SQLite loads and copies
# a row to change one column: 46 MB for a 23 MB CDDY, and every ~40 kB CDSS row once more)
DONE = ("SELECT seq, type, length(body), sinks & ?2 FROM messages WHERE seq IN (SELECT value FROM json_each(?1)) "
        "AND sinks & ~?2 = 0")
DELETE_DONE = "DELETE FROM messages WHERE seq IN (SELECT value FROM json_each(?1)) AND sinks & ~?2 = 0"
ADD_DROPS = ("INSERT INTO drops(type, total, bytes, unreported) VALUES (?, ?, ?, ?) ON CONFLICT(type) DO UPDATE "
             "SET total=total+excluded.total, bytes=bytes+excluded.bytes, unreported=unreported+excluded.unreported")

# Schema 2 had one index per sink name; schema 3 names them by bit (buffer/sinks.py).
DROP_V2_INDEXES = ("DROP INDEX IF EXISTS pending_mqtt", "DROP INDEX IF EXISTS pending_files")



def _migrate_v0() -> str:
    """The v0 layout (messages without prio, meta only) is migrated in place."""
    case = "CASE type " + " ".join(f"WHEN '{t}' THEN {rt.priority}" for t, rt in registry.record_types().items()) + \
        f" ELSE {UNREGISTERED} END"
    return (f"ALTER TABLE messages ADD COLUMN prio INTEGER NOT NULL DEFAULT {UNREGISTERED};\n"
            f"UPDATE messages SET prio = {case};\n")

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


def migrate(db: sqlite3.Connection, names: tuple[str, ...] = ()) -> None:
    """Bring the file to the current schema and register the sink `names` (one transaction)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        from edge_agent.errors import EdgeAgentError
        raise EdgeAgentError(f"buffer file was written by a newer edge-agent (schema {version}, this one "
                             f"knows {SCHEMA_VERSION}); upgrade edge-agent or move the file away")
    cols = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
    if version == SCHEMA_VERSION and "prio" in cols:
        sinks.register(db, names)
        return
    from edge_agent.buffer.counts import recount
    with transaction(db):
        # executescript() would commit first: run the statements one by one inside this transaction
        if cols and "prio" not in cols:
            for stmt in _statements(_migrate_v0()):
                db.execute(stmt)
        for stmt in _statements(SCHEMA):
            db.execute(stmt)
        if cols:                        # a file older than the sinks table: its bits meant mqtt and files
            for stmt in DROP_V2_INDEXES:
                db.execute(stmt)
            sinks.add(db, sinks.LEGACY)
            log.info("buffer: migrated %s from schema %d (sinks: %s)", db.execute("PRAGMA database_list")
                     .fetchone()[2], version, ", ".join(sinks.LEGACY))
        sinks.assign(db, names)
        recount(db)                     # running counts since schema 2; older files start from a scan
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
