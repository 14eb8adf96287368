"""What the profile says about graded warning: colour numbers, YCBJ anomaly codes, deadlines.

`alarm_spec(profile)` reads the profile's `level_codes:` and `alarms:` (a
profile without them takes the built-in default profile's, so a copied
variant keeps working) and raises ConfigError naming the profile file, line
and key.  Everything here is profile data: a province's variant edits its
file, not this module.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_agent.errors import ConfigError, Problem
from edge_agent.units import parse_duration

try:                                    # the `levels` branch's table; the same tuple until it lands
    from edge_agent.codes import LEVEL_NAMES_ZH, LEVELS
except ImportError:                     # pragma: no cover - removed once edge_agent.codes is on main
    LEVELS = ("none", "blue", "yellow", "orange", "red")
    LEVEL_NAMES_ZH = ("无", "蓝", "黄", "橙", "红")

COLOURS = LEVELS[1:]
SIDES = ("high", "low")


@dataclass(frozen=True)
class AlarmSpec:
    level_codes: dict[str, int]                  # colour -> the profile's number
    anomalies: dict[str, dict[str, str]]         # colour -> side -> YCBJ anomaly code (graded rules)
    legacy_anomalies: dict[str, dict[str, str]]  # the same for the old ladder's alarms
    deadlines: dict[str, float]                  # colour -> seconds to acknowledge

    def anomaly(self, level: int, side: str, legacy: bool = False) -> str:
        colour = LEVELS[level]
        table = self.legacy_anomalies if legacy and colour in self.legacy_anomalies else self.anomalies
        return table[colour][side]


def _section(profile) -> tuple[dict, dict, Path, Any]:
    """(level_codes, alarms section, file they came from, its text) of `profile` or the default."""
    raw = profile.raw or {}
    if "alarms" in raw or "level_codes" in raw:
        path = Path(profile.path)
        return raw.get("level_codes"), raw.get("alarms"), path, path.read_text(encoding="utf-8")
    from edge_agent.profile.layers import builtin_dir
    path = builtin_dir() / "default.yaml"
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return data.get("level_codes"), data.get("alarms"), path, text


def _codes(value: Any) -> dict[str, str] | None:
    """'001' or {high: '009', low: '010'} -> {high, low}; None when malformed."""
    if isinstance(value, str):
        value = {"high": value, "low": value}
    if not isinstance(value, dict) or set(value) != set(SIDES):
        return None
    if not all(isinstance(v, str) and re.fullmatch(r"\d{3}", v) for v in value.values()):
        return None
    return {s: value[s] for s in SIDES}


def alarm_spec(profile) -> AlarmSpec:
    """The graded-warning part of `profile`; ConfigError (file:line: key: reason) when it is wrong."""
    codes, section, path, text = _section(profile)
    from edge_agent.yamlsrc import Lines
    lines = Lines(text)
    problems: list[Problem] = []

    def bad(loc: tuple, reason: str) -> None:
        problems.append(Problem(str(path), lines.get(loc) or lines.get(loc[:1]), ".".join(loc), reason))

    level_codes: dict[str, int] = {}
    if not isinstance(codes, dict) or set(codes) != set(COLOURS) or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in codes.values()):
        bad(("level_codes",), f"map each of {', '.join(COLOURS)} to the profile's number for it, "
                              "e.g. {blue: 4, yellow: 3, orange: 2, red: 1}")
    elif len(set(codes.values())) != len(codes):
        bad(("level_codes",), "two colours have the same number")
    else:
        level_codes = dict(codes)
    section = section if isinstance(section, dict) else {}
    tables: dict[str, dict[str, dict[str, str]]] = {"anomalies": {}, "legacy_anomalies": {}}
    for key, table in tables.items():
        given = section.get(key)
        if not isinstance(given, dict):
            bad(("alarms", key), "missing: map colours to YCBJ anomaly codes ('001' or {high: '009', low: '010'})")
            continue
        for colour, value in given.items():
            parsed = _codes(value)
            if colour not in COLOURS:
                bad(("alarms", key, colour), f"unknown colour; colours are {', '.join(COLOURS)}")
            elif parsed is None:
                bad(("alarms", key, colour), "write a 3-digit code in quotes ('001') or {high: '009', low: '010'}")
            else:
                table[colour] = parsed
    missing = [c for c in COLOURS if c not in tables["anomalies"]]
    if "anomalies" in section and missing and isinstance(section.get("anomalies"), dict):
        bad(("alarms", "anomalies"), f"no code for {', '.join(missing)}; every colour needs one")
    deadlines: dict[str, float] = {}
    given = section.get("deadlines")
    if not isinstance(given, dict) or set(given) != set(COLOURS):
        bad(("alarms", "deadlines"), f"give a time to acknowledge for each of {', '.join(COLOURS)} (e.g. red: 15m)")
    else:
        for colour, value in given.items():
            try:
                deadlines[colour] = parse_duration(value)
                if deadlines[colour] <= 0:
                    raise ValueError("must be longer than 0s")
            except ValueError as exc:
                bad(("alarms", "deadlines", colour), str(exc))
    if problems:
        raise ConfigError(problems)
    return AlarmSpec(level_codes, tables["anomalies"], tables["legacy_anomalies"], deadlines)
