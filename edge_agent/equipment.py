"""Equipment templates: a belt conveyor or a coal bin described in a few lines of the site file.

    equipment:
      - name: main-belt            # unique; point ids derive from it (or from `ids`)
        template: belt             # belt | bin
        device: belt-1             # the device whose addresses these are
        ids: B                     # optional point-id prefix (default: the name and a dot)
        location: "主斜井带式输送机"   # default location of its points
        signals:                   # signal -> address, or a mapping with the address and overrides
          running: "co:0"
          belt_speed: {address: "hr:0", type: float32}
          current: {address: "hr:2", scale: 0.1, alarm: {high: 180, high_clear: 170}}
        rules: {slip_ratio: 0.9, slip_for: 5s}

At load time (`expand_equipment`, called by `load_site` before validation) every
mapped signal becomes an ordinary point of the named device: sensor code, kind,
unit and range from the sensor table, the template's default thresholds and
deadband, and the id `<ids><slot>` where the slot is the signal's fixed number
below (so adding a signal later never renumbers the others and point codes stay
stable).  A signal mapping may override any point key (type, order, scale,
offset, unit, range, location, alarm, cutoff, warn, delay, deadband, decimals,
x/y/z) except id and kind; `sensor` only among the codes the signal allows.
`check`, the kernel and the encoders then see plain points.

Signals (slot, sensor code, what):

    belt  1 running 1004 | 2 belt_speed 0060 | 3 current 0017 | 4 bearing_temp 0026
          5 motor_temp 0028 | 6 drive_speed 0901 | 7 smoke 1008 | 8 deviation 1901 (跑偏)
          9 tear 1902 (撕裂) | 10 pull_cord 1903 (拉线急停) | 11 pileup 1904 (堆煤) | 12 co 0004
    bin   1 level 0008 or 0050 | 2 feeder 1004 | 3 full 1007 | 4 gate 0051 (开度) | 5 inflow 1004

`running` (belt) and `level` (bin) are required.  The receivers' code table has
no code for belt speed, drive-drum speed, deviation, tear, pull-cord and pile-up:
0060, 0901 and 1901-1904 are project-local codes, declared in the profile's
`local_sensors` (the default profile acquires and evaluates them but sends no
record of them; a profile may renumber them or send them).

Rule parameters (`rules:`), with defaults; the rules themselves are in
`edge_agent/derived.py`:

    belt  slip_ratio 0.9, slip_for 5s, slip_min_speed 0.5 (m/s: below it the belt is starting
          or stopping, slip is not judged), nominal_speed none (m/s; stands in for drive_speed),
          current_limit none (A; default: the current signal's alarm.high), overload_for 10s,
          idle_current 5 (A), idle_for 5s, temp_rate 2 (deg/min), co_rise 10 (ppm),
          fire_window 60s (the window both rises are measured over)
    bin   min_drop 0.2 (m), block_for 60s, collapse_drop 2 (m), collapse_within 10s,
          high_level none (m; default: the level's alarm.high, else 90% of its range),
          overfill_for 5s
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from edge_agent.errors import Problem
from edge_agent.units import parse_duration

SWITCH_ALARM = {"alarm": {"high": 1}}     # a protection switch reads 1 when it trips


@dataclass(frozen=True)
class Signal:
    slot: int
    sensors: tuple[str, ...]           # allowed codes; the first is the default
    defaults: dict[str, Any]
    required: bool = False


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"must be a number (got {v!r})")
    return float(v)


def _positive(v: Any) -> float:
    x = _number(v)
    if x <= 0:
        raise ValueError(f"must be above 0 (got {v!r})")
    return x


def _ratio(v: Any) -> float:
    x = _number(v)
    if not 0 < x < 1:
        raise ValueError(f"must be between 0 and 1 (got {v!r})")
    return x


def _window(v: Any) -> float:
    x = parse_duration(v)
    if x <= 0:
        raise ValueError("must be longer than 0s")
    return x


@dataclass(frozen=True)
class Template:
    name: str
    signals: dict[str, Signal]
    params: dict[str, tuple[Any, Callable[[Any], Any]]]   # name -> (default, parser)


TEMPLATES: dict[str, Template] = {
    "belt": Template("belt", {
        "running": Signal(1, ("1004",), {}, required=True),
        "belt_speed": Signal(2, ("0060",), {"deadband": 0.05}),
        "current": Signal(3, ("0017",), {"deadband": 2}),
        "bearing_temp": Signal(4, ("0026",), {"alarm": {"high": 75, "high_clear": 70}, "deadband": 0.5}),
        "motor_temp": Signal(5, ("0028",), {"alarm": {"high": 90, "high_clear": 85}, "deadband": 0.5}),
        "drive_speed": Signal(6, ("0901",), {"deadband": 0.05}),
        "smoke": Signal(7, ("1008",), SWITCH_ALARM),
        "deviation": Signal(8, ("1901",), SWITCH_ALARM),
        "tear": Signal(9, ("1902",), SWITCH_ALARM),
        "pull_cord": Signal(10, ("1903",), SWITCH_ALARM),
        "pileup": Signal(11, ("1904",), SWITCH_ALARM),
        "co": Signal(12, ("0004",), {"alarm": {"high": 24, "high_clear": 20}, "deadband": 1}),
    }, {
        "slip_ratio": (0.9, _ratio), "slip_for": (5.0, _window), "slip_min_speed": (0.5, _positive),
        "nominal_speed": (None, _positive), "current_limit": (None, _positive),
        "overload_for": (10.0, _window), "idle_current": (5.0, _positive), "idle_for": (5.0, _window),
        "temp_rate": (2.0, _positive), "co_rise": (10.0, _positive), "fire_window": (60.0, _window),
    }),
    "bin": Template("bin", {
        "level": Signal(1, ("0008", "0050"), {"deadband": 0.1}, required=True),
        "feeder": Signal(2, ("1004",), {}),
        "full": Signal(3, ("1007",), {}),
        "gate": Signal(4, ("0051",), {"deadband": 1}),
        "inflow": Signal(5, ("1004",), {}),
    }, {
        "min_drop": (0.2, _positive), "block_for": (60.0, _window), "collapse_drop": (2.0, _positive),
        "collapse_within": (10.0, _window), "high_level": (None, _positive), "overfill_for": (5.0, _window),
    }),
}

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NOT_OVERRIDABLE = ("id", "kind")


def _signal_errors(tpl: Template, signals: dict) -> list[str]:
    errors = []
    for name, spec in signals.items():
        sig = tpl.signals.get(name)
        if sig is None:
            errors.append(f"unknown signal {name!r} for a {tpl.name}; known: {', '.join(tpl.signals)}")
            continue
        if isinstance(spec, dict):
            if "address" not in spec:
                errors.append(f"signal {name}: give its `address`")
            bad = [k for k in _NOT_OVERRIDABLE if k in spec]
            if bad:
                errors.append(f"signal {name}: {', '.join(bad)} come from the template; remove them")
            if "sensor" in spec and spec["sensor"] not in sig.sensors:
                errors.append(f"signal {name}: sensor must be one of {', '.join(sig.sensors)}")
    for name, sig in tpl.signals.items():
        if sig.required and name not in signals:
            errors.append(f"a {tpl.name} needs signal {name!r}")
    return errors


def _rule_errors(tpl: Template, rules: dict) -> list[str]:
    errors = []
    for key, raw in rules.items():
        if key not in tpl.params:
            errors.append(f"unknown rule parameter {key!r} for a {tpl.name}; known: {', '.join(tpl.params)}")
            continue
        try:
            tpl.params[key][1](raw)
        except ValueError as exc:
            errors.append(f"{key}: {exc}")
    return errors


def _checked(v: dict, info: ValidationInfo, errors_of: Callable[[Template, dict], list[str]]) -> dict:
    """A field validator's body: the errors `errors_of` finds against the item's template, as one ValueError."""
    tpl = TEMPLATES.get(info.data.get("template", ""))
    errors = errors_of(tpl, v) if tpl is not None else []
    if errors:
        raise ValueError("; ".join(errors))
    return v


class Equipment(BaseModel):
    """One belt or bin of the site file (validated; `params()` gives its rule parameters)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    template: Literal["belt", "bin"]
    device: str
    ids: str | None = None
    location: str = ""
    signals: dict[str, str | dict[str, Any]]
    rules: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("equipment name must be 1-64 letters, digits, '-', '_' or '.'")
        return v

    @field_validator("signals")
    @classmethod
    def _signals(cls, v: dict, info: ValidationInfo) -> dict:
        return _checked(v, info, _signal_errors)

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: dict, info: ValidationInfo) -> dict:
        return _checked(v, info, _rule_errors)

    @model_validator(mode="after")
    def _ids_fit(self) -> "Equipment":
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,30}", self.prefix):
            raise ValueError(f"point ids would start {self.prefix!r}: too long or not letters, digits, '-', '_' "
                             "or '.'; set `ids:` to a short prefix such as B")
        return self

    @property
    def prefix(self) -> str:
        return self.ids if self.ids is not None else f"{self.name}."

    def point_id(self, signal: str) -> str:
        """The point id a signal expands to: `<ids><slot>`."""
        return f"{self.prefix}{TEMPLATES[self.template].signals[signal].slot}"

    def params(self) -> dict[str, Any]:
        """Every rule parameter of the template: the configured value (parsed) or the default."""
        out = {}
        for key, (default, parse) in TEMPLATES[self.template].params.items():
            out[key] = parse(self.rules[key]) if key in self.rules else default
        return out

    def points(self) -> list[dict[str, Any]]:
        """The raw point mappings this equipment expands to, in slot order."""
        tpl = TEMPLATES[self.template]
        out = []
        for name, sig in sorted(tpl.signals.items(), key=lambda kv: kv[1].slot):
            if name not in self.signals:
                continue
            spec = self.signals[name]
            spec = {"address": spec} if not isinstance(spec, dict) else dict(spec)
            point = {"id": self.point_id(name), "sensor": sig.sensors[0], "location": self.location}
            point.update({k: dict(v) if isinstance(v, dict) else v for k, v in sig.defaults.items()})
            point.update(spec)
            out.append(point)
        return out


def expand_equipment(data: dict, lines: dict[tuple, int], where: str) -> list[Problem]:
    """Add the points of every `equipment:` item to its device in the raw site data (in place).

    Items that do not validate are skipped: `Site` validation reports them with
    the rest.  Problems found here (an unknown device, a point id the device
    already has) come back as `Problem`s; expanded points get the line of
    their signal, so later problems about them point at the equipment entry.
    """
    items = data.get("equipment")
    devices = data.get("devices")
    if not isinstance(items, list) or not isinstance(devices, list):
        return []
    by_name = {d.get("name"): di for di, d in enumerate(devices) if isinstance(d, dict)}
    problems: list[Problem] = []
    names: set[str] = set()

    def line(*loc: Any) -> int | None:
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                return lines[loc[:n]]
        return None

    for ei, item in enumerate(items):
        device = item.get("device") if isinstance(item, dict) else None
        if isinstance(device, str) and device not in by_name:
            problems.append(Problem(where, line("equipment", ei, "device"), f"equipment[{item.get('name', ei)}].device",
                                    f"no device named {device!r}; name one of: "
                                    f"{', '.join(str(n) for n in by_name) or '(none)'}"))
            continue
        try:
            eq = Equipment.model_validate(item)
        except ValidationError:
            continue
        if eq.name in names:
            problems.append(Problem(where, line("equipment", ei, "name"), f"equipment[{eq.name}].name",
                                    f"equipment name {eq.name!r} is used twice"))
            continue
        names.add(eq.name)
        di = by_name[eq.device]
        dev = devices[di]
        pts = dev.setdefault("points", [])
        if not isinstance(pts, list):
            continue
        taken = {str(p.get("id")) for p in pts if isinstance(p, dict)}
        for point in eq.points():
            signal = next(s for s, sig in TEMPLATES[eq.template].signals.items()
                          if eq.point_id(s) == point["id"])
            at = line("equipment", ei, "signals", signal)
            if point["id"] in taken:
                problems.append(Problem(where, at, f"equipment[{eq.name}].signals.{signal}",
                                        f"point id {point['id']!r} is already a point of device {eq.device}; "
                                        "set `ids:` to another prefix"))
                continue
            taken.add(point["id"])
            lines[("devices", di, "points", len(pts))] = at
            pts.append(point)
    return problems
