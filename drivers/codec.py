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

from edge_agent.config import REGISTER_COUNT, Point, parse_modbus_address, point_type

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


class Codec:
    """How one point sits on the wire: area, address, width and conversion.

    `count` is the number of registers (or bits for co/di) the point occupies;
    `decode` returns the engineering value as a float (NaN/Inf pass through
    unchanged, the driver marks them as sensor faults); `encode` returns the
    registers (list[int]) or, for co/di, a list with one bool.
    """

    __slots__ = ("area", "address", "bit", "type", "order", "count", "scale", "offset", "is_bits",
                 "_struct", "_le", "_swap")

    def __init__(self, point: Point):
        addr = parse_modbus_address(point.address)
        self.area = addr.area
        self.address = addr.address
        self.bit = addr.bit
        self.type = point_type(point)
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
        self._struct = struct.Struct(("<" if self._le else ">") + fmt) if fmt else None

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
