"""The GNSS producers against a system view shaped as CONTRACT-systems.md §5 describes it.

The view is assembled here from real parts (a loaded site, its catalogue, kernel-like arrays)
until the `systems:` seam's SystemView lands; then this test builds the real one.
"""
from __future__ import annotations

import math
from array import array
from types import SimpleNamespace

import orjson
import pytest
import yaml

from edge_agent.drivers.sim.harness import site_from_yaml
from edge_agent.points import Catalog
from edge_agent.profile.gnsstypes import gnssbaseinfo, gnssrealtime

from test_gnssjson import ROOT

LOCAL = "extends: default\nlocal_sensors:\n" + "".join(
    f"  '008{k}': {{kind: analog, name: GNSS {a}位移, unit: mm, range: [-10000, 10000], decimals: 2, send: false}}\n"
    for k, a in ((1, "X"), (2, "Y"), (3, "Z")))
SITE = """
site: {mine_code: "140211001234", mine_name: 示例露天矿, gateway: gw-01, manufacturer: edge-agent}
profile: local.yaml
devices:
  - name: gnss-1
    driver: modbus-tcp
    host: 127.0.0.1
    port: 1502
    points:
      - {id: G1X, sensor: "0081", address: hr:0, type: float32, location: 北帮, x: 112.55, y: 37.87, z: 1230.5}
      - {id: G1Y, sensor: "0082", address: hr:2, type: float32}
      - {id: G1Z, sensor: "0083", address: hr:4, type: float32}
"""


@pytest.fixture
def view(tmp_path):
    (tmp_path / "local.yaml").write_text(LOCAL, encoding="utf-8")
    site = site_from_yaml(SITE, tmp_path)
    catalog = Catalog(site, site.loaded_profile)
    raw = yaml.safe_load((ROOT / "config" / "profiles" / "slope-gnss.yaml").read_text(encoding="utf-8"))
    members = dict(zip(("x_disp", "y_disp", "z_disp"), catalog.points))
    n = len(catalog.points)
    return SimpleNamespace(
        profile=SimpleNamespace(raw=raw, files=raw["files"], records=raw["records"]),
        kernel=SimpleNamespace(value=array("d", [math.nan] * n), time=array("d", [math.nan] * n)),
        instruments={"边坡GNSS-1": members}, memory={},
        encoder=SimpleNamespace(site=site, times=SimpleNamespace(text=lambda t: f"T{t:.0f}")))


def sample(view, t, xyz):
    for i, v in enumerate(xyz):
        view.kernel.value[i], view.kernel.time[i] = v, t


def test_baseinfo_names_each_station_by_its_first_points_code(view):
    (rec,) = orjson.loads(gnssbaseinfo(view, 0.0, None))
    assert rec["equip_no"] == view.instruments["边坡GNSS-1"]["x_disp"].code
    assert (rec["equip_name"], rec["location"], rec["longitude"], rec["altitude"]) == ("边坡GNSS-1", "北帮", 112.55,
                                                                                        1230.5)
    assert rec["manufacturer"] == "edge-agent"


def test_realtime_derives_speed_from_the_series_and_a_new_view_with_the_same_memory_carries_on(view):
    assert gnssrealtime(view, 0.0, None) is None, "no sample yet: no record"
    t0 = 1_764_400_000.0
    for k in range(7):        # 1 mm per 10 min on x: 144 mm/d
        sample(view, t0 + 600 * k, (k * 1.0, 0.0, -0.5 * k))
        recs = orjson.loads(gnssrealtime(view, t0 + 600 * k, None))
    assert recs[0]["x_speed"] == 144.0 and recs[0]["z_speed"] == -72.0 and recs[0]["x_acc_speed"] == 0.0
    assert recs[0]["monitor_time"] == f"T{t0 + 3600:.0f}"
    # a reload: a new view (new catalogue objects) with the memory carried over goes on without a gap
    again = SimpleNamespace(**{**vars(view), "memory": view.memory})
    sample(again, t0 + 4200, (7.0, 0.0, -3.5))
    (rec,) = orjson.loads(gnssrealtime(again, t0 + 4200, None))
    assert rec["x_speed"] == 144.0
    # without it, the history starts afresh
    fresh = SimpleNamespace(**{**vars(view), "memory": {}})
    (rec,) = orjson.loads(gnssrealtime(fresh, t0 + 4200, None))
    assert rec["x_speed"] is None
