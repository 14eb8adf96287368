"""What the simulated devices measure: plausible values by sensor code.

`DeviceModel(device, rng, scenario).values(t)` returns the engineering value
of every point of one device at monotonic time `t` (seconds; the model's
clock starts at its first call).  State that
several points share lives on the device: a belt's running flag drives its
speed, motor current and bearing temperature; a coal bin's feeder drives its
level (the feeder starts when the bin is nearly full and stops when it is
low).  Methane (0001) idles at 0.2-0.5 %CH4 with noise and, every `gas_every`
seconds on average, makes a ~20 s excursion through its alarm level and
sometimes past its cut-off.  A water level (0007 sump, 0502 borehole) idles below its lowest
`levels:` entry; in the `borehole-rise` (and `water-rise`) scenario it walks through every level
and back (`WaterLevel`).  The instruments of the water-hazard, tailings, slope GNSS and
ground-pressure systems are `system_scenarios.py`'s, with their scenarios (`water-rise`,
`tailings-rain`, `slope-creep`, `roof-separation`).

Scenarios tune the models; add one by adding an entry to `SCENARIOS`.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from edge_agent.model import Device, Point
from edge_agent.drivers.sim.equipment_scenarios import FAULTS as EQUIPMENT_FAULTS, equipment_model
from edge_agent.drivers.sim.system_scenarios import WALKS as SYSTEM_WALKS, systems_model


@dataclass(frozen=True)
class Scenario:
    gas_every: float = 90.0        # mean seconds between methane excursions
    gas_first: float = 20.0        # the first excursion comes early, so a short demo shows one
    belt_stop_every: float = 600.0  # mean seconds between belt stops
    belt_stop_for: float = 30.0
    equipment: str = ""            # a scripted belt/bin fault (equipment_scenarios.FAULTS)
    answer_delay: float = 0.0      # s every device waits before each answer (server.py's "slow" fault)
    water_walk: bool = False       # water levels walk blue -> red and back (WaterLevel)
    water_cycle: float = 180.0     # seconds per walk (of every walk: system_scenarios.py too)
    systems: str = ""              # which system instruments walk (system_scenarios.WALKS)


SCENARIOS: dict[str, Scenario] = {
    "normal": Scenario(),
    "gas-alarm": Scenario(gas_every=25.0, gas_first=3.0),   # frequent excursions, for tests and demos
    "steady": Scenario(gas_every=math.inf, gas_first=math.inf, belt_stop_every=math.inf),
    # steady values, each answer 100 ms late: polls slower than a short period, on any machine
    "slow-answers": Scenario(gas_every=math.inf, gas_first=math.inf, belt_stop_every=math.inf, answer_delay=0.1),
    "borehole-rise": Scenario(gas_every=math.inf, gas_first=math.inf, belt_stop_every=math.inf, water_walk=True),
}
SCENARIOS.update({name: Scenario(equipment=name) for name in EQUIPMENT_FAULTS})
# the other monitoring systems' instruments (system_scenarios.py); water-rise walks the borehole level too
_QUIET = dict(gas_every=math.inf, gas_first=math.inf, belt_stop_every=math.inf)
SCENARIOS.update({name: Scenario(**_QUIET, systems=name, water_walk=name == "water-rise") for name in SYSTEM_WALKS})


class _Noise:
    """Mean-reverting random walk (Ornstein-Uhlenbeck): smooth, bounded noise."""

    def __init__(self, rng: random.Random, sigma: float, tau: float = 10.0):
        self.rng, self.sigma, self.tau, self.x = rng, sigma, tau, 0.0

    def step(self, dt: float) -> float:
        a = math.exp(-dt / self.tau)
        self.x = self.x * a + self.sigma * math.sqrt(max(0.0, 1 - a * a)) * self.rng.gauss(0.0, 1.0)
        return self.x


class _Excursion:
    """Occasional methane excursions: ramp up ~5 s, hold ~10 s, ramp down ~5 s."""

    def __init__(self, rng: random.Random, sc: Scenario, alarm: float, cutoff: float):
        self.rng, self.sc = rng, sc
        self.alarm, self.cutoff = alarm, cutoff
        self.start = sc.gas_first
        self.peak = self._peak()

    def _peak(self) -> float:
        if self.rng.random() < 0.35:
            return self.cutoff * self.rng.uniform(1.05, 1.3)                # into cut-off
        return self.rng.uniform(self.alarm * 1.1, (self.alarm + self.cutoff) / 2)

    def extra(self, t: float, base: float) -> float:
        d = t - self.start
        if d < 0:
            return 0.0
        if d > 20.0:
            self.start = t + self.rng.uniform(0.6, 1.4) * self.sc.gas_every
            self.peak = self._peak()
            return 0.0
        shape = min(1.0, d / 5.0, (20.0 - d) / 5.0)
        return shape * max(0.0, self.peak - base)


WATER = ("0007", "0502")    # 水池水位 (safety monitoring), 长观孔水位 (water hazards)


class WaterLevel:
    """A borehole water level against its point's `levels:` (high entries; default 3.0 .. 4.5 m).

    Idles a third of the ladder's span below its lowest entry.  Walking (every
    CYCLE s from the model's first read): idle until 10 s, a steady rise to a
    sixth of the span above the highest entry at 70 s, held until 90 s, a steady
    fall back to idle at 150 s: every level is entered in order on the way up
    (each held for more than 10 s) and left in order on the way down.  Another
    `cycle` scales those times.
    """

    def __init__(self, p: Point, walk: bool, cycle: float = 180.0):
        highs = [lv.high for lv in (p.levels.blue, p.levels.yellow, p.levels.orange, p.levels.red)
                 if lv is not None and lv.high is not None] if p.levels is not None else []
        lo, hi = (min(highs), max(highs)) if highs else (3.0, 4.5)
        gap = (hi - lo) / 3 if hi > lo else 0.5
        self.idle, self.peak, self.walk, self.cycle = lo - gap, hi + gap / 2, walk, cycle

    def value(self, t: float, n: float) -> float:
        noise = 0.003 * n
        if not self.walk:
            return self.idle + noise
        c = (t % self.cycle) * 180.0 / self.cycle
        share = 0.0 if c < 10 else (c - 10) / 60 if c < 70 else 1.0 if c < 90 else max(0.0, (150 - c) / 60)
        return self.idle + share * (self.peak - self.idle) + noise


class DeviceModel:
    """Every point of one simulated device, advanced together in time."""

    def __init__(self, device: Device, rng: random.Random, scenario: Scenario):
        self.device, self.rng, self.sc = device, rng, scenario
        self.t: float | None = None
        self.t0 = 0.0
        codes = {p.sensor for p in device.points}
        self.is_bin = "0008" in codes or "0050" in codes
        self.running = True
        self.level = 12.0
        self.speed = 3.15
        self.bearing = 45.0
        self.next_stop = rng.uniform(0.5, 1.5) * scenario.belt_stop_every
        self.stop_until = -1.0
        self.noise = {p.id: _Noise(rng, 1.0) for p in device.points}
        self.gas = {p.id: _Excursion(rng, scenario, *self._gas_levels(p)) for p in device.points
                    if p.sensor in ("0001", "0043")}
        self.water = {p.id: WaterLevel(p, scenario.water_walk, scenario.water_cycle) for p in device.points if p.sensor in WATER}
        # belts and bins (by their sensor codes) run the models of equipment_scenarios.py
        self.equipment = equipment_model(device, rng, scenario)
        # water-hazard, tailings, slope GNSS and ground-pressure instruments (system_scenarios.py)
        self.systems = systems_model(device, scenario)

    @staticmethod
    def _gas_levels(p: Point) -> tuple[float, float]:
        alarm = p.alarm.high if p.alarm.high is not None else 1.0
        cutoff = p.cutoff.high if p.cutoff.high is not None else alarm * 1.5
        return alarm, cutoff

    def _machine(self, t: float, dt: float) -> None:
        if self.is_bin:
            # feeder draws coal out; the belt above fills the bin while the feeder stands
            self.level += (-0.08 if self.running else 0.06) * dt
            if self.level > 24.0:
                self.running = True
            elif self.level < 6.0:
                self.running = False
            return
        if self.running and t >= self.next_stop:
            self.running, self.stop_until = False, t + self.sc.belt_stop_for
        elif not self.running and t >= self.stop_until:
            self.running = True
            self.next_stop = t + self.rng.uniform(0.5, 1.5) * self.sc.belt_stop_every
        target = 3.15 if self.running else 0.0
        self.speed += (target - self.speed) * min(1.0, dt / 3.0)
        hot = 52.0 if self.running else 25.0
        self.bearing += (hot - self.bearing) * min(1.0, dt / 120.0)

    def values(self, t: float) -> dict[str, float]:
        """Engineering value of every point (by id) at time `t`."""
        if self.t is None:
            self.t0, self.t = t, t
        dt = min(5.0, max(0.0, t - self.t))
        self.t = t
        t -= self.t0        # the models' clocks start at the first read
        if self.equipment is not None:
            return self.equipment.values(t, dt)
        self._machine(t, dt)
        out = {}
        systems = self.systems
        for p in self.device.points:
            n = self.noise[p.id].step(dt)
            out[p.id] = systems.value(p, t, dt, n) if systems is not None and systems.handles(p) \
                else self._value(p, t, n)
        return out

    def _value(self, p: Point, t: float, n: float) -> float:
        s = p.sensor
        if s in ("0001", "0043"):
            base = min(0.5, max(0.2, 0.35 + 0.05 * n))
            return max(0.0, base + self.gas[p.id].extra(t, base))
        if s in WATER:
            return self.water[p.id].value(t, n)
        if s == "0002":
            return max(0.0, 2.2 + 0.3 * n)
        if s == "0003":
            return 24.0 + 1.0 * n
        if s == "0004":
            return max(0.0, 8.0 + 3.0 * n)
        if s == "0012":
            return 20.7 + 0.1 * n
        if s in ("0008", "0050"):
            return max(0.0, self.level + 0.05 * n)
        if s == "0060":
            return max(0.0, self.speed + (0.03 * n if self.running else 0.0))
        if s == "0017":
            return max(0.0, 120.0 + 8.0 * n) if self.running else 0.0
        if s in ("0026", "0028"):
            return self.bearing + 0.3 * n
        if s in ("1004", "1001", "1010"):
            return 1.0 if self.running else 0.0
        if p.kind == "switch" or s.startswith("1"):
            return 1.0
        lo, hi = p.range if p.range is not None else (0.0, 100.0)
        return lo + (hi - lo) * (0.3 + 0.02 * n)
