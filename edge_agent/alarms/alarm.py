"""One alarm: what a level change opened, as the book keeps it, shows it and encodes it.

`Alarm.view(overdue)` is the alarm dict of the API contract (also the JSON of
the HTTP API and of the MQTT `alarm`, `disposal` and `escalation` records);
`Alarm.doc()` / `Alarm.from_doc()` its persisted form.  Times are epoch
seconds; a missing number is None.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from edge_agent.alarms.spec import LEVELS

RUNTIME = ("index", "due", "confirmed", "dirty")     # not persisted: rebuilt at start


def finite(v) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


@dataclass
class Alarm:
    subject: str                    # point:<device>/<point id> or item:<name>
    level: int                      # current level 1..4 (0 once closed)
    max_level: int
    rule: str                       # level | rate | baseline | ratio | legacy | rollup
    threshold: float | None         # the threshold that fired (of the highest level reached)
    value: float | None             # the quantity of the last change (sample, rate, % over baseline)
    side: str                       # high | low: which side of its threshold
    start: float
    id: int | None = None
    device: str | None = None
    point: str | None = None
    item: str | None = None
    point_code: str | None = None
    sensor_name: str | None = None
    location: str | None = None
    unit: str | None = None
    end: float | None = None
    max: float | None = None        # the point's samples while open
    max_time: float | None = None
    min: float | None = None
    min_time: float | None = None
    total: float = 0.0
    count: int = 0
    acked_at: float | None = None
    acked_by: str | None = None
    disposal: dict | None = None    # handler, cause, action, handled_at, entered_at
    deadline: float = 0.0           # wall time by which it must be acknowledged
    escalated: int = 0              # the level it was last escalated at (0: never)
    segment: list | None = None     # [anomaly, start] of the YCBJ this alarm has open (graded point alarms)
    index: int | None = field(default=None, compare=False)      # global point index now (None: no point)
    due: float = field(default=0.0, compare=False)              # monotonic time of the deadline
    confirmed: bool = field(default=True, compare=False)        # False: restored, not yet seen by the kernel
    dirty: bool = field(default=False, compare=False)           # samples since the last save

    # ------------------------------------------------------------------ state

    @property
    def legacy(self) -> bool:
        return self.rule == "legacy"

    @property
    def acknowledged(self) -> bool:
        return self.acked_at is not None or self.disposal is not None

    @property
    def done(self) -> bool:
        """Ended and acknowledged (or disposed of): nothing left to watch."""
        return self.end is not None and self.acknowledged

    @property
    def state(self) -> str:
        if self.disposal is not None:
            return "disposed"
        if self.end is not None:
            return "closed"
        return "acked" if self.acked_at is not None else "open"

    @property
    def extreme(self) -> float | None:
        return self.min if self.side == "low" else self.max

    @property
    def avg(self) -> float | None:
        return self.total / self.count if self.count else None

    def sample(self, v: float, t: float) -> None:
        """A valid sample of the point while the alarm is open."""
        if self.count == 0 or v > self.max:
            self.max, self.max_time = v, t
        if self.count == 0 or v < self.min:
            self.min, self.min_time = v, t
        self.total += v
        self.count += 1
        self.dirty = True

    # ------------------------------------------------------------------ forms

    def view(self, overdue: bool) -> dict:
        """The alarm dict of the API contract."""
        return {
            "id": self.id, "device": self.device, "point": self.point, "point_code": self.point_code,
            "item": self.item, "sensor_name": self.sensor_name, "location": self.location, "unit": self.unit,
            "level": LEVELS[self.level], "max_level": LEVELS[self.max_level],
            "rule": self.rule, "threshold": finite(self.threshold), "value": finite(self.value),
            "extreme": finite(self.extreme), "start": self.start, "end": self.end, "state": self.state,
            "acked_at": self.acked_at, "acked_by": self.acked_by, "deadline": self.deadline, "overdue": overdue,
            "disposal": None if self.disposal is None else dict(self.disposal),
        }

    def doc(self) -> dict:
        d = asdict(self)
        for k in RUNTIME + ("id",):
            d.pop(k)
        return d

    @classmethod
    def from_doc(cls, alarm_id: int, doc: dict) -> "Alarm":
        known = {f.name for f in fields(cls)} - set(RUNTIME)
        return cls(id=alarm_id, **{k: v for k, v in doc.items() if k in known})


@dataclass(slots=True)
class YcbjRecord:
    """What `Encoder.ycbj` reads for one record (the kernel's Event has the same names)."""
    point: int
    anomaly: str
    start: float
    end: float | None
    value: float | None
    max: float | None
    max_time: float | None
    min: float | None
    min_time: float | None
    avg: float | None
    level_code: int | None = None
    cause: str | None = None
    action: str | None = None
    entered_at: float | None = None
    entered_by: str | None = None
