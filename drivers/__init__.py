"""Southbound drivers: one async context manager per device, one `run()` loop each.

    drv = make_driver(index, device, points, on_frame)
    async with drv:
        await drv.run()

A driver calls `on_frame(Frame)` (a plain sync callable, from the event loop)
once per poll, exposes `online`, `counters` (a dict of numbers) and calls the
optional `state_changed(index, online, reason)` on every state change.
Adding a driver is one module and one line in `DRIVERS`.
"""
from __future__ import annotations

from typing import Callable

import importlib

from edge_agent.config import Device
from edge_agent.frame import Frame

# driver name in the site file -> "module:Class"; imported on first use, so a
# Modbus-only gateway never pays for asyncua (~15 MB and a second of start-up)
DRIVERS: dict[str, str] = {
    "modbus-tcp": "edge_agent.drivers.modbus_tcp:ModbusTcpDriver",
    "modbus-rtu": "edge_agent.drivers.modbus:ModbusDriver",
    "modbus-rtu-tcp": "edge_agent.drivers.modbus:ModbusDriver",
    "opcua": "edge_agent.drivers.opcua:OpcUaDevice",
}


def driver_class(name: str) -> type:
    module, _, cls = DRIVERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_driver(index: int, device: Device, points: list, on_frame: Callable[[Frame], None], *,
                base_dir=None):
    """A driver for `device` (`points`: its ResolvedPoints, in catalogue order).

    `base_dir` is the site file's folder: relative certificate, key and password
    paths are resolved against it.
    """
    return driver_class(device.driver)(index, device, points, on_frame, base_dir=base_dir)


def describe(device: Device, points: list) -> list[str]:
    """Lines describing how `device` will be read (the Modbus read plan), for `check -v`."""
    if not device.is_modbus:
        return []
    from edge_agent.drivers.codec import Codec
    from edge_agent.drivers.plan import Plan
    plan = Plan([Codec(p.cfg) for p in points], device.max_gap)
    return [f"{len(plan)} requests per poll (unit {device.unit}, max_gap {device.max_gap})"] + \
        plan.describe([p.id for p in points])


__all__ = ["DRIVERS", "driver_class", "make_driver", "describe"]
