"""Opening the buffer file safely: check it, and move a corrupt one aside without losing what is readable.

`open_db(path, durability)` returns a connection to a checked, current-schema
file.  A file that is not a database, or fails `PRAGMA quick_check`, is renamed
`<name>.corrupt-<UTC timestamp>` (with its -wal/-shm), a new file is created,
every message still readable from the old one is copied into it (oldest
first, until the first unreadable page), seq continues after the highest seq
found, and one line is logged.  It never raises for a corrupt file.

The buffer's folder is created durably (`fsutil.make_dirs`).  A file that
knows no seq history (new, or a corrupt one whose next seq is unreadable)
continues at the seq mark beside it (`seqmark`), with one line, so seq never
repeats after the buffer was lost.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

from edge_agent.buffer import counts, sinks as sink_table
from edge_agent.buffer.schema import connect, migrate, stored_priority, transaction
from edge_agent.buffer.seqmark import mark_path, read_mark
from edge_agent.fsutil import make_dirs, sync_dir

log = logging.getLogger("edge_agent.buffer")

SET_NEXT = "INSERT INTO meta(key, value) VALUES ('next_seq', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"


class CorruptFile(Exception):
    """The file exists but is not a usable buffer."""


def _check(db: sqlite3.Connection) -> None:
    try:
        res = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise CorruptFile(str(exc)) from exc
    if res != [("ok",)]:
        lines = [line for r in res for line in str(r[0]).splitlines()]
        raise CorruptFile(lines[0] + (f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""))


def _is_corrupt(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    return isinstance(exc, CorruptFile) or (code & 0xFF) in (11, 26)


def move_aside(path: Path) -> Path:
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
    return dest


def salvage(old: Path, db: sqlite3.Connection, floor: int = 1) -> tuple[int, int]:
    """Copy the readable messages of `old` into `db` (one transaction); return (copied, next seq).

    The next seq is the old file's own when readable, else above every row copied and at
    least `floor` (the seq mark)."""
    had_wal = Path(f"{old}-wal").exists()
    try:
        # without a WAL of its own, read it as immutable: no -wal/-shm appear beside the old file
        src = sqlite3.connect(f"file:{old}?mode=ro" + ("" if had_wal else "&immutable=1"), uri=True)
    except sqlite3.Error:
        src = None
    copied, top, next_seq = 0, 0, floor
    if src is None:
        with transaction(db):
            db.execute(SET_NEXT, (next_seq,))
        return copied, next_seq
    try:
        try:
            next_seq = int(src.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
        except (sqlite3.Error, TypeError, ValueError):
            pass
        with transaction(db):
            while True:
                try:
                    chunk = src.execute("SELECT seq, type, sinks, time, body FROM messages WHERE seq > ? "
                                        "ORDER BY seq LIMIT 256", (top,)).fetchall()
                except sqlite3.Error:
                    break                   # the first unreadable page ends the salvage
                if not chunk:
                    break
                db.executemany("INSERT INTO messages(seq, type, prio, sinks, time, body) VALUES (?,?,?,?,?,?)",
                               [(q, t, stored_priority(t), s, tm, b) for q, t, s, tm, b in chunk])
                copied += len(chunk)
                top = chunk[-1][0]
            next_seq = max(next_seq, top + 1)
            db.execute(SET_NEXT, (next_seq,))
            try:                            # the copied masks keep the meaning of their bits
                old_sinks = sink_table.read(src)
            except sqlite3.Error:
                old_sinks = dict(sink_table.LEGACY)
            sink_table.add(db, old_sinks)
            counts.recount(db)
    finally:
        src.close()
    return copied, next_seq


def _open_checked(path: Path, durability: str, sinks: tuple[str, ...] = ()) -> sqlite3.Connection:
    existed = path.exists() and path.stat().st_size > 0
    db = connect(path, durability)
    try:
        if existed:
            _check(db)
        migrate(db, sinks)
        if not existed:
            sync_dir(path.parent)       # SQLite does not sync the folder of a new database file
        return db
    except BaseException:
        db.close()
        raise


def _mark(path: Path) -> tuple[int, str | None]:
    """(the seq mark beside `path` or 1, why it could not be read or None)."""
    mark = mark_path(path)
    try:
        return read_mark(mark) or 1, None
    except (OSError, ValueError) as exc:
        return 1, f"its seq mark {mark.name} is unreadable ({exc})"


def _continue_at_mark(db: sqlite3.Connection, path: Path) -> None:
    """A file that knows no seq history continues above every seq handed out before (one line)."""
    if db.execute("SELECT 1 FROM meta WHERE key='next_seq' UNION ALL SELECT 1 FROM messages LIMIT 1").fetchone():
        return
    floor, unreadable = _mark(path)
    if unreadable:
        log.error("buffer: %s is new and %s; seq starts at 1, so a consumer that drops repeated seqs may "
                  "drop new messages: tell the platform, or restore the mark", path, unreadable)
    elif floor > 1:
        with transaction(db):
            db.execute(SET_NEXT, (floor,))
        log.warning("buffer: %s is new or was lost, but seqs up to %d were handed out before (seq mark %s); "
                    "seq continues at %d: a gap for the lost messages, never a repeat",
                    path, floor - 1, mark_path(path).name, floor)


def open_db(path: Path, durability: str, sinks: tuple[str, ...] = ()) -> sqlite3.Connection:
    """A connection to `path` with the current schema; a corrupt file is moved aside and salvaged.

    `sinks` are registered with the schema (buffer/sinks.py); a salvaged file keeps the old file's.

    Raises sqlite3/OS errors for a disk that refuses (read-only, full, I/O error): the
    caller decides what to tell the user.
    """
    make_dirs(path.parent)
    try:
        db = _open_checked(path, durability, sinks)
    except (CorruptFile, sqlite3.DatabaseError) as exc:
        if not _is_corrupt(exc):
            raise
        reason = str(exc)
    else:
        try:
            _continue_at_mark(db, path)
        except BaseException:
            db.close()
            raise
        return db
    dest = move_aside(path)
    db = _open_checked(path, durability)
    floor, _ = _mark(path)
    try:
        copied, next_seq = salvage(dest, db, floor)
    except sqlite3.Error as exc:            # the new file refused the copy: start empty rather than loop
        copied, next_seq = 0, floor
        log.debug("buffer: salvage from %s failed: %s", dest, exc)
        with contextlib.suppress(sqlite3.Error):
            with transaction(db):
                db.execute(SET_NEXT, (floor,))
    log.error("buffer: %s is corrupt (%s); moved it to %s and started a new buffer with the %d messages "
              "still readable (seq continues at %d); the old file is kept for inspection",
              path, reason, dest.name, copied, next_seq)
    return db
