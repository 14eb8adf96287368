"""The Modbus driver: one task per device, polling planned block reads into Frames.

    drv = ModbusDriver(index, device, points, on_frame)
    async with drv:          # never raises for an unreachable device
        await drv.run()      # polls until cancelled

Callers may rely on:
- one `on_frame(Frame)` call per poll, from the event loop, holding every
  point of the device (global indices in `points` order);
- the schedule does not drift: next deadline = previous deadline + poll
  (`poll_in_warning`'s period while the agent says a point is in warning, pace.Cadence);
  ticks missed because a poll overran are counted in `counters["skipped"]`,
  never polled late in a burst; while the whole agent is behind (its event
  loop lags, see pace.py) a share of ticks is skipped too, counted in
  `skipped` and `shed`;
- an unreachable device (no connection, or no answer after `retries` + 1
  tries) yields a frame of NaN with quality 16 on the transition and at each
  failed attempt; attempts back off from 1 s doubling to 60 s with jitter;
  the device recovers by itself;
- a Modbus exception or a malformed answer marks only the points of that
  block with quality 128; exception 2 splits the block (see plan.py);
  NaN/Inf read from a float register is quality 128 with value NaN;
- one log line per state change (online/offline, set of failing blocks),
  never one per poll; `counters` keeps the per-poll facts.
"""
from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
import weakref
from array import array
from typing import Callable

from edge_agent import clock
from edge_agent.drivers.modbus_spec import ModbusConfig
from edge_agent.backoff import Backoff
from edge_agent.drivers.codec import BlockReader, codecs_of
from edge_agent.drivers.link import Link, Unreachable, acquire, release
from edge_agent.drivers.pace import Cadence, Pace
from edge_agent.drivers.plan import Block, Plan
from edge_agent.frame import Q_OK, Q_SENSOR_FAULT, Q_SUBSTATION_FAULT, Frame

log = logging.getLogger("edge_agent.drivers.modbus")

NAN = math.nan
READ_FC = {"co": 1, "di": 2, "hr": 3, "ir": 4}
GROUP = 10                       # modbus-tcp devices that start on one offset of the period (see run())
LOG_READS, LOG_POINTS = 3, 10    # a log line names at most this many failing reads and points
_EXC_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
              4: "device failure", 5: "acknowledge", 6: "device busy", 8: "memory parity error",
              10: "gateway path unavailable", 11: "gateway target did not respond"}


_READERS: "weakref.WeakKeyDictionary[Block, BlockReader]" = weakref.WeakKeyDictionary()


def _reader_of(block: Block) -> BlockReader:
    """The BlockReader of a planned block, one for every device that shares the block (plan.py)."""
    reader = _READERS.get(block)
    if reader is None:
        reader = _READERS[block] = BlockReader(block.start, block.count, block.members, Q_SENSOR_FAULT)
    return reader


class DeviceFailed(Exception):
    """The device did not answer usefully; the poll is lost.  `hint` says what to check."""

    def __init__(self, reason: str, hint: str | None = None):
        super().__init__(reason)
        self.hint = hint


class ModbusDriver:
    """Polls one Modbus device (modbus-tcp, modbus-rtu or modbus-rtu-tcp)."""

    BACKOFF_START = 1.0
    BACKOFF_CAP = 60.0

    def __init__(self, index: int, device: ModbusConfig, points: list, on_frame: Callable[[Frame], None], *,
                 base_dir=None):
        self.index = index
        self.device = device
        self.points = list(points)
        self.on_frame = on_frame
        self.state_changed: Callable[[int, bool, str], None] | None = None
        self.codecs = codecs_of([p.cfg for p in self.points])     # shared with devices of the same map
        self.plan = Plan(self.codecs, device.max_gap)
        self._indices = array("i", [p.index for p in self.points])
        self._nan = array("d", [NAN]) * len(self.points)
        self._readers: dict[Block, BlockReader] = {}   # per block, built on its first read
        self.online = False
        self._state: bool | None = None      # None until the first poll decided
        self._faults: frozenset = frozenset()
        self._since = time.monotonic()
        self.link: Link | None = None
        self.counters = {"polls": 0, "frames": 0, "errors": 0, "timeouts": 0, "exceptions": 0,
                         "garbage": 0, "skipped": 0, "shed": 0, "requests": 0, "splits": 0, "connects": 0,
                         "backoff": 0.0, "dense_polls": 0}
        self.cadence = Cadence(device.poll, device.poll_in_warning)   # denser polls in warning

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> "ModbusDriver":
        self.link = acquire(self.device)   # connects lazily, in the first poll
        return self

    async def __aexit__(self, *exc) -> None:
        if self.link is not None:
            release(self.link)
            self.link = None

    def describe(self) -> str:
        return f"device {self.device.name} ({self.device.driver} {self._where()} unit {self.device.unit})"

    def _where(self) -> str:
        d = self.device
        return d.serial if d.driver == "modbus-rtu" else f"{d.host}:{d.port or 502}"

    # ------------------------------------------------------------------ schedule
    async def run(self) -> None:
        """Poll until cancelled (see the module docstring for the guarantees)."""
        loop = asyncio.get_running_loop()
        cadence = self.cadence
        period = cadence.period
        # spread devices over the period (golden-ratio offsets) instead of firing
        # every device at the same instant: servers and serial gateways see an even load;
        # devices with a connection of their own (modbus-tcp) share an offset GROUP at a time,
        # so their polls, frames and commit take one turn of the event loop together instead of
        # one each (at 50 devices: 5 wake-ups a second, not 50); devices on a shared bus keep one
        # offset each (they would only queue for the bus)
        group = 1 if self.link is None or self.link.shared else GROUP
        deadline = loop.time() + ((self.index // group) * 0.6180339887 % 1.0) * min(period, 1.0)
        retry = Backoff(self.BACKOFF_START, self.BACKOFF_CAP)
        me = asyncio.current_task()
        pace, debt = Pace.of_loop(), [0.0]
        pace.join()
        try:
            while True:
                if me is not None and me.cancelling():
                    # Python 3.11's wait_for (inside pymodbus) can swallow a cancel that
                    # lands as a response completes; the request is still pending, so honour it
                    raise asyncio.CancelledError
                if cadence.period != period:     # in or out of warning: one new period after the last poll
                    deadline = max(deadline - period + cadence.period, loop.time())
                    period = cadence.period
                delay = deadline - loop.time()
                if delay > 0 and await cadence.sleep(delay):
                    continue
                if self._state and pace.skip(debt):     # the agent is behind: this tick is shed
                    self.counters["skipped"] += 1
                    self.counters["shed"] += 1
                    deadline += period
                    continue
                if cadence.warning:
                    self.counters["dense_polls"] += 1
                deadline = await self._tick(loop, period, retry, deadline)
        finally:
            pace.leave()

    async def _tick(self, loop, period: float, retry: Backoff, deadline: float) -> float:
        """One poll on schedule; the next deadline."""
        if await self.poll_once():
            retry.reset()
            deadline += period
            late = loop.time() - deadline
            if late >= period:          # overran whole periods: skip them, do not stack
                missed = int(late // period)
                self.counters["skipped"] += missed
                deadline += missed * period
        else:
            wait = max(period, retry.next())
            self.counters["backoff"] = round(wait, 3)
            deadline = loop.time() + wait
        return deadline

    # ------------------------------------------------------------------ one poll
    async def poll_once(self) -> bool:
        """One poll of every block; emits one frame; False when the device is unreachable."""
        assert self.link is not None, "use `async with driver:`"
        self.counters["polls"] += 1
        mono, wall = time.monotonic(), clock.now()
        values = array("d", self._nan)
        quality = array("B", bytes(len(self.points)))
        faults: dict[str, str] = {}
        try:
            await self._read_all(values, quality, faults)
        except Exception as exc:
            if not isinstance(exc, (Unreachable, DeviceFailed)):
                # a bug, not the device: keep polling, but show the traceback once per state change
                if self._state is not False:
                    log.exception("%s: unexpected error while polling", self.describe())
                exc = DeviceFailed(f"unexpected error {type(exc).__name__}: {exc}", "report this as a bug")
            self.counters["errors"] += 1
            self._emit(Frame(self.index, mono, wall, array("i", self._indices), array("d", self._nan),
                             array("B", [Q_SUBSTATION_FAULT]) * len(self.points)))
            self._set_state(False, str(exc), getattr(exc, "hint", None))
            return False
        self._set_state(True, "answering")
        self._note_faults(faults)
        self._emit(Frame(self.index, mono, wall, array("i", self._indices), values, quality))
        return True

    async def _read_all(self, values: array, quality: array, faults: dict) -> None:
        """Every block of the plan into `values`/`quality`, one request at a time, holding the bus."""
        async with self.link.lock:
            if self.link.shared:
                self.link.set_timeout(self.device.timeout)
            await self._connect()
            for block in list(self.plan.blocks):
                await self._read_block(block, values, quality, faults)

    async def _connect(self) -> None:
        if await self.link.connect():
            self.counters["connects"] += 1

    async def _request(self, block: Block):
        """The response to `block`'s read, retried on timeout; raises DeviceFailed."""
        from pymodbus.exceptions import ConnectionException, ModbusIOException
        link, dev = self.link, self.device
        garbled = False
        for _ in range(dev.retries + 1):
            self.counters["requests"] += 1
            try:
                return await link.read(block.area, block.start, block.count, dev.unit)
            except (ModbusIOException, ConnectionException):
                # pymodbus drops frames it cannot parse and then times out: bytes
                # that arrived without a usable answer mean garbage, not silence
                if link.rx:
                    garbled = True
                    self.counters["garbage"] += 1
                else:
                    self.counters["timeouts"] += 1
                link.resync()
                await self._connect()
        if garbled:
            raise DeviceFailed(f"answers with malformed frames ({dev.retries + 1} tries)",
                               "check the framing (modbus-tcp vs modbus-rtu-tcp), baud rate, parity and unit id")
        raise DeviceFailed(f"no answer within {dev.timeout:g}s after {dev.retries + 1} tries")

    async def _read_block(self, block: Block, values: array, quality: array, faults: dict) -> None:
        rr = await self._request(block)
        if rr.function_code & 0x7F != READ_FC[block.area]:
            # pymodbus decodes whatever function the answer names (an input-register answer
            # to a holding-register read would pass as good values)
            self._garbage(block, quality, faults, f"function code {rr.function_code} in the answer "
                                                  f"to function {READ_FC[block.area]}")
            return
        if rr.isError():
            for half in self._exception(block, getattr(rr, "exception_code", 0), quality, faults):
                await self._read_block(half, values, quality, faults)
            return
        if block.is_bits:
            bits = rr.bits
            if len(bits) != 8 * ((block.count + 7) // 8):   # the byte count must be exactly the one asked
                self._garbage(block, quality, faults, f"{len(bits)} bits for {block.count}")
                return
            for pos, c in block.members:
                values[pos] = 1.0 if bits[c.address - block.start] else 0.0
            return
        regs = rr.registers
        if len(regs) != block.count:
            self._garbage(block, quality, faults, f"{len(regs)} registers for {block.count}")
            return
        try:
            self._reader(block).read(regs, values, quality)
        except struct.error:
            self._garbage(block, quality, faults, "register values out of range")

    def _exception(self, block: Block, code: int, quality: array, faults: dict) -> list[Block]:
        """A Modbus exception answered `block`: the halves to read instead (exception 2), or none."""
        self.counters["exceptions"] += 1
        if code == 2 and not block.rejected:
            halves = self.plan.split(block)
            if len(halves) == 2:
                self.counters["splits"] += 1
                return halves
        faults[str(block)] = f"exception {code} ({_EXC_NAMES.get(code, 'unknown')})"
        self._mark(block, quality)
        return []

    def _reader(self, block: Block) -> BlockReader:
        reader = self._readers.get(block)
        if reader is None:
            reader = self._readers[block] = _reader_of(block)
        return reader

    def _garbage(self, block: Block, quality: array, faults: dict, what: str) -> None:
        self.counters["garbage"] += 1
        faults[str(block)] = f"malformed answer ({what})"
        self._mark(block, quality)
        self.link.resync()

    @staticmethod
    def _mark(block: Block, quality: array) -> None:
        for pos, _ in block.members:
            quality[pos] = Q_SENSOR_FAULT

    def _emit(self, frame: Frame) -> None:
        self.counters["frames"] += 1
        self.on_frame(frame)

    # ------------------------------------------------------------------ state and logging
    def _set_state(self, online: bool, reason: str, hint: str | None = None) -> None:
        if self._state is online:
            return
        was, self._state, self.online = self._state, online, online
        now = time.monotonic()
        if online:
            after = f" after {now - self._since:.0f}s" if was is False else ""
            log.info("%s online%s", self.describe(), after)
        else:
            log.warning("%s unreachable: %s; %s", self.describe(), reason,
                        hint or (self.link.hint if self.link else "check the device"))
        self._since = now
        if self.state_changed is not None:
            self.state_changed(self.index, online, reason)

    def _note_faults(self, faults: dict[str, str]) -> None:
        # the state is which reads fail, not why: a device answering different
        # errors to the same reads is one state (one line), not one line per error
        sig = frozenset(faults)
        if sig == self._faults:
            return
        self._faults = sig
        if not faults:
            log.info("%s answers all reads again", self.describe())
            return
        members = {str(b): b.members for b in self.plan.blocks}
        ids = [self.points[p].id for blk in sorted(faults) for p, _ in members.get(blk, ())]
        reads = sorted(faults.items())
        what = "; ".join(f"{blk}: {why}" for blk, why in reads[:LOG_READS])
        if len(reads) > LOG_READS:
            what += f"; and {len(reads) - LOG_READS} more reads"
        shown = " ".join(ids[:LOG_POINTS]) + (f" and {len(ids) - LOG_POINTS} more" if len(ids) > LOG_POINTS else "")
        log.warning("%s answers with errors: %s; points %s read as faults (quality 128); check these addresses and "
                    "types against the device's register map", self.describe(), what, shown or "-")
