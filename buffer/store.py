"""The durable store-and-forward buffer: one SQLite file, WAL, fixed SQL.

A row is one message (many records).  `seq` increases by one per message per
gateway and survives restarts.  Each row carries a bit mask of the sinks that
still have to acknowledge it (bits per sink name: `sinks.py`); it is deleted
when the mask reaches zero.

What callers may rely on:
- `append` commits its batch in one transaction and never raises for a disk
  that refuses (full, read-only, I/O error): the batch waits in memory (up to
  `memory_limit`, oldest realtime rows dropped beyond it), one line is logged,
  and `tick` retries.  Nothing can overtake rows waiting in memory.
- `peek` returns only committed rows, and in `normal` mode only rows whose WAL
  frames are on disk (it syncs the WAL first when it must; a caller may ask for
  at most one sync per `sync_gap` seconds, and `sync_wait()` says when the rows
  held back until the next are due), so a seq a sink has
  seen is never handed out again after a power loss.  It raises the seq mark
  (`seqmark`) before a sink sees a seq above it: a lost buffer file never makes
  seq repeat either.
- Bounds drop by class (CDSS/FZSS, then TJSJ, then CDDY/FZDY, then YCBJ),
  oldest first; `max_age` never drops definitions or alarms.  Every drop is
  counted by type (`drops`, persisted) and reported once (`take_drop_report`).

Durability (what a crash can take):
- process crash (kill -9, OOM), both modes: nothing committed; only messages
  not yet appended and messages held in memory while the disk refused them.
- power loss, `full`: nothing committed (every append fsyncs the WAL).  Acks
  are written without fsync: a row may be delivered again, never lost.
- power loss, `normal`: appends committed since the last WAL sync, which
  happens every `sync_every` (tick) and before any row is handed to a sink;
  so only rows no sink has seen, and their seqs are reused without a gap.
  The file itself stays consistent in every case.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import orjson

from edge_agent.buffer import counts, sinks as sink_table
from edge_agent.buffer.bounds import enforce_age, enforce_size, row_cost, shed, used_bytes
from edge_agent.buffer.drops import DropLog
from edge_agent.buffer.opening import open_db
from edge_agent.buffer.seqmark import SeqMark
from edge_agent.fsutil import sync_dir
from edge_agent.buffer.schema import (ADD_DROPS, BIG, CHUNK, DELETE_DONE, DONE, INSERT, INSERT_BIG, SET_META,
                                     disk_error, priority, transaction)
from edge_agent.buffer.tools import format_size, table_stats
from edge_agent.errors import EdgeAgentError

log = logging.getLogger("edge_agent.buffer")

__all__ = ["DEFAULT_SINKS", "Buffer", "Row"]

DEFAULT_SINKS = ("mqtt", "files")
FLUSH_CHUNK = 256 * 1024      # held rows go back to the file in transactions of about this size


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    type: str
    time: float
    body: bytes


class Buffer:
    """Append messages in one transaction per batch; each sink peeks and acks independently.

    `sinks`: the sinks served now; a name new to the file gets the next free bit (`bit`, `mask`)."""

    def __init__(self, path: str | Path, *, durability: str = "normal", max_size: int = 1024**3,
                 max_age: float = 30 * 86400.0, sync_every: float = 1.0, memory_limit: int = 64 * 1024**2,
                 retry_every: float = 1.0, sinks: Sequence[str] = DEFAULT_SINKS):
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self.max_size = max_size
        self.max_age = max_age
        self.sync_every = sync_every
        self.memory_limit = memory_limit
        self.retry_every = retry_every
        try:
            self.db = open_db(self.path, durability, tuple(sinks))
            self._sinks = sink_table.register(self.db, sinks)   # after a salvage: the old file's, then these
        except (sqlite3.Error, OSError) as exc:
            raise EdgeAgentError(f"buffer: cannot open {self.path}: {disk_error(exc) or exc}; check that its "
                                 "folder exists, is writable and has free space") from exc
        db = self.db
        # an ack's UPDATE/DELETE of ~16 rows of ~40 kB spills its statement journal (> 64 kB) to a
        # temporary file, created and unlinked each time (~1 ms per ack); in memory it is a few pages
        db.execute("PRAGMA temp_store=MEMORY")
        self.page_size = db.execute("PRAGMA page_size").fetchone()[0]
        row = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        top = db.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0
        self._next_seq = max(int(row[0]) if row else 1, top + 1)
        self._committed_top = self._next_seq - 1
        self._synced_top = self._committed_top      # what we found at open is what survived
        self._synced_at = 0.0
        self._mark = SeqMark(self.path, retry_every)
        drops = db.execute("SELECT type, total, unreported FROM drops").fetchall()
        self._drops = DropLog({t: n for t, n, _ in drops})
        self._drops.restore_report({t: u for t, _, u in drops}, None, None)
        self._held: list[tuple] = []                 # (seq, type, prio, sinks, time, body) not yet committed
        self._held_bytes = 0
        self._held_acks: dict[int, set[int]] = {}    # sink bit -> seqs acked but not yet written
        self._trouble: str | None = None
        self._trouble_since = 0.0
        self._retry_at = 0.0
        self._wal_fd: int | None = None
        self._last_checkpoint = time.monotonic()
        self._sql = {bit: (sink_table.peek_sql(bit, BIG), sink_table.ack_sql(bit)) for bit in self._sinks.values()}

    # ------------------------------------------------------------------ properties

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def drops(self) -> dict[str, int]:
        """Rows dropped by type over the life of the file (bounds, memory hold)."""
        return dict(self._drops.totals)

    @property
    def sinks(self) -> dict[str, int]:
        """{name: bit} of every sink the file knows (the ones configured now and any from earlier runs)."""
        return dict(self._sinks)

    def bit(self, sink: str) -> int:
        return self._sinks[sink]

    def mask(self, *sinks: str) -> int:
        """The `sinks` mask of a message for these sinks."""
        return sum(self._sinks[s] for s in set(sinks))

    @property
    def held(self) -> int:
        """Messages waiting in memory because the disk refused them."""
        return len(self._held)

    # ------------------------------------------------------------------ append

    def append(self, messages: Sequence[tuple[str, int, float, bytes]]) -> list[int]:
        """Commit messages (type, sinks mask, epoch time, body) in one transaction; return their seqs."""
        n = len(messages)
        if not n:
            return []
        first = self._next_seq
        rows = [(first + i, t, priority(t), s, tm, b) for i, (t, s, tm, b) in enumerate(messages)]
        if self._held:                  # keep order: nothing overtakes rows waiting in memory
            self._next_seq = first + n
            self._hold(rows)
            return list(range(first, first + n))
        try:
            self._insert(rows)
        except Exception as exc:
            reason = disk_error(exc)
            if reason is None:
                raise
            self._next_seq = first + n
            self._failed(reason)
            self._hold(rows)
            return list(range(first, first + n))
        self._next_seq = first + n
        if self.max_size and self._used_bytes() > self.max_size:
            self._guard(self._enforce_size)
        return list(range(first, first + n))

    def _insert(self, rows: list[tuple]) -> None:
        with transaction(self.db) as db:
            big = [r for r in rows if len(r[5]) > BIG]
            db.executemany(INSERT, [r for r in rows if len(r[5]) <= BIG] if big else rows)
            for r in big:                  # written in place, a chunk at a time (schema.BIG)
                db.execute(INSERT_BIG, (*r[:5], len(r[5])))
                body = memoryview(r[5])
                with db.blobopen("messages", "body", r[0]) as blob:
                    for at in range(0, len(body), CHUNK):
                        blob.write(body[at:at + CHUNK])
            counts.add(db, [(r[1], r[3], len(r[5])) for r in rows])
            db.execute(SET_META, ("next_seq", rows[-1][0] + 1))
            unsaved = self._drops.unsaved
            if unsaved:
                db.executemany(ADD_DROPS, [(t, n, b, n) for t, (n, b) in unsaved.items()])
        self._drops.unsaved = {}
        self._committed_top = rows[-1][0]
        if self.durability == "full":
            self._synced_top = self._committed_top

    def _hold(self, rows: list[tuple]) -> None:
        self._held.extend(rows)
        self._held_bytes += sum(row_cost(r) for r in rows)
        if self._held_bytes > self.memory_limit:
            self._shed_memory()

    def _shed_memory(self) -> None:
        """Drop held rows, lowest class and oldest first, until the hold fits memory_limit.

        (Dropping old rows of the file instead cannot help: on a full disk even a DELETE
        needs WAL space.)"""
        self._held, gone = shed(self._held, self._held_bytes - self.memory_limit)
        self._held_bytes = sum(row_cost(r) for r in self._held)
        self._drops.record("memory", gone, saved=False)

    def _failed(self, reason: str) -> None:
        self._retry_at = time.monotonic() + self.retry_every
        if self._trouble is None:
            self._trouble, self._trouble_since = reason, time.monotonic()
            log.error("buffer: cannot write %s (%s); holding new messages in memory (up to %s) and "
                      "retrying every %gs; free space or fix the disk", self.path, reason,
                      format_size(self.memory_limit), self.retry_every)

    def _guard(self, fn, *args) -> bool:
        """Run maintenance; a refusing disk is noted (and retried later), never raised."""
        try:
            fn(*args)
            return True
        except Exception as exc:
            reason = disk_error(exc)
            if reason is None:
                raise
            self._failed(reason)
            return False

    # ------------------------------------------------------------------ peek / ack

    def peek(self, sink: str, limit: int, after_seq: int = 0, *, sync_gap: float = 0.0,
             big_bodies: bool = True) -> list[Row]:
        """Committed rows the sink has not acknowledged, oldest first, with seq > after_seq.

        `sync_gap`: in `normal`, sync the WAL for new rows only if the last sync is this old, else
        hand out only the rows already synced (a busy sink then pays one fsync per gap, not per commit).
        `big_bodies=False`: a body above schema.BIG comes as None; the sink reads it with `framed`."""
        bit = self.bit(sink)
        acked = self._held_acks.get(bit)
        want = limit + (len(acked) if acked else 0)
        if self._committed_top > self._synced_top and time.monotonic() - self._synced_at < sync_gap:
            # no sync now: only rows up to the synced top can be handed out, so none at all past it (the
            # sink's cursor usually is: then no query), and no more than that range holds (their bodies
            # are not read only to be held back)
            want = min(want, self._synced_top - after_seq)
            if want <= 0:
                return []
        try:
            rows = self.db.execute(self._sql[bit][0], (after_seq, want)).fetchall()
        except Exception as exc:
            if disk_error(exc) is None:
                raise
            self._failed(disk_error(exc))
            return []
        if acked:
            rows = [r for r in rows if r[0] not in acked][:limit]
        if rows and rows[-1][0] > self._synced_top:
            if time.monotonic() - self._synced_at >= sync_gap and not self._guard(self._sync):
                self._synced_at = time.monotonic()      # a refusing disk: try again a gap later
            rows = [r for r in rows if r[0] <= self._synced_top]
        if rows and rows[-1][0] >= self._mark.reserved:
            self._mark.reserve(max(rows[-1][0] + 1, self._next_seq))
        if big_bodies and any(r[3] is None for r in rows):   # bodies above BIG: one read each, into its bytes
            try:
                rows = [r if r[3] is not None else (*r[:3], self._read_body(r[0])) for r in rows]
            except Exception as exc:
                if disk_error(exc) is None:
                    raise
                self._failed(disk_error(exc))
                return []
        return [Row(*r) for r in rows]

    def _read_body(self, seq: int) -> bytes:
        with self.db.blobopen("messages", "body", seq, readonly=True) as blob:
            return blob.read()

    def framed(self, seq: int, head: bytes, tail: bytes) -> bytearray:
        """Row `seq`'s body between `head` and `tail` in one buffer, read from the file a chunk at a time
        straight into it: the MQTT payload of a body above BIG (23 MB at 50,000 points) without the
        body's bytes beside it.  Raises what SQLite raises (the row must still be there)."""
        with self.db.blobopen("messages", "body", seq, readonly=True) as blob:
            n, at = len(blob), len(head)
            out = bytearray(at + n + len(tail))
            out[:at] = head
            for i in range(0, n, CHUNK):
                chunk = blob.read(CHUNK)
                out[at + i:at + i + len(chunk)] = chunk
            out[at + n:] = tail
        return out

    def ack(self, sink: str, seqs: Iterable[int]) -> None:
        """The sink delivered these rows; rows no sink still needs are deleted (one transaction)."""
        bit = self.bit(sink)
        seqs = list(seqs)
        if not seqs:
            return
        if self._held_acks:
            self._held_acks.setdefault(bit, set()).update(seqs)
            self._guard(self._write_held_acks)
            return
        if not self._guard(self._write_acks, bit, seqs):
            self._held_acks.setdefault(bit, set()).update(seqs)

    def _write_acks(self, bit: int, seqs: list[int]) -> None:
        db = self.db
        params = (orjson.dumps(seqs).decode(),)
        # An ack lost to a power cut only means a redelivery (at-least-once), so `full`
        # need not pay an fsync for it.
        if self.durability == "full":
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction(db):
                done = db.execute(DONE, (params[0], bit)).fetchall()
                if done:
                    db.execute(DELETE_DONE, (params[0], bit))
                cleared = sum(1 for d in done if d[3])
                if len(done) < len(set(seqs)):      # some rows other sinks still owe: clear this sink's bit
                    cleared += len(db.execute(self._sql[bit][1], params).fetchall())
                counts.acked(db, bit, cleared, [(t, n) for _, t, n, _ in done])
        finally:
            if self.durability == "full":
                db.execute("PRAGMA synchronous=FULL")

    def _write_held_acks(self) -> None:
        for bit in list(self._held_acks):
            self._write_acks(bit, sorted(self._held_acks[bit]))
            del self._held_acks[bit]

    def sync_wait(self, sync_gap: float) -> float | None:
        """Seconds until committed rows that `peek(..., sync_gap=)` holds back for their WAL sync are
        handed out; None when none are held back (the sink's pump waits at most this long)."""
        if self._committed_top <= self._synced_top:
            return None
        return max(0.0, sync_gap - (time.monotonic() - self._synced_at))

    def backlog(self, sink: str) -> int:
        """Rows (committed or held in memory) the sink still has to deliver."""
        bit = self.bit(sink)
        held = sum(1 for r in self._held if r[3] & bit)
        try:
            row = self.db.execute("SELECT rows FROM sink_counts WHERE bit = ?", (bit,)).fetchone()
            return (row[0] if row else 0) + held
        except Exception as exc:
            if disk_error(exc) is None:
                raise
            return held

    # ------------------------------------------------------------------ durability

    def _sync(self) -> None:
        """Make every committed row durable: fsync the WAL (what synchronous=FULL does per commit)."""
        top = self._committed_top
        if top <= self._synced_top:
            return
        wal = str(self.path) + "-wal"
        try:
            fresh = self._wal_fd is None or os.fstat(self._wal_fd).st_ino != os.stat(wal).st_ino
            if fresh:
                self._close_wal()
                self._wal_fd = os.open(wal, os.O_RDONLY)
            os.fsync(self._wal_fd)
            if fresh:                   # a new WAL file: its directory entry must survive a power cut too
                sync_dir(self.path.parent)
        except FileNotFoundError:       # no WAL: a checkpoint syncs the database file
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._synced_top = top
        self._synced_at = time.monotonic()

    def _close_wal(self) -> None:
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    def _checkpoint(self) -> None:
        self._sync()
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # ------------------------------------------------------------------ bounds

    def _used_bytes(self) -> int:
        return used_bytes(self.db, self.page_size)

    def _enforce_size(self) -> None:
        enforce_size(self.db, self.page_size, self.max_size,
                     lambda counts: self._drops.record("max_size", counts, saved=True))

    def _enforce_age(self, now: float) -> None:
        enforce_age(self.db, now - self.max_age, lambda counts: self._drops.record("max_age", counts, saved=True))

    # ------------------------------------------------------------------ tick

    def tick(self, now: float | None = None) -> None:
        """Periodic maintenance, about once a second: retry held rows, checkpoint, bounds, drop episodes."""
        now = time.time() if now is None else now
        mono = time.monotonic()
        if (self._held or self._held_acks or self._trouble) and mono >= self._retry_at:
            self._retry()
        if mono - self._last_checkpoint >= self.sync_every:
            if self._guard(self._checkpoint):
                self._last_checkpoint = mono
        if self.max_age:
            self._guard(self._enforce_age, now)
        if self.max_size:
            self._guard(self._enforce_size)
        self._drops.tick(now)

    def _flush_held(self) -> bool:
        """Commit held rows in order, a chunk per transaction (what fits is kept); True when all are in."""
        done = 0
        while done < len(self._held):
            chunk, size = [], 0
            for r in self._held[done:]:
                if chunk and size + row_cost(r) > FLUSH_CHUNK:
                    break
                chunk.append(r)
                size += row_cost(r)
            if not self._guard(self._insert, chunk):
                break
            done += len(chunk)
            self._held_bytes -= size
        if done:
            del self._held[:done]
        return not self._held

    def _retry(self) -> None:
        ok = True
        if self._held:
            n = len(self._held)
            ok = self._flush_held()
            if ok:
                log.warning("buffer: writing to %s again after %.0fs; %d messages held in memory are committed",
                            self.path, time.monotonic() - self._trouble_since, n)
        if ok and self._held_acks:
            ok = self._guard(self._write_held_acks)
        if ok and self._trouble is not None:
            if not self._held and not self._held_acks:
                self._trouble = None
        elif not ok:
            self._retry_at = time.monotonic() + self.retry_every

    # ------------------------------------------------------------------ reports

    def take_drop_report(self) -> dict | None:
        """Drops since the last call (persisted across restarts), or None; publish it upstream."""
        report = self._drops.take()
        if report is not None:
            self._guard(self.db.execute, "UPDATE drops SET unreported = 0")
        return report

    def stats(self) -> dict:
        """Rows and body bytes per type, oldest age, per-sink backlog, drops, memory hold, disk trouble."""
        out = {"path": str(self.path), "durability": self.durability, "next_seq": self._next_seq}
        try:
            out.update(table_stats(self.db))
            out["file_bytes"] = self._used_bytes()
        except Exception as exc:
            if disk_error(exc) is None:
                raise
            out.update(rows=0, bytes=0, by_type={}, oldest_age=0.0, backlog={s: 0 for s in self._sinks})
        for s, bit in self._sinks.items():
            out["backlog"][s] = out["backlog"].get(s, 0) + sum(1 for r in self._held if r[3] & bit)
        out["drops"] = self.drops
        out["held"] = {"rows": len(self._held), "bytes": self._held_bytes}
        out["disk_error"] = self._trouble
        return out

    def __enter__(self) -> "Buffer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Commit what is held if the disk allows, checkpoint, close.  Safe to call twice."""
        if self.db is None:
            return
        if self._held or self._held_acks:
            self._retry()
        if self._held:
            log.error("buffer: %d messages held in memory could not be written to %s and are lost (%s)",
                      len(self._held), self.path, self._trouble)
        try:
            self._guard(self.db.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._close_wal()
            self.db.close()
            self.db = None
