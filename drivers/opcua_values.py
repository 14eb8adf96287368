"""OPC UA values to Frame arrays: status-code mapping, numbers, timestamps.

Pure functions and one small accumulator, no I/O, so the mapping rules can be
tested without a server.  What callers may rely on:

- `quality(code)` maps an OPC UA StatusCode value to Frame quality bits:
  Good and Uncertain -> 0 (Uncertain is counted, the value is used), a Bad
  code that says the *link* to the data source is down -> 16 (substation
  fault), any other Bad code -> 128 (sensor fault).
- A Good/Uncertain value that is missing (null Variant) counts as "no data
  from the source" -> 16; a value that is not a number (string, array,
  structure) or is NaN/Inf -> 128.  Numbers and booleans become float64,
  then `raw * scale + offset`.
- `FrameBuilder` collects one batch (one publish response or one poll) and
  stamps the Frame with the newest *sane* source timestamp, else the newest
  sane server timestamp, else the receive time; sane = not older than one
  interval + SLACK, not more than FUTURE ahead of the receive time.
"""
from __future__ import annotations

import math
import time
from array import array
from datetime import datetime

from asyncua import ua

from edge_agent.frame import Q_OK, Q_SENSOR_FAULT, Q_SUBSTATION_FAULT, Frame

NAN = math.nan
_S = ua.StatusCodes

# Bad codes that mean "the server (or its gateway) cannot reach the data source":
# the point is not faulty, the path to it is, so it maps to 16 like an
# unreachable Modbus device.
LINK_DOWN = frozenset({
    _S.BadCommunicationError, _S.BadNoCommunication, _S.BadNotConnected, _S.BadServerNotConnected,
    _S.BadServerHalted, _S.BadShutdown, _S.BadTimeout, _S.BadConnectionClosed, _S.BadWaitingForInitialData,
    _S.BadSecureChannelClosed, _S.BadSessionClosed,
})

# A timestamp is "sane" if it is at most FUTURE ahead of the receive time
# (clocks differ a little) and at most one batch interval + SLACK behind it.
# Older means the value simply has not changed since (an initial value, a
# poll of a steady value) or the source clock is wrong: then it was acquired
# now, not then.
FUTURE = 2.0
SLACK = 2.0

SEVERITY_GOOD, SEVERITY_UNCERTAIN = 0, 1


def severity(code: int) -> int:
    """0 Good, 1 Uncertain, 2 or 3 Bad (the two top bits of the StatusCode)."""
    return (code >> 30) & 3


def quality(code: int) -> int:
    """Frame quality bits for an OPC UA StatusCode value (see the module doc)."""
    if severity(code) <= SEVERITY_UNCERTAIN:
        return Q_OK
    # the low 16 bits are info bits (limit, overflow): the code proper is the high half
    return Q_SUBSTATION_FAULT if (code & 0xFFFF0000) in LINK_DOWN else Q_SENSOR_FAULT


def number(v: object) -> float | None:
    """A scalar OPC UA value as float, or None if it is not a number."""
    t = type(v)
    if t is float:
        return v  # type: ignore[return-value]
    if t is int or t is bool:
        return float(v)  # type: ignore[arg-type]
    if isinstance(v, (int, float)):  # enum members, numpy-like subclasses
        return float(v)
    return None


def epoch(ts: datetime | None, recv_wall: float, max_age: float) -> float | None:
    """`ts` as epoch seconds if it is sane for a batch received at `recv_wall` (see FUTURE), else None."""
    if ts is None:
        return None
    try:
        t = ts.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return t if recv_wall - max_age <= t <= recv_wall + FUTURE else None


class FrameBuilder:
    """One batch of values of one device, turned into one Frame.

    `scale`/`offset`/`gidx` are per position (the device's point order).
    `counters` is the driver's counters dict; bad/uncertain/link/unsupported
    are incremented here.
    """

    __slots__ = ("device", "gidx", "scale", "offset", "counters", "max_age", "index", "values", "quality",
                 "_src", "_srv")

    def __init__(self, device: int, gidx: array, scale: list[float], offset: list[float], counters: dict,
                 interval: float = 1.0):
        self.device = device
        self.max_age = interval + SLACK
        self.gidx = gidx
        self.scale = scale
        self.offset = offset
        self.counters = counters
        self.index = array("i")
        self.values = array("d")
        self.quality = array("B")
        self._src: datetime | None = None
        self._srv: datetime | None = None

    def add(self, pos: int, dv: ua.DataValue | None) -> None:
        """Add the DataValue of the point at position `pos`."""
        code = 0 if dv is None or dv.StatusCode is None else dv.StatusCode.value
        q = quality(code)
        value = NAN
        if q == Q_OK:
            if severity(code) == SEVERITY_UNCERTAIN:
                self.counters["uncertain"] += 1
            var = None if dv is None else dv.Value
            raw = None if var is None else var.Value
            if raw is None:
                q = Q_SUBSTATION_FAULT
                self.counters["empty"] += 1
            else:
                f = number(raw)
                if f is None or not math.isfinite(f):
                    q = Q_SENSOR_FAULT
                    self.counters["unsupported"] += 1
                else:
                    value = f * self.scale[pos] + self.offset[pos]
        elif q == Q_SENSOR_FAULT:
            self.counters["bad"] += 1
        else:
            self.counters["link_down"] += 1
        if dv is not None:
            src, srv = dv.SourceTimestamp, dv.ServerTimestamp
            if src is not None and (self._src is None or src > self._src):
                self._src = src
            if srv is not None and (self._srv is None or srv > self._srv):
                self._srv = srv
        self.index.append(self.gidx[pos])
        self.values.append(value)
        self.quality.append(q)

    def add_fault(self, pos: int, q: int) -> None:
        """A point with no value this batch (unresolved node, failed item)."""
        self.index.append(self.gidx[pos])
        self.values.append(NAN)
        self.quality.append(q)

    def __len__(self) -> int:
        return len(self.index)

    def frame(self, recv_mono: float | None = None, recv_wall: float | None = None) -> Frame:
        """The Frame, stamped as the module doc says; `mono` is shifted back by the same amount."""
        mono = time.monotonic() if recv_mono is None else recv_mono
        wall = time.time() if recv_wall is None else recv_wall
        t = epoch(self._src, wall, self.max_age)
        if t is None:
            t = epoch(self._srv, wall, self.max_age)
        if t is not None:
            mono -= max(0.0, wall - t)
            wall = t
        return Frame(self.device, mono, wall, self.index, self.values, self.quality)


def unreachable_frame(device: int, gidx: array) -> Frame:
    """Every point of a device NaN with quality 16: what the pipeline gets on session loss."""
    n = len(gidx)
    return Frame(device, time.monotonic(), time.time(), array("i", gidx), array("d", [NAN]) * n,
                 array("B", [Q_SUBSTATION_FAULT]) * n)
