"""Derived conditions of belts and coal bins: what an experienced operator sees that no single sensor says.

    derived = Derived(site, catalog)
    report = kernel.process(frame)
    events = kernel.take_events() + derived.process(frame, kernel)   # YCBJ, as the kernel's

`process` evaluates, per frame of a device that carries equipment (see
`edge_agent/equipment.py`), every rule of that equipment on the FILTERED values
(`kernel.value`/`kernel.status` after `kernel.process`, so call it after), and
returns `DerivedEvent`s: a begin when a condition opens, an end when it closes.
They have the attributes `Encoder.ycbj` reads (point, anomaly, start, end,
value, max, max_time, min, min_time, avg): the record is on the rule's main
signal point (belt speed for slip, level for 堵仓 ...), its anomaly code comes
from the profile's `derived_anomalies` table, and max/min/avg cover that point's
valid values while the condition held.

Rules (parameters and defaults: `equipment.py`), each a row of `RULES`:

    belt_slip          running, drive speed (or nominal_speed) >= slip_min_speed and
                       belt_speed < slip_ratio x drive speed, held for slip_for
    belt_overload      current > current_limit (default: its alarm.high), held for overload_for
    belt_idle_current  not running and current > idle_current, held for idle_for
    belt_fire          running and (bearing_temp rising faster than temp_rate deg/min over
                       fire_window, or smoke, or co rising more than co_rise over fire_window)
    bin_block          (堵仓; also the static level of 蓬仓) feeder running through the whole
                       block_for window and the level fell less than min_drop over it
    bin_collapse       (溃仓) the level fell more than collapse_drop within collapse_within: at once
    bin_overfill       inflow running and level > high_level, held for overfill_for

A condition closes after it has been false for the rule's `clear` seconds.  A rule
whose signal is not mapped, faulted (status 16 or 128) or out of the window's
history cannot be evaluated: it raises nothing, keeps its state, and logs ONE
warning line per equipment when it stops being evaluable (again after it
recovered).  `points` gives each rule's derived status: 0 normal, 1 active,
128 cannot be evaluated now, 32 not configured.
"""
from __future__ import annotations

import logging
import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from edge_agent.codes import FAULT_BITS, ST_NOT_POLLED, ST_SENSOR_FAULT
from edge_agent.filtering.records import Event
from edge_agent.frame import Frame

log = logging.getLogger("edge_agent.derived")

# a derived point's status: 0 normal, 1 active, and the status bits for "not configured"/"cannot evaluate"
ST_NORMAL, ST_ACTIVE, ST_NOT_CONFIGURED, ST_CANNOT = 0, 1, ST_NOT_POLLED, ST_SENSOR_FAULT


@dataclass(slots=True)
class DerivedEvent(Event):
    """One edge of a derived condition: the kernel's `Event`, plus the rule and the equipment."""
    rule: str = ""
    equipment: str = ""


@dataclass(slots=True)
class DerivedPoint:
    """A rule of one equipment and its status (see the module docstring)."""
    equipment: str
    rule: str
    anomaly: str
    name: str
    point: int            # global index of the point its records are on
    status: int = ST_NORMAL
    device: int = -1      # the equipment's device
    slot: int = 0         # 1-based position among its template's rules: the derived point id is <ids>D<slot>
    vpoint: int = -1      # global index of the derived point that carries the status (Catalog.add_derived)

    @property
    def value(self) -> float:
        """The derived point's multistate value: 0 normal, 1 condition active, 2 cannot evaluate."""
        return {ST_ACTIVE: 1.0, ST_CANNOT: 2.0}.get(self.status, 0.0)


class Unavailable(Exception):
    """A signal a rule needs has no usable value now (`reason` says why)."""


class WarmingUp(Unavailable):
    """A window is longer than the valid history so far (after a start): not worth a log line."""


class _History:
    """Valid samples (t, v) of one signal, kept for the longest window that needs them."""

    def __init__(self, keep: float):
        self.keep = keep
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, t: float, v: float) -> None:
        if self.samples and self.samples[-1][0] == t:
            return
        self.samples.append((t, v))
        while len(self.samples) > 2 and self.samples[1][0] <= t - self.keep:
            self.samples.popleft()

    def since(self, t0: float) -> list[tuple[float, float]] | None:
        """Samples from the last one at or before t0 up to now; None if the history starts after t0."""
        s = self.samples
        if not s or s[0][0] > t0:
            return None
        out = []
        for t, v in reversed(s):
            out.append((t, v))
            if t <= t0:
                break
        out.reverse()
        return out


class _Ctx:
    """What a rule's test sees: signal values (raising Unavailable), history windows, parameters."""

    def __init__(self, unit: "_Unit", t: float, kernel):
        self.unit, self.t, self.kernel, self.p = unit, t, kernel, unit.params

    def has(self, signal: str) -> bool:
        return signal in self.unit.index

    def v(self, signal: str) -> float:
        i = self.unit.index.get(signal)
        if i is None:
            raise Unavailable(f"signal {signal} is not mapped")
        st = int(self.kernel.status[i])
        if st & FAULT_BITS:
            raise Unavailable(f"signal {signal} ({self.unit.ids[signal]}) is faulted (status {st})")
        v = float(self.kernel.value[i])
        if math.isnan(v):
            raise Unavailable(f"signal {signal} ({self.unit.ids[signal]}) has no value yet")
        return v

    def on(self, signal: str) -> bool:
        return self.v(signal) >= 0.5

    def window(self, signal: str, width: float) -> list[tuple[float, float]]:
        """Samples covering [t - width, t] (current value included); Unavailable while the history is short."""
        self.v(signal)
        got = self.unit.history[signal].since(self.t - width)
        if got is None:
            raise WarmingUp(f"signal {signal} has less than {width:g}s of valid history")
        return got

    def rise(self, signal: str, width: float) -> float:
        w = self.window(signal, width)
        return w[-1][1] - w[0][1]


def _drive(c: _Ctx) -> float:
    if c.has("drive_speed"):
        return c.v("drive_speed")
    if c.p["nominal_speed"] is not None:
        return c.p["nominal_speed"]
    raise Unavailable("neither drive_speed nor nominal_speed is configured")


def _slip(c: _Ctx) -> bool:
    if not c.on("running"):
        return False
    drive = _drive(c)
    return drive >= c.p["slip_min_speed"] and c.v("belt_speed") < c.p["slip_ratio"] * drive


def _overload(c: _Ctx) -> bool:
    limit = c.p["current_limit"] if c.p["current_limit"] is not None else c.unit.alarm_high.get("current")
    if limit is None:
        raise Unavailable("no current_limit and no alarm.high on signal current")
    return c.v("current") > limit


def _idle_current(c: _Ctx) -> bool:
    return not c.on("running") and c.v("current") > c.p["idle_current"]


def _fire(c: _Ctx) -> bool:
    if not c.on("running"):
        return False
    width, parts, usable = c.p["fire_window"], [], 0
    tests = (("bearing_temp", lambda: c.rise("bearing_temp", width) / width * 60.0 > c.p["temp_rate"]),
             ("smoke", lambda: c.on("smoke")),
             ("co", lambda: c.rise("co", width) > c.p["co_rise"]))
    for signal, test in tests:
        if not c.has(signal):
            continue
        try:
            parts.append(test())
            usable += 1
        except Unavailable as exc:
            parts.append(False)
            last = exc
    if not usable:
        raise last if parts else Unavailable("none of bearing_temp, smoke, co is mapped")
    return any(parts)


def _block(c: _Ctx) -> bool:
    if not c.on("feeder"):
        return False
    width = c.p["block_for"]
    if min(v for _, v in c.window("feeder", width)) < 0.5:
        return False              # the feeder has not run through the whole window yet
    level = c.window("level", width)
    return level[0][1] - level[-1][1] < c.p["min_drop"]


def _collapse(c: _Ctx) -> bool:
    level = c.window("level", c.p["collapse_within"])
    return max(v for _, v in level) - level[-1][1] > c.p["collapse_drop"]


def _overfill(c: _Ctx) -> bool:
    if not c.on("inflow"):
        return False
    high = c.p["high_level"]
    if high is None:
        high = c.unit.alarm_high.get("level")
    if high is None:
        high = 0.9 * c.unit.range_high["level"]
    return c.v("level") > high


@dataclass(frozen=True)
class Rule:
    name: str
    template: str
    point: tuple[str, ...]       # the signal whose point carries the records: the first one mapped
    needs: tuple[str, ...]       # signals that must be mapped (else: not configured)
    test: Callable[[_Ctx], bool]
    hold: str | None = None      # parameter: how long the condition must hold before it opens
    clear: float = 5.0           # s the condition must be false before it closes
    history: tuple[tuple[str, str], ...] = ()   # (signal, window parameter) kept as history


RULES: tuple[Rule, ...] = (
    Rule("belt_slip", "belt", ("belt_speed",), ("running", "belt_speed"), _slip, hold="slip_for"),
    Rule("belt_overload", "belt", ("current",), ("current",), _overload, hold="overload_for"),
    Rule("belt_idle_current", "belt", ("current",), ("running", "current"), _idle_current, hold="idle_for"),
    Rule("belt_fire", "belt", ("bearing_temp", "co", "smoke"), ("running",), _fire, clear=30.0,
         history=(("bearing_temp", "fire_window"), ("co", "fire_window"))),
    Rule("bin_block", "bin", ("level",), ("feeder", "level"), _block,
         history=(("level", "block_for"), ("feeder", "block_for"))),
    Rule("bin_collapse", "bin", ("level",), ("level",), _collapse, history=(("level", "collapse_within"),)),
    Rule("bin_overfill", "bin", ("level",), ("inflow", "level"), _overfill, hold="overfill_for"),
)


@dataclass
class _State:
    rule: Rule
    dp: DerivedPoint
    hold: float                      # s, from the rule's hold parameter
    since: float | None = None       # condition true since (waiting out `hold`)
    false_since: float | None = None
    active: bool = False
    start: float = 0.0
    acc: list[float] = field(default_factory=lambda: [math.nan, 0.0, math.nan, 0.0, 0.0, 0])  # max t min t sum n


class _Unit:
    """One equipment's signals (global indices), parameters, histories and rule states."""

    def __init__(self, eq, device: int, points: dict, codes: dict):
        self.eq, self.device = eq, device
        self.params = eq.params()
        self.index, self.ids, self.alarm_high, self.range_high = {}, {}, {}, {}
        for signal in eq.signals:
            rp = points[eq.point_id(signal)]
            self.index[signal], self.ids[signal] = rp.index, rp.id
            self.alarm_high[signal] = rp.cfg.alarm.high
            self.range_high[signal] = rp.range_high
        self.states: list[_State] = []
        keep: dict[str, float] = {}
        missing = []
        for slot, rule in enumerate((r for r in RULES if r.template == eq.template), start=1):
            point = next((self.index[s] for s in rule.point if s in self.index), -1)
            entry = codes.get(rule.name) or {}
            dp = DerivedPoint(eq.name, rule.name, str(entry.get("code", "")), str(entry.get("name", "")), point,
                              device=device, slot=slot)
            absent = [s for s in rule.needs if s not in self.index]
            if not entry.get("code"):
                absent.append("(no code in the profile's derived_anomalies)")
            if absent or point < 0:
                dp.status = ST_NOT_CONFIGURED
                missing.append(f"{rule.name} ({', '.join(absent) or 'no signal to report on'})")
            for signal, width in rule.history:
                keep[signal] = max(keep.get(signal, 0.0), self.params[width])
            self.states.append(_State(rule, dp, self.params[rule.hold] if rule.hold else 0.0))
        self.history = {s: _History(w + 1.0) for s, w in keep.items()}
        if missing:
            log.warning("%s: cannot evaluate %s: not configured", eq.name, "; ".join(missing))


class Derived:
    """The derived conditions of every equipment of a site; `process(frame, kernel)` once per frame."""

    def __init__(self, site, catalog):
        codes = catalog.profile.raw.get("derived_anomalies") or {}
        by_id = [{rp.id: rp for rp in pts} for pts in catalog.by_device]
        names = [d.name for d in site.devices]
        self.units: dict[int, list[_Unit]] = {}
        for eq in getattr(site, "equipment", ()):
            di = names.index(eq.device)
            self.units.setdefault(di, []).append(_Unit(eq, di, by_id[di], codes))
        self.points = [s.dp for units in self.units.values() for u in units for s in u.states]

    def carry_over(self, old: "Derived") -> None:
        """Keep the rule states and histories of equipment whose settings did not change (a reload)."""
        before = {u.eq.name: u for units in old.units.values() for u in units}
        for u in (u for units in self.units.values() for u in units):
            o = before.get(u.eq.name)
            if o is not None and o.eq == u.eq:
                u.history = o.history          # (time, value) samples: tied to no point index
                for s, so in zip(u.states, o.states):
                    s.since, s.false_since, s.active, s.start, s.acc = so.since, so.false_since, so.active, \
                        so.start, so.acc
                    s.dp.status = so.dp.status

    def status_frame(self, frame) -> Frame | None:
        """The derived points of `frame`'s device as a Frame (after `process`), for the kernel and CDSS."""
        units = self.units.get(frame.device)
        if not units:
            return None
        dps = [s.dp for u in units for s in u.states if s.dp.vpoint >= 0 and s.dp.status != ST_NOT_CONFIGURED]
        if not dps:
            return None
        return Frame(frame.device, frame.mono, frame.wall, array("i", [d.vpoint for d in dps]),
                     array("d", [d.value for d in dps]), array("B", bytes(len(dps))))

    def process(self, frame, kernel) -> list[DerivedEvent]:
        """Evaluate the rules of the frame's device on the kernel's state; the events they raise."""
        units = self.units.get(frame.device)
        if not units:
            return []
        t = frame.wall
        out: list[DerivedEvent] = []
        for u in units:
            for signal, h in u.history.items():
                i = u.index.get(signal)
                if i is None or float(kernel.time[i]) != t:
                    continue
                if int(kernel.status[i]) & FAULT_BITS:
                    h.samples.clear()     # no window spans a fault: after it, the history fills again
                else:
                    h.add(t, float(kernel.value[i]))
            ctx = _Ctx(u, t, kernel)
            lost = []
            for s in u.states:
                if s.dp.status == ST_NOT_CONFIGURED:
                    continue
                try:
                    for signal in s.rule.needs:      # faults first: they are news, a short history is not
                        ctx.v(signal)
                    cond = s.rule.test(ctx)
                except Unavailable as exc:
                    s.since = s.false_since = None   # a hold or clear wait restarts on good values
                    if isinstance(exc, WarmingUp):
                        continue
                    if s.dp.status != ST_CANNOT:
                        s.dp.status = ST_CANNOT
                        lost.append(f"{s.rule.name} ({exc})")
                    continue
                s.dp.status = ST_ACTIVE if s.active else ST_NORMAL
                self._step(s, cond, t, kernel, out)
            if lost:
                log.warning("%s: cannot evaluate %s; no alarm from it until the signal is good",
                            u.eq.name, "; ".join(lost))
        return out

    def _step(self, s: _State, cond: bool, t: float, kernel, out: list[DerivedEvent]) -> None:
        p = s.dp.point
        v = float(kernel.value[p])
        if s.active:
            if not math.isnan(v) and not int(kernel.status[p]) & FAULT_BITS:
                _acc(s.acc, v, t)
            if cond:
                s.false_since = None
                return
            if s.false_since is None:
                s.false_since = t
            if t - s.false_since >= s.rule.clear:
                s.active, s.since, s.false_since = False, None, None
                s.dp.status = ST_NORMAL
                out.append(self._event(s, False, t, v))
            return
        if not cond:
            s.since = None
            return
        if s.since is None:
            s.since = t
        if t - s.since >= s.hold:
            s.active, s.start, s.false_since = True, t, None
            s.acc[:] = [math.nan, 0.0, math.nan, 0.0, 0.0, 0]
            if not math.isnan(v):
                _acc(s.acc, v, t)
            s.dp.status = ST_ACTIVE
            out.append(self._event(s, True, t, v))

    @staticmethod
    def _event(s: _State, begin: bool, t: float, v: float) -> DerivedEvent:
        mx, mxt, mn, mnt, total, n = s.acc
        avg = total / n if n else math.nan
        return DerivedEvent(s.dp.point, s.dp.anomaly, "", begin, s.start, None if begin else t, v,
                            mx, mxt, mn, mnt, avg, rule=s.rule.name, equipment=s.dp.equipment)


def _acc(acc: list, v: float, t: float) -> None:
    if acc[5] == 0 or v > acc[0]:
        acc[0], acc[1] = v, t
    if acc[5] == 0 or v < acc[2]:
        acc[2], acc[3] = v, t
    acc[4] += v
    acc[5] += 1
