"""Simulated belts and coal bins: realistic dynamics and scripted faults (scenarios).

`dynamics.DeviceModel` hands a device to `equipment_model()`; a device that
looks like a belt (a 1004 running flag with belt speed, current or bearing
temperature) or a bin (a 0008/0050 level) gets a model from here, anything else
None.  Points are told apart by sensor code (the codes of the `belt`/`bin`
templates, edge_agent/equipment.py); a bin's first 1004 point is its feeder and
its second the inflow belt (the template's slot order).

Normal running (every scenario, outside its fault): the drive drum speeds up
to 3.15 m/s in a few seconds and the belt follows it with ~1% creep; motor
current ~120 A while running, 0 when stopped; bearing and motor temperatures
creep toward their running levels over tens of minutes; CO idles at a few ppm;
smoke, deviation, tear, pull-cord and pile-up switches read 0.  The bin's
feeder draws ~0.08 m/s, the inflow belt fills ~0.06 m/s while the feeder
stands; the feeder starts near full (24 m) and stops near empty (6 m).

Scripted faults (`FAULTS`; times from the model's first read):

    belt-slip          20-50 s: the belt runs at 75% of the drive speed
    belt-overload      20-60 s: motor current ~205 A
    belt-idle-current  20 s: the belt stops, yet draws ~30 A until 50 s; runs again at 80 s
    belt-fire          70-160 s: bearing temperature climbs 8 deg/min; smoke 100-130 s;
                       CO climbs 0.3 ppm/s 80-140 s
    bin-block          10-130 s (堵仓): feeder runs, nothing flows out, inflow stopped: level static
    bin-collapse       10-55 s (蓬仓): level static while the feeder runs; 55-58 s (溃仓): 4 m drop
    bin-overfill       10 s: feeder stops, inflow fills 0.25 m/s to 28.5 m, holds to 100 s, feeder restarts
"""
from __future__ import annotations

import random
from dataclasses import dataclass

NOMINAL = 3.15     # m/s
CREEP = 0.01       # the belt runs this much slower than the drum when it grips


@dataclass(frozen=True)
class Fault:
    start: float
    end: float


FAULTS: dict[str, Fault] = {
    "belt-slip": Fault(20.0, 50.0),
    "belt-overload": Fault(20.0, 60.0),
    "belt-idle-current": Fault(20.0, 50.0),
    "belt-fire": Fault(70.0, 160.0),       # after a full fire_window of history
    "bin-block": Fault(10.0, 130.0),
    "bin-collapse": Fault(10.0, 58.0),
    "bin-overfill": Fault(10.0, 100.0),
}


def equipment_model(device, rng: random.Random, scenario):
    """A belt or bin model for `device` (None when it is neither); `scenario.equipment` names the fault."""
    from edge_agent.drivers.sim.dynamics import _Noise
    codes = [p.sensor for p in device.points]
    fault = FAULTS.get(getattr(scenario, "equipment", ""))
    if "0008" in codes or "0050" in codes:
        return BinModel(device, rng, scenario, fault, _Noise)
    if "1004" in codes and ({"0060", "0017", "0026"} & set(codes)):
        return BeltModel(device, rng, scenario, fault, _Noise)
    return None


class _Model:
    def __init__(self, device, rng, scenario, fault: Fault | None, noise):
        self.device, self.rng, self.sc, self.fault = device, rng, scenario, fault
        self.name = getattr(scenario, "equipment", "")
        self.noise = {p.id: noise(rng, 1.0) for p in device.points}

    def faulty(self, t: float, name: str) -> bool:
        return self.name == name and self.fault.start <= t < self.fault.end

    def values(self, t: float, dt: float) -> dict[str, float]:
        """Engineering value of every point (by id) at model time `t` (s since the first read)."""
        self.step(t, dt)
        return {p.id: self.value(p, self.noise[p.id].step(dt)) for p in self.device.points}

    @staticmethod
    def other(p, n: float) -> float:
        if p.kind == "switch" or p.sensor.startswith("1"):
            return 0.0
        lo, hi = p.range if p.range is not None else (0.0, 100.0)
        return lo + (hi - lo) * (0.3 + 0.02 * n)


class BeltModel(_Model):
    def __init__(self, *args):
        super().__init__(*args)
        self.running = True
        self.drive = NOMINAL
        self.belt = NOMINAL * (1 - CREEP)
        self.bearing, self.motor, self.co, self.smoke = 45.0, 60.0, 3.0, 0.0
        self.current_extra: float | None = None
        self.next_stop = self.rng.uniform(0.5, 1.5) * self.sc.belt_stop_every
        self.stop_until = -1.0

    def step(self, t: float, dt: float) -> None:
        if self.running and t >= self.next_stop:
            self.running, self.stop_until = False, t + self.sc.belt_stop_for
        elif not self.running and t >= self.stop_until:
            self.running = True
            self.next_stop = t + self.rng.uniform(0.5, 1.5) * self.sc.belt_stop_every
        if self.name == "belt-idle-current" and self.fault.start <= t < self.fault.start + 60.0:
            self.running = False                      # stopped by the operator; the contactor sticks
            self.stop_until = max(self.stop_until, self.fault.start + 60.0)
        self.drive += ((NOMINAL if self.running else 0.0) - self.drive) * min(1.0, dt / 3.0)
        grip = 0.75 if self.faulty(t, "belt-slip") else 1 - CREEP
        self.belt = self.drive * grip
        k = min(1.0, dt / 1200.0)
        if self.faulty(t, "belt-fire"):
            self.bearing += 8.0 / 60.0 * dt
        else:
            self.bearing += ((52.0 if self.running else 25.0) - self.bearing) * k
        self.motor += ((65.0 if self.running else 25.0) - self.motor) * min(1.0, dt / 1500.0)
        fire = t - self.fault.start if self.name == "belt-fire" else -1.0
        self.smoke = 1.0 if 30.0 <= fire < 60.0 else 0.0
        if 10.0 <= fire < 70.0:
            self.co += 0.3 * dt
        else:
            self.co += (3.0 - self.co) * min(1.0, dt / 60.0)
        if self.faulty(t, "belt-overload"):
            self.current_extra = 205.0
        elif self.faulty(t, "belt-idle-current"):
            self.current_extra = 30.0
        else:
            self.current_extra = None

    def value(self, p, n: float) -> float:
        s = p.sensor
        if s == "1004":
            return 1.0 if self.running else 0.0
        if s == "0060":
            return max(0.0, self.belt + 0.005 * n * self.belt)
        if s == "0901":
            return max(0.0, self.drive + 0.002 * n * self.drive)
        if s == "0017":
            if self.current_extra is not None:
                return self.current_extra + 3.0 * n
            return max(0.0, 120.0 + 8.0 * n) if self.running else 0.0
        if s == "0026":
            return self.bearing + 0.15 * n
        if s == "0028":
            return self.motor + 0.15 * n
        if s == "0004":
            return max(0.0, self.co + 0.3 * n)
        if s == "1008":
            return self.smoke
        return self.other(p, n)


class BinModel(_Model):
    def __init__(self, *args):
        super().__init__(*args)
        self.level = 12.0
        self.feeder = True
        self.inflow = True
        switches = [p.id for p in self.device.points if p.sensor == "1004"]
        self.feeder_id = switches[0] if switches else None
        self.inflow_id = switches[1] if len(switches) > 1 else None
        level = next(p for p in self.device.points if p.sensor in ("0008", "0050"))
        self.full_at = 0.9 * (level.range[1] if level.range is not None else 30.0)

    def step(self, t: float, dt: float) -> None:
        name = self.name if self.fault is not None and t >= self.fault.start else ""
        d = t - self.fault.start if name else -1.0
        if name == "bin-block" and d < self.fault.end - self.fault.start:
            self.feeder, self.inflow = True, False    # nothing comes out; filling stopped
            return
        if name == "bin-collapse" and d < self.fault.end - self.fault.start:
            self.feeder, self.inflow = True, False
            if d >= 45.0:                             # the arch gives way
                self.level -= 4.0 / 3.0 * dt
            return
        if name == "bin-overfill" and d < self.fault.end - self.fault.start:
            self.feeder, self.inflow = False, True
            self.level = min(28.5, self.level + 0.25 * dt)
            return
        self.inflow = True
        self.level += (-0.08 if self.feeder else 0.06) * dt
        if self.level > 24.0:
            self.feeder = True
        elif self.level < 6.0:
            self.feeder = False

    def value(self, p, n: float) -> float:
        s = p.sensor
        if s in ("0008", "0050"):
            return max(0.0, self.level + 0.05 * n)
        if p.id == self.feeder_id:
            return 1.0 if self.feeder else 0.0
        if p.id == self.inflow_id:
            return 1.0 if self.inflow else 0.0
        if s == "1007":
            return 1.0 if self.level >= self.full_at else 0.0
        if s == "0051":                               # gate opening (开度), %
            return 100.0 if self.feeder else 0.0
        return self.other(p, n)


__all__ = ["FAULTS", "Fault", "equipment_model", "BeltModel", "BinModel"]
