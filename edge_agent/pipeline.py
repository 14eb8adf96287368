"""The frame path of one configuration: catalogue, derived conditions, kernel, encoder, routing.

    pipeline = Pipeline(site, routes, pending, states=device_states, previous=old_pipeline)
    pipeline.on_frame(frame)              # per poll: live CDSS, and the `event` record types (YCBJ)
    pipeline.snapshot(now)                # every realtime_every: the `snapshot` types (CDSS, FZSS)
    pipeline.statistics(now) / definitions(now) / fzss(now)

The record types come from the registry (`edge_agent/profile/types.py`): each cadence
produces every registered type of that cadence the profile lists, in registration order.

Everything here is derived from one `Site` and built whole in the constructor, so a
reload either gets a complete new pipeline or keeps the old one (the constructor is the
only step that can fail).  With `previous`, the kernel state of every point that is in
both (same device name, same point id) carries over: open alarms, statistics windows,
deadband and heartbeat memory, delays; and so do the rule states of unchanged belts and
bins.  A new point starts fresh.

Messages go to `pending` (a list the Agent owns and commits) as (type, sinks mask, time,
body); `routes.all` is the mask of every sink, `routes.live` of the sinks that also want
each frame's changed points (report by exception) between snapshots.

Monitoring systems (`systems:`, edge_agent/systems.py): one `SystemView` per system, each
with its own encoder (its profile, its points) and routes (`system_routes[name]`: the
shared sinks and its own file sink); producers get the view, rows are typed
`system.type_of(TYPE)`.  Without `systems:` there is one view of the whole site.
"""
from __future__ import annotations

import logging
import math
from array import array
from dataclasses import dataclass
from typing import Callable

from edge_agent import registry
from edge_agent.derived import Derived
from edge_agent.filtering import Kernel
from edge_agent.frame import Frame
from edge_agent.points import Catalog
from edge_agent.profile.encode import EMPTY, Encoder
from edge_agent.rollup import Rollup
from edge_agent.systems import cadence

log = logging.getLogger("edge_agent.pipeline")


@dataclass(frozen=True)
class Routes:
    all: int = 0          # every sink
    live: int = 0         # sinks that get each frame's changed points too


class SystemView:
    """One monitoring system as a record type's producer sees it: `producer(view, now, data)`.

    `encoder` (the system's), `kernel`, `catalog` (every point; `points`: this system's),
    `devices` (its device indices), `instruments`, `routes`, `states()`, `profile`, `site`
    (the system's view of the site), `system` (edge_agent.systems.System), `memory` (a dict
    a producer may keep state in between calls; it starts empty after a reload)."""

    def __init__(self, pipeline: "Pipeline", system, routes: Routes, tz=None):
        self.pipeline = pipeline
        self.system = system
        self.site = system.site
        self.profile = system.profile
        self.catalog = pipeline.catalog
        self.devices = system.devices
        mine = set(system.devices)
        self.points = [rp for rp in self.catalog.points if rp.device in mine]
        self.encoder = Encoder(system.site, self.catalog, system.profile, tz=tz, system=system)
        self.routes = routes
        self.memory: dict = {}
        self.instruments: dict = {}
        sent = [rt for rt in registry.record_types().values() if rt.code in system.profile.records]
        self.types = {c: [rt for rt in sent if rt.cadence == c] for c in registry.CADENCES}
        self.fzss_type = next((rt for rt in sent if rt.code == "FZSS"), None)
        # types made from the alarm book's records (cadence None with a producer: gnssalarm, clearalarm):
        # producer(view, now, (book record type, body)) -> body or None
        self.book_types = [rt for rt in sent if rt.cadence is None and rt.producer is not None]
        self.live = routes.live if "CDSS" in system.profile.records else 0
        self.next_snapshot = 0.0
        # denser while a point of the system is at a level (the profile's `cadence.in_warning`, e.g. 30m)
        self.in_warning = cadence(system.profile, "in_warning", None) if system.qualified else None
        self.indices = array("i", (rp.index for rp in self.points))

    @property
    def kernel(self):
        return self.pipeline.kernel

    def states(self) -> list:
        return self.pipeline.states()


class Pipeline:
    def __init__(self, site, routes: Routes, pending: list, *, states: Callable[[], list] = list,
                 previous: "Pipeline | None" = None, system_routes: dict | None = None):
        self.site = site
        self.states = states          # each device's (run, power) status, for FZSS
        self.profile = site.loaded_profile
        self.catalog = site.checked_catalog() or Catalog(site, self.profile)
        self.derived = Derived(site, self.catalog)
        self.catalog.add_derived(self.derived.points)
        rep = site.report
        self.kernel = Kernel(len(self.catalog), self.catalog.thresholds(), realtime_every=rep.realtime_every,
                             stats_window=rep.stats_window)
        self.routes = routes
        self.pending = pending
        self.systems = site.resolved_systems
        self.views = [SystemView(self, s, (system_routes or {}).get(s.name, routes)) for s in self.systems]
        self.encoder = self.views[0].encoder      # the MQTT envelope and topics, the alarm book's records
        self.encoder.retain_also(v.system.type_of(t) for v in self.views for t in v.profile.retained)
        self.view_of_device = [next(v for v in self.views if di in v.devices) for di in range(len(site.devices))]
        self.carried = 0
        if previous is not None:
            self._carry_over(previous)
        self.rollup = None            # items and the facility (`items:`), from the points' levels as they are
        if site.items:
            self.rollup = Rollup(site.items, self.catalog)
            self.rollup.seed(self.kernel.level)

    def _carry_over(self, old: "Pipeline") -> None:
        def key(p) -> tuple:
            return self.site.devices[p.device].name, p.id

        was = {(old.site.devices[p.device].name, p.id): p.index for p in old.catalog.points}
        mapping = [was.get(key(p), -1) for p in self.catalog.points]
        self.kernel.carry_over(old.kernel, array("i", mapping))
        self.derived.carry_over(old.derived)
        for v in self.views:          # producers' memory (GNSS speed/acceleration history) of the same system
            was_v = next((o for o in old.views if o.system.name == v.system.name), None)
            if was_v is not None:
                v.memory = was_v.memory
        self.carried = sum(1 for i in mapping if i >= 0)
        if old.site.report.stats_window != self.site.report.stats_window:
            log.warning("reload: stats_window changed; statistics windows start again")

    def retire(self, new: "Pipeline", now: float) -> int:
        """After a reload swapped `new` in: end the open alarms of the points `new` no longer has
        (the kernel's events, encoded with this configuration's point codes), so none is left
        begun and never ended.  Returns how many points had one."""
        def key(p) -> tuple:
            return self.site.devices[p.device].name, p.id

        kept = {(new.site.devices[p.device].name, p.id) for p in new.catalog.points}
        gone = [p.index for p in self.catalog.points if key(p) not in kept]
        if not gone:
            return 0
        self.kernel.end_alarms(gone)
        events = self.kernel.take_events()
        if events:
            self.produce("event", now, events)
        return len({e.point for e in events})

    # ------------------------------------------------------------------ hot path

    def on_frame(self, frame: Frame) -> tuple[list, list]:
        """Run a driver's frame through the kernel and the derived conditions; queue what they report.
        Returns the frame's events (the kernel's and the derived conditions') and its level changes
        (the points', then the items' and the facility's they roll up to)."""
        k = self.kernel
        self._filter(frame)
        events = k.take_events()
        if self.derived.units:
            derived = self.derived.process(frame, k)
            if derived:
                events = [*events, *derived]
            status = self.derived.status_frame(frame)
            if status is not None:
                self._filter(status)     # the derived points' status, reported like any point
        if events:
            self.produce("event", frame.wall, events)
        levels = k.take_level_changes()
        if levels and self.rollup is not None:
            levels += self.rollup.update(levels)     # items and the facility: ItemLevelChanges after the points'
        return events, levels

    def _filter(self, frame: Frame) -> None:
        """Run `frame` through the kernel; queue a CDSS of the points it says to report."""
        k = self.kernel
        report = k.process(frame)
        view = self.view_of_device[frame.device]
        if len(report) and view.live:
            body = view.encoder.cdss(report, k.value, k.status, k.time, frame.wall)
            if body != EMPTY:         # only points the profile does not send: no message
                self.pending.append((view.system.type_of("CDSS"), view.live, frame.wall, body))
        # switch/multistate changes are already in this frame's report (their
        # value moved); drain them so the kernel's change log stays bounded
        k.take_changes()

    # ------------------------------------------------------------------ records by cadence (the scheduler's calls)

    def produce(self, cadence: str, now: float, data=None, views=None) -> None:
        """Queue a message of every record type of this cadence that each system's profile sends."""
        for view in (self.views if views is None else views):
            for rt in view.types[cadence]:
                body = rt.produce(view, now, data)
                if body is not None:
                    self.pending.append((view.system.type_of(rt.code), view.routes.all, now, body))

    def snapshot(self, now: float) -> None:
        """Every realtime_every: every point and every device's status, to every sink."""
        self.produce("snapshot", now)

    def snapshots_due(self, now: float) -> bool:
        """With `systems:`: the snapshot of each system whose own realtime_every came round (aligned to
        multiples of it); True if any was produced."""
        due = []
        level = self.kernel.level
        for v in self.views:
            every = v.system.realtime_every
            if v.in_warning is not None and v.in_warning < every and any(level[i] for i in v.indices):
                every = v.in_warning
            # the first one, a warning that began (the next within in_warning) or the wall clock stepped
            # back (the old schedule lies the length of the step ahead): aligned again from `now`
            if v.next_snapshot == 0.0 or v.next_snapshot - now > every:
                v.next_snapshot = math.floor(now / every) * every + every
            if now >= v.next_snapshot:
                due.append(v)
                v.next_snapshot += every * max(1, math.floor((now - v.next_snapshot) / every) + 1)
        if due:
            self.produce("snapshot", now, views=due)
        return bool(due)

    def statistics(self, now: float) -> None:
        """Statistics windows that closed by `now`."""
        self.produce("statistics", now, self.kernel.take_stats(now))

    def definition_bodies(self) -> list:
        """Every system's point definitions (its CDDY, CGKCDDY, ...) as of time 0: a reload compares them."""
        return [rt.produce(v, 0.0) for v in self.views for rt in v.types["definitions"] if rt.code != "FZDY"]

    def definitions(self, now: float) -> None:
        self.produce("definitions", now)

    def fzss(self, now: float) -> None:
        """Every device's (run, power) status, when one changed."""
        for v in self.views:
            if v.fzss_type is not None:
                self.pending.append((v.system.type_of("FZSS"), v.routes.all, now, v.fzss_type.produce(v, now)))
