"""Fault injection: bad devices never delay a healthy one, and recover by themselves."""
from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest

from conftest import aio, free_port
from edge_agent.drivers.sim import serve
from edge_agent.drivers.sim.harness import Harness, site_from_yaml
from edge_agent.frame import Q_OK, Q_SENSOR_FAULT, Q_SUBSTATION_FAULT

pytestmark = pytest.mark.timeout(60)

FAULTS = {"silent": {}, "slow": {"delay": 0.4}, "exception": {"code": 4}, "close": {}, "garbage": {}}




def site_text(port: int, names: list[str], poll: str = "200ms") -> str:
    devs = "".join(f"""\
  - {{name: {name}, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: {u + 1}, poll: {poll},
     timeout: 200ms, retries: 1, points: [{{id: A{u}, sensor: "0001", address: "hr:0", type: float32}},
     {{id: B{u}, sensor: "0004", address: "hr:2"}}, {{id: C{u}, sensor: "1004", address: "co:0"}}]}}
""" for u, name in enumerate(names))
    return f'site: {{mine_code: "140211001234"}}\nbuffer: {{path: b.sqlite}}\ndevices:\n{devs}'


def max_gap(times: list[float]) -> float:
    return max(b - a for a, b in zip(times, times[1:]))


@aio
async def test_faulty_devices_do_not_delay_a_healthy_one_and_recover(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent.drivers.modbus")
    port = free_port()
    names = ["healthy", *FAULTS]
    site = site_from_yaml(site_text(port, names), tmp_path)
    async with await serve(site, seed=2, scenario="steady") as sim:
        async with Harness(site, BACKOFF_START=0.3, BACKOFF_CAP=0.6) as h:
            await h.wait(lambda: all(d.online for d in h.drivers), 5, "all online")
            for name, kw in FAULTS.items():
                sim.set_fault(name, name, **kw)
            start = len(h.arrivals[0])
            await asyncio.sleep(3.0)          # the fault phase lasts a fixed time: it is what we measure
            during = h.arrivals[0][start:]
            down = {names[i]: h.drivers[i].online for i in range(1, len(names))}
            last_bad = {names[i]: h.frames[i][-1] for i in range(1, len(names))}
            for name in FAULTS:
                sim.set_fault(name, None)
            await h.wait(lambda: all(d.online for d in h.drivers), 8, "all back online")
            marks = [h.count(i) for i in range(len(names))]
            await h.wait(lambda: all(h.count(i) >= marks[i] + 2 for i in range(len(names))), 5, "fresh frames")

    assert len(during) >= 13, during                      # 3 s at 200 ms
    assert max_gap(during) < 0.35, f"healthy device's max inter-frame gap {max_gap(during):.3f}s"
    assert all(q == Q_OK for f in h.frames[0] for q in f.quality)
    # what each fault looks like
    assert down == {"silent": False, "slow": False, "exception": True, "close": False, "garbage": False}
    for name in ("silent", "slow", "close", "garbage"):
        f = last_bad[name]
        assert list(f.quality) == [Q_SUBSTATION_FAULT] * 3 and all(math.isnan(v) for v in f.values)
    assert list(last_bad["exception"].quality) == [Q_SENSOR_FAULT] * 3
    c = {names[i]: h.drivers[i].counters for i in range(len(names))}
    assert c["exception"]["exceptions"] >= 2 and c["exception"]["errors"] == 0
    assert c["silent"]["timeouts"] >= 2 and c["slow"]["timeouts"] >= 2
    assert c["garbage"]["garbage"] >= 2 and c["close"]["garbage"] >= 2 and c["silent"]["garbage"] == 0
    assert c["healthy"]["errors"] == c["healthy"]["timeouts"] == c["healthy"]["skipped"] == 0
    # all recovered: fresh good frames
    for i in range(len(names)):
        assert list(h.frames[i][-1].quality) == [Q_OK] * 3, names[i]
    # one log line per state change, not per poll
    for name in ("silent", "slow", "close", "garbage"):
        lines = [r.getMessage() for r in caplog.records if f"device {name} " in r.getMessage()]
        assert len([m for m in lines if "unreachable" in m]) == 1, lines
        assert ("malformed frames" in lines[1]) == (name in ("close", "garbage")), lines
        assert len([m for m in lines if "online after" in m]) == 1, lines
    exc_lines = [r.getMessage() for r in caplog.records if "device exception " in r.getMessage()]
    assert len([m for m in exc_lines if "exception 4 (device failure)" in m]) == 1, exc_lines
    assert len([m for m in exc_lines if "answers all reads again" in m]) == 1, exc_lines


@aio
async def test_exception_2_splits_the_block_so_neighbours_keep_reading(tmp_path):
    port = free_port()
    pts = ", ".join(f'{{id: P{a}, sensor: "0004", address: "hr:{a}"}}' for a in (0, 1, 2, 3, 4, 6, 7))
    site = site_from_yaml(f"""\
site: {{mine_code: "140211001234"}}
buffer: {{path: b.sqlite}}
devices:
  - {{name: d, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: 1, poll: 100ms, points: [{pts}]}}
""", tmp_path)
    async with await serve(site, seed=1) as sim:
        sim.pin("d", {f"P{a}": 100 + a for a in (0, 1, 2, 3, 4, 6, 7)})
        sim.reject("d", "hr:3")     # a point the device refuses
        sim.reject("d", "hr:5")     # a hole in a bridged gap
        async with Harness(site) as h:
            await h.wait(lambda: h.count(0) >= 3, 5, "3 frames")
        drv = h.drivers[0]
    first, last = h.frames[0][0], h.frames[0][-1]
    for f in (first, last):                    # the very first poll already isolates the bad point
        assert list(f.quality) == [Q_OK, Q_OK, Q_OK, Q_SENSOR_FAULT, Q_OK, Q_OK, Q_OK]
        assert [f.values[k] for k in (0, 1, 2, 4, 5, 6)] == [100, 101, 102, 104, 106, 107]
    assert [str(b) for b in drv.plan.blocks] == ["hr:0-2 (3 registers)", "hr:3-3 (1 registers)",
                                                "hr:4-4 (1 registers)", "hr:6-7 (2 registers)"]
    assert drv.plan.blocks[1].rejected
    assert drv.counters["splits"] == 3
    # later polls use the remembered split: exactly one request per block
    per_poll = (drv.counters["requests"] - 1 - 2 - 2 - 2) / (drv.counters["polls"] - 1)
    assert per_poll == len(drv.plan)


@aio
async def test_overrunning_poll_skips_ticks_instead_of_stacking(tmp_path):
    port = free_port()
    site = site_from_yaml(site_text(port, ["d"], poll="100ms"), tmp_path)
    async with await serve(site, seed=1, scenario="steady") as sim:
        sim.set_fault("d", "slow", delay=0.15)          # answers within timeout, but slower than the period
        async with Harness(site) as h:
            await h.wait(lambda: h.count(0) >= 6, 10, "6 frames")
    drv = h.drivers[0]
    assert drv.online and drv.counters["skipped"] >= 4
    gaps = [b - a for a, b in zip(h.arrivals[0], h.arrivals[0][1:])]
    assert all(g > 0.25 for g in gaps), gaps    # two 150 ms reads per poll: no burst of stacked polls


@aio
async def test_an_agent_that_cannot_keep_up_sheds_a_share_of_polls_and_logs_it_once(tmp_path, caplog, monkeypatch):
    from edge_agent.drivers import pace
    from edge_agent.drivers.sim.prepared import PreparedSimulation
    monkeypatch.setattr(pace, "CALM", 0.5)
    caplog.set_level(logging.INFO, logger="edge_agent.drivers")
    port = free_port()
    site = site_from_yaml(site_text(port, ["a", "b"], poll="50ms"), tmp_path)
    sim = await PreparedSimulation(site).start()
    try:
        async with Harness(site) as h:
            await h.wait(lambda: all(d.online for d in h.drivers), 5, "both online")
            assert all(d.counters["shed"] == 0 for d in h.drivers)

            async def hog():            # a loop that runs 80 ms late: the agent is behind
                while True:
                    time.sleep(0.08)
                    await asyncio.sleep(0)
            hogging = asyncio.ensure_future(hog())
            await h.wait(lambda: all(d.counters["shed"] >= 3 for d in h.drivers), 10, "shed polls")
            hogging.cancel()
            await h.wait(lambda: any("keeps up again" in r.getMessage() for r in caplog.records), 10, "recovery")
            shed = [d.counters["shed"] for d in h.drivers]
            n = [h.count(i) for i in range(2)]
            await h.wait(lambda: all(h.count(i) >= n[i] + 5 for i in range(2)), 5, "polls after recovery")
            assert [d.counters["shed"] for d in h.drivers] == shed, "nothing is shed once the loop keeps up"
    finally:
        await sim.stop()
    for d in h.drivers:
        assert d.counters["skipped"] >= d.counters["shed"] and d.online
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_agent.drivers"]
    assert len([m for m in lines if "cannot keep up" in m]) == 1, lines
    assert len([m for m in lines if "keeps up again" in m]) == 1, lines
