"""The buffer file: schema, migration from older layouts, and opening it safely.

`open_db(path, durability)` returns a connection to a checked, current-schema
file.  A file that is not a database, or fails `PRAGMA quick_check`, is moved
aside as `<name>.corrupt-<UTC timestamp>` (with its -wal/-shm) and a new one is
created, with one log line; it never raises for a corrupt file.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger("edge_agent.buffer")

SCHEMA_VERSION = 1

# Drop order when a bound is reached: lowest class first, oldest first inside a class.
# Realtime values are superseded by the next snapshot; statistics next; definitions are
# re-sent at start and daily; alarms (YCBJ) go last of all.
PRIORITY = {"CDSS": 0, "FZSS": 0, "TJSJ": 1, "CDDY": 2, "FZDY": 2, "YCBJ": 3}
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


class CorruptFile(Exception):
    """The file exists but is not a usable buffer."""


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


def _check(db: sqlite3.Connection) -> None:
    try:
        res = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise CorruptFile(str(exc)) from exc
    if res != [("ok",)]:
        raise CorruptFile("; ".join(r[0] for r in res[:3]))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


def _migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        from edge_agent.errors import EdgeAgentError
        raise EdgeAgentError(f"buffer file was written by a newer edge-agent (schema {version}, this one "
                             f"knows {SCHEMA_VERSION}); upgrade edge-agent or move the file away")
    cols = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
    if version == SCHEMA_VERSION and "prio" in cols:
        return
    with transaction(db):
        # executescript() would commit first: run the statements one by one inside this transaction
        if cols and "prio" not in cols:
            for stmt in _statements(MIGRATE_V0):
                db.execute(stmt)
            log.info("buffer: migrated %s from schema 0 to %d", db.execute("PRAGMA database_list").fetchone()[2],
                     SCHEMA_VERSION)
        for stmt in _statements(SCHEMA):
            db.execute(stmt)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def move_aside(path: Path, reason: str) -> Path:
    """Rename a broken buffer (and its -wal/-shm) to a timestamped name; return the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            os.replace(side, str(dest) + suffix)
    os.replace(path, dest)
    log.error("buffer: %s is corrupt (%s); moved it to %s and started an empty buffer "
              "(seq restarts at 1; the old file is kept for inspection)", path, reason, dest.name)
    return dest


def _is_corrupt(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    return isinstance(exc, CorruptFile) or (code & 0xFF) in (11, 26)


def open_db(path: Path, durability: str) -> sqlite3.Connection:
    """A connection to `path` with the current schema; a corrupt file is moved aside first.

    Raises sqlite3/OS errors for a disk that refuses (read-only, full, I/O error): the
    caller decides whether to wait for it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        existed = path.exists() and path.stat().st_size > 0
        try:
            db = connect(path, durability)
        except sqlite3.DatabaseError as exc:
            if attempt == 2 or not _is_corrupt(exc):
                raise
            move_aside(path, str(exc))
            continue
        try:
            if existed:
                _check(db)
            _migrate(db)
            return db
        except (CorruptFile, sqlite3.DatabaseError) as exc:
            db.close()
            if attempt == 2 or not _is_corrupt(exc):
                raise
            move_aside(path, str(exc))
    raise AssertionError("unreachable")
