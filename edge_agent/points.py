"""The resolved point catalogue: every point of the site, flattened, defaults filled in.

Built once from a `Site` and its `Profile`.  A point's position in
`Catalog.points` is its global index: Frames, the kernel's state arrays and the
encoders all use it.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from edge_agent.codes import legacy_levels
from edge_agent.config import Site, point_code
from edge_agent.levels import rule_specs
from edge_agent.model import Device, Point
from edge_agent.profile.tables import Profile

NAN = math.nan

KIND_CODE = {"analog": 0, "switch": 1, "cumulative": 2, "multistate": 3}
DERIVED_SENSOR = "1990"    # project-local: the status of a derived condition (the profile's local_sensors)


@dataclass(frozen=True, slots=True)
class ResolvedPoint:
    index: int              # global index
    device: int             # index into Site.devices
    cfg: Point
    code: str               # the full point code
    kind: str               # analog | switch | cumulative | multistate
    type: str               # data type on the wire
    sensor_name: str
    unit: str
    range_low: float
    range_high: float
    decimals: int
    deadband: float         # absolute
    on_text: str
    off_text: str
    sent: bool = True       # False: a local code the profile does not send (no record of this point goes out)
    integral: bool = False  # every value is a whole number (integer wire type, whole scale and offset)

    @property
    def id(self) -> str:
        return self.cfg.id


def _integral(pt: Point) -> bool:
    """Whether every value of the point is a whole number (JSON integers, not 42.0)."""
    return (pt.data_type.startswith(("int", "uint")) or pt.data_type == "bool") and \
        float(pt.scale).is_integer() and float(pt.offset).is_integer()


def _f(v: float | None) -> float:
    return NAN if v is None else float(v)


class Catalog:
    """Every point of a site, resolved; plus the threshold arrays the kernel needs."""

    def __init__(self, site: Site, profile: Profile, codes: list[str] | None = None):
        """`codes`: every point's code in order, when the caller has built them (load_site's checks)."""
        self.site = site
        self.profile = profile
        self.points: list[ResolvedPoint] = []
        self.by_device: list[list[ResolvedPoint]] = []
        # each device's system (its profile and system code; one implicit system without `systems:`)
        self.systems = [site.system_of(di) for di in range(len(site.devices))]
        if codes is not None and len(codes) != sum(len(dev.points) for dev in site.devices):
            codes = None
        for di, dev in enumerate(site.devices):
            mine: list[ResolvedPoint] = []
            system = self.systems[di]
            profile = self.profile_of(di)
            for pt in dev.points:
                sensor = profile.sensors[pt.sensor]
                lo, hi = pt.range if pt.range is not None else (sensor.range_low, sensor.range_high)
                rp = ResolvedPoint(
                    index=len(self.points), device=di, cfg=pt,
                    code=codes[len(self.points)] if codes is not None else point_code(site, pt, profile, system.code),
                    kind=pt.kind or sensor.kind, type=pt.data_type,
                    sensor_name=pt.sensor_name if pt.sensor_name is not None else sensor.name,
                    unit=pt.unit if pt.unit is not None else sensor.unit,
                    range_low=float(lo), range_high=float(hi),
                    decimals=pt.decimals if pt.decimals is not None else sensor.decimals,
                    deadband=pt.deadband_abs(float(hi) - float(lo)),
                    on_text=pt.on_text if pt.on_text is not None else sensor.on_text,
                    off_text=pt.off_text if pt.off_text is not None else sensor.off_text,
                    sent=sensor.send, integral=_integral(pt),
                )
                self.points.append(rp)
                mine.append(rp)
            self.by_device.append(mine)

    def add_derived(self, derived_points) -> None:
        """Append a point per derived condition (edge_agent.derived.DerivedPoint) to carry its status.

        Derived points come after every device point (device indices do not move),
        belong to their equipment's device for CDDY/CDSS, and are in no device's
        `by_device` list: no driver polls them.  Id `<equipment ids>D<slot>`,
        sensor 1990 (multistate: 0 normal, 1 condition active, 2 cannot evaluate).
        """
        eqs = {eq.name: eq for eq in self.site.equipment}
        for dp in derived_points:
            system = self.systems[dp.device]
            sensor = self.profile_of(dp.device).sensors.get(DERIVED_SENSOR)
            if sensor is None:
                continue
            eq = eqs[dp.equipment]
            cfg = Point(id=f"{eq.prefix}D{dp.slot}", sensor=DERIVED_SENSOR, kind="multistate",
                        address="derived", location=eq.location or self.site.devices[dp.device].location)
            rp = ResolvedPoint(
                index=len(self.points), device=dp.device, cfg=cfg, code=point_code(self.site, cfg, self.profile_of(dp.device), system.code),
                kind="multistate", type="uint16", sensor_name=sensor.name, unit=sensor.unit,
                range_low=sensor.range_low, range_high=sensor.range_high, decimals=0, deadband=0.0,
                on_text="", off_text="", sent=sensor.send, integral=True)
            dp.vpoint = rp.index
            self.points.append(rp)

    def __len__(self) -> int:
        return len(self.points)
    def device_code(self, di: int) -> str:
        """The device's `substation:`, else the profile's substation code template for its position."""
        dev: Device = self.site.devices[di]
        if dev.substation is not None:
            return dev.substation
        return self.profile_of(di).options.substation(di + 1, self.site.site.mine_code, self.systems[di].code)

    def profile_of(self, di: int) -> Profile:
        """Device `di`'s profile: its system's (with `systems:`), else the catalogue's."""
        return self.systems[di].profile if self.site.systems else self.profile

    def thresholds(self) -> dict[str, array]:
        """Structure-of-arrays view for the kernel; NaN means 'not configured'.  Beside the columns:
        "rules" (per point, its graded-warning RuleSpecs) and "legacy_levels" (per old-ladder machine)."""
        cols: dict[str, array] = {name: array("d") for name in (
            "range_low", "range_high", "alarm_high", "alarm_high_clear", "alarm_low", "alarm_low_clear",
            "cutoff_high", "cutoff_restore", "cutoff_low", "cutoff_low_restore", "warn_high", "warn_low",
            "deadband", "delay")}
        kind = array("b")
        for rp in self.points:
            p = rp.cfg
            cols["range_low"].append(rp.range_low)
            cols["range_high"].append(rp.range_high)
            cols["alarm_high"].append(_f(p.alarm.high))
            cols["alarm_high_clear"].append(_f(p.alarm.high_clear if p.alarm.high_clear is not None
                                               else p.alarm.high))
            cols["alarm_low"].append(_f(p.alarm.low))
            cols["alarm_low_clear"].append(_f(p.alarm.low_clear if p.alarm.low_clear is not None
                                              else p.alarm.low))
            cols["cutoff_high"].append(_f(p.cutoff.high))
            cols["cutoff_restore"].append(_f(p.cutoff.restore if p.cutoff.restore is not None else p.cutoff.high))
            cols["cutoff_low"].append(_f(p.cutoff.low))
            cols["cutoff_low_restore"].append(_f(p.cutoff.low_restore if p.cutoff.low_restore is not None
                                                 else p.cutoff.low))
            cols["warn_high"].append(_f(p.warn.high))
            cols["warn_low"].append(_f(p.warn.low))
            cols["deadband"].append(rp.deadband)
            cols["delay"].append(float(p.delay))
            kind.append(KIND_CODE[rp.kind])
        cols["kind"] = kind  # type: ignore[assignment]
        # graded warning: the rules per point and the levels of the old ladder (filtering/rules.py)
        cols["rules"] = [rule_specs(rp.cfg) for rp in self.points]  # type: ignore[assignment]
        cols["legacy_levels"] = self.profile.legacy_levels or legacy_levels()  # type: ignore[assignment]
        return cols
