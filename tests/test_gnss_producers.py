"""The GNSS producers on a real pipeline's view of a slope-gnss system (frames through the kernel)."""
from __future__ import annotations

from array import array

import orjson
import pytest

from edge_agent.drivers.sim.harness import site_from_yaml
from edge_agent.frame import Frame
from edge_agent.pipeline import Pipeline, Routes
from edge_agent.profile.gnsstypes import gnssbaseinfo, gnssrealtime

SITE = """
site: {mine_code: "140211001234", mine_name: 示例露天矿, gateway: gw-01, manufacturer: edge-agent}
buffer: {path: buffer.sqlite}
systems:
  - {name: gnss, kind: slope-gnss, system_code: "07"}
devices:
  - name: gnss-1
    system: gnss
    driver: modbus-tcp
    host: 127.0.0.1
    port: 1502
    points:
      - {id: G1X, sensor: "0081", address: hr:0, type: float32, location: 北帮, x: 112.55, y: 37.87, z: 1230.5,
         instrument: 边坡GNSS-1, role: x_disp}
      - {id: G1Y, sensor: "0082", address: hr:2, type: float32, instrument: 边坡GNSS-1, role: y_disp}
      - {id: G1Z, sensor: "0083", address: hr:4, type: float32, instrument: 边坡GNSS-1, role: z_disp}
"""


@pytest.fixture
def pipeline(tmp_path):
    site = site_from_yaml(SITE, tmp_path)
    return Pipeline(site, Routes(all=1), [])


@pytest.fixture
def view(pipeline):
    return pipeline.views[0]


def sample(pipeline, t, xyz):
    """One poll of the station through the pipeline's frame path (the kernel keeps value and time)."""
    pipeline.on_frame(Frame(0, t, t, array("i", [0, 1, 2]), array("d", xyz), array("B", [0, 0, 0])))


def test_baseinfo_names_each_station_by_its_first_points_code(view):
    (rec,) = orjson.loads(gnssbaseinfo(view, 0.0, None))
    assert rec["equip_no"] == view.points[0].code and rec["equip_no"][12:14] == "07"
    assert (rec["equip_name"], rec["location"], rec["longitude"], rec["altitude"]) == ("边坡GNSS-1", "北帮", 112.55,
                                                                                        1230.5)
    assert rec["manufacturer"] == "edge-agent"


def test_realtime_derives_speed_from_the_series_and_a_reload_carries_it_on(pipeline, view, tmp_path):
    assert gnssrealtime(view, 0.0, None) is None, "no sample yet: no record"
    t0 = 1_764_400_000.0
    for k in range(7):        # 1 mm per 10 min on x: 144 mm/d
        sample(pipeline, t0 + 600 * k, [k * 1.0, 0.0, -0.5 * k])
        recs = orjson.loads(gnssrealtime(view, t0 + 600 * k, None))
    assert recs[0]["x_speed"] == 144.0 and recs[0]["z_speed"] == -72.0 and recs[0]["x_acc_speed"] == 0.0
    assert recs[0]["monitor_time"] == view.encoder.times.text(t0 + 3600)
    assert (recs[0]["x_disp"], recs[0]["z_disp"]) == (6.0, -3.0)
    # the history lives in the view's memory: another view with that memory goes on without a gap
    again = Pipeline(site_from_yaml(SITE, tmp_path, "again.yaml"), Routes(all=1), [], previous=pipeline)
    again.views[0].memory = view.memory
    sample(again, t0 + 4200, [7.0, 0.0, -3.5])
    (rec,) = orjson.loads(gnssrealtime(again.views[0], t0 + 4200, None))
    assert rec["x_speed"] == 144.0


def test_a_reload_carries_the_stations_history_on(pipeline, tmp_path):
    t0 = 1_764_400_000.0
    for k in range(7):
        sample(pipeline, t0 + 600 * k, [k * 1.0, 0.0, 0.0])
        gnssrealtime(pipeline.views[0], t0 + 600 * k, None)
    again = Pipeline(site_from_yaml(SITE, tmp_path, "again.yaml"), Routes(all=1), [], previous=pipeline)
    sample(again, t0 + 4200, [7.0, 0.0, 0.0])
    (rec,) = orjson.loads(gnssrealtime(again.views[0], t0 + 4200, None))
    assert rec["x_speed"] == 144.0


def test_the_alarm_book_on_a_slope_system_makes_gnssalarm_and_clearalarm_and_no_ycbj(pipeline, view, tmp_path):
    """A level change of a station's point: the book (bound to the slope system's encoder) opens an alarm
    without YCBJ (the profile has none; it used to raise KeyError in the device task), and its `alarm` and
    `disposal` records become gnssalarm and clearalarm rows."""
    from edge_agent.alarms.book import AlarmBook
    from edge_agent.alarms.spec import alarm_spec
    from edge_agent.filtering.records import LevelChange
    from edge_agent.profile.gnsstypes import book_rows
    emitted = []
    book = AlarmBook(tmp_path / "alarms.sqlite", alarm_spec(view.profile), emit=emitted.extend)
    book.bind(pipeline.catalog, view.encoder, view.site)
    t = 1_764_400_000.0
    book.apply([LevelChange(point=0, level=4, previous=0, rule="rate", threshold=5.0, value=6.5, time=t)])
    (alarm_id,) = [a.id for a in book.open.values()]
    book.dispose(alarm_id, handler="李工", cause="降雨", action="撤人", handled_at=t + 30)
    assert [typ for typ, _, _ in emitted] == ["alarm", "disposal"], "no YCBJ for a slope-gnss point"
    rows = [r for typ, when, body in emitted for r in book_rows(view, typ, body, when)]
    assert [typ for typ, _ in rows] == ["gnssalarm", "clearalarm"]
    (alarm,), (clear,) = (orjson.loads(body) for _, body in rows)
    assert alarm["equip_no"] == view.points[0].code and alarm["alarm_level"] == 1
    assert (alarm["warning_parameters.velocity"], alarm["alarm_value.velocity"]) == (5.0, 6.5)
    assert clear["description"] == "降雨，撤人（李工）" and clear["handle_time"] == view.encoder.times.text(t + 30)
    assert book_rows(view, "escalation", emitted[0][2], t) == []


def test_check_names_a_station_without_its_z_member(tmp_path, capsys):
    from test_config import check
    broken = "\n".join(ln for ln in SITE.splitlines() if "G1Z" not in ln) + "\n"
    code, out = check(tmp_path, broken, capsys)
    assert code == 1
    (line,) = [ln for ln in out.splitlines() if "lacks member" in ln]
    assert "z_disp" in line and ".yaml:" in line and "instrument" in line, line


def test_check_passes_a_whole_station(tmp_path, capsys):
    from test_config import check
    code, out = check(tmp_path, SITE, capsys)
    assert code == 0, out


def test_a_restart_carries_the_stations_history_on_from_the_file_beside_the_buffer(pipeline, tmp_path):
    """A new pipeline with no previous one (a restart) reads the history the last one wrote: speed right
    away, not half a window later.  A corrupt file costs the history only, with one log line."""
    t0 = 1_764_400_000.0
    for k in range(7):
        sample(pipeline, t0 + 600 * k, [k * 1.0, 0.0, 0.0])
        gnssrealtime(pipeline.views[0], t0 + 600 * k, None)
    (saved,) = tmp_path.glob("*.gnss-07.json")
    restarted = Pipeline(site_from_yaml(SITE, tmp_path, "again.yaml"), Routes(all=1), [])
    sample(restarted, t0 + 4200, [7.0, 0.0, 0.0])
    (rec,) = orjson.loads(gnssrealtime(restarted.views[0], t0 + 4200, None))
    assert rec["x_speed"] == 144.0

    saved.write_bytes(b"\x00not json")
    fresh = Pipeline(site_from_yaml(SITE, tmp_path, "third.yaml"), Routes(all=1), [])
    sample(fresh, t0 + 4800, [8.0, 0.0, 0.0])
    (rec,) = orjson.loads(gnssrealtime(fresh.views[0], t0 + 4800, None))
    assert rec["x_speed"] is None, "no history: no speed yet"
    assert orjson.loads(saved.read_bytes()), "rewritten whole at that round"
