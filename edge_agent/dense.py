"""Denser sampling in warning: a device's `poll_in_warning:` from its points' levels.

    dense = DenseSampling(site, catalog)     # per configuration (built again on a reload)
    dense.apply(drivers, kernel.level)       # at start and after a reload: every device
    dense.apply(drivers, kernel.level, changes)   # per frame: the devices these level changes touch

A device with `poll_in_warning: {period: P, from: L}` is in warning while any of its points
is at level L or above (the kernel's level: `levels:`, `rules:` and the old ladder as the
profile colours it); its driver's `cadence` (drivers/pace.py) then polls every P, and at its
`poll` again once none is.  The levels carry over a reload and a restart (baseline file),
so a device in warning before either is in warning after.  One log line per switch.
"""
from __future__ import annotations

import logging

from edge_agent.codes import LEVELS, MACHINES, legacy_levels
from edge_agent.levels import rule_specs

log = logging.getLogger("edge_agent.agent")


class DenseSampling:
    def __init__(self, site, catalog) -> None:
        self.site = site
        self.watch: dict[int, tuple[int, list[int]]] = {}     # device -> (from level, its point indices)
        self.device_of: dict[int, int] = {}
        for d, dev in enumerate(site.devices):
            piw = getattr(dev, "poll_in_warning", None)
            if piw is None:
                continue
            points = [rp.index for rp in catalog.by_device[d]]
            self.watch[d] = (piw.level, points)
            for i in points:
                self.device_of[i] = d

    def apply(self, drivers, levels, changes=None) -> None:
        """Set the cadence of every watched device (or of those with a point among `changes`)."""
        if not self.watch:
            return
        if changes is None:
            touched = set(self.watch)
        else:
            touched = {self.device_of[c.point] for c in changes if getattr(c, "point", None) in self.device_of}
        for d in touched:
            cadence = getattr(drivers[d], "cadence", None)
            if cadence is None:
                continue
            lv, points = self.watch[d]
            on = any(levels[i] >= lv for i in points)
            if cadence.warn(on):
                dev = self.site.devices[d]
                if on:
                    log.info("device %s: a point is at %s or above: polling every %gs until none is", dev.name,
                             LEVELS[lv], cadence.period)
                else:
                    log.info("device %s: no point at %s or above any more: polling every %gs again", dev.name,
                             LEVELS[lv], cadence.period)


def highest_level(point, legacy: tuple[int, ...]) -> int:
    """The highest level a point can reach: its `levels:`, its `rules:`, its old thresholds as coloured."""
    top = max((st.level for spec in rule_specs(point) for st in spec.steps), default=0)
    for m, lv in zip(MACHINES, legacy):
        if getattr(getattr(point, m.ladder), m.side, None) is not None:
            top = max(top, lv)
    return top


def never_applies(site) -> list[tuple[str, str, str]]:
    """(device, from level, highest level of its points) for each poll_in_warning no point can reach."""
    legacy = getattr(site.loaded_profile, "legacy_levels", None) or legacy_levels()
    out = []
    for dev in site.devices:
        piw = getattr(dev, "poll_in_warning", None)
        if piw is None:
            continue
        top = max((highest_level(p, legacy) for p in dev.points), default=0)
        if top < piw.level:
            out.append((dev.name, piw.from_, LEVELS[top]))
    return out
