"""The simulated mine: plausible dynamics, and `edge-agent simulate` over real sockets."""
from __future__ import annotations

import signal
import subprocess

import pytest
from pymodbus.client import ModbusTcpClient

from conftest import ROOT, edge_agent_cmd, free_port, wait_port
from edge_agent.config import load_site
from edge_agent.drivers.sim import SCENARIOS, Simulation
from edge_agent.drivers.sim.dynamics import DeviceModel

pytestmark = pytest.mark.timeout(60)

DEMO = load_site(ROOT / "config" / "demo.yaml")
GAS, BELT, BIN = DEMO.devices


def run(device, seconds: int, seed: int, scenario: str = "normal") -> list[dict[str, float]]:
    """The model's values once per simulated second (no sockets, no waiting)."""
    import random
    m = DeviceModel(device, random.Random(seed), SCENARIOS[scenario])
    return [m.values(1000.0 + t) for t in range(seconds)]


def test_methane_idles_low_and_makes_alarm_excursions_sometimes_into_cutoff():
    alarm, cutoff = GAS.points[0].alarm.high, GAS.points[0].cutoff.high
    peaks_over_cutoff = 0
    for seed in range(8):
        ch4 = [v["T1"] for v in run(GAS, 600, seed)]
        assert sorted(ch4)[len(ch4) // 2] < 0.5, "median stays in the idle band"
        assert min(ch4) >= 0.0
        above = [t for t, v in enumerate(ch4) if v >= alarm]
        assert above and above[0] < 150, "first excursion within the first 2.5 minutes"
        # excursions come every 1-2 minutes and last ~20 s (ramps included), not forever
        runs, start = [], above[0]
        for a, b in zip(above, above[1:] + [None]):
            if b != a + 1:
                runs.append(a - start + 1)
                start = b
        assert 4 <= len(runs) <= 10, runs
        assert all(3 <= r <= 20 for r in runs), runs
        peaks_over_cutoff += any(v >= cutoff for v in ch4)
    assert 0 < peaks_over_cutoff < 8 * 8, "sometimes, not never"


def test_gas_plausible_ranges_and_noise():
    vals = run(GAS, 300, 1, "steady")
    for pid, lo, hi in (("T1", 0.15, 0.6), ("T2", 0, 30), ("T3", 20.0, 21.5), ("T4", 18, 30), ("T5", 1.0, 3.5)):
        series = [v[pid] for v in vals]
        assert lo <= min(series) and max(series) <= hi, (pid, min(series), max(series))
        assert len(set(series)) > 100, f"{pid} has noise"


def test_belt_runs_stops_and_bin_level_follows_the_feeder():
    belt = run(BELT, 1800, 2)
    stopped = [v for v in belt if v["B1"] == 0.0]
    running = [v for v in belt if v["B1"] == 1.0]
    assert stopped and len(running) > len(stopped)
    assert all(3.0 < v["B2"] < 3.3 and 90 < v["B3"] < 150 for v in running[:200])
    assert all(v["B3"] == 0.0 for v in stopped)
    assert all(40 < v["B4"] < 60 for v in belt)
    bin_ = run(BIN, 1200, 3)
    level = [v["C1"] for v in bin_]
    feeder = [v["C2"] for v in bin_]
    assert 4 < min(level) and max(level) < 26
    assert feeder.count(1.0) and feeder.count(0.0), "the feeder starts and stops"
    for a, b, f in zip(level, level[1:], feeder[1:]):
        assert (b < a + 0.2) if f else (b > a - 0.2), "level falls with the feeder on, rises with it off"


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown scenario 'nope'; known: normal"):
        Simulation(DEMO, scenario="nope")
    clash = DEMO.model_copy(update={"devices": (GAS, GAS.model_copy(update={"name": "gas-2"}))})
    with pytest.raises(ValueError, match="gas-substation-1 and gas-2 both use unit 1"):
        Simulation(clash)


def test_busy_port_is_one_clear_error():
    import asyncio
    import socket
    from edge_agent.drivers.sim import serve
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(RuntimeError, match=f"cannot serve on 127.0.0.1:{s.getsockname()[1]}: the port is in use"):
            asyncio.run(serve(DEMO, port=s.getsockname()[1]))
    with pytest.raises(ValueError, match="no Modbus devices"):
        Simulation(DEMO.model_copy(update={"devices": ()}))


def test_simulate_command_serves_the_demo_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen(edge_agent_cmd("simulate", "-c", str(ROOT / "config" / "demo.yaml"), "--port", str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port} units 1=gas-substation-1, 2=belt-1, 3=bin-1" in line, line
        wait_port(port)
        client = ModbusTcpClient("127.0.0.1", port=port)
        assert client.connect()
        a = client.read_holding_registers(0, count=5, device_id=1)
        coil = client.read_coils(0, count=1, device_id=2)
        ir = client.read_input_registers(0, count=1, device_id=1)
        client.close()
        assert not a.isError() and not coil.isError() and not ir.isError()
        assert 180 <= ir.registers[0] <= 350          # wind speed x100
        bad = ModbusTcpClient("127.0.0.1", port=port)
        bad.connect()
        rr = bad.read_input_registers(0, count=1, device_id=2)   # the belt has no input registers
        bad.close()
        assert rr.isError() and rr.exception_code == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
