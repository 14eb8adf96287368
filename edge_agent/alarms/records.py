"""The records an alarm makes: YCBJ through the profile's encoder, and the MQTT-only JSON records.

Each function returns (type, time, body) for the buffer; the agent routes
YCBJ to every sink and the others (`alarm`, `disposal`, `escalation`) to the
MQTT uplink only.  The JSON records are the alarm dict of the API contract
with `event` first and the profile's numbers for its colours
(`level_code`, `max_level_code`).
"""
from __future__ import annotations

import orjson

from edge_agent.alarms.alarm import Alarm, YcbjRecord, finite
from edge_agent.alarms.spec import LEVELS, AlarmSpec

MQTT_ONLY = ("alarm", "disposal", "escalation")


class Records:
    def __init__(self, spec: AlarmSpec, encoder=None):
        self.spec = spec
        self.encoder = encoder          # the profile's Encoder; None: no YCBJ (tests of the book alone)
        # with `systems:`: point index -> the pipeline's SystemView of its system (its encoder, its
        # profile's anomaly type for the point: CGKCDYC, ZKYC ... or YCBJ); None: `encoder` for every point
        self.view_of = None

    def _code(self, level: int) -> int | None:
        return self.spec.level_codes.get(LEVELS[level]) if level else None

    def json(self, typ: str, event: str, a: Alarm, now: float, overdue: bool, **extra) -> tuple[str, float, bytes]:
        rec = {"event": event, **a.view(overdue), "level_code": self._code(a.level),
               "max_level_code": self._code(a.max_level), **extra}
        return typ, now, orjson.dumps([rec])

    def _ycbj(self, a: Alarm, anomaly: str, start: float, end: float | None, now: float,
              level: int, **disposal) -> list[tuple[str, float, bytes]]:
        if self.encoder is None or a.index is None:
            return []                   # roll-up alarms have no point code to carry; a removed point neither
        # the point's own value: its extreme so far, else the change's sample (a rate rule's value is a rate)
        sample = a.extreme if a.extreme is not None else \
            (finite(a.value) if a.rule in ("level", "legacy") else None)
        rec = YcbjRecord(point=a.index, anomaly=anomaly, start=start, end=end, value=sample, max=a.max, max_time=a.max_time, min=a.min, min_time=a.min_time, avg=a.avg,
                         level_code=self._code(level), **disposal)
        if self.view_of is not None:
            from edge_agent.profile.shapes import anomaly_record
            got = anomaly_record(self.view_of(a.index), rec, now, a)
            return [got] if got is not None else []
        if "YCBJ" not in self.encoder.profile.records:
            return []                   # a profile without YCBJ (its system's own types carry alarms)
        return [("YCBJ", now, self.encoder.ycbj([rec], now))]

    def ycbj_begin(self, a: Alarm, anomaly: str, t: float, now: float) -> list:
        return self._ycbj(a, anomaly, t, None, now, a.level)

    def ycbj_end(self, a: Alarm, anomaly: str, start: float, t: float, level: int, now: float) -> list:
        return self._ycbj(a, anomaly, start, t, now, level)

    def ycbj_disposal(self, a: Alarm, now: float) -> list:
        """The alarm's YCBJ again, with cause/action/entered_at/entered_by filled: the anomaly code
        of the highest level it reached, from its start to its end (empty while still open)."""
        d = a.disposal or {}
        anomaly = self.spec.anomaly(a.max_level, a.side, legacy=a.legacy)
        return self._ycbj(a, anomaly, a.start, a.end, now, a.max_level, cause=d.get("cause"),
                          action=d.get("action"), entered_at=d.get("handled_at"), entered_by=d.get("handler"))
