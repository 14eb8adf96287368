"""Helpers for the alarm-book tests: a small site, a book on a real SQLite file, level changes, clocks."""
from __future__ import annotations

import math
from pathlib import Path

import orjson

from edge_agent.alarms.book import AlarmBook
from edge_agent.filtering.records import LevelChange
from edge_agent.alarms.spec import LEVELS, alarm_spec
from edge_agent.drivers.sim.harness import site_from_yaml
from edge_agent.points import Catalog
from edge_agent.profile import Encoder, load_profile

SITE = """
site: {mine_code: "140211001234", mine_name: 示例煤矿, gateway: gw-t}
buffer: {path: buffer.sqlite}
metrics: {enabled: false}
forward: {files: {dir: outbox}}
devices:
  - name: borehole-3
    driver: modbus-tcp
    host: 127.0.0.1
    port: 1502
    location: 水文孔
    points:
      - {id: "00000301", sensor: "0001", address: "hr:0", type: float32, location: 3号钻孔}
      - {id: "00000302", sensor: "0001", address: "hr:2", type: float32, location: 3号钻孔下}
"""

LEVEL = {name: i for i, name in enumerate(LEVELS)}


class Clock:
    """Wall and monotonic time the test moves by hand (a wall step moves only the wall)."""

    def __init__(self, wall: float = 1_764_556_800.0):
        self.wall_t, self.mono_t = wall, 1000.0

    def wall(self) -> float:
        return self.wall_t

    def mono(self) -> float:
        return self.mono_t

    def advance(self, s: float) -> None:
        self.wall_t += s
        self.mono_t += s

    def step_wall(self, s: float) -> None:
        self.wall_t += s


class Bench:
    """A site, its catalogue and encoder, and books on one SQLite file; `records` is what they emitted."""

    def __init__(self, tmp_path: Path, clock: Clock | None = None, deadlines: dict | None = None):
        self.tmp = tmp_path
        self.site = site_from_yaml(SITE, tmp_path)
        self.profile = load_profile(self.site.profile)
        self.catalog = Catalog(self.site, self.profile)
        self.encoder = Encoder(self.site, self.catalog, self.profile)
        self.spec = alarm_spec(self.profile)
        self.clock = clock or Clock()
        self.deadlines = deadlines
        self.records: list[tuple[str, float, bytes]] = []
        self.path = tmp_path / "alarms.sqlite"
        self.book = self.open()

    def open(self) -> AlarmBook:
        book = AlarmBook(self.path, self.spec, deadlines=self.deadlines, emit=self.records.extend,
                         clock=self.clock.wall, mono=self.clock.mono)
        book.bind(self.catalog, self.encoder, self.site)
        book.resend()
        return book

    def change(self, point: int, level: str, previous: str, *, rule: str = "level", threshold: float = math.nan,
               value: float = math.nan, dt: float = 0.0) -> LevelChange:
        self.clock.advance(dt)
        return LevelChange(point=point, level=LEVEL[level], previous=LEVEL[previous], rule=rule,
                           threshold=threshold, value=value, time=self.clock.wall())

    def take(self) -> list[tuple[str, dict]]:
        """(type, record) of each record emitted since the last call."""
        out = []
        for typ, _, body in self.records:
            for rec in orjson.loads(body):
                out.append((typ, rec))
        self.records.clear()
        return out


def kinds(records: list[tuple[str, dict]]) -> list[str]:
    """'YCBJ 009 begin', 'alarm open', ... for each record."""
    out = []
    for typ, rec in records:
        if typ == "YCBJ":
            edge = "end" if rec["end"] else "begin"
            filled = " disposal" if rec["cause"] else ""
            out.append(f"YCBJ {rec['anomaly']} {edge}{filled}")
        else:
            out.append(f"{typ} {rec['event']}")
    return out
