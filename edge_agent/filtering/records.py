"""What the kernel hands out: events (YCBJ), window statistics (TJSJ), value changes.

Plain Python on purpose: these are made per event or per window, never per
sample, and both kernel twins return the very same classes.  Treat them as
read-only (not frozen only because frozen dataclasses are ~3x slower to make,
and a busy frame makes hundreds).  Floats without a value (an event without a
valid sample, a point never seen) are NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

# The kernel's event slots, in order: slot -> (anomaly code, side).  Alarm and
# cut-off have a high and a low state machine that share one anomaly code.
SLOTS: tuple[tuple[str, str], ...] = (
    ("001", "high"),   # alarm high
    ("001", "low"),    # alarm low
    ("002", "high"),   # cut-off high (断电)
    ("002", "low"),    # cut-off low
    ("009", "high"),   # upper pre-warning
    ("010", "low"),    # lower pre-warning
    ("008", ""),       # over range
    ("004", ""),       # sensor fault / disconnected
    ("006", ""),       # substation (device) unreachable
)

# status bits (PROFILE.md) the kernel sets
ST_ALARM, ST_CUTOFF, ST_OVER_RANGE, ST_SUBSTATION_FAULT, ST_SENSOR_FAULT = 1, 2, 8, 16, 128

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
