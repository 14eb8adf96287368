"""Equipment templates: a belt or a bin in the site file expands into ordinary points; mistakes are one line each."""
from __future__ import annotations

import pytest

from conftest import ROOT
from edge_agent.config import load_site
from edge_agent.equipment import TEMPLATES
from edge_agent.errors import ConfigError
from edge_agent.points import Catalog
from edge_agent.profile.tables import load_profile

pytestmark = pytest.mark.timeout(30)

HEAD = """\
site: {mine_code: "140211001234", gateway: gw-t}
buffer: {path: b.sqlite}
devices:
  - {name: belt-1, driver: modbus-tcp, host: 127.0.0.1, port: 1502, unit: 2,
     points: [{id: X1, sensor: "0003", address: "hr:40"}]}
  - {name: bin-1, driver: modbus-tcp, host: 127.0.0.1, port: 1502, unit: 3}
equipment:
"""

BELT = """\
  - name: mb
    template: belt
    device: belt-1
    signals:
      running: "co:0"
      belt_speed: {address: "hr:0", type: float32}
      current: {address: "hr:2", scale: 0.1, alarm: {high: 180, high_clear: 170}}
      smoke: "co:1"
"""


def load(tmp_path, text: str):
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return load_site(path)


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    return [str(p) for p in err.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_demo_belt_and_bin_expand_to_the_points_they_replaced():
    site = load_site(ROOT / "config" / "demo.yaml")
    belt, bin_ = site.devices[1], site.devices[2]
    got = {p.id: (p.sensor, p.address) for p in belt.points}
    # the ids, sensors and addresses the hand-written demo had, plus the new signals
    assert got["B1"] == ("1004", "co:0") and got["B2"] == ("0060", "hr:0")
    assert got["B3"] == ("0017", "hr:2") and got["B4"] == ("0026", "hr:3")
    assert set(got) == {f"B{i}" for i in range(1, 13)}
    assert {p.id: p.sensor for p in bin_.points} == {"C1": "0008", "C2": "1004", "C3": "1007", "C4": "0051",
                                                    "C5": "1004"}
    b4 = next(p for p in belt.points if p.id == "B4")
    assert (b4.alarm.high, b4.alarm.high_clear, b4.deadband, b4.scale) == (75, 70, 0.5, 0.1)
    assert [e.name for e in site.equipment] == ["main-belt", "main-bin"]
    assert site.equipment[1].params()["block_for"] == 30.0 and site.equipment[0].params()["slip_for"] == 5.0


def test_expansion_fills_ids_kinds_units_and_defaults(tmp_path):
    site = load(tmp_path, HEAD + BELT)
    cat = Catalog(site, load_profile("default"))
    pts = {rp.id: rp for rp in cat.by_device[0]}
    assert list(pts) == ["X1", "mb.1", "mb.2", "mb.3", "mb.7"]
    run, speed, cur, smoke = (pts[f"mb.{i}"] for i in (1, 2, 3, 7))
    assert (run.kind, run.type, speed.unit, speed.deadband, cur.cfg.alarm.high) == ("switch", "bool", "m/s", 0.05, 180)
    assert smoke.kind == "switch" and smoke.cfg.alarm.high == 1
    assert speed.code == "14021100123401MN0060mb.2"
    eq = site.equipment[0]
    assert eq.point_id("pileup") == "mb.11"
    assert eq.params() == {**{k: d for k, (d, _) in TEMPLATES["belt"].params.items()}}


def test_overrides_and_alternative_sensor(tmp_path):
    text = HEAD + """\
  - name: bin
    template: bin
    device: bin-1
    ids: K
    location: 主煤仓
    signals:
      level: {address: "hr:0", sensor: "0050", range: [0, 20], alarm: {high: 18}, location: 仓顶}
      feeder: "di:0"
    rules: {block_for: 2m, min_drop: 0.5}
"""
    site = load(tmp_path, text)
    pts = {p.id: p for p in site.devices[1].points}
    assert pts["K1"].sensor == "0050" and pts["K1"].range == (0, 20) and pts["K1"].alarm.high == 18
    assert pts["K1"].location == "仓顶" and pts["K2"].location == "主煤仓"
    assert site.equipment[0].params()["block_for"] == 120.0


@pytest.mark.parametrize("item,needle,expect", [
    ("  - {name: b, template: conveyor, device: belt-1, signals: {running: 'co:0'}}",
     "template: conveyor", "equipment[b].template: must be 'belt' or 'bin'"),
    ("  - {name: b, template: belt, device: belt-1, signals: {running: 'co:0', speed: 'hr:0'}}",
     "speed:", "unknown signal 'speed' for a belt; known: running, belt_speed"),
    ("  - {name: b, template: belt, device: belt-1, signals: {current: 'hr:0'}}",
     "current:", "a belt needs signal 'running'"),
    ("  - {name: b, template: belt, device: belt-1, signals: {running: 'co:0'}, rules: {slip_ratio: 1.5}}",
     "slip_ratio", "slip_ratio: must be between 0 and 1"),
    ("  - {name: b, template: belt, device: belt-1, signals: {running: 'co:0'}, rules: {slip_for: soon}}",
     "slip_for", "slip_for: 'soon' is not a duration"),
    ("  - {name: b, template: belt, device: belt-1, signals: {running: 'co:0'}, rules: {slipratio: 0.8}}",
     "slipratio", "unknown rule parameter 'slipratio' for a belt"),
    ("  - {name: b, template: belt, device: belt-9, signals: {running: 'co:0'}}",
     "belt-9", "equipment[b].device: no device named 'belt-9'; name one of: belt-1, bin-1"),
    ("  - {name: b, template: belt, device: belt-1, ids: X, signals: {running: 'co:0'}}",
     "ids: X", "equipment[b].signals.running: point id 'X1' is already a point of device belt-1; set `ids:`"),
    ("  - {name: b, template: bin, device: bin-1, signals: {level: {address: 'hr:0', sensor: '0001'}}}",
     "sensor: '0001'", "signal level: sensor must be one of 0008, 0050"),
    ("  - {name: b, template: bin, device: bin-1, signals: {level: {address: 'hr:0', id: L}}}",
     "id: L", "signal level: id come from the template; remove them"),
    ("  - {name: b, template: bin, device: bin-1, signals: {level: {type: float32}}}",
     "type: float32", "signal level: give its `address`"),
    ("  - {name: b, template: bin, device: bin-1, signals: {level: {address: 'hr:0', type: floaty}}}",
     "floaty", "devices[bin-1].points[b.1].type: must be 'int16'"),
    ("  - {name: b, template: bin, device: bin-1, signals: {level: 'xx:0'}}",
     "xx:0", "'xx:0' is not a Modbus address"),
    ("  - {name: this-is-a-rather-long-equipment-name-indeed, template: bin, device: bin-1,\n"
     "     signals: {level: 'hr:0'}}", "long-equipment", "set `ids:` to a short prefix"),
])
def test_mistakes_are_one_line_with_the_line_number(tmp_path, item, needle, expect):
    text = HEAD + item + "\n"
    got = problems(tmp_path, text)
    assert len(got) == 1, got
    assert expect in got[0], got[0]
    assert got[0].startswith(f"{tmp_path / 'site.yaml'}:{line_of(text, needle)}:"), (got[0], line_of(text, needle))


def test_two_equipment_on_one_device_need_different_prefixes_and_names(tmp_path):
    other = BELT.replace("name: mb", "name: other-belt").replace("    device", "    ids: mb.\n    device")
    got = problems(tmp_path, HEAD + BELT + other)
    assert any("point id 'mb.1' is already a point of device belt-1" in p for p in got), got
    text = HEAD + BELT + BELT.replace("    device", "    ids: M\n    device")
    got = problems(tmp_path, text)
    second = len((HEAD + BELT).splitlines()) + 1
    assert got == [f"{tmp_path / 'site.yaml'}:{second}: equipment[mb].name: "
                   "equipment name 'mb' is used twice"], got


def test_default_ids_longer_than_receivers_take_are_refused_by_check(tmp_path):
    """`<name>.<slot>` of a long name is more than the 8 characters of an original point number: `check`
    refuses it (`run` takes it, and logs that such codes exist)."""
    text = HEAD + BELT.replace("name: mb", "name: main-belt")
    load(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_site(tmp_path / "site.yaml", receiver_limits=True)
    got = [str(p) for p in err.value.problems]
    assert len(got) == 4, got          # running, belt_speed, current, smoke
    assert all("original number 'main-belt." in p and "receivers take at most 8" in p and "set `ids:`" in p
               for p in got), got


def test_check_command_prints_one_line_per_equipment_mistake(tmp_path):
    import subprocess
    from conftest import edge_agent_cmd
    text = HEAD + BELT.replace("device: belt-1", "device: belt-2").replace("running:", "runing:")
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    out = subprocess.run(edge_agent_cmd("check", "-c", str(path)), capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, out
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert "Traceback" not in out.stderr
    assert len(lines) == 2, lines
    lines.sort(key=lambda ln: int(ln.split("site.yaml:")[1].split(":")[0]))
    assert f"site.yaml:{line_of(text, 'signals:')}: equipment[mb].signals: unknown signal 'runing'" in lines[1]
    assert "a belt needs signal 'running'" in lines[1]
    assert lines[0].endswith(f"site.yaml:{line_of(text, 'belt-2')}: equipment[mb].device: no device named "
                             "'belt-2'; name one of: belt-1, bin-1"), lines


def test_opcua_node_ids_are_addresses_too(tmp_path):
    text = """\
site: {mine_code: "140211001234", gateway: gw-t}
buffer: {path: b.sqlite}
devices:
  - {name: belt-2, driver: opcua, url: "opc.tcp://127.0.0.1:4840"}
equipment:
  - name: belt
    template: belt
    device: belt-2
    ids: P
    signals: {running: "ns=2;s=Belt2.Run", belt_speed: "ns=2;s=Belt2.Speed"}
    rules: {nominal_speed: 4.0}
"""
    site = load(tmp_path, text)
    assert [(p.id, p.address) for p in site.devices[0].points] == [("P1", "ns=2;s=Belt2.Run"),
                                                                   ("P2", "ns=2;s=Belt2.Speed")]
    assert site.equipment[0].params()["nominal_speed"] == 4.0
