"""Golden fixtures of the slope GNSS JSON files: fixed inputs -> gnssbaseinfo, gnssrealtime, gnssalarm, clearalarm.

    python tests/golden/make_gnss_golden.py        # rewrite tests/golden/gnss/expected/ (review the diff!)

tests/test_gnss_golden.py runs `generate()` into a temporary folder, compares every byte
with tests/golden/gnss/expected/ and reads the files back with an independent parser
(tests/gnss_check.py).  Inputs are fixed here: two stations, the slope-gnss profile,
Asia/Shanghai time, a creeping displacement series through gnssmotion, and the alarm
book driven by level changes of one station's point (open, raised, disposed of).
"""
from __future__ import annotations

import datetime as dt
import math
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import orjson

from edge_agent.alarms.book import AlarmBook
from edge_agent.alarms.spec import alarm_spec
from edge_agent.filtering.records import LevelChange
from edge_agent.gnssmotion import Motion
from edge_agent.profile import load_profile
from edge_agent.profile import load_profile
from edge_agent.profile.gnssjson import render, write
from edge_agent.profile.gnsstypes import (GnssSettings, Station, alarm_record, baseinfo_record, clear_record,
                                          realtime_record)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 29, 10, 0, 0, tzinfo=TZ).timestamp()
SITE = SimpleNamespace(site=SimpleNamespace(mine_code="140211001234", mine_name="示例露天矿", system_code="07",
                                            system_name="边坡监测系统", system_model="GNSS-DEMO",
                                            manufacturer="edge-agent", gateway="gw-01"))
STATIONS = [
    Station("14021100123407MN008100000X01", "边坡GNSS-1", "北帮+1230平台", "edge-agent", "GNSS-DEMO",
            112.5512345678, 37.8723456789, 1230.456),
    Station("14021100123407MN008100000X02", "边坡GNSS-2", "北帮+1260平台", "edge-agent", "GNSS-DEMO",
            112.5523456789, 37.8734567891, 1260.0),
]
DEVICE_SITE = """
site: {mine_code: "140211001234", mine_name: 示例露天矿, gateway: gw-01}
profile: local.yaml
devices:
  - name: gnss-1
    driver: modbus-tcp
    host: 127.0.0.1
    port: 1502
    points:
      - {id: "00000X01", sensor: "0081", address: hr:0, type: float32, location: 北帮+1230平台}
"""
LOCAL = "extends: default\nlocal_sensors:\n  '0081': {kind: analog, name: GNSS X位移, unit: mm, range: [-10000, 10000], " \
        "decimals: 2, send: false}\n"


def profile():
    """The built-in slope-gnss profile, loaded and checked as a site's system loads it."""
    return load_profile("slope-gnss")


def text(t: float) -> str:
    return dt.datetime.fromtimestamp(t, TZ).strftime("%Y-%m-%d %H:%M:%S")


def realtime_series(g: GnssSettings) -> list[list[dict]]:
    """Snapshots every 10 minutes for 2 h: station 1 creeps ever faster, station 2 stands still."""
    motions = [Motion(g.window, g.per) for _ in STATIONS]
    snaps = []
    for k in range(13):
        t = NOW - 7200 + 600 * k
        h = (t - (NOW - 7200)) / 3600
        disps = [(2.0 * h + 0.5 * h * h, -1.2 * h, -0.4 * h * h), (0.31, -0.12, 0.05)]
        snap = []
        for s, m, d in zip(STATIONS, motions, disps):
            speed, acc = m.update(t, d)
            snap.append(realtime_record(s, t, d, speed, acc, g, text))
        snaps.append(snap)
    return snaps


def alarm_records(tmp: Path, g: GnssSettings) -> tuple[list[dict], list[dict]]:
    """(gnssalarm records, clearalarm records) from a real alarm book: station 1's x displacement
    opens blue (level rule, 10 mm), goes yellow, then its rate rule's red; disposed of; then it closes."""
    from edge_agent.drivers.sim.harness import site_from_yaml
    from edge_agent.points import Catalog
    from edge_agent.profile import Encoder
    (tmp / "local.yaml").write_text(LOCAL, encoding="utf-8")
    site = site_from_yaml(DEVICE_SITE, tmp)
    prof = site.loaded_profile
    catalog = Catalog(site, prof)
    clock = {"t": NOW - 1800}
    emitted: list[tuple[str, float, bytes]] = []
    book = AlarmBook(tmp / "alarms.sqlite", alarm_spec(prof), emit=emitted.extend, clock=lambda: clock["t"],
                     mono=lambda: clock["t"] - NOW + 5000)
    book.bind(catalog, Encoder(site, catalog, prof, tz=TZ), site)

    def change(level, previous, rule, threshold, value, dt_s):
        clock["t"] += dt_s
        book.apply([LevelChange(point=0, level=level, previous=previous, rule=rule, threshold=threshold,
                                value=value, time=clock["t"])])

    change(1, 0, "level", 10.0, 10.37, 0)
    change(2, 1, "level", 20.0, 20.912, 600)
    change(4, 2, "rate", 5.0, 6.25, 300)
    alarm_id = book.open["point:gnss-1/00000X01"].id
    clock["t"] += 120
    book.dispose(alarm_id, handler="李工", cause="北帮降雨后坡体蠕变", action="撤出坡下人员设备，加密观测",
                 handled_at=clock["t"] - 60)
    change(0, 4, "rate", 5.0, 0.8, 900)
    equip = {"point:gnss-1/00000X01": STATIONS[0].equip_no}
    alarms, clears = [], []
    for typ, t, body in emitted:
        for rec in orjson.loads(body):
            subject = f"point:{rec.get('device')}/{rec.get('point')}"
            if typ == "alarm" and rec["event"] in ("open", "update"):
                alarms.append(alarm_record(rec, equip[subject], t, g, text))
            elif typ == "disposal":
                clears.append(clear_record(rec, equip[subject], text, g))
    return alarms, clears


def generate(out: Path) -> list[Path]:
    """Write every golden file into `out`; return their paths."""
    prof = profile()
    g = GnssSettings.of(prof)
    snaps = realtime_series(g)
    with tempfile.TemporaryDirectory() as tmp:
        alarms, clears = alarm_records(Path(tmp), g)
    files = [
        ("gnssbaseinfo", NOW, [baseinfo_record(s, g) for s in STATIONS], 1),
        ("gnssrealtime", NOW - 7200, snaps[0], 2),        # no history yet: speed and acceleration null
        ("gnssrealtime", NOW - 5400, snaps[3], 3),        # speed, no acceleration yet
        ("gnssrealtime", NOW, snaps[-1], 10004),          # both; the serial is seq % 10000
        ("gnssalarm", NOW - 1800, alarms[:1], 20),
        ("gnssalarm", NOW - 900, alarms[1:], 21),         # raised twice: yellow (level), red (rate)
        ("clearalarm", NOW - 780, clears, 22),
    ]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for typ, t, records, seq in files:
        name, data = render(prof, SITE, typ, dt.datetime.fromtimestamp(t, TZ), records, seq=seq)
        paths.append(write(out, name, data)[0])
    return paths


if __name__ == "__main__":
    target = HERE / "gnss" / "expected"
    shutil.rmtree(target, ignore_errors=True)
    for p in generate(target):
        print(p.relative_to(ROOT))
    sys.exit(0)
