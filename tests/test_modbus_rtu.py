"""Modbus RTU over a real pty pair (socat), and RTU framing over TCP (a serial server)."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import aio, free_port
from edge_agent.drivers.sim import serve
from edge_agent.drivers.sim.harness import Harness, site_from_yaml
from edge_agent.frame import Q_OK, Q_SUBSTATION_FAULT

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("socat") is None, reason="socat makes the pty pair")]




@pytest.fixture
def pty_pair(tmp_path):
    """Two linked pseudo-terminals: what one end writes, the other reads (like an RS-485 adapter pair).

    (ptys here refuse parity E/O with EINVAL, so the bus runs 8N1.)
    """
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("socat did not create the pty pair")
        time.sleep(0.01)
    yield str(a), str(b)
    proc.send_signal(signal.SIGTERM)
    proc.wait(5)


def bus_site(tmp_path, serial: str):
    return site_from_yaml(f"""\
site: {{mine_code: "140211001234"}}
buffer: {{path: b.sqlite}}
devices:
  - {{name: sub-1, driver: modbus-rtu, serial: {serial}, baudrate: 19200, unit: 1, poll: 200ms,
     timeout: 200ms, points: [{{id: A1, sensor: "0001", address: "hr:0", type: float32, order: CDAB}},
     {{id: A2, sensor: "0004", address: "ir:3", type: int32, order: BADC}}, {{id: A3, sensor: "1004", address: "di:2"}}]}}
  - {{name: sub-2, driver: modbus-rtu, serial: {serial}, baudrate: 19200, unit: 2, poll: 200ms,
     timeout: 200ms, points: [{{id: B1, sensor: "0001", address: "hr:10", type: float64, order: DCBA}},
     {{id: B2, sensor: "0012", address: "hr:14", type: int16, scale: 0.1}}]}}
""", tmp_path)


@aio
async def test_two_units_on_one_rtu_bus_read_exactly_and_share_the_port(tmp_path, pty_pair):
    agent_end, device_end = pty_pair
    site = bus_site(tmp_path, agent_end)
    async with await serve(site, serial=device_end, seed=1) as sim:
        sim.pin("sub-1", {"A1": 0.75, "A2": -70000, "A3": 1})
        sim.pin("sub-2", {"B1": 1.125, "B2": 20.9})
        async with Harness(site, BACKOFF_START=0.3, BACKOFF_CAP=0.6) as h:
            await h.wait(lambda: min(h.count(0), h.count(1)) >= 3, 10, "3 frames per unit")
            assert h.drivers[0].link is h.drivers[1].link, "one serial client per bus"
            f0, f1 = h.frames[0][-1], h.frames[1][-1]
            assert list(f0.values) == [0.75, -70000.0, 1.0] and list(f0.quality) == [Q_OK] * 3
            assert f1.values[0] == 1.125 and f1.values[1] == pytest.approx(20.9) and list(f1.quality) == [Q_OK] * 2

            # a silent unit costs its own polls and delays only its bus neighbour, which keeps reading
            sim.set_fault("sub-2", "silent")
            await h.wait(lambda: not h.drivers[1].online, 5, "sub-2 offline")
            n = h.count(0)
            await h.wait(lambda: h.count(0) >= n + 5, 5, "sub-1 keeps reading")
            assert all(list(f.quality) == [Q_OK] * 3 for f in h.frames[0][n:])
            assert list(h.frames[1][-1].quality) == [Q_SUBSTATION_FAULT] * 2
            sim.set_fault("sub-2", None)
            await h.wait(lambda: h.drivers[1].online, 5, "sub-2 back")
            m = h.count(1)
            await h.wait(lambda: h.count(1) >= m + 1, 5, "sub-2 fresh frame")
            assert list(h.frames[1][-1].quality) == [Q_OK] * 2


@aio
async def test_rtu_over_tcp_serial_server(tmp_path):
    port = free_port()
    site = site_from_yaml(f"""\
site: {{mine_code: "140211001234"}}
buffer: {{path: b.sqlite}}
devices:
  - {{name: far-1, driver: modbus-rtu-tcp, host: 127.0.0.1, port: {port}, unit: 5, poll: 100ms,
     points: [{{id: F1, sensor: "0001", address: "hr:0", type: uint32, order: DCBA}}, {{id: F2, sensor: "1004", address: "co:9"}}]}}
  - {{name: far-2, driver: modbus-rtu-tcp, host: 127.0.0.1, port: {port}, unit: 6, poll: 100ms,
     points: [{{id: G1, sensor: "0001", address: "ir:4", type: float32}}]}}
""", tmp_path)
    async with await serve(site, seed=1) as sim:
        assert "RTU over TCP" in sim.listening[0]
        sim.pin("far-1", {"F1": 4000000000, "F2": 1})
        sim.pin("far-2", {"G1": -0.5})
        async with Harness(site) as h:
            await h.wait(lambda: min(h.count(0), h.count(1)) >= 3, 10, "3 frames per unit")
            assert h.drivers[0].link is h.drivers[1].link
    assert list(h.frames[0][-1].values) == [4000000000.0, 1.0]
    assert list(h.frames[1][-1].values) == [-0.5]


@pytest.fixture
def two_buses(tmp_path):
    """Two independent pty pairs: two RS-485 buses."""
    made = []
    for bus in ("1", "2"):
        a, b = tmp_path / f"bus{bus}A", tmp_path / f"bus{bus}B"
        made.append((subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), str(a), str(b)))
    deadline = time.monotonic() + 5
    while not all(os.path.exists(p) for _, a, b in made for p in (a, b)):
        assert time.monotonic() < deadline, "socat did not create the pty pairs"
        time.sleep(0.01)
    yield [(a, b) for _, a, b in made]
    for proc, _, _ in made:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)


@aio
async def test_a_slow_unit_delays_only_its_own_bus(tmp_path, two_buses):
    (a1, d1), (a2, d2) = two_buses
    text = 'site: {mine_code: "140211001234"}\nbuffer: {path: b.sqlite}\ndevices:\n'
    for name, serial, unit in (("slow", a1, 1), ("neighbour", a1, 2), ("other-bus", a2, 1)):
        text += (f"  - {{name: {name}, driver: modbus-rtu, serial: {serial}, unit: {unit}, poll: 200ms, "
                 f"timeout: 150ms, points: [{{id: P{name.replace('-', '')}, sensor: '0004', address: 'hr:0'}}]}}\n")
    site = site_from_yaml(text, tmp_path)
    # one simulation per bus: each serves its own pty end
    bus1 = site.model_copy(update={"devices": site.devices[:2]})
    bus2 = site.model_copy(update={"devices": site.devices[2:]})
    async with await serve(bus1, serial=d1, seed=1, scenario="steady") as sim1, \
            await serve(bus2, serial=d2, seed=2, scenario="steady"):
        async with Harness(site, BACKOFF_START=0.3, BACKOFF_CAP=0.6) as h:
            await h.wait(lambda: all(d.online for d in h.drivers), 5, "all online")
            sim1.set_fault("slow", "slow", delay=0.3)       # answers after 2x its timeout
            start = [len(h.arrivals[i]) for i in range(3)]
            await asyncio.sleep(2.5)                        # the measured fault phase
            during = [h.arrivals[i][start[i]:] for i in range(3)]
            sim1.set_fault("slow", None)
            await h.wait(lambda: h.drivers[0].online, 5, "slow unit back")
    gap = lambda ts: max(b - a for a, b in zip(ts, ts[1:]))
    assert gap(during[2]) < 0.35, f"the other bus was delayed: max gap {gap(during[2]):.3f}s"
    assert len(during[1]) >= 5, "the bus neighbour keeps reading (slower)"
    assert all(f.quality[0] == Q_OK for f in h.frames[2])
