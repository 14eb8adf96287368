"""The Frame: one poll (or one batch of notifications) of one device.

Arrays, not dicts per value: the hot path touches Python objects per frame,
not per point.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass

# per-point quality from the driver: status bits the kernel ORs in
Q_OK = 0
Q_SUBSTATION_FAULT = 16   # device unreachable: value is stale or missing
Q_SENSOR_FAULT = 128      # device answered, this value is bad (NaN/Inf, exception, Bad status)


@dataclass(slots=True)
class Frame:
    device: int            # index into Site.devices
    mono: float            # time.monotonic() at acquisition
    wall: float            # time.time() at acquisition (epoch seconds)
    index: array           # array('i'): global point indices (Catalog)
    values: array          # array('d'): engineering values (NaN where unknown)
    quality: array         # array('B'): Q_* bits per point

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def empty(cls, device: int, mono: float, wall: float) -> "Frame":
        return cls(device, mono, wall, array("i"), array("d"), array("B"))
