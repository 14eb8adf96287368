"""The old ladder's alarms as level changes, from the kernel's YCBJ events (rule "legacy").

Transitional: the `levels` branch's kernel reports these changes itself
(`kernel.take_level_changes()`, `kernel.level`); until it is on main, the
agent's alarm book derives them here from the events the kernel raises today
(009/010 pre-warning, 001 alarm, 002 cut-off), with the profile's
`legacy_levels` mapping (default warn: yellow, alarm: orange, cutoff: red).
"""
from __future__ import annotations

import math

from edge_agent.alarms.spec import LEVELS
from edge_agent.filtering.records import LevelChange

DEFAULT_MAPPING = {"warn": "yellow", "alarm": "orange", "cutoff": "red"}
RUNG = {"009": "warn", "010": "warn", "001": "alarm", "002": "cutoff"}
# (anomaly, side) -> (the Point's threshold group, entry attribute, clear attribute)
THRESHOLDS = {("001", "high"): ("alarm", "high", "high_clear"), ("001", "low"): ("alarm", "low", "low_clear"),
              ("002", "high"): ("cutoff", "high", "restore"), ("002", "low"): ("cutoff", "low", "low_restore"),
              ("009", "high"): ("warn", "high", "high"), ("010", "low"): ("warn", "low", "low")}


class LegacyLevels:
    """Per point: which of the old ladder's states are on, and the level they make."""

    def __init__(self, catalog, mapping: dict | None = None):
        self.catalog = catalog
        mapping = {**DEFAULT_MAPPING, **(mapping or {})}
        self.rank = {rung: LEVELS.index(colour) for rung, colour in mapping.items()}
        self.active: dict[int, set[tuple[str, str]]] = {}
        self.levels: dict[int, int] = {}

    def level(self, point: int) -> int:
        return self.levels.get(point, 0)

    def _threshold(self, point: int, anomaly: str, side: str, begin: bool) -> float:
        where = THRESHOLDS.get((anomaly, side))
        if where is None:
            return math.nan
        group = getattr(self.catalog.points[point].cfg, where[0])
        v = getattr(group, where[1] if begin else where[2], None)
        if v is None:
            v = getattr(group, where[1], None)
        return math.nan if v is None else float(v)

    def changes(self, events) -> list:
        out = []
        for e in events:
            rung = RUNG.get(e.anomaly)
            if rung is None or e.point is None or e.point < 0:
                continue
            on = self.active.setdefault(e.point, set())
            (on.add if e.begin else on.discard)((e.anomaly, e.side))
            level = max((self.rank[RUNG[a]] for a, _ in on), default=0)
            previous = self.levels.get(e.point, 0)
            if level == previous:
                continue
            self.levels[e.point] = level
            t = e.start if e.begin else e.end
            out.append(LevelChange(point=e.point, level=level, previous=previous, rule="legacy",
                                   threshold=self._threshold(e.point, e.anomaly, e.side, e.begin),
                                   value=e.value, time=t))
        return out
