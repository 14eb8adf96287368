"""Southbound drivers: one async context manager per device, one `run()` loop each.

    drv = make_driver(index, device, points, on_frame)
    async with drv:
        await drv.run()

A driver calls `on_frame(Frame)` (a plain sync callable, from the event loop)
once per poll, exposes `online`, `counters` (a dict of numbers, mapped onto the
standard ones by its `DriverSpec.counters`) and calls the optional
`state_changed(index, online, reason)` on every state change.

Adding a driver is one module (its `DriverSpec`: config model, factory, checks,
counters; see `edge_agent.registry`) and one `register_driver` line here.
"""
from __future__ import annotations

from typing import Callable

from edge_agent import registry
from edge_agent.drivers import modbus_spec, opcua_spec
from edge_agent.frame import Frame
from edge_agent.registry import register_driver

register_driver(modbus_spec.SPEC)
register_driver(opcua_spec.SPEC)


def make_driver(index: int, device, points: list, on_frame: Callable[[Frame], None], *, base_dir=None):
    """A driver for `device` (`points`: its ResolvedPoints, in catalogue order).

    `base_dir` is the site file's folder: relative certificate, key and password
    paths are resolved against it.
    """
    return registry.driver(device.driver).make(index, device, points, on_frame, base_dir=base_dir)


__all__ = ["make_driver"]
