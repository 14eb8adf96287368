"""The alarm book: level changes open, update and close alarms; operators acknowledge and dispose of them.

    book = AlarmBook(path, spec, emit=commit_records)
    book.bind(catalog, encoder, site)        # at start and after every reload
    book.apply(changes)                      # LevelChange / ItemLevelChange objects, in order
    book.observe(frame, values, status, times, level_of)   # samples of open alarms, after each frame
    book.ack(17, by="张三"); book.dispose(17, handler=..., cause=..., action=...)
    await book.run()                         # deadlines; until cancelled

A change 0 -> n opens an alarm for its point (or item), n -> m updates it,
n -> 0 closes it.  Every state change is in the book's SQLite file together
with the records it makes before those go to `emit` (which commits them to
the buffer): a restart never repeats a "begin" and never loses an "end".
An alarm restored open is confirmed by the first valid sample of its point:
still at a level, it carries on; at level 0 (and past the point's `delay`
since the start, so a delayed condition can re-enter), it closes then.

Rule "legacy" (the old warn/alarm/cutoff ladder) alarms are tracked (list,
ack, disposal, deadlines) but make no open/update/close records: the kernel's
YCBJ 001/002/009/010 already are those.  Operator actions and escalations
make records for every alarm.

Deadlines: an alarm must be acknowledged (or disposed of) within the time
its colour gives (raising it to a higher colour can only bring the deadline
nearer).  Wall time is recorded and shown; whether it is overdue is decided
on the monotonic clock (converted once, at open or at start), so a stepped
wall clock neither fires nor delays an escalation.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterable

from edge_agent import clock as wallclock
from edge_agent.alarms.alarm import Alarm, finite
from edge_agent.alarms.deadlines import Changed, escalate, run_deadlines
from edge_agent.alarms.inputs import AlarmError, free_text, handled_time, say
from edge_agent.alarms.records import Records
from edge_agent.alarms.spec import LEVEL_NAMES_ZH, LEVELS, AlarmSpec
from edge_agent.alarms.store import BookFile

log = logging.getLogger("edge_agent.alarms")

STATES = ("open", "overdue", "closed", "all")
BAD_SAMPLE = 16 | 128           # substation fault, sensor fault: no valid value
LIST_LIMIT = 500

LOG = {
    "open": "alarm %d open: %s %s %s, %s rule, value %s (threshold %s)",
    "update": "alarm %d %s: now %s %s, %s rule, value %s (threshold %s)",
    "close": "alarm %d closed: %s, highest %s %s, %s rule",
    "ack": "alarm %d acknowledged by %s",
    "dispose": "alarm %d disposed of by %s",
    "cannot_write": "alarm book: %s refused a write (%s); alarms are kept in memory and their records still sent",
    "written": "alarm book: %s takes writes again",
    "removed": "alarm %d ended: %s is no longer in the site file",
}


def _side(ch) -> str:
    t, v = finite(ch.threshold), finite(ch.value)
    return "low" if t is not None and v is not None and v < t else "high"


class AlarmBook:
    def __init__(self, path: str | Path, spec: AlarmSpec, *, deadlines: dict[str, float] | None = None,
                 emit: Callable[[list[tuple[str, float, bytes]]], None] | None = None,
                 clock: Callable[[], float] = wallclock.now, mono: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.spec = spec
        self.deadlines = {**spec.deadlines, **(deadlines or {})}
        self.emit = emit or (lambda records: None)
        self.clock, self.mono = clock, mono
        self.records = Records(spec)
        self.changed = Changed()
        self.escalations = 0
        self.failing: str | None = None
        self.kick = asyncio.Event()
        self.catalog = self.site = None
        self._points: _PointsByName | dict = {}
        self.file = BookFile(self.path)
        self.alarms: dict[int, Alarm] = {}       # every alarm not done (open, or ended and unacknowledged)
        self.open: dict[str, Alarm] = {}         # subject -> its open alarm
        self.watch: dict[int, list[Alarm]] = {}  # device index -> its open point alarms
        for alarm_id, doc in self.file.live():
            a = Alarm.from_doc(alarm_id, doc)
            a.confirmed = a.end is not None
            a.due = self._due(a.deadline)
            self.alarms[a.id] = a
            if a.end is None:
                self.open[a.subject] = a
        self._next_id = self.file.last_id() + 1

    # ------------------------------------------------------------------ wiring

    def bind(self, catalog, encoder, site) -> None:
        """Use this catalogue (point indices, names) and encoder from now on: at start and after a reload.
        Open point alarms wait for their point's next valid sample to confirm them; the open alarms
        of points (and items) this configuration no longer has end now, their records made with
        the configuration they were open in (a reload; at a start: MQTT `alarm` close only)."""
        self._end_removed(catalog, site)
        self.catalog, self.site = catalog, site
        self.records.encoder = encoder
        self._bound_at = self.clock()
        self._points = _PointsByName(catalog, site)
        for a in self.alarms.values():
            a.index = self._index(a)
            if a.end is None:
                a.confirmed = False
        self._reindex()

    def _end_removed(self, catalog, site) -> None:
        if not self.open:
            return
        points = _PointsByName(catalog, site)
        items = {it.name for it in getattr(site, "items", ())}
        gone = [a for a in self.open.values()
                if (a.item not in items if a.item is not None else points.get((a.device, a.point)) is None)]
        if not gone:
            return
        records: list = []
        now = self.clock()
        for a in gone:
            self._close(a, now, records)
            log.warning(LOG["removed"], a.id, self.describe(a))
        self.commit(gone, records)

    def resend(self) -> int:
        """Hand what the last run left in the outbox to `emit` (at start); returns how many records."""
        boxed = self.file.outbox()
        if boxed:
            self.emit([(typ, t, body) for _, typ, t, body in boxed])
            self.file.sent([i for i, *_ in boxed])
        return len(boxed)

    def _index(self, a: Alarm) -> int | None:
        rp = self._points.get((a.device, a.point)) if a.point is not None else None
        return None if rp is None else rp.index

    def _reindex(self) -> None:
        watch: dict[int, list[Alarm]] = {}
        for a in self.open.values():
            if a.index is not None:
                watch.setdefault(self.catalog.points[a.index].device, []).append(a)
        self.watch = watch

    def _due(self, deadline: float) -> float:
        return self.mono() + (deadline - self.clock())

    def overdue(self, a: Alarm) -> bool:
        return not a.acknowledged and self.mono() >= a.due

    # ------------------------------------------------------------------ level changes

    def apply(self, changes: Iterable, values=None) -> None:
        """Open, update and close alarms for these changes (objects with point or item, level, previous,
        rule, threshold, value, time).  `values` (the kernel's last values) seeds a new alarm's statistics."""
        touched: dict[int, Alarm] = {}
        records: list = []
        for ch in changes:
            item = getattr(ch, "item", None)
            rp = None if item is not None else self.catalog.points[ch.point]
            subject = f"item:{item}" if item is not None else \
                f"point:{self.site.devices[rp.device].name}/{rp.id}"
            a = self.open.get(subject)
            if ch.level > 0:
                if a is None:
                    a = self._open(ch, subject, rp, records, values)
                else:
                    self._update(a, ch, records)
            elif a is not None:
                self._close(a, ch.time, records)
            else:
                continue
            touched[a.id] = a
        if touched:
            self.commit(list(touched.values()), records)
            self._reindex()

    def _open(self, ch, subject: str, rp, records: list, values) -> Alarm:
        t, level = float(ch.time), int(ch.level)
        a = Alarm(subject=subject, level=level, max_level=level, rule=ch.rule, threshold=finite(ch.threshold),
                  value=finite(ch.value), side=_side(ch), start=t, id=self._next_id)
        self._next_id += 1
        if rp is None:
            a.item = ch.item
        else:
            a.device, a.point, a.index = self.site.devices[rp.device].name, rp.id, rp.index
            a.point_code, a.sensor_name, a.location, a.unit = rp.code, rp.sensor_name, rp.cfg.location, rp.unit
            v = finite(values[rp.index]) if values is not None else None
            if v is not None:
                a.sample(v, t)
        a.deadline = t + self.deadlines[LEVELS[level]]
        a.due = self._due(a.deadline)
        self.alarms[a.id] = self.open[subject] = a
        if not a.legacy:
            if a.index is not None:
                code = self.spec.anomaly(level, a.side)
                a.segment = [code, t]
                records += self.records.ycbj_begin(a, code, t, self.clock())
            records.append(self.records.json("alarm", "open", a, self.clock(), False))
        log.info(LOG["open"], a.id, LEVELS[level], LEVEL_NAMES_ZH[level], self.describe(a), a.rule, a.value,
                 a.threshold)
        return a

    def _update(self, a: Alarm, ch, records: list) -> None:
        a.confirmed = True
        t, level = float(ch.time), int(ch.level)
        if level == a.level:
            return
        was = a.level
        a.level, a.value = level, finite(ch.value)
        if level > a.max_level:
            a.max_level, a.rule, a.threshold = level, ch.rule, finite(ch.threshold)
            a.deadline = min(a.deadline, t + self.deadlines[LEVELS[level]])
            a.due = min(a.due, self._due(a.deadline))
            self.kick.set()
        if not a.legacy:
            now = self.clock()
            if a.segment is not None:
                code = self.spec.anomaly(level, a.side)
                if code != a.segment[0]:
                    records += self.records.ycbj_end(a, a.segment[0], a.segment[1], t, was, now)
                    a.segment = [code, t]
                    records += self.records.ycbj_begin(a, code, t, now)
            records.append(self.records.json("alarm", "update", a, now, self.overdue(a)))
        log.info(LOG["update"], a.id, "raised" if level > was else "lowered", LEVELS[level], LEVEL_NAMES_ZH[level],
                 ch.rule, a.value, finite(ch.threshold))

    def _close(self, a: Alarm, t: float, records: list) -> None:
        was, a.level, a.end = a.level, 0, float(t)
        del self.open[a.subject]
        if not a.legacy:
            now = self.clock()
            if a.segment is not None:
                records += self.records.ycbj_end(a, a.segment[0], a.segment[1], a.end, was, now)
                a.segment = None
            records.append(self.records.json("alarm", "close", a, now, self.overdue(a)))
        log.info(LOG["close"], a.id, self.describe(a), LEVELS[a.max_level], LEVEL_NAMES_ZH[a.max_level], a.rule)

    def observe(self, frame, values, status, times, level_of: Callable[[int], int]) -> None:
        """After a frame: count the valid samples of its points that have an open alarm, and settle
        alarms restored open (their point at level 0 now closes them, at this sample)."""
        watch = self.watch.get(frame.device)
        if not watch:
            return
        wall = frame.wall
        closing = []
        for a in watch:
            i = a.index
            if times[i] != wall or status[i] & BAD_SAMPLE:
                continue
            if not a.confirmed:
                if level_of(i) == 0:
                    # a condition with a delay re-enters only after it: give it that long
                    if wall - self._bound_at >= self.catalog.points[i].cfg.delay:
                        closing.append(a)
                    continue
                a.confirmed = True
            a.sample(float(values[i]), wall)
        if closing:
            records: list = []
            for a in closing:
                self._close(a, wall, records)
            self.commit(closing, records)
            self._reindex()

    # ------------------------------------------------------------------ persistence

    def commit(self, alarms: list[Alarm], records: list, *, strict: bool = False) -> None:
        """Write these alarms and their records in one transaction, then hand the records to `emit`.
        strict: raise AlarmError(503) when the file refuses (operator actions); otherwise log once and go on."""
        rows = [(a.id, a.subject, a.end is not None, a.done, a.doc()) for a in alarms]
        boxed: list[int] = []
        try:
            boxed = self.file.write(rows, records)
        except (sqlite3.Error, OSError) as exc:
            if strict:
                raise AlarmError(503, say("storage", reason=exc)) from None
            if self.failing is None:
                log.error(LOG["cannot_write"], self.path, exc)
            self.failing = str(exc)
        else:
            if self.failing is not None:
                log.info(LOG["written"], self.path)
                self.failing = None
        if records:
            self.emit(records)
        try:
            self.file.sent(boxed)
        except (sqlite3.Error, OSError):
            pass                 # sent again at the next start: a repeat, never a loss
        for a in alarms:
            a.dirty = False
            if a.done:
                self.alarms.pop(a.id, None)
        self.changed.set()

    def flush(self) -> None:
        """Save the samples counted since the last save (statistics of open alarms)."""
        dirty = [a for a in self.alarms.values() if a.dirty]
        if dirty:
            self.commit(dirty, [])

    def close(self) -> None:
        self.flush()
        self.file.close()

    # ------------------------------------------------------------------ deadlines (deadlines.py)

    def check_deadlines(self) -> int:
        """Escalate every alarm past its deadline and not yet escalated at its highest level."""
        return escalate(self)

    async def run(self) -> None:
        """Escalate on time and save samples every second; until cancelled."""
        await run_deadlines(self)

    # ------------------------------------------------------------------ reading

    def list(self, state: str = "open", *, limit: int = LIST_LIMIT) -> list[dict]:
        """Alarms, newest first: open (not yet ended), overdue, closed (ended) or all."""
        if state not in STATES:
            raise AlarmError(400, f"state: {state!r}; use one of {', '.join(STATES)}")
        if state == "open":
            found = [a for a in self.alarms.values() if a.end is None]
        elif state == "overdue":
            found = [a for a in self.alarms.values() if self.overdue(a)]
        else:
            found = [self.alarms.get(i) or Alarm.from_doc(i, d)
                     for i, d in self.file.recent(ended=True if state == "closed" else None, limit=limit)]
        found.sort(key=lambda a: a.id, reverse=True)
        return [a.view(self.overdue(a)) for a in found[:limit]]

    def _find(self, alarm_id) -> Alarm:
        if isinstance(alarm_id, bool) or not isinstance(alarm_id, int):
            raise AlarmError(400, say("unknown", id=alarm_id))
        a = self.alarms.get(alarm_id)
        if a is None:
            doc = self.file.find(alarm_id)
            if doc is None:
                raise AlarmError(404, say("unknown", id=alarm_id))
            a = Alarm.from_doc(alarm_id, doc)
            a.index = self._index(a)
            a.due = self._due(a.deadline)
        return a

    def get(self, alarm_id: int) -> dict:
        a = self._find(alarm_id)
        return a.view(self.overdue(a))

    # ------------------------------------------------------------------ operator actions

    def _refuse_if_disposed(self, a: Alarm) -> None:
        if a.disposal is not None:
            raise AlarmError(409, say("disposed", id=a.id, by=a.disposal["handler"],
                                      at=self.time_text(a.disposal["entered_at"])))

    def ack(self, alarm_id: int, *, by: str) -> dict:
        """Acknowledge: stops the deadline.  Durable (and its `alarm` record committed) before it returns."""
        by = free_text("by", by)
        a = self._find(alarm_id)
        self._refuse_if_disposed(a)
        if a.acked_at is not None:
            raise AlarmError(409, say("acked", id=a.id, by=a.acked_by, at=self.time_text(a.acked_at)))
        b = dataclasses.replace(a, acked_at=self.clock(), acked_by=by)
        self.commit([b], [self.records.json("alarm", "ack", b, b.acked_at, False)], strict=True)
        self._adopt(b)
        log.info(LOG["ack"], b.id, by)
        return b.view(False)

    def dispose(self, alarm_id: int, *, handler: str, cause: str, action: str,
                handled_at: float | None = None) -> dict:
        """Record who handled the alarm, why it happened and what was done.  Makes the profile's
        disposal records (YCBJ again with cause/action/entered_at/entered_by; MQTT `disposal`),
        committed to the buffer before it returns.  Open, acknowledged and ended alarms can be
        disposed of, each once; AlarmError and nothing recorded otherwise."""
        handler, cause, action = free_text("handler", handler), free_text("cause", cause), free_text("action", action)
        a = self._find(alarm_id)
        self._refuse_if_disposed(a)
        now = self.clock()
        at = handled_time(handled_at, now=now, start=a.start, show=self.time_text)
        b = dataclasses.replace(a, disposal={"handler": handler, "cause": cause, "action": action,
                                             "handled_at": at, "entered_at": now})
        records = self.records.ycbj_disposal(b, now) + [self.records.json("disposal", "dispose", b, now, False)]
        self.commit([b], records, strict=True)
        self._adopt(b)
        log.info(LOG["dispose"], b.id, handler)
        return b.view(False)

    def _adopt(self, b: Alarm) -> None:
        """Put a changed copy in place of its original (operator actions change a copy first)."""
        if b.id in self.alarms and not b.done:
            self.alarms[b.id] = b
        if b.end is None:
            self.open[b.subject] = b
            self._reindex()

    # ------------------------------------------------------------------ for metrics and messages

    def metrics(self) -> dict:
        by_level = dict.fromkeys(LEVELS[1:], 0)
        for a in self.open.values():
            by_level[LEVELS[a.level]] += 1
        return {"open": by_level, "overdue": sum(1 for a in self.alarms.values() if self.overdue(a)),
                "unacknowledged": sum(1 for a in self.alarms.values() if not a.acknowledged),
                "escalations": self.escalations}

    def describe(self, a: Alarm) -> str:
        if a.item is not None:
            return a.item
        where = f" ({a.location})" if a.location else ""
        return f"{a.device}/{a.point}{where}"

    def time_text(self, t: float | None) -> str:
        if t is None or not math.isfinite(t):
            return "-"
        enc = self.records.encoder
        return enc.times.text(t) if enc is not None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


class _PointsByName:
    """(device name, point id) -> the catalogue's point, like a dict of every point, but a device's part
    is made only when an alarm of that device asks (50,000 points: a 5 MB dict nobody read)."""

    def __init__(self, catalog, site):
        self.catalog = catalog
        self.device_of = {dev.name: di for di, dev in enumerate(site.devices)}
        self._of: dict[int, dict] = {}

    def get(self, key: tuple, default=None):
        di = self.device_of.get(key[0])
        if di is None:
            return default
        ids = self._of.get(di)
        if ids is None:
            c = self.catalog
            polled = sum(len(b) for b in c.by_device)        # derived points come after every polled one
            ids = self._of[di] = {rp.id: rp for rp in (*c.by_device[di],
                                                        *(rp for rp in c.points[polled:] if rp.device == di))}
        return ids.get(key[1], default)
