"""The simulated instruments of the water-hazard, tailings, slope GNSS and ground-pressure systems.

Each scenario (`water-rise`, `tailings-rain`, `slope-creep`, `roof-separation`) walks its
instruments' warnings blue -> red and back.  The shape is checked twice: on the model alone
(every simulated second, no sockets) and polled over real Modbus TCP by the agent's own driver,
on a walk sped up to 24 s.  Levels are computed here from each point's ladder, independently
of the agent's kernel.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest

from conftest import free_port
from edge_agent.codes import COLOURS
from edge_agent.drivers import sim
from edge_agent.drivers.sim import SCENARIOS
from edge_agent.drivers.sim.dynamics import DeviceModel
from edge_agent.drivers.sim.harness import Harness, site_from_yaml
from edge_agent.drivers.sim.system_scenarios import QUANTITIES, share, share_integral

pytestmark = pytest.mark.timeout(90)

LOCAL = {  # codes of the new systems that the default profile's table lacks (the systems' profiles have them)
    "0502": ("长观孔水位", "m", 0, 100), "0503": ("涌水量", "m3/h", 0, 2000), "0601": ("干滩长度", "m", 0, 1000),
    "0081": ("GNSS X位移", "mm", -10000, 10000), "0082": ("GNSS Y位移", "mm", -10000, 10000),
    "0083": ("GNSS Z位移", "mm", -10000, 10000), "1401": ("顶板离层", "mm", 0, 500),
    "1101": ("支架阻力", "MPa", 0, 100), "1301": ("锚杆应力", "kN", 0, 500), "1302": ("锚索应力", "kN", 0, 1000),
    "1201": ("钻孔应力", "MPa", 0, 60),
}
PROFILE = "extends: default\nname: systems-sim\nlocal_sensors:\n" + "".join(
    f"  '{c}': {{kind: analog, name: {n}, unit: {u}, range: [{lo}, {hi}], decimals: 3, send: false}}\n"
    for c, (n, u, lo, hi) in LOCAL.items())


def _point(pid: str, sensor: str, hr: int, extra: str = "") -> str:
    return f"      - {{id: {pid}, sensor: \"{sensor}\", address: hr:{hr}, type: float32{extra}}}\n"


def _levels(side: str, *values: float) -> str:
    return ", levels: {" + ", ".join(f"{c}: {{{side}: {v}}}" for c, v in zip(COLOURS, values)) + "}"


RATE = ", rules: [{kind: rate, per: 1h, window: 2s, levels: {blue: 2000, yellow: 4000, orange: 6000, red: 8000}}]"
DEVICES = {   # name: (unit, points); levels given on some points, defaults (QUANTITIES) on the others
    "water-1": (11, [("L1", "0502", _levels("high", 3.0, 3.5, 4.0, 4.5)), ("W1", "0010", ""),
                     ("Q1", "0503", ""), ("D1", "3003", "")]),
    "tailings-1": (12, [("K1", "0029", _levels("high", 12.0, 12.5, 13.0, 13.5)), ("J1", "0030", ""),
                        ("R1", "0031", ""), ("G1", "0601", _levels("low", 120, 100, 80, 70)), ("S1", "0021", "")]),
    "slope-1": (13, [("X1", "0081", RATE), ("Y1", "0082", ""), ("Z1", "0083", "")]),
    "roof-1": (14, [("A1", "1401", ""), ("A2", "1401", ""), ("Z1", "1101", ""), ("M1", "1301", ""),
                    ("M2", "1302", _levels("high", 150, 200, 250, 300)), ("Y1", "1201", "")]),
}
ONE_WALK = [0, 1, 2, 3, 4, 3, 2, 1, 0]
TWO_WALKS = ONE_WALK + ONE_WALK[1:]
SCENARIO_OF = {"water-1": "water-rise", "tailings-1": "tailings-rain", "slope-1": "slope-creep",
               "roof-1": "roof-separation"}


def site_text(port: int, poll: str = "200ms") -> str:
    out = ["site: {mine_code: \"140211001234\", mine_name: 示例矿, gateway: gw-t}\nprofile: sysprofile.yaml\n"
           "devices:\n"]
    for name, (unit, points) in DEVICES.items():
        out.append(f"  - name: {name}\n    driver: modbus-tcp\n    host: 127.0.0.1\n    port: {port}\n"
                   f"    unit: {unit}\n    poll: {poll}\n    timeout: 1s\n    points:\n")
        out += [_point(pid, code, 2 * i, extra) for i, (pid, code, extra) in enumerate(points)]
    return "".join(out)


@pytest.fixture
def site(tmp_path):
    (tmp_path / "sysprofile.yaml").write_text(PROFILE, encoding="utf-8")
    return site_from_yaml(site_text(free_port()), tmp_path)


def ladder_of(point) -> tuple[str, list[float]]:
    """(side, blue..red) from the point's own levels, else the simulator's documented default."""
    if point.levels is not None:
        got = [getattr(point.levels, c) for c in COLOURS]
        if got[0].high is not None:
            return "high", [g.high for g in got]
        return "low", [g.low for g in got]
    q = QUANTITIES[point.sensor]
    return q.side, [v * (1.6 if point.id == "A2" else 1.0) for v in q.ladder]


def level(side: str, ladder: list[float], v: float) -> int:
    return sum(1 for x in ladder if (v >= x if side == "high" else v <= x))


def walk(levels: list[int]) -> list[int]:
    return [v for i, v in enumerate(levels) if i == 0 or v != levels[i - 1]]


def model_series(site, name: str, scenario: str, seconds: int, step: float = 1.0, seed: int = 7):
    dev = next(d for d in site.devices if d.name == name)
    m = DeviceModel(dev, random.Random(seed), SCENARIOS[scenario])
    return dev, [(k * step, m.values(1000.0 + k * step)) for k in range(int(seconds / step))]


def test_the_walk_shape_and_its_integral():
    assert [share(t) for t in (0, 10, 40, 70, 80, 90, 120, 150, 179)] == [0, 0, 0.5, 1, 1, 1, 0.5, 0, 0]
    # the integral agrees with a fine sum, across cycles and for a scaled cycle
    for cycle in (180.0, 24.0):
        dt = cycle / 18000
        acc = sum(share(k * dt, cycle) * dt for k in range(int(2.5 * cycle / dt)))
        assert share_integral(2.5 * cycle, cycle) == pytest.approx(acc, rel=1e-3)
    assert share_integral(180.0) == pytest.approx(80.0)


@pytest.mark.parametrize("name", list(DEVICES))
def test_each_scenario_walks_its_instruments_through_every_level_and_back(site, name):
    scenario = SCENARIO_OF[name]
    dev, series = model_series(site, name, scenario, 360)
    for p in dev.points:
        if p.sensor in ("0010", "3003") or QUANTITIES.get(p.sensor, QUANTITIES["0503"]).side == "creep":
            continue
        side, ladder = ladder_of(p)
        levels = [level(side, ladder, v[p.id]) for _, v in series]
        assert walk(levels) == TWO_WALKS, (p.id, walk(levels))
        # each level is held for a while on the way up (not a flicker)
        up = [levels.count(k) for k in range(1, 4)]
        assert min(up) >= 2 * 8, (p.id, up)


def test_other_scenarios_leave_them_idle_below_blue(site):
    for name in DEVICES:
        dev, series = model_series(site, name, "normal", 200)
        for p in dev.points:
            q = QUANTITIES.get(p.sensor)
            if p.sensor in ("0010", "3003") or (q is not None and q.side == "creep"):
                continue
            side, ladder = ladder_of(p)
            assert {level(side, ladder, v[p.id]) for _, v in series} == {0}, p.id


def rate(series, pid: str, window: float) -> list[tuple[float, float]]:
    """(t, units per hour) over `window` seconds."""
    out = []
    for i, (t, v) in enumerate(series):
        j = next((j for j in range(i, -1, -1) if t - series[j][0] >= window), None)
        if j is not None:
            out.append((t, (v[pid] - series[j][1][pid]) * 3600 / (t - series[j][0])))
    return out


def test_slope_creep_speed_walks_its_rate_ladder_and_the_displacement_only_grows(site):
    dev, series = model_series(site, "slope-1", "slope-creep", 360, step=0.5)
    x = [v["X1"] for _, v in series]
    assert all(b >= a - 0.5 for a, b in zip(x, x[1:])), "x never moves back (beyond noise)"
    ladder = [2000, 4000, 6000, 8000]             # the point's own rate rule (mm/h)
    levels = [level("high", ladder, r) for _, r in rate(series, "X1", 2.0)]
    assert walk(levels) == TWO_WALKS, walk(levels)
    # y follows at 0.6 and z settles at -0.3 of the default ladder's speeds
    y, z = [v["Y1"] for _, v in series], [v["Z1"] for _, v in series]
    assert y[-1] - y[0] > 0 and z[-1] - z[0] < 0
    _, steady = model_series(site, "slope-1", "normal", 120)
    xs = [v["X1"] for _, v in steady]
    assert max(xs) - min(xs) < 1.0, "no creep outside the scenario"


def test_water_rise_drainage_counts_up_and_temperature_follows(site):
    dev, series = model_series(site, "water-1", "water-rise", 180)
    total = [v["D1"] for _, v in series]
    assert all(b >= a for a, b in zip(total, total[1:])) and total[-1] > total[0]
    temps = [v["W1"] for _, v in series]
    assert max(temps) - min(temps) > 1.2 and max(temps) < 21


def test_the_scenarios_are_reproducible(site):
    for name, scenario in SCENARIO_OF.items():
        assert model_series(site, name, scenario, 60, seed=3)[1] == model_series(site, name, scenario, 60, seed=3)[1]


def test_polled_over_modbus_tcp_the_scenarios_walk_blue_to_red_and_back(site):
    """Every system's device on one simulator port, polled by the real driver; one 24 s walk each."""
    cycle = 24.0
    for name, scenario in SCENARIO_OF.items():
        SCENARIOS[f"{scenario}-24s"] = dataclasses.replace(SCENARIOS[scenario], water_cycle=cycle)

    ports = [free_port() for _ in site.devices]
    polled = site.model_copy(update={"devices": tuple(d.model_copy(update={"port": p})
                                                       for d, p in zip(site.devices, ports))})

    async def run() -> list:
        # one simulator per device (each its own scenario and port), all at once
        servers = [await sim.serve(polled.model_copy(update={"devices": (d,)}), port=p,
                                   scenario=f"{SCENARIO_OF[d.name]}-24s") for d, p in zip(polled.devices, ports)]
        try:
            async with Harness(polled) as h:
                await asyncio.sleep(cycle * 0.95)        # one walk's worth of polls (the driver's own period)
                return [list(f) for f in h.frames]
        finally:
            for s in servers:
                await s.stop()

    every = asyncio.run(run())
    for i, (name, scenario) in enumerate(SCENARIO_OF.items()):
        frames = every[i]
        dev = polled.devices[i]
        assert len(frames) > 50, (name, len(frames))
        assert all(not any(f.quality) for f in frames), name
        ids = [p.id for p in dev.points]
        for j, p in enumerate(dev.points):
            q = QUANTITIES.get(p.sensor)
            if p.sensor in ("0010", "3003") or (q is not None and q.side == "creep"):
                continue
            side, ladder = ladder_of(p)
            levels = [level(side, ladder, float(f.values[j])) for f in frames]
            assert walk(levels) == ONE_WALK, (name, ids[j], walk(levels))
        if name == "slope-1":       # the creep's speed, from the polled displacement, walks its rate ladder
            series = [(f.mono, {"X1": float(f.values[0])}) for f in frames]
            levels = [level("high", [2000, 4000, 6000, 8000], r) for _, r in rate(series, "X1", 2.0)]
            assert walk(levels) == ONE_WALK, walk(levels)


@pytest.mark.parametrize("command", ["demo", "simulate"])
def test_an_unknown_scenario_is_one_line_naming_the_known_ones(command, tmp_path):
    import os
    import subprocess
    from conftest import ROOT, edge_agent_cmd
    args = ["--workdir", str(tmp_path / "d")] if command == "demo" else ["-c", str(ROOT / "config" / "demo.yaml")]
    for lang, text in (("C", "unknown scenario nope; known: normal"), ("zh_CN.UTF-8", "未知的模拟场景 nope")):
        env = {**os.environ, "LANG": lang, "LANGUAGE": "", "LC_ALL": ""}
        proc = subprocess.run(edge_agent_cmd(command, *args, "--scenario", "nope"), capture_output=True,
                              text=True, timeout=60, env=env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = [ln for ln in proc.stderr.splitlines() if "scenario" in ln and "error" in ln]
        assert text in line and "slope-creep" in line and "roof-separation" in line
