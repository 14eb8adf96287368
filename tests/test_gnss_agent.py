"""The slope GNSS system through the real agent: a simulated station over Modbus TCP (slope-creep, one
walk in 24 s), the kernel, the buffer and the `files.gnss` sink writing JSON files into outbox/gnss/,
read back by the independent parser (gnss_check.py)."""
from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from conftest import free_port
from e2e import agent_running
from edge_agent.agent import Agent
from edge_agent.drivers import sim
from edge_agent.drivers.sim import SCENARIOS
from edge_agent.drivers.sim.harness import site_from_yaml
from gnss_check import read_file

pytestmark = pytest.mark.timeout(120)

PROFILE = """extends: slope-gnss
name: test-slope
gnss: {derive: {window: 4s, per: 1h}}
"""
SITE = """
site: {{mine_code: "140211001234", mine_name: 示例露天矿, gateway: gw-t, manufacturer: edge-agent}}
buffer: {{path: buffer.sqlite}}
metrics: {{enabled: false}}
report: {{realtime_every: 1s, stats_window: 1m}}
forward: {{files: {{dir: outbox}}}}
systems:
  - {{name: gnss, kind: test-slope.yaml, system_code: "07", realtime_every: 1s}}
devices:
  - name: slope-1
    system: gnss
    driver: modbus-tcp
    host: 127.0.0.1
    port: {port}
    unit: 13
    poll: 250ms
    points:
      - {{id: G1X, sensor: "0081", address: hr:0, type: float32, location: 北帮+1230平台, x: 112.55, y: 37.87,
         z: 1230.5, instrument: 边坡GNSS-1, role: x_disp,
         rules: [{{kind: rate, per: 1h, window: 2s, levels: {{blue: 2000, yellow: 4000, orange: 6000, red: 8000}}}}]}}
      - {{id: G1Y, sensor: "0082", address: hr:2, type: float32, instrument: 边坡GNSS-1, role: y_disp}}
      - {{id: G1Z, sensor: "0083", address: hr:4, type: float32, instrument: 边坡GNSS-1, role: z_disp}}
"""


def test_a_creeping_station_makes_gnss_json_files_with_derived_speed(tmp_path):
    SCENARIOS["slope-creep-24s"] = dataclasses.replace(SCENARIOS["slope-creep"], water_cycle=24.0)
    (tmp_path / "test-slope.yaml").write_text(PROFILE, encoding="utf-8")
    port = free_port()
    site = site_from_yaml(SITE.format(port=port), tmp_path)
    outbox = tmp_path / "outbox" / "gnss"

    async def scenario():
        server = await sim.serve(site, port=port, scenario="slope-creep-24s")
        agent = Agent(site)
        async with agent_running(agent, server=server) as run:
            deadline = time.monotonic() + 60
            # a whole walk: speeds up past red and down again (70/180 .. 150/180 of the cycle)
            while len(list(outbox.glob("*_gnssrealtime_*.json"))) < 22:
                assert time.monotonic() < deadline and not run.done(), "realtime files stopped coming"
                await asyncio.sleep(0.2)

    asyncio.run(scenario())
    files = sorted(outbox.glob("*.json"), key=lambda p: read_file(p).time)
    parsed = [read_file(p) for p in files]          # every file passes the independent parser
    assert {p.type for p in parsed} >= {"gnssbaseinfo", "gnssrealtime"}
    (base,) = [r for p in parsed if p.type == "gnssbaseinfo" for r in p.records]
    assert base["equip_name"] == "边坡GNSS-1" and base["equip_no"][12:14] == "07"
    realtime = [r for p in parsed if p.type == "gnssrealtime" for r in p.records]
    assert all(r["equip_no"] == base["equip_no"] for r in realtime)
    x = [r["x_disp"] for r in realtime]
    assert x[-1] > x[0] + 5, "the station crept (mm)"
    speeds = [r["x_speed"] for r in realtime if r["x_speed"] is not None]
    assert speeds and max(speeds) > 8000, "the derived speed reached the red rate (mm/h)"
    assert [r for r in realtime if r["x_acc_speed"] is not None], "acceleration once two windows are there"
    # the rate rule's alarm, from the alarm book: raised blue (4) .. red (1) on the way up, one alarm throughout
    alarms = [r for p in parsed if p.type == "gnssalarm" for r in p.records]
    levels = [r["alarm_level"] for r in alarms]
    assert levels[:4] == [4, 3, 2, 1], levels
    assert len({r["alarm_time"] for r in alarms}) == 1 and alarms[0]["equip_no"] == base["equip_no"]
    assert all(r["warning_parameters"]["velocity"] in (2000, 4000, 6000, 8000) for r in alarms[:4])
    assert not [p for p in outbox.iterdir() if p.name.startswith(".")], "no temp file left"
