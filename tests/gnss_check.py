"""An independent platform-side reader of the slope GNSS JSON files, for the tests.

Written from the documents (SYSTEMS.md, "Open-pit slopes": the name pattern, the
envelope {send_time, open_pit_no, data}, the keys of gnssrealtime, gnssalarm with
alarm_level 1-4 and warning_parameters / alarm_value {horizontal_displacement,
velocity, acceleration, duration}, clearalarm {equip_no, alarm_time, handle_time,
description}; gnssbaseinfo's keys are the project's, from the slope-gnss profile's
comments), not from the agent: it imports nothing of edge_agent and uses the stdlib
json parser, so a mistake in the agent's writer is caught here, not repeated.

    parsed = read_file(path)        # Parsed(mine, type, time, serial, envelope, records); ValueError if bad
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

NAME = re.compile(r"(\d{12})_(gnssbaseinfo|gnssrealtime|gnssalarm|clearalarm)_(\d{14})_(\d{4})\.json")
TIME = "%Y-%m-%d %H:%M:%S"
ENVELOPE = ["send_time", "open_pit_no", "data"]
PARAMETERS = ["horizontal_displacement", "velocity", "acceleration", "duration"]
KEYS = {
    "gnssbaseinfo": ["equip_no", "equip_name", "install_time", "location", "manufacturer", "model", "longitude",
                     "latitude", "altitude", "status"],
    "gnssrealtime": ["equip_no", "monitor_time", "longitude", "latitude", "altitude", "x_disp", "y_disp", "z_disp",
                     "x_speed", "y_speed", "z_speed", "x_acc_speed", "y_acc_speed", "z_acc_speed"],
    "gnssalarm": ["equip_no", "alarm_time", "alarm_level", "warning_parameters", "alarm_value"],
    "clearalarm": ["equip_no", "alarm_time", "handle_time", "description"],
}
TIMES = {"gnssbaseinfo": [], "gnssrealtime": ["monitor_time"], "gnssalarm": ["alarm_time"],
         "clearalarm": ["alarm_time", "handle_time"]}
TEXTS = {"gnssbaseinfo": ["equip_name", "location", "manufacturer", "model"], "clearalarm": ["description"]}
NUMBERS = {"gnssbaseinfo": ["longitude", "latitude", "altitude", "status"],
           "gnssrealtime": KEYS["gnssrealtime"][2:]}


@dataclass
class Parsed:
    mine: str
    type: str
    time: datetime
    serial: int
    envelope: dict
    records: list[dict]


def _time(v, where: str) -> datetime:
    if not isinstance(v, str):
        raise ValueError(f"{where}: not a time text: {v!r}")
    try:
        return datetime.strptime(v, TIME)
    except ValueError:
        raise ValueError(f"{where}: {v!r} is not yyyy-MM-dd HH:mm:ss") from None


def _number(v, where: str, nullable: bool = True) -> None:
    if v is None and nullable:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}: not a number: {v!r}")


def read_file(path: Path) -> Parsed:
    m = NAME.fullmatch(path.name)
    if m is None:
        raise ValueError(f"{path.name}: name is not <12-digit mine>_<gnss type>_<yyyyMMddHHmmss>_<4 digits>.json")
    mine, typ, stamp, serial = m.groups()
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ValueError(f"{path.name}: UTF-8 with a BOM")
    doc = json.loads(raw.decode("utf-8"))
    if not isinstance(doc, dict) or list(doc) != ENVELOPE:
        raise ValueError(f"{path.name}: top-level keys {list(doc)}, want {ENVELOPE}")
    sent = _time(doc["send_time"], f"{path.name}: send_time")
    if sent.strftime("%Y%m%d%H%M%S") != stamp:
        raise ValueError(f"{path.name}: send_time {doc['send_time']} is not the name's time")
    if doc["open_pit_no"] != mine:
        raise ValueError(f"{path.name}: open_pit_no {doc['open_pit_no']!r} is not the mine code")
    if not isinstance(doc["data"], list) or not doc["data"]:
        raise ValueError(f"{path.name}: data is not a non-empty list")
    for i, rec in enumerate(doc["data"]):
        where = f"{path.name}: data[{i}]"
        if not isinstance(rec, dict) or list(rec) != KEYS[typ]:
            raise ValueError(f"{where}: keys {list(rec)}, want {KEYS[typ]}")
        if not isinstance(rec["equip_no"], str) or not rec["equip_no"]:
            raise ValueError(f"{where}: equip_no empty")
        for k in TIMES[typ]:
            _time(rec[k], f"{where}.{k}")
        for k in TEXTS.get(typ, []):
            if not isinstance(rec[k], str):
                raise ValueError(f"{where}.{k}: not a text")
        for k in NUMBERS.get(typ, []):
            _number(rec[k], f"{where}.{k}")
        if typ == "gnssalarm":
            if rec["alarm_level"] not in (1, 2, 3, 4) or isinstance(rec["alarm_level"], bool):
                raise ValueError(f"{where}.alarm_level: {rec['alarm_level']!r} is not 1-4")
            for k in ("warning_parameters", "alarm_value"):
                if not isinstance(rec[k], dict) or list(rec[k]) != PARAMETERS:
                    raise ValueError(f"{where}.{k}: keys {list(rec[k])}, want {PARAMETERS}")
                for p in PARAMETERS:
                    _number(rec[k][p], f"{where}.{k}.{p}")
            if all(rec["warning_parameters"][p] is None for p in PARAMETERS):
                raise ValueError(f"{where}.warning_parameters: no parameter given")
        if typ == "clearalarm" and _time(rec["handle_time"], where) < _time(rec["alarm_time"], where):
            raise ValueError(f"{where}: handled before the alarm began")
    return Parsed(mine, typ, sent, int(serial), {k: doc[k] for k in ENVELOPE[:2]}, doc["data"])
