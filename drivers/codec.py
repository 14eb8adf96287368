"""Register <-> engineering value conversion, shared by the driver and the simulator.

One `Codec` per point, built once from its config.  The driver calls
`decode(buf, offset)` on the big-endian bytes of a block read; the simulator
calls `encode(value)` to produce the registers a device would serve.  Both
sides use the same byte-order rules, so they cannot drift.

Byte orders name the wire order of the value's bytes, A being the most
significant: ABCD is big-endian, DCBA little-endian, CDAB swaps 16-bit words,
BADC swaps the bytes inside each word (pymodbus only ever swaps words, so this
module does it itself).  For 64-bit types the same rule extends: CDAB reverses
the word order, BADC swaps bytes in each word, DCBA reverses all bytes.
"""
from __future__ import annotations

import math
import struct
import weakref
from array import array

from edge_agent.drivers.modbus_spec import REGISTER_COUNT, ModbusPoint, parse_modbus_address

_FMT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
        "float32": "f", "float64": "d"}
_INT_RANGE = {"int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-2**31, 2**31 - 1),
              "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1)}


def to_wire(data: bytes, order: str) -> bytes:
    """Big-endian bytes (ABCD...) -> the wire order `order`; its own inverse."""
    if order == "ABCD" or len(data) < 2:
        return data
    if order == "DCBA":
        return data[::-1]
    if order == "CDAB":
        return b"".join(data[i:i + 2] for i in range(len(data) - 2, -1, -2))
    # BADC
    out = bytearray(data)
    out[0::2], out[1::2] = data[1::2], data[0::2]
    return bytes(out)


_SHARED: dict = {}


def _shared(key, make):
    """One object per distinct key (a Struct per format, a layout tuple): 10,000 points of a site
    mostly share a handful, and each Struct is ~100 bytes more."""
    got = _SHARED.get(key)
    if got is None:
        got = _SHARED[key] = make(key)
    return got


class Codec:
    """How one point sits on the wire: area, address, width and conversion.

    `count` is the number of registers (or bits for co/di) the point occupies;
    `decode` returns the engineering value as a float (NaN/Inf pass through
    unchanged, the driver marks them as sensor faults); `encode` returns the
    registers (list[int]) or, for co/di, a list with one bool.
    """

    __slots__ = ("area", "address", "bit", "type", "order", "count", "scale", "offset", "is_bits",
                 "_struct", "_le", "_swap", "layout", "__weakref__")

    def __init__(self, point: ModbusPoint):
        addr = parse_modbus_address(point.address)
        self.area = addr.area
        self.address = addr.address
        self.bit = addr.bit
        self.type = point.data_type
        self.order = point.order
        self.scale = float(point.scale)
        self.offset = float(point.offset)
        self.is_bits = self.area in ("co", "di")
        if self.is_bits:
            self.count = 1
        elif self.type == "string":
            self.count = int(point.length or 1)
        else:
            self.count = REGISTER_COUNT[self.type]
        fmt = _FMT.get(self.type)
        # DCBA is plain little-endian: unpack directly, no byte shuffling on the hot path
        self._le = self.order == "DCBA" and fmt is not None
        self._swap = self.order == "BADC" or (self.order == "CDAB" and self.count > 1)
        self._struct = _shared(("<" if self._le else ">") + fmt, struct.Struct) if fmt else None
        # how a block read unpacks this point without per-point byte shuffling (see BlockReader):
        # (read the registers as little-endian words?, struct byte order, format char) or None
        self.layout = None
        if fmt is not None and self.bit is None:
            if self._le:
                layout = (False, "<", fmt)
            elif self.order == "CDAB" and self.count > 1:
                layout = (True, "<", fmt)     # words reversed = little-endian words read little-endian
            elif self.order == "BADC":
                layout = (True, ">", fmt)     # bytes swapped in each word = little-endian words
            else:
                layout = (False, ">", fmt)
            self.layout = _shared(layout, tuple)

    @property
    def end(self) -> int:
        """One past the last register/bit the point occupies."""
        return self.address + self.count

    # ------------------------------------------------------------------ driver side
    def decode(self, buf: bytes, offset: int) -> float:
        """Value of this point from `buf` (block bytes, big-endian registers) at byte `offset`."""
        if self.bit is not None:
            reg = (buf[offset] << 8) | buf[offset + 1]
            return float((reg >> self.bit) & 1)
        st = self._struct
        if st is not None:
            if self._swap:
                raw = st.unpack(to_wire(buf[offset:offset + 2 * self.count], self.order))[0]
            else:
                raw = st.unpack_from(buf, offset)[0]
            return raw * self.scale + self.offset
        data = buf[offset:offset + 2 * self.count]
        if self.type == "bool":
            return 1.0 if any(data) else 0.0
        return self._decode_string(data)

    def decode_bit(self, bits, index: int) -> float:
        """Value of a coil / discrete input from a list of bools."""
        return 1.0 if bits[index] else 0.0

    def _decode_string(self, data: bytes) -> float:
        # a Frame carries numbers: devices that report readings as ASCII text are
        # parsed; text that is not a number is a sensor fault (NaN)
        text = to_wire(data, self.order).split(b"\x00", 1)[0].decode("ascii", "replace").strip()
        try:
            return float(text) * self.scale + self.offset
        except ValueError:
            return math.nan

    # ------------------------------------------------------------------ simulator side
    def raw(self, value: float) -> float | int:
        """Engineering value -> the raw number the device stores (rounded, clamped for ints)."""
        raw = (float(value) - self.offset) / self.scale if self.scale else 0.0
        if self.type in _INT_RANGE:
            lo, hi = _INT_RANGE[self.type]
            if math.isnan(raw):
                return 0
            return int(min(hi, max(lo, round(raw))))
        return raw

    def encode(self, value: float) -> list:
        """Registers (or [bool] for co/di) a device serves for engineering `value`."""
        if self.is_bits:
            return [bool(value)]
        if self.bit is not None:
            return [(1 << self.bit) if value else 0]
        if self.type == "bool":
            return [1 if value else 0]
        if self.type == "string":
            text = f"{self.raw(value):g}".encode("ascii")[:2 * self.count]
            data = to_wire(text.ljust(2 * self.count, b"\x00"), self.order)
        else:
            data = to_wire(struct.pack(">" + _FMT[self.type], self.raw(value)), self.order)
        return list(struct.unpack(f">{self.count}H", data))


_CODECS: "weakref.WeakValueDictionary[tuple, Codec]" = weakref.WeakValueDictionary()


def codecs_of(points) -> list[Codec]:
    """The Codec of each point config (`ModbusPoint`), one object for every point on the wire the same
    way (address, type, order, scale, offset, length): the devices of a site mostly share their
    register maps, so 50,000 points need a few hundred Codecs, not 50,000.  Codecs are immutable;
    one lives while any driver (or plan) holds it."""
    out = []
    get = _CODECS.get
    for p in points:
        key = (p.address, p.data_type, p.order, p.scale, p.offset, p.length)
        c = get(key)
        if c is None:
            c = _CODECS[key] = Codec(p)
        out.append(c)
    return out


class BlockReader:
    """Decodes every point of one register block read, a run of points at a time.

    Built once per block from its (position, codec) members.  `read(regs,
    values, quality)` stores each member's engineering value at its position
    in `values`, exactly as `Codec.decode` would; a NaN or +-Inf value becomes
    NaN with quality `fault`.  Raises struct.error for a register value out of
    0..65535 (a malformed answer).  `read_bytes` takes the answer's bytes as
    they came off the wire instead of a list of registers.  Points that sit next to each other in the
    device's point list, share a byte layout and do not overlap are unpacked by
    one precompiled struct call and stored by one slice assignment: a
    200-point block costs a few C calls instead of 200 Python decodes.
    """

    def __init__(self, start: int, count: int, members, fault: int):
        self.fault = fault
        self._be = struct.Struct(f">{count}H")
        # (Struct, little-endian words?, first position, None | (scale, offset) | [(scale, offset)] per point)
        self.runs: list[tuple] = []
        self.single: list[tuple[int, Codec, int]] = []   # (position, codec, byte offset): bits, bool, strings
        run: list[tuple[int, Codec, int]] = []
        for pos, c in members:
            off = (c.address - start) * 2
            if c.layout is None:
                self.single.append((pos, c, off))
                continue
            if run:
                ppos, pc, poff = run[-1]
                if c.layout[:2] != pc.layout[:2] or pos != ppos + 1 or off < poff + 2 * pc.count:
                    self._close(run)
                    run = []
            run.append((pos, c, off))
        self._close(run)
        self.needs_lew = any(r[1] for r in self.runs)

    def _close(self, run: list) -> None:
        if not run:
            return
        lew, order, _ = run[0][1].layout
        fmt, at = [order], 0
        for _, c, off in run:
            fmt.append("x" * (off - at) + c.layout[2])
            at = off + 2 * c.count
        affine = [(c.scale, c.offset) for _, c, _ in run]
        if all(a == (1.0, 0.0) for a in affine):
            affine = None
        elif all(a == affine[0] for a in affine):
            affine = affine[0]            # one scale and offset for the whole run (the usual case)
        self.runs.append((struct.Struct("".join(fmt)), lew, run[0][0], affine))

    def read(self, regs, values: array, quality: array) -> None:
        self.read_bytes(self._be.pack(*regs), values, quality)

    def read_bytes(self, be: bytes, values: array, quality: array) -> None:
        """`read` from the block's registers as big-endian bytes (a Modbus answer's data, 2 x count bytes)."""
        lew = None
        if self.needs_lew:
            words = array("H", be)
            words.byteswap()        # each register's two bytes swapped: little-endian words, on any host
            lew = words.tobytes()
        for st, use_lew, first, affine in self.runs:
            raw = st.unpack_from(lew if use_lew else be)
            if type(affine) is tuple:
                s, o = affine
                raw = [r * s + o for r in raw]
            elif affine is not None:
                raw = [r * s + o for r, (s, o) in zip(raw, affine)]
            values[first:first + len(raw)] = array("d", raw)
            total = sum(raw)
            if total - total != 0.0:     # some value is NaN or +-Inf (or the sum overflowed): find them
                for k, v in enumerate(raw):
                    if v - v != 0.0:
                        values[first + k] = math.nan
                        quality[first + k] = self.fault
        for pos, c, off in self.single:
            v = c.decode(be, off)
            if v - v != 0.0:
                quality[pos] = self.fault
                v = math.nan
            values[pos] = v
