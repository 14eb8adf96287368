"""The demo's devices of the other monitoring systems (config/demo-systems.yaml): they load under their systems'
profiles, the simulated mine serves all of them on one port beside today's devices, and the real agent writes each
system's files into its own folder."""
from __future__ import annotations

import asyncio
import time
import pytest

from conftest import free_port
from e2e import agent_running
from edge_agent.agent import Agent
from edge_agent.demo import demo_site
from edge_agent.drivers import sim
from edge_agent.drivers.sim.harness import Harness
from gnss_check import read_file

pytestmark = pytest.mark.timeout(120)

def test_the_demo_serves_every_system_and_the_agent_writes_each_into_its_folder(tmp_path):
    port = free_port()
    site = demo_site(tmp_path / "demo", None, port)
    names = [d.name for d in site.devices]
    assert names[-4:] == ["water-station-1", "tailings-1", "slope-gnss-1", "ground-pressure-1"]
    assert {s.name: s.code for s in site.resolved_systems if s.name in ("shfz", "ky", "wkk", "gnss")} == \
        {"shfz": "05", "ky": "06", "wkk": "08", "gnss": "07"}
    assert {d.name: d.system for d in site.devices[-4:]} == {"water-station-1": "shfz", "tailings-1": "wkk",
                                                             "slope-gnss-1": "gnss", "ground-pressure-1": "ky"}

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

    outbox = tmp_path / "demo" / "outbox"
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
