"""The agent: the buffer, the drivers, the sinks, the clock, reload and shutdown.

`Agent(site)` composes the parts: a `Pipeline` (the frame path of the configuration),
one driver per device and one sink per `forward:` block (both by registry), the buffer.
`await agent.run(stop)` runs until `stop` is set, then stops the drivers, commits what is
pending, lets the sinks finish what is in flight, and closes the buffer.
`await agent.reload(site)` builds a complete new pipeline (carrying the kernel state of
unchanged points over) and swaps it in, or changes nothing; devices whose acquisition
settings did not change keep polling.  Nothing here does I/O per point.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from edge_agent import clock, health, registry, sdnotify
from edge_agent.baseline import open_beside_buffer
from edge_agent.buffer import Buffer
from edge_agent.config import Site
from edge_agent.dense import DenseSampling
from edge_agent.drivers import make_driver
from edge_agent.drivers.pace import Pace
from edge_agent.frame import Frame
from edge_agent.pipeline import Pipeline, Routes
from edge_agent.systems import sink_blocks
from edge_agent.tasks import SHUTDOWN_GRACE, close_devices, entered, settle

log = logging.getLogger("edge_agent.agent")

RUN_OK, RUN_LOST, RUN_UNKNOWN = 0, 1, 9      # substation run status (PROFILE.md)
CLOCK_TICK = 0.2                             # granularity of snapshots, statistics and buffer upkeep
STEP = 2.0                                   # a wall-clock jump beyond this against the monotonic clock is a step
POWER_UNKNOWN = 9


@dataclass
class DeviceState:
    online: bool | None = None
    reason: str = ""
    since: float = field(default_factory=time.time)
    frames: int = 0
    last_frame: float = 0.0


class Agent:
    """One gateway: every device, the pipeline, the buffer and the configured sinks."""

    def __init__(self, site: Site):
        self.site = site
        b = site.buffer
        blocks = sink_blocks(site)
        self.buffer = Buffer(site.path(b.path), durability=b.durability, max_size=b.max_size,
                             max_age=b.max_age, sync_every=b.sync_every, memory_limit=b.memory_limit,
                             sinks=[c.sink_name for c, _, _ in blocks])
        self.on_level_changes = None      # graded warning: called with each frame's level changes (points, items)
        self.pending: list[tuple[str, int, float, bytes]] = []
        self._commit_at: asyncio.TimerHandle | None = None
        self.fzss_dirty = False
        self.fzss_sent = False
        self.sinks: list = []
        self.sink_specs: dict[str, registry.SinkSpec] = {}
        self.wakes: list[asyncio.Event] = []
        every = live = shared = 0
        own: dict[str, int] = {}           # a system's own sinks (its file sink)
        for cfg, spec, system in blocks:
            wake = asyncio.Event()
            ctx = registry.SinkContext(name=cfg.sink_name, site=site if system is None else system.site,
                                       profile=site.loaded_profile if system is None else system.profile,
                                       buffer=self.buffer, wake=wake, encoder=lambda: self.pipeline.encoder,
                                       status_detail=self.status_detail)
            sink = spec.make(cfg, ctx)
            self.sinks.append(sink)
            self.sink_specs[sink.name] = spec
            self.wakes.append(wake)
            bit = self.buffer.bit(sink.name)
            every |= bit
            live |= bit if spec.live else 0
            if system is None:
                shared |= bit
            else:
                own[system.name] = own.get(system.name, 0) | bit
        # Per-frame CDSS (report by exception) only go to the sinks that want them (the MQTT
        # uplink); the full snapshot every realtime_every goes everywhere (the spec files
        # need it).  No row is for the files alone, so the MQTT consumer's seq
        # has no gaps that are not loss.  With `systems:`, a system's rows go to the shared
        # sinks and its own (its file sink), never to another system's.
        self.routes = Routes(all=every, live=live)
        self.system_routes = {s.name: Routes(all=shared | own.get(s.name, 0), live=live & (shared | own.get(s.name, 0)))
                              for s in site.resolved_systems} if site.systems else None
        self.pipeline = Pipeline(site, self.routes, self.pending, states=self.fzss_states,
                                 system_routes=self.system_routes)
        self.baselines = open_beside_buffer(self.site, self.catalog, self.kernel)
        self.devices = [DeviceState() for _ in site.devices]
        self.drivers = [self._driver(i, site, self.pipeline) for i in range(len(site.devices))]
        self.dense = DenseSampling(site, self.catalog)      # poll_in_warning: from the (restored) levels
        self.dense.apply(self.drivers, self.kernel.level)
        self.driver_tasks: list[asyncio.Task | None] = [None] * len(self.drivers)
        self.frames = 0
        self.points_in = 0
        self.started = clock.monotonic()
        self.clock_watch = clock.Watch()
        self.last_clock = time.monotonic()
        self.reloads = 0
        self.alarms = None
        if site.alarms.enabled:            # the alarm book: level changes in, alarm records out
            from edge_agent.alarms.wiring import AgentAlarms
            self.alarms = AgentAlarms(self)

    @property
    def kernel(self):
        return self.pipeline.kernel

    @property
    def catalog(self):
        return self.pipeline.catalog

    @property
    def encoder(self):
        return self.pipeline.encoder

    @property
    def profile(self):
        return self.pipeline.profile

    def sinks_of_kind(self, kind: str) -> list:
        return [s for s in self.sinks if self.sink_specs[s.name].kind == kind]

    @property
    def mqtt(self):
        """The first MQTT sink, or None (the console's uplink panel)."""
        return next(iter(self.sinks_of_kind("mqtt")), None)

    @property
    def files(self):
        """The first spec-file sink, or None."""
        return next(iter(self.sinks_of_kind("files")), None)

    def mask_of_kind(self, kind: str) -> int:
        """The buffer mask of every sink of this kind (the alarm book's MQTT-only records)."""
        return self.buffer.mask(*(s.name for s in self.sinks_of_kind(kind)))

    def _driver(self, i: int, site: Site, pipeline: Pipeline):
        drv = make_driver(i, site.devices[i], pipeline.catalog.by_device[i], self.on_frame, base_dir=site.base_dir)
        drv.state_changed = self.on_device_state
        return drv

    # ------------------------------------------------------------------ hot path

    def on_frame(self, frame: Frame) -> None:
        """Called by a driver, in the event loop, once per poll."""
        self.frames += 1
        self.points_in += len(frame.index)
        st = self.devices[frame.device]
        st.frames += 1
        st.last_frame = frame.wall
        _, levels = self.pipeline.on_frame(frame)
        if levels:
            self.dense.apply(self.drivers, self.kernel.level, levels)
            if self.on_level_changes is not None:
                self.on_level_changes(levels)
        if self.alarms is not None:
            self.alarms.after_frame(frame, self.kernel, levels)
        if self.pending and self._commit_at is None:
            # frames arriving within batch_every share one transaction; none waits longer
            self._commit_at = asyncio.get_running_loop().call_later(self.site.report.batch_every, self._commit_due)

    def _commit_due(self) -> None:
        self._commit_at = None
        self.commit()

    def commit(self) -> None:
        """Commit pending messages in one transaction and wake the sinks."""
        if self.fzss_dirty:
            self.fzss_dirty = False
            self.fzss_sent = True
            self.pipeline.fzss(clock.now())
        if not self.pending:
            return
        batch = self.pending[:]
        self.pending.clear()          # the same list: the pipeline appends to it
        self.buffer.append(batch)
        for w in self.wakes:
            w.set()

    # ------------------------------------------------------------------ records at the edges

    def on_device_state(self, index: int, online: bool, reason: str) -> None:
        st = self.devices[index]
        if st.online is online:
            return
        st.online, st.reason, st.since = online, reason, clock.now()
        # one FZSS per commit, however many devices changed; at start, one FZSS once
        # every device has answered or failed (not one per device as each comes up)
        if self.fzss_sent or all(d.online is not None for d in self.devices):
            self.fzss_dirty = True

    def fzss_states(self) -> list[tuple[int, int]]:
        return [(RUN_OK if d.online else RUN_LOST if d.online is False else RUN_UNKNOWN, POWER_UNKNOWN)
                for d in self.devices]

    def definitions(self, now: float) -> None:
        self.pipeline.definitions(now)

    def snapshot(self, now: float) -> None:
        """Every realtime_every: every point and every device's status, to every sink."""
        self.pipeline.snapshot(now)
        self.fzss_sent = True

    def statistics(self, now: float) -> None:
        self.pipeline.statistics(now)

    def status_detail(self) -> dict:
        """Published (retained) on <prefix>/<mine>/<gateway>/status/detail after each connect."""
        return {"gateway": self.site.site.gateway, "buffer": self.buffer.stats(),
                "drops": self.buffer.take_drop_report(),
                "devices": {d.name: bool(s.online) for d, s in zip(self.site.devices, self.devices)}}

    def metrics_snapshot(self) -> dict:
        return health.snapshot(self)

    def healthy(self) -> bool:
        """For the systemd watchdog: the clock loop turns and no task died."""
        return health.pipeline_alive(self)

    # ------------------------------------------------------------------ loops

    async def _clock(self, stop: asyncio.Event) -> None:
        """Snapshots, statistics, definitions and the buffer's tick, scheduled on the monotonic clock (a step
        of the wall clock neither stalls them for the hour it went back nor bursts them for the day it went
        ahead); snapshots stay aligned to the wall clock's multiples of `realtime_every`, re-aligned after a
        step.  The wall clock is watched for an absurd time (clock.Watch: one line, /health)."""
        rep = self.site.report
        now, mono = clock.now(), clock.monotonic()

        def aligned(now: float, mono: float) -> float:
            every = self.site.report.realtime_every
            return mono + (math.floor(now / every) * every + every - now)

        next_snapshot = aligned(now, mono)
        next_defs = mono + rep.definitions_every
        next_tick = mono + 1.0
        skew = now - mono
        started = mono
        self.clock_watch.check(now)
        stopped = asyncio.ensure_future(stop.wait())    # one waiter for the loop's life (wait_for: a task a turn)
        try:
            while not stop.is_set():
                await asyncio.wait((stopped,), timeout=CLOCK_TICK)
                self.last_clock = mono = clock.monotonic()
                rep = self.site.report
                now = clock.now()
                if abs((now - mono) - skew) > STEP:        # the wall clock was stepped: snapshots re-align
                    log.info("clock: the wall clock stepped %+.0f s; snapshots re-align to it", (now - mono) - skew)
                    next_snapshot = aligned(now, mono)
                    self.clock_watch.check(now)
                skew = now - mono
                if self.site.systems:          # each system on its own realtime_every
                    if self.pipeline.snapshots_due(now):
                        self.fzss_sent = True
                elif mono >= next_snapshot:
                    self.snapshot(now)
                    behind = math.floor((mono - next_snapshot) / rep.realtime_every) + 1
                    next_snapshot += rep.realtime_every * max(1, behind)
                if not self.fzss_sent and mono - started > self._first_poll_window():
                    self.fzss_dirty = True
                if mono >= next_tick:
                    self.statistics(now)
                    self.buffer.tick(now)
                    if self.baselines is not None:
                        self.baselines.tick(now)
                    self.clock_watch.check(now)
                    next_tick = mono + 1.0
                if mono >= next_defs:
                    self.definitions(now)
                    next_defs = mono + rep.definitions_every
                self.commit()
        finally:
            stopped.cancel()     # the clock loop failed or was cancelled: its waiter goes too

    def _first_poll_window(self) -> float:
        """How long every device may take to answer or fail its first poll."""
        devs = self.site.devices
        return max((d.poll + d.timeout * (d.retries + 1) for d in devs), default=0.0) + 1.0

    def _start_driver(self, i: int) -> None:
        self.driver_tasks[i] = asyncio.create_task(self.drivers[i].run(), name=f"device:{self.site.devices[i].name}")

    async def _stop_drivers(self, which) -> None:
        """Stop these devices (indices into the current lists)."""
        which = list(which)
        await close_devices([(self.drivers[i], self.driver_tasks[i], self.site.devices[i].name) for i in which])
        for i in which:
            self.driver_tasks[i] = None

    async def run(self, stop: asyncio.Event, *, ready=None, reload_requests: asyncio.Queue | None = None) -> None:
        """Run until `stop` is set; then flush and close.

        `ready()` is called once the buffer is open and every driver and sink
        started; each Site put on `reload_requests` is applied with `reload()`.
        """
        now = clock.now()
        self.definitions(now)      # the first FZSS waits for every device's first answer (or its timeout)
        self.commit()
        metrics = None
        if self.site.metrics.enabled:
            from edge_agent.metrics import MetricsServer
            metrics = MetricsServer(self.site.metrics.listen, self.metrics_snapshot)
        self.console = None
        watchdog = sdnotify.Watchdog()
        web = None
        if self.site.console.enabled:      # the local web server: alarm API (and the console's pages)
            from edge_agent.web import WebServer, optional
            web = WebServer(self.site.console.listen)
            if self.alarms is not None:
                self.alarms.add_routes(web.app)
            from edge_agent.console import Console
            self.console = Console(web, self)       # the operator console's pages on the same server
        self.web = web
        extra = ([self.alarms] if self.alarms is not None else []) + ([optional(web), self.console] if web else [])
        pace = Pace.of_loop()       # shedding also watches what the connected live sinks owe (drivers/pace.py)
        live = [s for s in self.sinks if self.sink_specs[s.name].live]
        pace.backlog = lambda: max((self.buffer.backlog(s.name) for s in live if s.connected),
                                   default=0) if self.buffer.db is not None else 0
        async with entered(([metrics] if metrics else []) + self.sinks + extra):
            for i, drv in enumerate(self.drivers):
                await drv.__aenter__()
                self._start_driver(i)
            self.sink_tasks = [asyncio.create_task(s.run(), name=f"sink:{s.name}") for s in self.sinks]
            self.clock_task = asyncio.create_task(self._clock(stop), name="clock")
            dog = asyncio.create_task(watchdog.run(self.healthy), name="watchdog")
            reloader = asyncio.create_task(self._reloads(reload_requests), name="reload") \
                if reload_requests is not None else None
            log.info("running: %d devices, %d points, sinks: %s", len(self.drivers), len(self.catalog),
                     ", ".join(s.name for s in self.sinks) or "none")
            sdnotify.ready(f"{len(self.drivers)} devices, {len(self.catalog)} points")
            if ready is not None:
                ready()
            await stop.wait()
            sdnotify.stopping()
            for t in (reloader, dog):
                if t is not None:
                    t.cancel()
            # stop acquiring first (all devices at once), then commit what the last polls produced
            await self._stop_drivers(range(len(self.drivers)))
            await self.clock_task
            if self._commit_at is not None:
                self._commit_at.cancel()
                self._commit_at = None
            self.commit()
            await self._drain_briefly()
            for t in self.sink_tasks:
                t.cancel()
            await settle(self.sink_tasks, SHUTDOWN_GRACE)
        pace.backlog = None
        if self.baselines is not None:
            self.baselines.close(clock.now())
        self.buffer.close()
        log.info("stopped; buffer closed at seq %d", self.buffer.next_seq - 1)

    async def _reloads(self, queue: asyncio.Queue) -> None:
        while True:
            site = await queue.get()
            try:
                await self.reload(site)
            except Exception:  # a bug in reload must not take the running agent down
                log.exception("reload failed while applying; devices may need a restart of the service")

    async def reload(self, new: Site) -> None:
        """Apply a new site file: build everything it needs, then swap, or change nothing.

        Thresholds, point definitions, devices and report settings are applied; buffer,
        forward and metrics settings need a restart (logged).  The kernel state of every
        point that is still there (same device name and point id) carries over: open
        alarms stay open, statistics windows, deadband memory and delays go on.  Devices
        whose acquisition settings (their driver's restart fields) and point positions did
        not change keep polling.
        """
        old = self.site
        sdnotify.reloading()
        restart_keys = ("buffer", "forward", "metrics", "alarms", "console", "systems")
        for key in restart_keys:
            if getattr(old, key) != getattr(new, key):
                log.warning("reload: %s settings changed; restart the service to apply them", key)
        new = new.model_copy(update={key: getattr(old, key) for key in restart_keys})
        try:
            pipeline = Pipeline(new, self.routes, self.pending, states=self.fzss_states, previous=self.pipeline,
                                system_routes=self.system_routes)
            keep = [i for i, dev in enumerate(new.devices) if i < len(old.devices) and
                    _acquisition(old.devices[i]) == _acquisition(dev) and
                    [p.index for p in self.pipeline.catalog.by_device[i]] ==
                    [p.index for p in pipeline.catalog.by_device[i]]]
            fresh = {i: self._driver(i, new, pipeline) for i in range(len(new.devices)) if i not in keep}
        except Exception as exc:  # noqa: BLE001 - whatever failed, nothing was changed
            log.error("reload: cannot build the new configuration (%s: %s); the running configuration stays",
                      type(exc).__name__, exc)
            sdnotify.ready()
            return
        old_defs = self.pipeline.definition_bodies()
        old_drivers, old_tasks, old_states = self.drivers, self.driver_tasks, self.devices
        self.pipeline.retire(pipeline, clock.now())     # the removed points' alarms end
        self.site, self.pipeline = new, pipeline
        if self.baselines is not None:          # the new kernel already carries the points over
            self.baselines.attach(self.kernel, self.catalog, clock.now(), carried=True)
        else:
            self.baselines = open_beside_buffer(self.site, self.catalog, self.kernel)
        if self.alarms is not None:
            self.alarms.bind(self)
        self.drivers = [old_drivers[i] if i in keep else fresh[i] for i in range(len(new.devices))]
        self.driver_tasks = [old_tasks[i] if i in keep else None for i in range(len(new.devices))]
        self.devices = [old_states[i] if i in keep else DeviceState() for i in range(len(new.devices))]
        self.dense = DenseSampling(new, self.catalog)
        self.dense.apply(self.drivers, self.kernel.level)
        await close_devices([(old_drivers[i], old_tasks[i], old.devices[i].name)
                              for i in range(len(old_drivers)) if i not in keep])
        for i in fresh:
            await self.drivers[i].__aenter__()
            self._start_driver(i)
        if pipeline.definition_bodies() != old_defs:
            self.definitions(clock.now())
        self.fzss_dirty = True
        self.commit()
        self.reloads += 1
        log.info("reload: applied (%d devices kept polling, %d restarted, %d points, %d carried over)", len(keep),
                 len(fresh), len(pipeline.catalog), pipeline.carried)
        sdnotify.ready()

    async def _drain_briefly(self, timeout: float = 2.0) -> None:
        """Give connected sinks a moment to deliver what was just committed (the rest stays buffered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(s.connected and self.buffer.backlog(s.name) for s in self.sinks):
                return
            await asyncio.sleep(0.05)


def _acquisition(dev) -> tuple:
    """The part of a device's configuration its driver uses (its spec's restart fields)."""
    return dev.driver, registry.driver(dev.driver).restart_key(dev)
