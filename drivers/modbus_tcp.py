"""Modbus TCP without pymodbus on the hot path: one connection, several requests in flight.

    drv = ModbusTcpDriver(index, device, points, on_frame)   # what make_driver gives for modbus-tcp
    async with drv:
        await drv.run()

The driver keeps every guarantee of `ModbusDriver` (schedule, skipped ticks,
backoff, exception-2 splits, quality codes, one log line per state change);
only the wire changes.  A bare asyncio protocol (`MbapConnection`) speaks
Modbus TCP itself: each request gets a transaction id, up to `inflight`
requests of one poll are on the wire at once, answers are matched to them
by id (in any order) and the register bytes go straight into the block's
`BlockReader`, which unpacks them into the frame's arrays.  pymodbus stays for
RTU, RTU over TCP, serial and the simulators.

Devices that cannot take several requests at once: the protocol allows it,
but some servers (gateways, small PLCs, the stock pymodbus server) answer only
the first of requests that arrive together and drop or delay the rest.  The
driver detects it: when, with several requests in flight, one is answered and
a later one times out, is refused with exception 6 (busy) or the connection
drops, it re-reads the rest of the poll one request at a time on a fresh
connection.  If that works, the device stays at one request at a time for the
life of the driver, logged once; if the re-read fails too, the fault was the
device's, not the overlap.  `inflight: 1` in the site file skips the check.

Anything that breaks the protocol (a frame that is not Modbus TCP, an
unknown transaction id, an answer from another unit or for another function,
a byte count that disagrees with the request or with the frame, a partial
answer followed by silence or a reset) fails the request as a malformed
answer: the connection is dropped (its byte stream cannot be trusted), the
request is retried `retries` times on a new connection, and if no try
succeeds the poll fails ("answers with malformed frames" and the last reason,
when one of the tries was malformed), so the device's points get quality 16
like any unreachable device.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from array import array

from edge_agent.drivers.link import Unreachable
from edge_agent.drivers.modbus import READ_FC, DeviceFailed, ModbusDriver
from edge_agent.drivers.plan import Block

log = logging.getLogger("edge_agent.drivers.modbus")

_REQUEST = struct.Struct(">HHHBBHH")    # MBAP (tid, protocol 0, length 6, unit) + function, start, count
_MBAP = struct.Struct(">HHHB")
BUSY = 6                                # exception 6: server device busy


class Malformed(Exception):
    """The device broke the Modbus TCP protocol; the message says how."""


class Lost(Exception):
    """The connection closed (or was reset) with no answer pending in it."""


class Timeout(Exception):
    """No answer within the timeout."""


class MbapConnection(asyncio.Protocol):
    """One Modbus TCP connection; `request` returns a future of the answer, matched by transaction id.

    A future resolves to the answer's data bytes (registers big-endian, or
    packed bits) or to an int, the Modbus exception code; it fails with
    `Timeout`, `Lost` or `Malformed`.  After any protocol violation every
    pending request fails and the connection closes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple] = {}     # tid -> (future, unit, function, data bytes)
        self.buf = b""
        self.tid = 0
        self.open = False

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport, self.open = transport, True

    def connection_lost(self, exc) -> None:
        self.open = False
        if self.buf:
            self._fail(Malformed("the connection closed in the middle of an answer"))
        else:
            self._fail(Lost(f"the device closed the connection{f' ({exc})' if exc else ''}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        pending = self.pending
        while n - pos >= 7:
            tid, proto, length, unit = _MBAP.unpack_from(buf, pos)
            if proto != 0 or not 2 <= length <= 254:
                # no way to find where the next frame starts: the stream is lost
                return self._abort(Malformed(f"not a Modbus TCP frame (protocol id {proto}, length {length})"))
            end = pos + 6 + length
            if n < end:
                break
            entry = pending.get(tid)
            if entry is None:
                return self._abort(Malformed(f"an answer with transaction id {tid}, which was not asked"))
            fut, want_unit, fc, nbytes = entry
            got = buf[pos + 7]
            if unit != want_unit:
                return self._abort(Malformed(f"an answer from unit {unit} to a request for unit {want_unit}"))
            if got == fc:
                count = buf[pos + 8] if length >= 3 else -1
                if count != nbytes or length != 3 + nbytes:
                    return self._abort(Malformed(f"a byte count of {count} in a {length - 2}-byte answer, "
                                                 f"for {nbytes} bytes asked"))
                answer = buf[pos + 9:end]
            elif got == fc | 0x80 and length == 3:
                answer = buf[pos + 8]
            else:
                return self._abort(Malformed(f"function code {got} ({length - 1} bytes) in the answer to "
                                             f"function {fc}"))
            del pending[tid]
            if not fut.done():
                fut.set_result(answer)
            pos = end
        self.buf = buf[pos:] if pos else buf

    # ------------------------------------------------------------------ requests
    def request(self, unit: int, reads: list[tuple[int, int, int, int]], timeout: float) -> list[asyncio.Future]:
        """Send `reads` ((function, start, count, data bytes expected), ...) in one write; their futures."""
        futs, out, tids = [], [], []
        for fc, start, count, nbytes in reads:
            self.tid = tid = (self.tid + 1) & 0xFFFF
            fut = self.loop.create_future()
            self.pending[tid] = (fut, unit, fc, nbytes)
            out.append(_REQUEST.pack(tid, 0, 6, unit, fc, start, count))
            futs.append(fut)
            tids.append(tid)
        # one timer for the batch, left to fire (cheaper than cancelling one per answer)
        self.loop.call_later(timeout, self._expire, tids)
        self.transport.write(b"".join(out))
        return futs

    def _expire(self, tids: list[int]) -> None:
        late = [tid for tid in tids if tid in self.pending]
        if not late:
            return
        if self.buf:       # bytes came, but never a whole answer
            self._abort(Malformed("a partial answer, then nothing within the timeout"))
            return
        for tid in late:
            fut = self.pending.pop(tid)[0]
            if not fut.done():
                fut.set_exception(Timeout())

    def _fail(self, exc: Exception) -> None:
        pending, self.pending = self.pending, {}
        for fut, _, _, _ in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    def _abort(self, exc: Exception) -> None:
        self._fail(exc)
        self.buf = b""
        self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()       # drop unsent bytes: nothing more is read from this stream


class MbapLink:
    """The connection of one modbus-tcp device (what `ModbusDriver` calls its link)."""

    shared = False

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.where = f"{host}:{port}"
        self.hint = "check that the device is powered and on the network, and its host/port in the site file"
        self.conn: MbapConnection | None = None

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.open

    async def connect(self) -> bool:
        """Open the connection if needed (True if it opened now); raise `Unreachable` if it cannot be."""
        if self.connected:
            return False
        loop = asyncio.get_running_loop()
        conn = MbapConnection(loop)
        try:
            await asyncio.wait_for(loop.create_connection(lambda: conn, self.host, self.port), self.timeout + 1.0)
        except (asyncio.TimeoutError, OSError):
            raise Unreachable(f"cannot connect to {self.where}") from None
        self.conn = conn
        return True

    def reset(self) -> None:
        """Drop the connection (a late answer must never meet the next request); the next poll reconnects."""
        if self.conn is not None:
            self.conn._fail(Lost("reset"))
            self.conn.close()
            self.conn = None

    close = reset


class ModbusTcpDriver(ModbusDriver):
    """Polls one modbus-tcp device over its own `MbapLink`, `device.inflight` requests at a time."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.window = self.device.inflight      # drops to 1 for a device that cannot take more
        self._probing = False
        self._wire: dict[Block, tuple] = {}     # per block, its read on the wire (built once)
        self.counters["inflight"] = self.window

    async def __aenter__(self) -> "ModbusTcpDriver":
        d = self.device
        self.link = MbapLink(d.host, d.port or 502, d.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    async def _read_all(self, values: array, quality: array, faults: dict) -> None:
        dev, link = self.device, self.link
        if self._probing:       # the last poll ended (unreachable) before the check could decide
            self._restore()
        todo: deque[Block] = deque(self.plan.blocks)
        failed: dict[Block, list[Exception]] = {}
        while todo:
            await self._connect()
            conn = link.conn
            inflight: deque[tuple[Block, asyncio.Future]] = deque()
            answered = 0
            try:
                while todo or inflight:
                    if todo and len(inflight) < self.window:
                        batch = [todo.popleft() for _ in range(min(len(todo), self.window - len(inflight)))]
                        self.counters["requests"] += len(batch)
                        reads = [self._wire.get(b) or self._wire.setdefault(b, _read(b)) for b in batch]
                        inflight.extend(zip(batch, conn.request(dev.unit, reads, dev.timeout)))
                    block, fut = inflight[0]
                    answer = await fut
                    if answer == BUSY and type(answer) is int and self.window > 1 and (answered or len(inflight) > 1):
                        raise Lost("exception 6 (device busy) with several requests in flight")
                    inflight.popleft()
                    if type(answer) is int:
                        todo.extendleft(reversed(self._exception(block, answer, quality, faults)))
                    else:
                        self._decode(block, answer, values, quality)
                    answered += 1
            except (Timeout, Lost, Malformed) as exc:
                # the block that failed first, then every other one still on the wire, all read again
                again = [b for b, _ in inflight]
                link.reset()
                _settle(inflight)
                todo.extendleft(reversed(again))
                if self._suspect_overlap(exc, answered, len(again)):
                    continue                # not the device's try: read the rest one at a time
                self._count(exc)
                tries = failed.setdefault(again[0], [])
                tries.append(exc)
                if len(tries) > dev.retries:
                    raise self._failure(tries) from None
            except BaseException:           # cancelled (shutdown, reload) or a bug: leave nothing pending
                link.reset()
                _settle(inflight)
                raise
        if self._probing:
            self._probing = False
            log.info("%s does not answer several requests at once; reading one request at a time from now on "
                     "(set inflight: 1 for this device to skip this check)", self.describe())

    def _suspect_overlap(self, exc: Exception, answered: int, outstanding: int) -> bool:
        """With several requests in flight, one answered and then silence, busy or a drop: try one at a time."""
        if self._probing:
            self._restore()         # one at a time failed too: the overlap was not the problem
            return False
        if self.window > 1 and answered and not isinstance(exc, Malformed) and outstanding:
            self._probing, self.window = True, 1
            self.counters["inflight"] = 1
            return True
        return False

    def _restore(self) -> None:
        self._probing, self.window = False, self.device.inflight
        self.counters["inflight"] = self.window

    def _count(self, exc: Exception) -> None:
        if isinstance(exc, Malformed):
            self.counters["garbage"] += 1
        else:
            self.counters["timeouts"] += 1

    def _failure(self, tries: list[Exception]) -> DeviceFailed:
        dev, n = self.device, len(tries)
        bad = [e for e in tries if isinstance(e, Malformed)]
        if bad:
            return DeviceFailed(f"answers with malformed frames ({bad[-1]}; {n} tries)",
                                "check that the device speaks Modbus TCP (not RTU over TCP: driver "
                                "modbus-rtu-tcp), its unit id, and that nothing else answers on that port")
        if any(isinstance(e, Lost) for e in tries):
            return DeviceFailed(f"closes the connection instead of answering ({n} tries)",
                                "check the unit id and that the device accepts another client")
        return DeviceFailed(f"no answer within {dev.timeout:g}s after {n} tries")

    def _decode(self, block: Block, data: bytes, values: array, quality: array) -> None:
        if self._wire[block][0] <= 2:       # coils, discrete inputs
            start = block.start
            for pos, c in block.members:
                j = c.address - start
                values[pos] = float((data[j >> 3] >> (j & 7)) & 1)
        else:
            self._reader(block).read_bytes(data, values, quality)


def _settle(inflight) -> None:
    """Futures of an abandoned exchange: cancelled, or their exception marked as seen (no asyncio noise)."""
    for _, fut in inflight:
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()


def _read(block: Block) -> tuple[int, int, int, int]:
    """(function code, start, count, data bytes of the answer) of `block`'s read."""
    nbytes = (block.count + 7) // 8 if block.is_bits else 2 * block.count
    return READ_FC[block.area], block.start, block.count, nbytes
