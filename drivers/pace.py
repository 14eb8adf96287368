"""The drivers' shared schedule: `Pace`, the share of polls an overloaded agent skips, and `Cadence`,
a device's own period (denser while the agent says it is in warning, `poll_in_warning:`).

    pace = Pace.of_loop()          # one per event loop, shared by every driver in it
    if pace.skip(driver):          # at each tick, before polling
        ...count it as skipped...

Everything in the agent (polling, filtering, encoding, the buffer, the sinks)
shares one event loop.  When more is offered than the process can do, every
callback runs late, and the loop turns too slowly for the sinks, whose
throughput is a window of messages per round trip: acquisition would crowd out
delivery and the buffer would grow while less and less leaves it.  A monitor
task wakes every `TICK` and measures how late it woke (the loop's lag,
smoothed); while the lag stays above `HIGH` the share of ticks the drivers
skip grows, and while it stays under `LOW` it shrinks back to none.  Each
driver skips its share evenly (a running debt, not chance), and counts the
ticks in `counters["skipped"]` and `counters["shed"]`.  One log line when an
episode starts and one when it has been over for `CALM` seconds.

A lagging loop is also a starved uplink: its sink delivers a window of messages
per loop turn, so delivery falls behind acquisition well before the lag is
large (at twice the sustainable load, half of what was acquired was still
delivered).  So the agent gives the pace a `backlog` probe (rows its connected
live sinks still owe): while the loop is even slightly late (over `LOW`) and
that backlog is over `BACKLOG_HIGH`, the share grows as well; once the lag is low
it shrinks, slowly while the backlog is still over `BACKLOG_LOW`.  A slow or stopped broker on an
idle machine does not lag the loop: then nothing is shed, the buffer absorbs it.

Callers may rely on: no tick is skipped while the loop keeps up (the lag is
far under HIGH on any sustainable load, and a single slow callback, such as a
checkpoint, moves the smoothed lag by a fraction of its length); the monitor
runs only while some driver uses it.
"""
from __future__ import annotations

import asyncio
import logging
import weakref

log = logging.getLogger("edge_agent.drivers")

TICK = 0.05         # s between lag samples
HIGH = 0.06         # s of smoothed lag: the loop is behind, skip more
LOW = 0.02          # s of smoothed lag: the loop keeps up, skip less
ALPHA = 0.2         # smoothing per sample (about TICK / ALPHA = 0.25 s of memory)
STEP_UP, STEP_DOWN = 0.05, 0.02
MAX_SHARE = 0.9     # never skip every tick: each device keeps answering now and then
CALM = 10.0         # s without skipping before an episode counts as over (and is logged)
BACKLOG_HIGH = 256  # rows a connected sink owes (a few commit batches at the highest rate): it is falling behind
BACKLOG_LOW = 96    # rows owed: the sink keeps up again


class Pace:
    """The lag of one event loop and the share of ticks its drivers skip."""

    _loops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pace]" = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.lag = 0.0
        self.share = 0.0
        self.users = 0
        self.episode = False
        self._task: asyncio.Task | None = None
        self.backlog = None     # a callable: rows the connected live sinks owe (the agent sets it), or None

    @classmethod
    def of_loop(cls) -> "Pace":
        loop = asyncio.get_running_loop()
        pace = cls._loops.get(loop)
        if pace is None:
            pace = cls._loops[loop] = cls()
        return pace

    def join(self) -> None:
        """A driver starts using the pace (starts the monitor if needed)."""
        self.users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._monitor(), name="drivers:pace")

    def leave(self) -> None:
        self.users -= 1
        if self.users <= 0 and self._task is not None:
            self._task.cancel()
            self._task = None
            self.lag = self.share = 0.0
            self.episode = False

    def skip(self, debt: list[float]) -> bool:
        """Whether this tick is one of the share to skip; `debt` is the caller's own one-float list."""
        if not self.share:
            debt[0] = 0.0
            return False
        debt[0] += self.share
        if debt[0] >= 1.0:
            debt[0] -= 1.0
            return True
        return False

    async def _monitor(self) -> None:
        loop = asyncio.get_running_loop()
        calm_since = None       # while an episode lasts: since when nothing was skipped
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            now = loop.time()
            self.lag += ALPHA * (max(0.0, now - due) - self.lag)
            owed = self.backlog() if self.backlog is not None and (self.lag > LOW or self.share) else 0
            if self.lag > HIGH or (self.lag > LOW and owed > BACKLOG_HIGH):
                if not self.episode:
                    self.episode = True
                    log.warning("the agent cannot keep up (its event loop runs %.0f ms late): skipping a share of "
                                "every device's polls until it can (counted in edge_agent_device_skipped_total); "
                                "poll less often, or move devices to another gateway", 1000 * self.lag)
                self.share = min(MAX_SHARE, self.share + STEP_UP)
            elif self.lag < LOW and self.share:
                # a backlog still draining holds most of the share (a broker that stays slow lets it go)
                self.share = max(0.0, self.share - (STEP_DOWN if owed < BACKLOG_LOW else STEP_DOWN / 4))
            if self.share:
                calm_since = None
            elif self.episode:
                calm_since = calm_since or now
                if now - calm_since >= CALM:      # one line per episode, not one per wobble
                    self.episode = False
                    log.info("the agent keeps up again: every poll is made")


class Cadence:
    """A device's poll period: `normal`, or `dense` while the agent says one of its points is in warning.

        cadence = Cadence(device.poll, device.poll_in_warning)
        period = cadence.period              # before each wait
        if await cadence.sleep(delay): ...   # True: the period changed meanwhile (it returned early)
        cadence.warn(True)                   # the agent, from the points' levels (True: changed)

    A driver that sees the period change schedules its next poll one new period after the
    previous one (at once if that is past): entering warning does not wait out a long normal
    period, leaving it does not fire a burst.  Without `poll_in_warning` the period never changes
    and `sleep` is a plain sleep.
    """

    def __init__(self, normal: float, dense=None) -> None:
        self.normal = float(normal)
        self.dense = float(dense.period) if dense is not None else None   # None: no poll_in_warning
        self.warning = False
        self._changed = asyncio.Event()

    @property
    def period(self) -> float:
        return self.dense if self.warning and self.dense is not None else self.normal

    def warn(self, on: bool) -> bool:
        """Set whether the device is in warning; True when its period changed."""
        on = bool(on) and self.dense is not None
        if on == self.warning:
            return False
        self.warning = on
        self._changed.set()
        return True

    async def sleep(self, delay: float, also: asyncio.Event | None = None) -> bool:
        """Sleep up to `delay` s; True when the period changed meanwhile.  Returns early too when
        `also` is set (the caller looks at it)."""
        if delay <= 0:
            return False
        if self.dense is None and also is None:
            await asyncio.sleep(delay)
            return False
        self._changed.clear()
        waits = [asyncio.ensure_future(self._changed.wait())]
        if also is not None:
            waits.append(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return self._changed.is_set()
