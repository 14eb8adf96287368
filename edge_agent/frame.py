"""The Frame: one poll (or one batch of notifications) of one device.

Arrays, not dicts per value: the hot path touches Python objects per frame,
not per point.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass

# per-point quality from the driver: status bits the kernel ORs in (one table: edge_agent/codes.py)
from edge_agent.codes import Q_OK, Q_SENSOR_FAULT, Q_SUBSTATION_FAULT  # noqa: F401


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
