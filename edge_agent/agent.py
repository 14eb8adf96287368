"""The pipeline: drivers -> kernel -> encoder -> buffer -> sinks.

`Agent(site)` composes the parts; `await agent.run(stop)` runs until `stop`
is set, then stops the drivers, commits what is pending, lets the sinks finish
what is in flight, and closes the buffer.  Nothing here does I/O per point.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.buffer import SINKS, Buffer
from edge_agent.config import Site
from edge_agent.drivers import make_driver
from edge_agent.filtering import Kernel
from edge_agent.frame import Frame
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from edge_agent.profile.encode import Encoder

log = logging.getLogger("edge_agent.agent")

RUN_OK, RUN_LOST = 0, 1          # substation run status (PROFILE.md)
POWER_UNKNOWN = 9


@dataclass
class DeviceState:
    online: bool | None = None
    reason: str = ""
    since: float = field(default_factory=time.time)
    frames: int = 0
    last_frame: float = 0.0


class Agent:
    """One gateway: every device, the kernel, the buffer and the configured sinks."""

    def __init__(self, site: Site):
        self.site = site
        base = Path(site.source).parent if site.source else None
        self.profile = load_profile(site.profile, base=base)
        self.catalog = Catalog(site, self.profile)
        rep = site.report
        self.kernel = Kernel(len(self.catalog), self.catalog.thresholds(),
                             realtime_every=rep.realtime_every, stats_window=rep.stats_window)
        self.encoder = Encoder(site, self.catalog, self.profile)
        b = site.buffer
        self.buffer = Buffer(site.path(b.path), durability=b.durability, max_size=b.max_size,
                             max_age=b.max_age, sync_every=b.sync_every, memory_limit=b.memory_limit)
        self.pending: list[tuple[str, int, float, bytes]] = []
        self.fzss_dirty = False
        self.devices = [DeviceState() for _ in site.devices]
        self.drivers = [make_driver(i, dev, self.catalog.by_device[i], self.on_frame)
                        for i, dev in enumerate(site.devices)]
        for drv in self.drivers:
            drv.state_changed = self.on_device_state
        self.sinks: list = []
        self.wakes: list[asyncio.Event] = []
        self.mqtt = None
        self.files = None
        mask = 0
        fwd = site.forward
        if fwd.mqtt is not None and fwd.mqtt.enabled:
            from edge_agent.forward.mqtt import MqttSink
            wake = asyncio.Event()
            self.mqtt = MqttSink(fwd.mqtt, site, self.buffer, self.encode_mqtt, wake,
                                 status_detail=self.status_detail)
            self.sinks.append(self.mqtt)
            self.wakes.append(wake)
            mask |= SINKS["mqtt"]
        if fwd.files is not None and fwd.files.enabled:
            from edge_agent.forward.files import FileSink
            wake = asyncio.Event()
            self.files = FileSink(fwd.files, site, self.profile, self.buffer, wake, site.path(fwd.files.dir))
            self.sinks.append(self.files)
            self.wakes.append(wake)
            mask |= SINKS["files"]
        self.mask_all = mask
        # Per-frame CDSS (report by exception) only go to the MQTT uplink; the
        # full snapshot every realtime_every goes everywhere (the spec files
        # need it).  No row is for the files alone, so the MQTT consumer's seq
        # has no gaps that are not loss.
        self.mask_live = mask & SINKS["mqtt"]
        self.frames = 0
        self.points_in = 0
        self.started = time.time()

    # ------------------------------------------------------------------ hot path

    def on_frame(self, frame: Frame) -> None:
        """Called by a driver, in the event loop, once per poll."""
        self.frames += 1
        self.points_in += len(frame.index)
        st = self.devices[frame.device]
        st.frames += 1
        st.last_frame = frame.wall
        report = self.kernel.process(frame)
        if len(report) and self.mask_live:
            k = self.kernel
            self.pending.append(("CDSS", self.mask_live, frame.wall,
                                 self.encoder.cdss(report, k.value, k.status, k.time, frame.wall)))
        events = self.kernel.take_events()
        if events:
            self.pending.append(("YCBJ", self.mask_all, frame.wall, self.encoder.ycbj(events, frame.wall)))

    def encode_mqtt(self, row) -> tuple[str, bytes, bool]:
        enc = self.encoder
        return enc.topic(row.type), enc.envelope(row.seq, row.type, row.time, row.body), enc.retained(row.type)

    def commit(self) -> None:
        """Commit pending messages in one transaction and wake the sinks."""
        if self.fzss_dirty:
            self.fzss_dirty = False
            now = time.time()
            self.pending.append(("FZSS", self.mask_all, now, self.encoder.fzss(self.fzss_states(), now)))
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.buffer.append(batch)
        for w in self.wakes:
            w.set()

    # ------------------------------------------------------------------ records at the edges

    def on_device_state(self, index: int, online: bool, reason: str) -> None:
        st = self.devices[index]
        if st.online is online:
            return
        st.online, st.reason, st.since = online, reason, time.time()
        # one FZSS per commit, however many devices changed (three devices coming
        # up at start make one record, not three files)
        self.fzss_dirty = True

    def fzss_states(self) -> list[tuple[int, int]]:
        return [(RUN_OK if d.online else RUN_LOST if d.online is False else 9, POWER_UNKNOWN)
                for d in self.devices]

    def definitions(self, now: float) -> None:
        self.pending.append(("CDDY", self.mask_all, now, self.encoder.cddy(now)))
        self.pending.append(("FZDY", self.mask_all, now, self.encoder.fzdy(now)))

    def snapshot(self, now: float) -> None:
        """Every realtime_every: every point and every device's status, to every sink."""
        if self.mask_all:
            k = self.kernel
            self.pending.append(("CDSS", self.mask_all, now,
                                 self.encoder.cdss(range(len(self.catalog)), k.value, k.status, k.time, now)))
        self.pending.append(("FZSS", self.mask_all, now, self.encoder.fzss(self.fzss_states(), now)))

    def statistics(self, now: float) -> None:
        stats = self.kernel.take_stats(now)
        if stats:
            self.pending.append(("TJSJ", self.mask_all, now, self.encoder.tjsj(stats, now)))

    def status_detail(self) -> dict:
        return {"gateway": self.site.site.gateway, "buffer": self.buffer.stats(),
                "devices": {d.name: bool(s.online) for d, s in zip(self.site.devices, self.devices)}}

    # ------------------------------------------------------------------ loops

    async def _clock(self, stop: asyncio.Event) -> None:
        rep = self.site.report
        now = time.time()
        next_snapshot = math.floor(now / rep.realtime_every) * rep.realtime_every + rep.realtime_every
        next_defs = now + rep.definitions_every
        next_tick = now + 1.0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=rep.batch_every)
            except asyncio.TimeoutError:
                pass
            now = time.time()
            if now >= next_snapshot:
                self.snapshot(now)
                next_snapshot += rep.realtime_every * max(1, math.floor((now - next_snapshot) / rep.realtime_every) + 1)
            if now >= next_tick:
                self.statistics(now)
                self.buffer.tick(now)
                next_tick = now + 1.0
            if now >= next_defs:
                self.definitions(now)
                next_defs = now + rep.definitions_every
            self.commit()

    async def run(self, stop: asyncio.Event, *, ready=None) -> None:
        """Run until `stop` is set; then flush and close.  `ready()` is called once everything started."""
        now = time.time()
        self.definitions(now)
        self.pending.append(("FZSS", self.mask_all, now, self.encoder.fzss(self.fzss_states(), now)))
        self.commit()
        async with _all(self.drivers + self.sinks):
            driver_tasks = [asyncio.create_task(d.run(), name=f"device:{d_cfg.name}")
                            for d, d_cfg in zip(self.drivers, self.site.devices)]
            sink_tasks = [asyncio.create_task(s.run(), name=f"sink:{type(s).__name__}") for s in self.sinks]
            clock = asyncio.create_task(self._clock(stop), name="clock")
            log.info("running: %d devices, %d points, sinks: %s", len(self.drivers), len(self.catalog),
                     ", ".join(type(s).__name__ for s in self.sinks) or "none")
            if ready is not None:
                ready()
            await stop.wait()
            # stop acquiring first, then commit what the last polls produced
            for t in driver_tasks:
                t.cancel()
            await asyncio.gather(*driver_tasks, return_exceptions=True)
            await clock
            self.commit()
            await self._drain_briefly()
            for t in sink_tasks:
                t.cancel()
            await asyncio.gather(*sink_tasks, return_exceptions=True)
        self.buffer.close()
        log.info("stopped; buffer closed at seq %d", self.buffer.next_seq - 1)

    async def _drain_briefly(self, timeout: float = 2.0) -> None:
        """Give connected sinks a moment to deliver what was just committed (the rest stays buffered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = False
            if self.mqtt is not None and self.mqtt.connected and self.buffer.backlog("mqtt"):
                busy = True
            if self.files is not None and self.buffer.backlog("files"):
                busy = True
            if not busy:
                return
            await asyncio.sleep(0.05)


class _all:
    """Enter several async context managers, exit them in reverse order."""

    def __init__(self, items):
        self.items = items
        self.entered: list = []

    async def __aenter__(self):
        for it in self.items:
            await it.__aenter__()
            self.entered.append(it)
        return self

    async def __aexit__(self, *exc):
        for it in reversed(self.entered):
            try:
                await it.__aexit__(None, None, None)
            except Exception:  # a sink failing to close must not lose the buffer close
                log.exception("error while closing %s", type(it).__name__)
        return False
