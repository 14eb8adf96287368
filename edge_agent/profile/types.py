"""The record types of safety monitoring (MT/T 1201.1, PROFILE.md) as registry data.

A type is its fields (every field its producer can fill; a profile lists the ones it
sends, in its order, under `records:`), its drop class, whether MQTT retains it, its
cadence and its producer.  A new type is one `register_record_type` entry here (or in a
plug-in) and, at most, one producer function: `producer(pipeline, now, data)` returns
the message body (a JSON array of records, see `edge_agent.profile.encode`) or None.
The pipeline offers `encoder`, `kernel`, `catalog`, `routes`, `states()` (each device's
(run, power) status) to producers.
"""
from __future__ import annotations

from edge_agent.profile.encode import EMPTY
from edge_agent.registry import RecordType, register_record_type


def _records(body: bytes) -> bytes | None:
    """None for a body without records (only points the profile does not send): no message."""
    return None if body == EMPTY else body


# ------------------------------------------------------------------------- producers

def cddy(p, now, _data):
    return _records(p.encoder.cddy(now))


def fzdy(p, now, _data):
    return p.encoder.fzdy(now)


def cdss(p, now, _data):
    """Every point (the snapshot; between snapshots the frame path reports changes itself)."""
    if not p.routes.all:
        return None
    k = p.kernel
    return _records(p.encoder.cdss(range(len(p.catalog)), k.value, k.status, k.time, now))


def fzss(p, now, _data):
    return p.encoder.fzss(p.states(), now)


def tjsj(p, now, stats):
    return _records(p.encoder.tjsj(stats, now)) if stats else None


def ycbj(p, now, events):
    return _records(p.encoder.ycbj(events, now)) if events else None


# ------------------------------------------------------------------------- the types, in production order

HERE = "edge_agent.profile.types"
for rt in (
    RecordType("CDDY", ("point_code", "system_code", "substation_code", "sensor_type", "value_kind", "unit",
                        "range_high", "range_low", "alarm_high", "alarm_high_clear", "alarm_low", "alarm_low_clear",
                        "cutoff_high", "restore_high", "cutoff_low", "restore_low", "on_text", "off_text",
                        "location", "x", "y", "z", "relations", "time", "sensor_name", "warn_high", "warn_low"),
               priority=2, cadence="definitions", producer=f"{HERE}:cddy", retained=True),
    RecordType("CDSS", ("point_code", "sensor_name", "location", "value", "unit", "status", "time", "sensor_type",
                        "substation_code"),
               priority=0, cadence="snapshot", producer=f"{HERE}:cdss"),
    RecordType("TJSJ", ("point_code", "sensor_name", "location", "unit", "start", "end", "max", "max_time", "min",
                        "min_time", "avg", "time", "count", "delta", "sensor_type"),
               priority=1, cadence="statistics", producer=f"{HERE}:tjsj"),
    RecordType("YCBJ", ("point_code", "sensor_name", "location", "unit", "anomaly", "start", "end", "max",
                        "max_time", "min", "min_time", "avg", "cause", "action", "entered_at", "entered_by", "time",
                        "sensor_type", "value", "level"),
               priority=3, cadence="event", producer=f"{HERE}:ycbj"),
    RecordType("FZDY", ("substation_code", "location", "x", "y", "z", "name", "time"),
               priority=2, cadence="definitions", producer=f"{HERE}:fzdy", retained=True),
    RecordType("FZSS", ("substation_code", "run_status", "power_status", "time"),
               priority=0, cadence="snapshot", producer=f"{HERE}:fzss"),
):
    register_record_type(rt)

# the alarm book's MQTT-only records (edge_agent/alarms/records.py makes them): the alarms class
for code in ("alarm", "disposal", "escalation"):
    register_record_type(RecordType(code, (), priority=3, cadence=None, producer=None))
