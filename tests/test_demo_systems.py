"""The demo's devices of the other monitoring systems (tests/fixtures/demo_system_devices.yaml, to go at the end of
config/demo.yaml's devices once its `systems:` block is there): they load under their systems' profiles, the
simulated mine serves all of them on one port beside today's devices, and the real agent writes each system's
files into its own folder."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port
from e2e import agent_running
from edge_agent.agent import Agent
from edge_agent.config import load_site
from edge_agent.drivers import sim
from edge_agent.drivers.sim.harness import Harness
from gnss_check import read_file

pytestmark = pytest.mark.timeout(120)

DEVICES = Path(__file__).resolve().parent / "fixtures" / "demo_system_devices.yaml"
SYSTEMS = [
    {"name": "aqjk", "kind": "safety-monitoring", "system_code": "01"},
    {"name": "shfz", "kind": "water-hazard", "system_code": "05", "realtime_every": "1s"},
    {"name": "ky", "kind": "ground-pressure", "system_code": "06", "realtime_every": "1s"},
    {"name": "gnss", "kind": "demo-slope-gnss", "system_code": "07",
     "realtime_every": "1s"},
    {"name": "wkk", "kind": "tailings", "system_code": "08"},
]


def demo_with_systems(tmp_path: Path, port: int) -> Path:
    data = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"))
    data["systems"] = SYSTEMS
    for dev in data["devices"]:
        dev["system"] = "aqjk"
    data["devices"] += yaml.safe_load(DEVICES.read_text(encoding="utf-8"))
    for dev in data["devices"]:
        dev["port"] = port
    data["buffer"]["path"] = str(tmp_path / "buffer.sqlite")
    data["forward"] = {"files": {"dir": str(tmp_path / "outbox")}}
    data["report"] = {"realtime_every": "1s", "stats_window": "1m"}
    data.pop("console", None)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_the_demo_serves_every_system_and_the_agent_writes_each_into_its_folder(tmp_path):
    port = free_port()
    site = load_site(demo_with_systems(tmp_path, port))
    names = [d.name for d in site.devices]
    assert names[-4:] == ["water-station-1", "tailings-1", "slope-gnss-1", "ground-pressure-1"]
    assert [s.name for s in site.resolved_systems] == ["aqjk", "shfz", "ky", "gnss", "wkk"]

    async def poll():
        server = await sim.serve(site, port=port, scenario="steady")
        try:
            async with Harness(site) as h:
                await h.wait(lambda: all(h.count(i) >= 3 for i in range(len(names))), 20, "three polls each")
                return [f[-1] for f in h.frames]
        finally:
            await server.stop()

    last = asyncio.run(poll())
    for name, frame in zip(names, last):
        assert not any(frame.quality), name       # every point answered over Modbus TCP (one port, units 1-7)

    outbox = tmp_path / "outbox"
    # realtime types (tailings: its definitions; its realtime is 10 min at the shortest)
    want = {"shfz": "CGKCDSS", "wkk": "KSWDY", "ky": "LCSS", "gnss": "gnssrealtime"}

    async def run():
        server = await sim.serve(site, port=port, scenario="steady")
        agent = Agent(site)
        async with agent_running(agent, server=server) as task:
            deadline = time.monotonic() + 40
            while not all(list((outbox / d).glob(f"*_{t}_*")) for d, t in want.items()):
                assert time.monotonic() < deadline and not task.done(), \
                    {d: sorted(p.name for p in (outbox / d).glob("*")) for d in want if (outbox / d).exists()}
                await asyncio.sleep(0.2)

    asyncio.run(run())
    gnss = sorted((outbox / "gnss").glob("*.json"))
    assert gnss and all(read_file(p).records for p in gnss)
    for d in ("shfz", "wkk", "ky"):
        assert not list((outbox / d).glob("*.json")), d
