"""Simulated instruments of the other monitoring systems, and the scenarios that walk their warnings.

`dynamics.DeviceModel` asks `Systems.handles(point)` for every point; the
points of the codes in `QUANTITIES` get their value from `Systems.value`.
A device may mix them freely (a water-hazard station: borehole level and
water temperature, inflow, drainage total; a tailings pond; a slope GNSS
station; a ground-pressure substation).  Which code means what is this
table only (drivers never see it):

    code  quantity                              unit  warning side (default ladder, blue..red)
    0503  water inflow (涌水量)                  m3/h  high 150 200 250 300
    0010  water temperature (水温度)              C     follows the walk, +1.5 C at its peak
    3003  drainage total (排水量, cumulative)     m3    integrates the inflow (pumped out)
    0029  pond water level (库水位)               m     high 12.0 12.5 13.0 13.5
    0030  phreatic line burial depth (浸润线)     m     low 10.0 9.0 8.5 8.0 (shallower is worse)
    0031  rainfall (降雨量)                       mm    high 10 25 50 100
    0601  dry beach length (干滩长度)             m     low 120 100 80 70 (shorter is worse)
    0021  surface displacement (表面位移)         mm    creeps: rate high 1 2 3.5 5 mm/h
    0081/0082/0083 GNSS x/y/z displacement       mm    creeps: rate high 1 2 3.5 5 mm/h (y 0.6x, z -0.3x)
    1401  roof separation (离层), 1st shallow,    mm    high 5 10 15 25 (deep: x1.6)
          2nd deep
    1101  support resistance (支架阻力)           MPa   high 30 35 40 45
    1301  bolt stress (锚杆应力)                  kN    high 80 100 120 140
    1302  cable (anchor) stress (锚索应力)        kN    high 150 200 250 300
    1201  borehole stress (钻孔应力)              MPa   high 8 10 12 15

(the borehole water level, 0502, is `dynamics.WaterLevel`'s: `water-rise`
walks it as `borehole-rise` does).  The ladders above are this project's
defaults for a point without `levels:`; a point with `levels:` walks its
own ladder (its high or its low entries), and a displacement with a `rate`
rule creeps at its own rule's rates (per its `per`).

A walk takes `Scenario.water_cycle` seconds (180 by default) from the
model's first read, as `WaterLevel`'s: idle until 10 s, then through every
level of the ladder in turn, an equal share of the ramp each (so each is
entered in order and held for about 12 s), past red at 70 s, held until
90 s, and back through every level in reverse order to idle at 150 s.  A
creeping displacement's *speed* walks that way (so its rate rule's levels
do) while the displacement itself only grows.  Values are a function of
the time since the first read and the seeded noise: reproducible.

Scenarios (`WALKS`): which codes walk.

    water-rise       borehole level (0502), inflow, water temperature, drainage
    tailings-rain    rainfall, pond level, phreatic line, dry beach, surface displacement
    slope-creep      GNSS x/y/z displacement
    roof-separation  roof separation, support resistance, bolt/cable stress, borehole stress
"""
from __future__ import annotations

from dataclasses import dataclass

from edge_agent.codes import COLOURS


@dataclass(frozen=True)
class Quantity:
    name: str
    side: str = "high"                        # high | low (the ladder's side) | creep (rate) | follow | total
    ladder: tuple[float, ...] = ()            # default blue..red
    floor: float | None = 0.0                 # a value never goes below it (None: no floor)
    axis: float = 1.0                         # creep: share of the station's speed on this axis


CREEP = (1.0, 2.0, 3.5, 5.0)                  # mm/h, GB 51214's 5 mm/h on a working face as red
QUANTITIES: dict[str, Quantity] = {
    "0503": Quantity("water inflow", ladder=(150.0, 200.0, 250.0, 300.0)),
    "0010": Quantity("water temperature", side="follow"),
    "3003": Quantity("drainage total", side="total"),
    "0029": Quantity("pond water level", ladder=(12.0, 12.5, 13.0, 13.5)),
    "0030": Quantity("phreatic line burial depth", side="low", ladder=(10.0, 9.0, 8.5, 8.0)),
    "0031": Quantity("rainfall", ladder=(10.0, 25.0, 50.0, 100.0)),
    "0601": Quantity("dry beach length", side="low", ladder=(120.0, 100.0, 80.0, 70.0)),
    "0021": Quantity("surface displacement", side="creep", ladder=CREEP, floor=None),
    "0081": Quantity("GNSS x displacement", side="creep", ladder=CREEP, floor=None),
    "0082": Quantity("GNSS y displacement", side="creep", ladder=CREEP, floor=None, axis=0.6),
    "0083": Quantity("GNSS z displacement", side="creep", ladder=CREEP, floor=None, axis=-0.3),
    "1401": Quantity("roof separation", ladder=(5.0, 10.0, 15.0, 25.0)),
    "1101": Quantity("support resistance", ladder=(30.0, 35.0, 40.0, 45.0)),
    "1301": Quantity("bolt stress", ladder=(80.0, 100.0, 120.0, 140.0)),
    "1302": Quantity("cable stress", ladder=(150.0, 200.0, 250.0, 300.0)),
    "1201": Quantity("borehole stress", ladder=(8.0, 10.0, 12.0, 15.0)),
}
DEEP = 1.6                                    # a deep roof-separation anchor moves this much more

WALKS: dict[str, frozenset[str]] = {
    "water-rise": frozenset({"0503", "0010", "3003"}),
    "tailings-rain": frozenset({"0031", "0029", "0030", "0601", "0021"}),
    "slope-creep": frozenset({"0081", "0082", "0083"}),
    "roof-separation": frozenset({"1401", "1101", "1301", "1302", "1201"}),
}


def share(t: float, cycle: float = 180.0) -> float:
    """How far a walk is from idle (0) to past red (1) at `t` s from the first read (WaterLevel's shape)."""
    c = (t % cycle) * 180.0 / cycle
    return 0.0 if c < 10 else (c - 10) / 60 if c < 70 else 1.0 if c < 90 else max(0.0, (150 - c) / 60)


def share_integral(t: float, cycle: float = 180.0) -> float:
    """The integral of `share` from 0 to `t`, in seconds (80 / 180 of a cycle per whole cycle)."""
    k = cycle / 180.0
    whole, c = divmod(t, cycle)
    c = c / k
    if c < 10:
        part = 0.0
    elif c < 70:
        part = (c - 10) ** 2 / 120
    elif c < 90:
        part = 30 + (c - 70)
    elif c < 150:
        part = 50 + (3600 - (150 - c) ** 2) / 120
    else:
        part = 80.0
    return k * (80.0 * whole + part)


def _ladder(p, q: Quantity) -> tuple[str, list[float]]:
    """(side, the ladder blue..red) of point `p`: its own `levels:` if any, else the quantity's default."""
    lv = getattr(p, "levels", None)
    if lv is not None:
        given = [getattr(lv, c) for c in COLOURS if getattr(lv, c) is not None]
        highs = [g.high for g in given if g.high is not None]
        lows = [g.low for g in given if g.low is not None]
        if highs and (q.side != "low" or not lows):
            return "high", highs
        if lows:
            return "low", lows
    return q.side, list(q.ladder)


def _path(side: str, ladder: list[float]) -> list[float]:
    """The values a walk passes at share 0, 1/5 .. 4/5 (blue .. red) and 1 (past red)."""
    sign = -1.0 if side == "low" else 1.0
    if len(ladder) == 1:
        gap = max(abs(ladder[0]) * 0.25, 1.0)
        return [ladder[0] - sign * gap, ladder[0], ladder[0] + sign * gap / 2]
    first_gap = abs(ladder[1] - ladder[0])
    last_gap = abs(ladder[-1] - ladder[-2])
    return [ladder[0] - sign * first_gap, *ladder, ladder[-1] + sign * last_gap / 2]


def _along(path: list[float], s: float) -> float:
    """Piecewise-linear position `s` (0..1) along `path`; the first segment is the idle-to-blue one."""
    x = s * (len(path) - 1)
    i = min(int(x), len(path) - 2)
    return path[i] + (x - i) * (path[i + 1] - path[i])


def _rate_rule(p):
    for rule in getattr(p, "rules", None) or ():
        if getattr(rule, "kind", None) == "rate":
            return rule
    return None


class Systems:
    """The system instruments of one device, advanced by `DeviceModel`."""

    def __init__(self, device, scenario):
        self.cycle = scenario.water_cycle
        self.walks = WALKS.get(getattr(scenario, "systems", ""), frozenset())
        self.points: dict[str, tuple[Quantity, object]] = {}
        roof = 0
        for p in device.points:
            q = QUANTITIES.get(p.sensor)
            if q is None:
                continue
            if p.sensor == "1401":
                roof += 1
            deep = p.sensor == "1401" and roof == 2 and getattr(p, "levels", None) is None
            self.points[p.id] = (q, self._plan(p, q, DEEP if deep else 1.0))
        self.total = 50_000.0                 # the drainage meter's reading at the first read, m3
        self.inflow = 100.0                   # m3/h, the last inflow value (3003 integrates it)

    def handles(self, p) -> bool:
        return p.id in self.points

    @staticmethod
    def _plan(p, q: Quantity, factor: float):
        if q.side == "creep":
            rule = _rate_rule(p)
            if rule is not None:
                rates = [v for v in (getattr(rule.levels, c) for c in COLOURS) if v is not None]
                per = rule.per
                window = rule.window or rule.per
            else:
                rates, per, window = list(q.ladder), 3600.0, 600.0
            peak = rates[-1] + (rates[-1] - rates[-2]) / 2 if len(rates) > 1 else rates[0] * 1.25
            # noise that moves the rate by about 2 % of blue over the rule's window
            return ("creep", peak * q.axis / per, 0.01 * rates[0] * window / per)
        if q.side in ("follow", "total"):
            return (q.side, None, 0.0)
        side, ladder = _ladder(p, q)
        ladder = [v * factor for v in ladder]
        path = _path(side, ladder)
        span = abs(path[-1] - path[0])
        return ("walk", path, 0.002 * span)

    def value(self, p, t: float, dt: float, n: float) -> float:
        q, (how, arg, noise) = self.points[p.id]
        walking = p.sensor in self.walks
        s = share(t, self.cycle) if walking else 0.0
        if how == "walk":
            v = _along(arg, s) + noise * n
            if p.sensor == "0503":
                self.inflow = v
        elif how == "creep":
            moved = arg * share_integral(t, self.cycle) if walking else 0.0
            v = 10.0 * q.axis + moved + noise * n
        elif how == "follow":
            v = 18.0 + 1.5 * s + 0.02 * n
        else:
            self.total += max(0.0, self.inflow) * dt / 3600.0
            v = self.total
        return v if q.floor is None else max(q.floor, v)


def systems_model(device, scenario) -> Systems | None:
    """The system instruments among `device`'s points (None when it has none)."""
    if any(p.sensor in QUANTITIES for p in device.points):
        return Systems(device, scenario)
    return None

