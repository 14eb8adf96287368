"""The slope GNSS record types: gnssbaseinfo, gnssrealtime, gnssalarm, clearalarm.

Record builders are pure (plain inputs -> one dict keyed by the profile's field
names, numbers rounded as the profile's `gnss.decimals` says); the producers
below adapt them to the pipeline's system view (see CONTRACT-systems.md §5):

- `gnssbaseinfo` (definitions): one record per station: the points of one
  device that share an `instrument:` name, with the roles x_disp, y_disp and
  z_disp; `equip_no` is the x_disp point's code, `equip_name` the instrument's
  name; longitude/latitude/altitude are that point's x/y/z.
- `gnssrealtime` (snapshot): per station its displacement now and the speed
  and acceleration `edge_agent.gnssmotion.Motion` derives from the series
  (kept in `p.memory`, so a reload carries it on, and in a file beside the
  buffer, `edge_agent.gnssstate`, so a restart does too).
- `gnssalarm`: from the alarm book's `alarm` records (event open or update)
  of a station's point: `alarm_level` is the profile's number for the colour;
  the rule that fired puts its threshold under `warning_parameters` and the
  observed value under `alarm_value` (a level rule: horizontal_displacement;
  a rate rule: velocity); `duration` is the seconds since the alarm began.
- `clearalarm`: from the book's `disposal` record: alarm_time (its start),
  handle_time, description (cause and measures taken).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import orjson

from edge_agent import gnssstate
from edge_agent.gnssmotion import Motion
from edge_agent.registry import RecordType, register_record_type
from edge_agent.units import parse_duration

Text = Callable[[float], str]
AXES = ("x", "y", "z")


@dataclass(frozen=True)
class GnssSettings:
    decimals: dict[str, int]
    window: float
    per: float
    level_codes: dict[str, int]
    description: str = "{cause}; {action} ({handler})"

    @classmethod
    def of(cls, profile) -> "GnssSettings":
        raw = profile.raw if hasattr(profile, "raw") else profile
        g = raw.get("gnss", {})
        dec = {"disp": 2, "speed": 3, "acc": 4, "coordinate": 8, "altitude": 3, **g.get("decimals", {})}
        derive = g.get("derive", {})
        return cls(dec, parse_duration(derive.get("window", "1h")), parse_duration(derive.get("per", "1d")),
                   dict(g.get("level_codes") or raw.get("level_codes") or {"blue": 4, "yellow": 3, "orange": 2,
                                                                           "red": 1}),
                   g.get("description", cls.description))


def _round(v, decimals: int):
    if v is None:
        return None
    v = float(v)
    return round(v, decimals) + 0.0 if math.isfinite(v) else None     # + 0.0: never -0.0


@dataclass(frozen=True)
class Station:
    equip_no: str
    name: str
    location: str = ""
    manufacturer: str = ""
    model: str = ""
    longitude: float | None = None
    latitude: float | None = None
    altitude: float | None = None


def baseinfo_record(s: Station, g: GnssSettings, status: int = 1) -> dict:
    c, a = g.decimals["coordinate"], g.decimals["altitude"]
    return {"equip_no": s.equip_no, "equip_name": s.name, "install_time": None, "location": s.location,
            "manufacturer": s.manufacturer, "model": s.model, "longitude": _round(s.longitude, c),
            "latitude": _round(s.latitude, c), "altitude": _round(s.altitude, a), "status": status}


def realtime_record(s: Station, t: float, disp, speed, acc, g: GnssSettings, text: Text) -> dict:
    """One station's sample at `t`: displacement (x, y, z) mm and the derived speed/acceleration (or None)."""
    d, v, a = g.decimals["disp"], g.decimals["speed"], g.decimals["acc"]
    rec = {"equip_no": s.equip_no, "monitor_time": text(t), "longitude": _round(s.longitude, g.decimals["coordinate"]),
           "latitude": _round(s.latitude, g.decimals["coordinate"]), "altitude": _round(s.altitude, g.decimals["altitude"])}
    for k, axis in enumerate(AXES):
        rec[f"{axis}_disp"] = _round(disp[k], d)
    for k, axis in enumerate(AXES):
        rec[f"{axis}_speed"] = None if speed is None else _round(speed[k], v)
    for k, axis in enumerate(AXES):
        rec[f"{axis}_acc_speed"] = None if acc is None else _round(acc[k], a)
    return rec


PARAMETERS = ("horizontal_displacement", "velocity", "acceleration", "duration")
RULE_PARAMETER = {"level": "horizontal_displacement", "rate": "velocity"}


def alarm_record(view: dict, equip_no: str, now: float, g: GnssSettings, text: Text) -> dict:
    """gnssalarm of one alarm (the book's alarm dict); `now` gives the duration so far (or its end)."""
    rec = {"equip_no": equip_no, "alarm_time": text(view["start"]), "alarm_level": g.level_codes[view["level"]]}
    param = RULE_PARAMETER.get(view["rule"])
    dec = g.decimals["speed"] if param == "velocity" else g.decimals["disp"]
    end = view["end"] if view.get("end") is not None else now
    for name in PARAMETERS:
        rec[f"warning_parameters.{name}"] = _round(view["threshold"], dec) if name == param else None
        observed = view["extreme"] if view["rule"] == "level" and view.get("extreme") is not None else view["value"]
        rec[f"alarm_value.{name}"] = _round(observed, dec) if name == param else None
    rec["alarm_value.duration"] = round(max(0.0, end - view["start"]))
    return rec


def clear_record(view: dict, equip_no: str, text: Text, g: GnssSettings) -> dict:
    """clearalarm of a disposed-of alarm: when it began, when it was handled, what was found and done
    (`description` as the profile's `gnss.description` composes cause, action and handler)."""
    d = view["disposal"]
    return {"equip_no": equip_no, "alarm_time": text(view["start"]), "handle_time": text(d["handled_at"]),
            "description": g.description.format(cause=d["cause"], action=d["action"], handler=d["handler"])}


# ------------------------------------------------------------------------- the pipeline's producers

ROLES = ("x_disp", "y_disp", "z_disp")


def stations(points) -> dict[tuple[int, str], dict]:
    """The GNSS stations among `points` (ResolvedPoints): (device, instrument) -> {role: point}, for
    the points that say `instrument:` and one of the roles x_disp, y_disp, z_disp."""
    by: dict[tuple[int, str], dict] = {}
    for rp in points:
        inst, role = getattr(rp.cfg, "instrument", None), getattr(rp.cfg, "role", None)
        if inst is not None and role in ROLES:
            by.setdefault((rp.device, inst), {})[role] = rp
    return by


def _stations(p) -> list[tuple[Station, dict]]:
    out = []
    info = p.site.site
    for (_, name), members in stations(p.points).items():
        if not set(ROLES) <= set(members):
            continue            # `check` names the missing member; nothing to send meanwhile
        first = members["x_disp"]
        cfg = first.cfg
        out.append((Station(first.code, name, cfg.location, getattr(info, "manufacturer", "") or "",
                            getattr(info, "system_model", "") or "", cfg.x, cfg.y, cfg.z), members))
    return out


def gnssbaseinfo(p, now, _data):
    g = GnssSettings.of(p.profile)
    recs = [baseinfo_record(s, g) for s, _ in _stations(p)]
    return orjson.dumps(recs) if recs else None


def gnssrealtime(p, now, _data):
    g = GnssSettings.of(p.profile)
    k = p.kernel
    recs = []
    moved = False
    for s, members in _stations(p):
        idx = [members[r].index for r in ROLES]
        disp = [k.value[i] for i in idx]
        t = max(k.time[i] for i in idx)
        if not all(math.isfinite(v) for v in disp) or not math.isfinite(t):
            continue
        key = ("gnss-motion", s.equip_no)
        m = p.memory.get(key)
        if m is None:
            m = p.memory[key] = gnssstate.motion(p, s.equip_no, g.window, g.per)
        elif (m.window, m.per) != (g.window, g.per):
            m = p.memory[key] = Motion(g.window, g.per)
        speed, acc = m.update(t, tuple(disp))
        moved = True
        recs.append(realtime_record(s, t, disp, speed, acc, g, p.encoder.times.text))
    if moved:
        gnssstate.save(p)
    return orjson.dumps(recs) if recs else None


def book_rows(p, typ: str, body: bytes, now: float) -> list[tuple[str, bytes]]:
    """The gnssalarm / clearalarm rows (record type, body) of one of the alarm book's records (`alarm`
    with event open or update, `disposal`) for the stations of system view `p`; [] for anything else
    (another record, a point of no station, a profile that sends neither)."""
    wanted = {"alarm": "gnssalarm", "disposal": "clearalarm"}.get(typ)
    if wanted is None or wanted not in p.profile.records:
        return []
    equip = {}
    for (di, _), members in stations(p.points).items():
        for rp in members.values():
            equip[(p.site.devices[di].name, rp.id)] = members.get("x_disp", rp).code
    g = GnssSettings.of(p.profile)
    text = p.encoder.times.text
    recs = []
    for view in orjson.loads(body):
        no = equip.get((view.get("device"), view.get("point")))
        if no is None:
            continue
        if typ == "alarm" and view.get("event") in ("open", "update"):
            recs.append(alarm_record(view, no, now, g, text))
        elif typ == "disposal" and view.get("disposal"):
            recs.append(clear_record(view, no, text, g))
    return [(wanted, orjson.dumps(recs))] if recs else []


def _from_book(code: str, p, now, data) -> bytes | None:
    typ, body = data
    return next((b for c, b in book_rows(p, typ, body, now) if c == code), None)


def gnssalarm(p, now, data):
    """The alarm book's hook (cadence None): `data` is one of its records, (type, body)."""
    return _from_book("gnssalarm", p, now, data)


def clearalarm(p, now, data):
    return _from_book("clearalarm", p, now, data)


for rt in (
    RecordType("gnssbaseinfo", ("equip_no", "equip_name", "install_time", "location", "manufacturer", "model",
                                "longitude", "latitude", "altitude", "status"),
               priority=2, cadence="definitions", producer="edge_agent.profile.gnsstypes:gnssbaseinfo",
               retained=True),
    RecordType("gnssrealtime", ("equip_no", "monitor_time", "longitude", "latitude", "altitude",
                                *(f"{a}_disp" for a in AXES), *(f"{a}_speed" for a in AXES),
                                *(f"{a}_acc_speed" for a in AXES)),
               priority=0, cadence="snapshot", producer="edge_agent.profile.gnsstypes:gnssrealtime"),
    # made from the alarm book's records (cadence None: the book's hook calls the producer with each record)
    RecordType("gnssalarm", ("equip_no", "alarm_time", "alarm_level",
                             *(f"warning_parameters.{n}" for n in PARAMETERS),
                             *(f"alarm_value.{n}" for n in PARAMETERS)), priority=3, cadence=None,
               producer="edge_agent.profile.gnsstypes:gnssalarm"),
    RecordType("clearalarm", ("equip_no", "alarm_time", "handle_time", "description"),
               priority=3, cadence=None, producer="edge_agent.profile.gnsstypes:clearalarm"),
):
    register_record_type(rt)
