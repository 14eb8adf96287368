"""Modbus links: the pymodbus client behind one device, or shared by a bus.

A `Link` owns one pymodbus async client (one request in flight) and a lock a
device holds for a whole poll, so the units of one RS-485 bus (modbus-rtu, or
modbus-rtu-tcp through one serial server) are polled in turn and never
interleave.  modbus-tcp devices get a link of their own; RTU devices that
name the same serial port (or the same serial-server host:port) share one,
reference-counted per event loop.

pymodbus does its own automatic reconnects and retries; both are switched off
here (reconnect_delay=0, retries=0) because the driver owns the backoff and
the retry policy, and logs one line per state change instead of one per try.
"""
from __future__ import annotations

import asyncio
import logging

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from edge_agent.drivers.modbus_spec import ModbusConfig

# pymodbus logs every failed connect and every missing answer at WARNING/ERROR;
# the driver reports the same facts once per state change, so keep it quiet
# unless someone configured it explicitly.
_pm_log = logging.getLogger("pymodbus")
if _pm_log.level == logging.NOTSET:
    _pm_log.setLevel(logging.CRITICAL)


class Unreachable(Exception):
    """The link could not be opened; the message says what to check."""


class Link:
    """One client plus the lock a device holds while it polls."""

    def __init__(self, device: ModbusConfig, key: tuple):
        self.key = key
        self.lock = asyncio.Lock()
        self.refs = 0
        self.shared = device.driver != "modbus-tcp"
        self.rx = False       # bytes arrived since the last request (tells garbage from silence)
        common = dict(timeout=device.timeout, retries=0, reconnect_delay=0, trace_packet=self._trace)
        if device.driver == "modbus-rtu":
            self.where = f"serial {device.serial} ({device.baudrate} {device.bytesize}{device.parity}"\
                         f"{device.stopbits})"
            self.client = AsyncModbusSerialClient(
                port=device.serial, framer=FramerType.RTU, baudrate=device.baudrate,
                bytesize=device.bytesize, parity=device.parity, stopbits=device.stopbits, **common)
            self.hint = "check the serial port path, its permissions (dialout group) and the RS-485 wiring"
        else:
            framer = FramerType.SOCKET if device.driver == "modbus-tcp" else FramerType.RTU
            self.where = f"{device.host}:{device.port or 502}"
            self.client = AsyncModbusTcpClient(device.host, port=device.port or 502, framer=framer, **common)
            self.hint = "check that the device is powered and on the network, and its host/port in the site file"
        self.timeout = device.timeout

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.rx = False
        elif data:
            self.rx = True
        return data

    @property
    def connected(self) -> bool:
        return self.client.connected

    def set_timeout(self, timeout: float) -> None:
        """Answer timeout for the next requests (units of one bus may differ)."""
        self.timeout = timeout
        self.client.ctx.comm_params.timeout_connect = timeout

    async def connect(self) -> bool:
        """Open the link if needed (True if it opened now); raise `Unreachable` if it cannot be."""
        if self.client.connected:
            return False
        try:
            ok = await asyncio.wait_for(self.client.connect(), self.timeout + 1.0)
        except (asyncio.TimeoutError, OSError):
            ok = False
        if not ok:
            self.client.close()
            raise Unreachable(f"cannot connect to {self.where}")
        return True

    def resync(self) -> None:
        """After a timeout or a garbled answer: drop what may still arrive late.

        On TCP the connection is closed (a late answer would otherwise be
        paired with the next request); the next poll reconnects.  A serial
        port stays open, since the other units of the bus still use it.
        """
        if self.client.ctx.comm_params.comm_type.name != "SERIAL":
            self.client.close()
        else:
            self.client.ctx.recv_buffer = b""

    def read(self, area: str, start: int, count: int, unit: int):
        c = self.client
        if area == "hr":
            return c.read_holding_registers(start, count=count, device_id=unit)
        if area == "ir":
            return c.read_input_registers(start, count=count, device_id=unit)
        if area == "co":
            return c.read_coils(start, count=count, device_id=unit)
        return c.read_discrete_inputs(start, count=count, device_id=unit)

    def close(self) -> None:
        self.client.close()


_SHARED: dict[tuple, Link] = {}


def link_key(device: ModbusConfig) -> tuple:
    if device.driver == "modbus-rtu":
        return ("rtu", device.serial)
    if device.driver == "modbus-rtu-tcp":
        return ("rtu-tcp", device.host, device.port or 502)
    return ("tcp", id(device))


def acquire(device: ModbusConfig) -> Link:
    """The link for `device`: shared for bus devices, its own for modbus-tcp."""
    key = link_key(device) + (id(asyncio.get_running_loop()),)
    link = _SHARED.get(key) if device.driver != "modbus-tcp" else None
    if link is None:
        link = Link(device, key)
        if link.shared:
            _SHARED[key] = link
    link.refs += 1
    return link


def release(link: Link) -> None:
    link.refs -= 1
    if link.refs <= 0:
        link.close()
        if _SHARED.get(link.key) is link:
            del _SHARED[link.key]
