"""What the kernel hands out: events (YCBJ), window statistics (TJSJ), value changes.

Plain Python on purpose: these are made per event or per window, never per
sample, and both kernel twins return the very same classes.  Treat them as
read-only (not frozen only because frozen dataclasses are ~3x slower to make,
and a busy frame makes hundreds).  Floats without a value (an event without a
valid sample, a point never seen) are NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

# The kernel's event slots, in order: slot -> (anomaly code, side), and the
# status bits (PROFILE.md) the kernel sets: one table, edge_agent/codes.py.
# Alarm and cut-off have a high and a low state machine sharing one anomaly code.
from edge_agent.codes import (SLOTS, ST_ALARM, ST_CUTOFF, ST_OVER_RANGE,  # noqa: F401
                              ST_SENSOR_FAULT, ST_SUBSTATION_FAULT)

KIND_ANALOG, KIND_SWITCH, KIND_CUMULATIVE, KIND_MULTISTATE = 0, 1, 2, 3


@dataclass(slots=True)
class Event:
    """One edge of an anomaly: `begin=True` when it opens (end is None), False when it closes.

    max/min/avg (and the times of max and min) cover the valid samples taken
    while the state held: from the opening sample (included) to the closing
    one (excluded); on the opening event they describe that one sample.  NaN
    when there was none (a fault carries no valid value).  `value` is the
    sample that caused the edge (the point's last valid value when that
    sample carried none).
    """
    point: int
    anomaly: str          # '001'..'010' (PROFILE.md)
    side: str             # 'high' | 'low' | '' : which state machine (alarm, cut-off)
    begin: bool
    start: float          # wall time the state was entered
    end: float | None     # wall time it was left; None on the opening event
    value: float
    max: float
    max_time: float
    min: float
    min_time: float
    avg: float


@dataclass(slots=True)
class Stat:
    """One point's statistics over one wall-clock-aligned window [start, end)."""
    point: int
    start: float
    end: float
    max: float
    max_time: float
    min: float
    min_time: float
    avg: float
    count: int
    delta: float | None   # cumulative points: sum of increments (a counter reset counts from 0)


@dataclass(slots=True)
class Change:
    """A switch (KG) or multistate (DT) point took a new value."""
    point: int
    time: float
    old: float
    new: float


@dataclass(slots=True)
class LevelChange:
    """A point's graded-warning level changed (edge_agent.codes.LEVELS: 0 none .. 4 red).

    `rule` names what caused the change: "level" | "rate" | "baseline" | "ratio"
    | "legacy" (the old warn/alarm/cut-off ladder, mapped by the profile); on a
    fall, the rule that held the previous level.  `threshold` is the entry level
    of the new level on a rise, the clear level of the level left on a fall (NaN
    if unknown); `value` is the rule's quantity at that sample: the sample itself,
    the rate (per the rule's `per`) or the percentage above the baseline.
    """
    point: int          # global point index (Catalog)
    level: int          # new level 0..4
    previous: int       # level before
    rule: str
    threshold: float
    value: float
    time: float         # wall time of the sample
