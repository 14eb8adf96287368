"""Golden files of every system's record types (byte-exact), read back by an independent parser.

Fixed input: tests/golden/systems/site.yaml and the values below; one definitions round and one
snapshot at T0.  Regenerate after an intended change: EDGE_AGENT_REGOLD=1 pytest this file.
"""
from __future__ import annotations

import datetime as dt
import os
from array import array
from pathlib import Path

from types import SimpleNamespace

import orjson

from edge_agent.alarms.alarm import YcbjRecord
from edge_agent.codes import LEVELS
from edge_agent.profile.shapes import anomaly_record

from edge_agent.config import load_site
from edge_agent.frame import Frame
from edge_agent.pipeline import Pipeline, Routes
from edge_agent.profile.formats import format_of
from systems_reader import parse_text

HERE = Path(__file__).resolve().parent / "golden" / "systems"
T0 = 1795917620.0          # 2026-11-29 10:00:20 Asia/Shanghai
VALUES = {"gas-1": [0.42], "borehole-3": [3.97, 18.5, 126.4, 52310], "roof-1": [8.25, 36.4, 152.5, 12.5, 31.0],     # in the order of the device's points
          "pond-1": [8.4, 12.75, 151.2, 1.05, 2.5, 3.2], "nc-1": [12.0], "belt-1": [3.15]}


def render_all() -> dict[str, bytes]:
    site = load_site(HERE / "site.yaml")
    pending: list = []
    p = Pipeline(site, Routes(all=1), pending)
    p.definitions(T0)
    for di, dev in enumerate(site.devices):
        pts = p.catalog.by_device[di]
        vals = VALUES[dev.name]
        p.on_frame(Frame(di, 0.0, T0, array("i", [rp.index for rp in pts]), array("d", vals),
                         array("B", [0] * len(pts))))
    p.snapshot(T0)
    # the alarm book's records of a point go out as its profile's anomaly type (CGKCDYC, ZKYC, LCYC, PSLCDYC)
    by_id = {(site.devices[rp.device].name, rp.id): rp for rp in p.catalog.points}
    for dev, pid, value, threshold, colour in (("borehole-3", "00000301", 3.97, 3.0, "blue"),
                                               ("roof-1", "00001201", 8.25, 8.0, "red"),
                                               ("roof-1", "00001401", 12.5, 10.0, "orange"),
                                               ("borehole-3", "00000304", 52310, 50000, "yellow")):
        rp = by_id[(dev, pid)]
        view = p.view_of_device[rp.device]
        code = view.encoder.level_code(LEVELS.index(colour))
        rec = YcbjRecord(point=rp.index, anomaly="009", start=T0 - 60, end=None, value=value, max=value,
                         max_time=T0 - 60, min=value, min_time=T0 - 60, avg=value, level_code=code)
        pending.append(anomaly_record(view, rec, T0, SimpleNamespace(threshold=threshold, side="high")))
    systems = {s.name: s for s in site.resolved_systems}
    out = {}
    for typ, *_mask, t, body in pending:
        name, _, code = typ.partition("/")
        s = systems[name]
        when = dt.datetime.fromtimestamp(int(t), p.views[s.index].encoder.tz)
        fname, data = format_of(s.profile).render_file(s.profile, s.site, code, when, orjson.loads(body))
        out[f"{s.dir}/{fname}"] = data
    return out


def test_every_system_type_is_byte_identical_to_its_golden_file():
    got = render_all()
    expected_dir = HERE / "expected"
    if os.environ.get("EDGE_AGENT_REGOLD"):
        for rel, data in got.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_bytes(data)
    expected = {str(q.relative_to(expected_dir)): q.read_bytes() for q in expected_dir.rglob("*.txt")}
    assert sorted(got) == sorted(expected)
    for rel in got:
        assert got[rel] == expected[rel], rel


def read(rel_glob: str, **seps):
    files = sorted((HERE / "expected").glob(rel_glob))
    assert len(files) == 1, (rel_glob, files)
    return parse_text(files[0].read_bytes(), **seps)


def test_the_independent_reader_finds_what_the_site_says():
    # water hazards: the borehole's level and temperature in one CGKCDSS record (SYSTEMS.md field order)
    head, recs = read("shfz/140211001234_CGKCDSS_*.txt")
    assert head == ["140211001234", "示例矿山", "2026-11-29 10:00:20"]
    assert recs == [["14021100123405MN050200000301", "0", "3.97", "18.5", "2026-11-29 10:00:20"]]
    _, recs = read("shfz/140211001234_CGKCDDY_*.txt")
    assert recs == [["14021100123405MN050200000301", "0502", "3号长观孔", "奥灰", "12.5", "280", "320", "0.13",
                     "4501.25", "2203.5", "120.0", "2026-11-29 10:00:20"]]
    _, recs = read("shfz/140211001234_YSLCDSS_*.txt")
    assert recs == [["14021100123405MN050300000303", "0", "126.4", "2026-11-29 10:00:20"]]
    _, recs = read("shfz/140211001234_PSLCDSS_*.txt")
    assert recs == [["14021100123405LJ300300000304", "52310", "0", "2026-11-29 10:00:20"]]
    _, recs = read("shfz/140211001234_PSLCDDY_*.txt")
    assert recs[0][1:5] == ["中央泵房", "全矿", "3003", "m3"]
    _, recs = read("shfz/140211001234_PSLCDYC_*.txt")
    assert recs[0][4] == "52310m3>阈值（黄）50000m3" and recs[0][6] == "3"
    # ground pressure: one record per point of support resistance and bolt stress
    _, recs = read("ky/140211001234_ZJSS_*.txt")
    assert recs == [["14021100123406MN110100001101", "1101", "1201工作面50号支架", "36.4", "0", "2026-11-29 10:00:20"]]
    _, recs = read("ky/140211001234_MGSS_*.txt")
    assert [r[3] for r in recs] == ["152.5"]
    for t in ("ZJZL", "MGYL"):
        _, recs = read(f"ky/140211001234_{t}_*.txt")
        assert len(recs) == 1 and recs[0][3] in ("MPa", "kN")
    # ground pressure: shallow and deep separation in one LCSS record
    _, recs = read("ky/140211001234_LCSS_*.txt")
    assert recs == [["14021100123406MN140100001401", "1401", "1201回风巷80m", "12.5", "31.0", "0",
                     "2026-11-29 10:00:20"]]
    _, recs = read("ky/140211001234_ZKSS_*.txt")
    assert [r[3] for r in recs] == ["8.25"]
    # tailings: level, dry beach length and slope; three warning values in the definition
    _, recs = read("wkk/140211001234_KSWSS_*.txt")
    assert recs == [["14021100123408MN002900000001", "2026-11-29 10:00:20", "8.4"]]
    _, recs = read("wkk/140211001234_GTXSS_*.txt")
    assert recs == [["14021100123408MN060100000003", "2026-11-29 10:00:20", "151.2", "1.05", "0"]]
    _, recs = read("wkk/140211001234_KSWDY_*.txt")
    assert recs[0][1:4] == ["水库水位", "2025-06-01", "库区"] and recs[0][11:14] == ["8.0", "9.0", "9.5"]
    _, recs = read("wkk/140211001234_BWYDY_*.txt")
    assert recs[0][0] == "14021100123408MN002100000006" and recs[0][8:11] == ["112.5512", "37.8723", "1230.5"]
    # non-coal: NCDSS with `^` records and `]]]` at the end, the CDSS body
    _, recs = read("nc/140211001234_NCDSS_*.txt", rt="^", ft="]]]")
    assert recs == [["14021100123409MN000400000001", "一氧化碳", "运输巷", "12", "ppm", "0", "2026-11-29 10:00:20"]]
    # the equipment system sends the belt's local code under its own system code; safety monitoring has none
    _, recs = read("sbjk/140211001234_CDSS_*.txt")
    assert [r[0] for r in recs] == ["14021100123403MN006000000001"]
    # alarms: the profile's anomaly type, the description with value, colour and threshold, the level number
    _, recs = read("shfz/140211001234_CGKCDYC_*.txt")
    assert recs == [["14021100123405MN050200000301", "0502", "3号长观孔", "009", "3.97m>阈值（蓝）3.0m",
                     "2026-11-29 09:59:20", "4", "", "", "", "2026-11-29 10:00:20"]]
    _, recs = read("ky/140211001234_LCYC_*.txt")
    assert recs[0][3:5] == ["009", "12.5mm>阈值（橙）10.0mm"] and recs[0][8] == "2"
    _, recs = read("ky/140211001234_ZKYC_*.txt")
    assert recs[0][4] == "8.25MPa>阈值（红）8.0MPa" and recs[0][8] == "1"
    _, recs = read("aqjk/140211001234_CDSS_*.txt")
    assert [r[0][12:14] for r in recs] == ["01"]


def test_a_system_in_warning_snapshots_at_its_denser_cadence():
    """Tailings at 24 h: a point at a level brings the next snapshot within the profile's 30 min."""
    text = (HERE / "site.yaml").read_text("utf-8").replace("realtime_every: 10m", "realtime_every: 24h")
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "site.yaml"
        path.write_text(text, "utf-8")
        site = load_site(path)
    pending: list = []
    p = Pipeline(site, Routes(all=1), pending)
    wkk = next(v for v in p.views if v.system.name == "wkk")
    t = 1795900000.0
    p.snapshots_due(t)                       # schedules every system; wkk next at the next whole day
    assert wkk.next_snapshot - t > 3600
    pending.clear()
    di = next(i for i, dev in enumerate(site.devices) if dev.name == "pond-1")
    pts = p.catalog.by_device[di]
    vals = [9.2] + VALUES["pond-1"][1:]      # pond level 9.2 > orange 9.0
    p.on_frame(Frame(di, 1.0, t + 1, array("i", [rp.index for rp in pts]), array("d", vals),
                     array("B", [0] * len(pts))))
    p.snapshots_due(t + 2)
    assert wkk.next_snapshot - (t + 2) <= 1800
    p.snapshots_due(wkk.next_snapshot)
    assert any(typ == "wkk/KSWSS" for typ, *_ in pending)
