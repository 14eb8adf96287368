"""Record types a profile declares as data (`types:`), by shape: no field order in code.

    types:
      CGKCDDY: {shape: definition, sensors: ['0502']}
      CGKCDSS: {shape: realtime, sensors: ['0502'], instrument: borehole}
      CGKCDYC: {shape: anomaly, sensors: ['0502']}
    instruments:
      borehole: [level, temperature]    # a point says `instrument: B1` and `role: temperature`
    attributes: [stratum, hole_depth]   # point `attrs:` a definition may carry

A shape gives the type its drop class, cadence and the fields its producer fills; the profile
lists the fields it sends under `records:` (and `headers:` for the text format), in order.
`load_profile` registers each declared type (`register_types`); the producers below fill one
record per point of the type's sensor codes in the system, or per instrument: the instrument's
first member gives the point code, each member's value goes under its role's name.
"""
from __future__ import annotations

import math
from functools import partial

from edge_agent.codes import LEVEL_NAMES_ZH, LEVELS
from edge_agent.profile.encode import num
from edge_agent.registry import RecordType, record_types, register_record_type

POINT = ("point_code", "system_code", "substation_code", "sensor_type", "sensor_name", "value_kind", "location",
         "unit", "name", "time")
LEVEL_FIELDS = tuple(f"{c}_{side}" for c in ("blue", "yellow", "orange", "red") for side in ("high", "low"))
SHAPES = {
    # shape: (priority, cadence, retained, fields)
    "definition": (2, "definitions", True, POINT + ("range_high", "range_low", "x", "y", "z", "alarm_high",
                                                    "alarm_low", "decimals") + LEVEL_FIELDS),
    "realtime": (0, "snapshot", False, POINT + ("value", "status", "level", "level_colour")),
    "statistics": (1, "statistics", False, POINT + ("start", "end", "max", "max_time", "min", "min_time", "avg",
                                                    "count")),
    "anomaly": (3, "event", False, POINT + ("anomaly", "anomaly_name", "description", "start", "end", "value",
                                            "max", "max_time", "min", "min_time", "avg", "level", "level_colour",
                                            "cause", "action", "entered_at", "entered_by")),
}
_declared: dict[str, str] = {}     # type code -> shape, of the types registered from profiles


def register_types(data: dict, bad) -> None:
    """Register the record types of a profile's `types:` (before its `records:` are checked)."""
    types = data.get("types") or {}
    if not isinstance(types, dict):
        bad("types", "a mapping of record type: {shape, sensors}")
        return
    instruments = data.get("instruments") or {}
    attributes = tuple(data.get("attributes") or ())
    existing = record_types()
    for code, spec in types.items():
        if not isinstance(spec, dict) or spec.get("shape") not in SHAPES:
            bad(f"types.{code}", f"give `shape:` one of {', '.join(SHAPES)}")
            continue
        if code in existing and _declared.get(code) is None:
            bad(f"types.{code}", f"{code} is a built-in record type; a profile declares new types only")
            continue
        if _declared.get(code, spec["shape"]) != spec["shape"]:
            bad(f"types.{code}", f"{code} is already declared with shape {_declared[code]} by another profile")
            continue
        sensors = spec.get("sensors")
        if not isinstance(sensors, list) or not all(isinstance(s, str) for s in sensors):
            bad(f"types.{code}", "`sensors:` lists the sensor type codes (in quotes) whose points it carries")
            continue
        members: tuple = ()
        if spec.get("instrument") is not None:
            members = tuple(instruments.get(spec["instrument"]) or ())
            if not members:
                bad(f"types.{code}", f"instrument {spec['instrument']!r} is not declared under `instruments:`")
                continue
        prio, cadence, retained, fields = SHAPES[spec["shape"]]
        extra = attributes if spec["shape"] == "definition" else ()
        register_record_type(RecordType(code, fields + members + extra, prio, cadence,
                                        partial(produce, spec["shape"], code), retained=retained))
        _declared[code] = spec["shape"]


def type_spec(profile, code: str) -> dict:
    return (profile.raw.get("types") or {}).get(code) or {}


def groups(view, code: str) -> list[tuple]:
    """(first point, {role: point}) per record of type `code` in this system: per instrument, else per point."""
    spec = type_spec(view.profile, code)
    sensors = set(spec.get("sensors") or ())
    chosen = [rp for rp in view.points if view.encoder.sends(rp) and rp.cfg.sensor in sensors]
    if spec.get("instrument") is None:
        return [(rp, {}) for rp in chosen]
    by: dict[tuple, dict] = {}
    for rp in chosen:
        key = (rp.device, rp.cfg.instrument or rp.id)
        by.setdefault(key, {})[rp.cfg.role or "value"] = rp
    out = []
    members = (view.profile.raw.get("instruments") or {}).get(spec["instrument"]) or ()
    for roles in by.values():
        first = next((roles[m] for m in members if m in roles), next(iter(roles.values())))
        out.append((first, roles))
    return out


def _base(view, rp, t: str) -> dict:
    enc = view.encoder
    row = enc.point_fields(rp)
    row.update({"system_code": view.system.code, "value_kind": view.profile.value_kinds[rp.kind],
                "name": rp.sensor_name, "time": t})
    return row


def _levels(rp) -> dict:
    out = {}
    lv = rp.cfg.levels
    for c in ("blue", "yellow", "orange", "red"):
        level = getattr(lv, c, None) if lv is not None else None
        out[f"{c}_high"] = level.high if level is not None else None
        out[f"{c}_low"] = level.low if level is not None else None
    return out


def produce(shape: str, code: str, view, now: float, data=None) -> bytes | None:
    enc = view.encoder
    t = enc.times.text(now)
    rows = []
    if shape == "anomaly":
        return _anomalies(view, code, now, data or [])
    if shape == "statistics":
        if not data:
            return None
        mine = {rp.index for rp, _ in groups(view, code)}
        rows = [r for r in enc.tjsj_rows([s for s in data if s.point in mine], now)]
        return enc.rows(code, rows) if rows else None
    k = view.kernel
    for rp, roles in groups(view, code):
        row = _base(view, rp, t)
        if shape == "definition":
            d, n = rp.decimals, enc.number
            p = rp.cfg
            row.update({"range_high": n(rp, rp.range_high), "range_low": n(rp, rp.range_low), "decimals": d,
                        "x": num(p.x, enc.xyz_decimals), "y": num(p.y, enc.xyz_decimals),
                        "z": num(p.z, enc.xyz_decimals), "alarm_high": p.alarm.high, "alarm_low": p.alarm.low,
                        **_levels(rp), **dict(p.attrs)})
            for role, member in roles.items():
                row[role] = member.code
        else:
            def value(q):
                v = float(k.value[q.index])
                return None if math.isnan(v) else enc.number(q, v)
            st = int(k.status[rp.index])
            level = int(k.level[rp.index]) if hasattr(k, "level") else 0
            row.update({"value": value(rp), "status": enc.status(st, float(k.time[rp.index])),
                        "level": enc.level_code(level), "level_colour": enc.level_colour(level)})
            for role, member in roles.items():
                row[role] = value(member)
        rows.append(row)
    return enc.rows(code, rows) if rows else None


def _anomalies(view, code: str, now: float, events, describe=None) -> bytes | None:
    mine = {rp.index for rp, _ in groups(view, code)}
    chosen = [e for e in events if getattr(e, "point", None) is not None and e.point in mine]
    if not chosen:
        return None
    rows = view.encoder.ycbj_rows(chosen, now)
    names = view.profile.anomalies
    for row in rows:
        row["anomaly_name"] = names.get(row.get("anomaly"))
        lv = row.get("level")
        row["level_colour"] = view.encoder.colour_of_code(lv)
        row["description"] = describe or row["anomaly_name"]
    return view.encoder.rows(code, rows)


def anomaly_type(view, point: int) -> str | None:
    """The record type an alarm of `point` goes out as in its system: the profile's `anomaly` type whose
    sensors include the point's (CGKCDYC, ZKYC ...), else YCBJ when the profile sends it, else None."""
    rp = view.catalog.points[point]
    for code, spec in (view.profile.raw.get("types") or {}).items():
        if spec.get("shape") == "anomaly" and rp.cfg.sensor in (spec.get("sensors") or ()) and \
                code in view.profile.records:
            return code
    return "YCBJ" if "YCBJ" in view.profile.records else None


def anomaly_record(view, rec, now: float, alarm=None) -> tuple[str, float, bytes] | None:
    """An alarm-book record (YcbjRecord) of a point as its system's row: (row type, time, body), or None
    when the point's profile has no anomaly type for it.  The description says value, level and
    threshold ("3.97m>蓝色阈值3.0m"), the level goes as the profile's number and colour."""
    code = anomaly_type(view, rec.point)
    if code is None:
        return None
    if code == "YCBJ":
        body = view.encoder.ycbj([rec], now)
    else:
        rp = view.catalog.points[rec.point]
        describe = None
        colour = view.encoder.colour_of_code(rec.level_code)
        if alarm is not None and alarm.threshold is not None and rec.value is not None and colour:
            sign = ">" if alarm.side == "high" else "<"
            describe = (f"{view.encoder.number(rp, rec.value)}{rp.unit}{sign}阈值（{LEVEL_NAMES_ZH[LEVELS.index(colour)]}）"
                        f"{view.encoder.number(rp, alarm.threshold)}{rp.unit}")
        body = _anomalies(view, code, now, [rec], describe)
    return (view.system.type_of(code), now, body) if body is not None else None



def instrument_problems(site) -> list[tuple[tuple, str]]:
    """(location, reason) for points of an instrument: a role its profile does not declare, a member missing."""
    out: list[tuple[tuple, str]] = []
    for system in site.resolved_systems:
        declared = system.profile.raw.get("instruments") or {}
        for di in system.devices:
            dev = site.devices[di]
            by: dict[str, list] = {}
            for pi, pt in enumerate(dev.points):
                if pt.instrument is not None:
                    by.setdefault(pt.instrument, []).append((pi, pt))
            for name, members in by.items():
                kinds = [k for k, roles in declared.items() if any(pt.role in roles for _, pt in members)]
                roles = declared.get(kinds[0]) if kinds else None
                pi0 = members[0][0]
                if roles is None:
                    out.append((("devices", di, "points", pi0, "role"),
                                f"instrument {name}: role(s) {', '.join(str(pt.role) for _, pt in members)} are not "
                                f"members of any instrument of profile {system.kind} ({declared or 'none'})"))
                    continue
                have = {pt.role for _, pt in members}
                missing = [r for r in roles if r not in have]
                if missing:
                    out.append((("devices", di, "points", pi0, "instrument"),
                                f"instrument {name} lacks member(s) {', '.join(missing)} (profile {system.kind}: "
                                f"{', '.join(roles)}); add the point(s) with `instrument: {name}` and `role:`"))
    return out


def coverage_problems(site) -> list[tuple[tuple, str]]:
    """(location, reason) for a point that no record type of its system's profile carries (a system of
    declared types only: a safety-monitoring layout sends every point in CDSS)."""
    out: list[tuple[tuple, str]] = []
    for system in site.resolved_systems:
        types = {code: spec for code, spec in (system.profile.raw.get("types") or {}).items()
                 if code in system.profile.records and isinstance(spec, dict)}
        if not types or "CDSS" in system.profile.records:
            continue
        carried = {s for spec in types.values() for s in (spec.get("sensors") or ())}
        for di in system.devices:
            for pi, pt in enumerate(site.devices[di].points):
                if pt.sensor not in carried:
                    out.append((("devices", di, "points", pi, "sensor"),
                                f"sensor {pt.sensor}: no record type of profile {system.kind} carries it "
                                f"({', '.join(types)} carry {', '.join(sorted(carried))}); its values would go "
                                "nowhere: use a code the profile carries, or another system"))
    return out
