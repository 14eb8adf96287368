"""Graded-warning state that survives a restart: hourly aggregates (baselines) and the kernel's levels.

A small SQLite file beside the buffer (`buffer.sqlite` -> `buffer.baseline.sqlite`):

    points(id, code)                    the point codes, numbered once
    hours(point, hour, sum, count)      per point with a baseline rule: the sum and count of its
                                        valid samples in each clock hour (epoch hour number)
    state(code, signature, state)       per point with graded levels: Ladder.point_state()

`BaselineStore.open(path, catalog, kernel)` restores the kernel's levels and
rule windows from the file and computes every baseline; `tick(now)` (the
agent's clock, every second) writes the hourly sums and the state every
`flush_every` seconds and recomputes the baselines when a new hour begins;
`close(now)` writes everything.  A week of one point's history is 168 rows
(a few kilobytes).  What a crash can lose is the last `flush_every` seconds of
sums and state (a baseline is then a mean of a few fewer samples; a level
re-evaluates from the next sample).  When the disk refuses writes, the sums
wait in memory (at most MAX_PENDING rows, oldest dropped first and counted in
`dropped`) and are written once it works again; one log line each way.

Baselines (`RuleSpec.window` W, `against` A, the running hour H):
- W shorter than a day: the hours H-W .. H on each of the A/1d previous days
  (1h against 7d: this hour and the one before, on the last 7 days: the sliding
  window covers parts of both while H runs);
- W of a day or more: the A of hours before the W ending with H (24h against 7d:
  the 7 days before the last 24 hours);
as one mean of every sample in those hours (sum / count).  Hours the file does
not have are left out; none at all gives NaN: the rule holds and sets no level.
"""
from __future__ import annotations

import logging
import math
import sqlite3
from array import array
from pathlib import Path

from edge_agent.fsutil import make_dirs

log = logging.getLogger("edge_agent.baseline")

HOUR, DAY = 3600, 86400
MAX_PENDING = 100_000      # hourly rows held while the disk refuses writes (~5 MB)
SCHEMA = """
CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS hours (point INTEGER NOT NULL, hour INTEGER NOT NULL, sum REAL NOT NULL,
                                  count INTEGER NOT NULL, PRIMARY KEY (point, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (code TEXT PRIMARY KEY, signature TEXT NOT NULL, state BLOB NOT NULL)
    WITHOUT ROWID;
"""
ADD_HOUR = ("INSERT INTO hours (point, hour, sum, count) VALUES (?, ?, ?, ?) ON CONFLICT (point, hour) "
            "DO UPDATE SET sum = sum + excluded.sum, count = count + excluded.count")


def store_path(buffer_path: Path) -> Path:
    """Where a buffer's graded-warning file lives: beside it, named after it."""
    return buffer_path.with_name(buffer_path.stem + ".baseline.sqlite")


def baseline_span(spec, hour: int) -> tuple[int, int, int, int]:
    """(first hour, last hour, hours per day counted (0: all), window hours) the baseline of `spec`
    reads while `hour` runs."""
    wh, ah = int(spec.window // HOUR), int(spec.against // HOUR)
    if spec.window < DAY:
        return hour - ah - wh, hour - 24, wh + 1, wh
    return hour + 1 - wh - ah, hour - wh, 0, wh


class BaselineStore:
    """The graded-warning file of one agent; one caller (the agent's event loop)."""

    def __init__(self, path: Path, catalog, kernel, flush_every: float):
        self.db: sqlite3.Connection | None = None
        self.path, self.flush_every = path, flush_every
        self.catalog, self.kernel = catalog, kernel
        self.ids: dict[str, int] = {}
        self.hour: int | None = None        # the hour the baselines were computed for
        self.next_flush = -math.inf
        self.rows_written = 0
        self.pending: list[tuple[str, int, float, int]] = []   # (code, hour, sum, count) not written yet
        self.dropped = 0
        self.failing = False

    @classmethod
    def open(cls, path: Path, catalog, kernel, now: float, flush_every: float = 300.0) -> "BaselineStore":
        store = cls(path, catalog, kernel, flush_every)
        restored = 0
        if path.exists():        # else the file is made when there is something to keep in it
            store._conn()
            restored = store.restore()
        store.refresh(now)
        store.next_flush = now + flush_every
        log.info("graded warning: %s, %d points restored, %d baselines", path, restored,
                 len(kernel.ladder.baseline_rules()))
        return store

    def _conn(self) -> sqlite3.Connection:
        if self.db is None:
            try:
                make_dirs(self.path.parent)
            except OSError as exc:
                raise sqlite3.OperationalError(f"cannot make {self.path.parent}: {exc.strerror}") from exc
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            self.db = db
            self.ids = dict(db.execute("SELECT code, id FROM points"))
        return self.db

    # ------------------------------------------------------------------ the kernel's state

    def restore(self) -> int:
        """Continue every point from its saved state (a restart); the number restored."""
        saved = {code: (sig, blob) for code, sig, blob in self.db.execute("SELECT code, signature, state FROM state")}
        n = 0
        ladder = self.kernel.ladder
        for rp in self.catalog.points:
            got = saved.get(rp.code)
            if got is not None and rp.index < ladder.n_points:
                state = array("d")
                state.frombytes(got[1])
                ladder.restore_point(rp.index, got[0], state, fresh=True)
                n += 1
        return n

    def save_state(self) -> None:
        ladder = self.kernel.ladder
        rows = []
        for rp in self.catalog.points:
            if rp.index < ladder.n_points and ladder.lvf[rp.index] & 3:
                sig, state = ladder.point_state(rp.index)
                rows.append((rp.code, sig, state.tobytes()))
        db = self._conn()
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO state (code, signature, state) VALUES (?, ?, ?)", rows)

    # ------------------------------------------------------------------ hourly sums and baselines

    def _id(self, code: str) -> int:
        pid = self.ids.get(code)
        if pid is None:
            pid = self.ids[code] = self._conn().execute("INSERT INTO points (code) VALUES (?)", (code,)).lastrowid
        return pid

    def write_hours(self, now: float, partial: bool = True) -> None:
        points = self.catalog.points
        self.pending += [(points[i].code, int(start // HOUR), total, count)
                         for i, start, total, count in self.kernel.ladder.take_hours(now, partial)]
        if len(self.pending) > MAX_PENDING:
            self.dropped += len(self.pending) - MAX_PENDING
            del self.pending[:len(self.pending) - MAX_PENDING]
        if not self.pending:
            return
        db = self._conn()
        with db:
            db.execute("BEGIN")
            db.executemany(ADD_HOUR, [(self._id(code), hour, total, count)
                                           for code, hour, total, count in self.pending])
        self.rows_written += len(self.pending)
        self.pending = []

    def _guarded(self, *steps) -> None:
        """Run writes (callables); a refusing disk is logged once, and once more when all of them work again."""
        for step in steps:
            try:
                step()
            except sqlite3.Error as exc:
                if self.db is not None:     # ids of a rolled-back insert
                    self.ids = dict(self.db.execute("SELECT code, id FROM points"))
                if not self.failing:
                    log.error("baseline file %s: writing failed (%s); hourly sums wait in memory until it "
                              "works again", self.path, exc)
                    self.failing = True
                return
        if self.failing:
            log.warning("baseline file %s: written again (%d hourly rows dropped meanwhile)", self.path,
                        self.dropped)
            self.failing = False

    def baseline(self, code: str, spec, hour: int) -> float:
        """The baseline of `spec` for point `code` while `hour` (epoch hour number) runs; NaN if none."""
        pid = self.ids.get(code)
        if pid is None or self.db is None:
            return math.nan
        first, last, per_day, _ = baseline_span(spec, hour)
        sql = "SELECT sum(sum), sum(count) FROM hours WHERE point = ? AND hour BETWEEN ? AND ?"
        args: tuple = (pid, first, last)
        if per_day:
            sql += " AND (? - hour) % 24 < ?"
            args += (hour, per_day)
        total, count = self.db.execute(sql, args).fetchone()
        return total / count if count else math.nan

    def refresh(self, now: float) -> None:
        """Compute every baseline for the running hour; drop hours no rule needs any more."""
        hour = int(now // HOUR)
        ladder = self.kernel.ladder
        points = self.catalog.points
        oldest = hour
        for r, i, spec in ladder.baseline_rules():
            ladder.set_baseline(r, self.baseline(points[i].code, spec, hour))
            oldest = min(oldest, baseline_span(spec, hour)[0])
        self.hour = hour
        try:
            if self.db is not None:
                self.db.execute("DELETE FROM hours WHERE hour < ?", (oldest - 24,))
        except sqlite3.Error:      # a full disk: pruning waits for the next hour (the writes log it)
            pass

    # ------------------------------------------------------------------ the agent's hooks

    def tick(self, now: float) -> None:
        """Every second or so: flush when due, new baselines when a new hour began."""
        if now >= self.next_flush:
            self.flush(now)
        if int(now // HOUR) != self.hour:
            self._guarded(lambda: self.write_hours(now))
            self.refresh(now)

    def flush(self, now: float) -> None:
        self._guarded(lambda: self.write_hours(now), self.save_state)
        self.next_flush = now + self.flush_every

    def attach(self, kernel, catalog, now: float, carried: bool = False) -> None:
        """After a reload: what the old kernel still holds is written; a new kernel continues each point
        (by point code) from the old one, as after a restart, unless it `carried` them over itself
        (Kernel.carry_over); then it gets its baselines."""
        self._guarded(lambda: self.write_hours(now))
        old, old_catalog = self.kernel, self.catalog
        self.kernel, self.catalog = kernel, catalog
        if kernel is not old and not carried:
            where = {rp.code: rp.index for rp in old_catalog.points if rp.index < old.ladder.n_points}
            for rp in catalog.points:
                j = where.get(rp.code)
                if j is not None and rp.index < kernel.ladder.n_points:
                    sig, state = old.ladder.point_state(j)
                    kernel.ladder.restore_point(rp.index, sig, state, fresh=True)
        self.refresh(now)

    def close(self, now: float) -> None:
        try:
            self.flush(now)
        finally:
            if self.db is not None:
                self.db.close()


def open_beside_buffer(site, catalog, kernel) -> "BaselineStore | None":
    """The graded-warning file beside the buffer, when a point has `levels:` or `rules:` (a site with
    only the old thresholds gets no new file); None, with one line, when it cannot be opened."""
    import time

    from edge_agent.filtering.rules import V_RULES
    if not any(f & V_RULES for f in kernel.ladder.lvf):
        return None
    path = store_path(site.path(site.buffer.path))
    try:
        return BaselineStore.open(path, catalog, kernel, time.time())
    except (OSError, sqlite3.Error) as exc:
        log.error("baseline file %s: cannot open it (%s); levels run without baselines or restored state",
                  path, exc)
        return None
