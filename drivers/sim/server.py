"""Simulated devices served over real Modbus (pymodbus SimDevice), with fault injection.

Every Modbus device of a site file becomes one pymodbus `SimDevice` (its unit
id); devices that share host:port (or a serial port) share one server.  Each
read refreshes the registers it touches from the device's `DeviceModel`,
encoded with the same `Codec` the driver decodes with.  Register maps are
contiguous per area from the lowest to the highest point address (gaps read
as 0), so planned block reads that bridge gaps work, as on most devices.

Fault injection, per device, for tests (`Simulation.set_fault`):
  silent             reads the request, never answers
  slow (delay=s)     answers after `delay` seconds
  exception (code=n) answers Modbus exception n
  close              sends half of the answer, then closes the connection
  garbage            answers random bytes
and `reject(device, "hr:7")` makes any read covering that address answer
exception 2, like a device whose map has a hole.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from functools import partial

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.config import Site
from edge_agent.drivers.modbus_spec import ModbusConfig, parse_modbus_address
from edge_agent.drivers.codec import Codec
from edge_agent.drivers.sim.dynamics import SCENARIOS, DeviceModel

FC_AREA = {1: "co", 5: "co", 15: "co", 2: "di", 3: "hr", 6: "hr", 16: "hr", 22: "hr", 23: "hr", 4: "ir"}
AREAS = ("co", "di", "hr", "ir")          # SimDevice's 4-tuple order
REFRESH = 0.1                             # s: values change at most this often (every poll in practice)


@dataclass
class Fault:
    kind: str                  # silent | slow | exception | close | garbage
    delay: float = 0.0
    code: int = 4


class SimulatedDevice:
    """One device: its model, point codecs, pinned values, holes, fault and request count."""

    def __init__(self, device: ModbusConfig, rng: random.Random, scenario: str):
        self.device = device
        self.model = DeviceModel(device, rng, SCENARIOS[scenario])
        self.codecs = {p.id: Codec(p) for p in device.points}
        self.pinned: dict[str, float] = {}
        self.holes: set[tuple[str, int]] = set()
        self.fault: Fault | None = None
        self.requests = 0
        self.rng = rng
        self.last: dict[str, float] = {}
        self._at = -1.0
        self._images: dict[str, list[int]] | None = None

    def simdevice(self) -> SimDevice:
        blocks: list[list[SimData]] = []
        for area in AREAS:
            cs = [c for c in self.codecs.values() if c.area == area]
            if not cs:
                # pymodbus needs every list non-empty; the action refuses the area anyway
                blocks.append([SimData(0, values=[False] * 16, datatype=DataType.BITS)] if area in ("co", "di")
                              else [SimData(0, datatype=DataType.INVALID)])
                continue
            lo, hi = min(c.address for c in cs), max(c.end for c in cs)
            if area in ("co", "di"):
                blocks.append([SimData(lo, values=[False] * (hi - lo), datatype=DataType.BITS)])
            else:
                blocks.append([SimData(lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)])
        self.areas = {c.area for c in self.codecs.values()}
        return SimDevice(self.device.unit, simdata=tuple(blocks), action=self._action)

    def values(self) -> dict[str, float]:
        now = time.monotonic()
        if now - self._at >= REFRESH:
            self._at = now
            self.last = self.model.values(now)
            self.last.update(self.pinned)
            self._images = None
        return self.last

    async def _action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                      set_values) -> ExcCodes | None:
        area = FC_AREA.get(fc)
        self.requests += 1
        if area not in self.areas:
            return ExcCodes.ILLEGAL_ADDRESS
        if self.fault is not None and self.fault.kind == "exception":
            return ExcCodes(self.fault.code)
        # (for co/di pymodbus passes a register count here, so holes are for registers only)
        if area in ("hr", "ir") and any((area, a) in self.holes for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is None:
            self._refresh(area, start, registers)
        return None

    def _refresh(self, area: str, start: int, registers: list[int]) -> None:
        """Copy the requested words out of this refresh's register image of `area`."""
        self.values()
        if self._images is None:
            self._images = self._encode_all()
        image = self._images.get(area, ())
        n = len(registers)
        words = image[start:start + n]
        registers[:len(words)] = words

    def _encode_all(self) -> dict[str, list[int]]:
        """Every area as 16-bit words, encoded once per refresh (not once per request and point)."""
        vals = self.last
        images: dict[str, list[int]] = {}
        for pid, c in self.codecs.items():
            img = images.setdefault(c.area, [])
            v = vals[pid]
            if c.is_bits:       # 16 bits per register, bit address = register * 16 + bit
                i, bit = c.address // 16, c.address % 16
                _grow(img, i + 1)
                img[i] = (img[i] & ~(1 << bit)) | ((1 if v else 0) << bit)
            elif c.bit is not None:
                _grow(img, c.address + 1)
                img[c.address] = (img[c.address] & ~(1 << c.bit)) | ((1 if v else 0) << c.bit)
            else:
                _grow(img, c.address + c.count)
                img[c.address:c.address + c.count] = c.encode(v)
        return images


def _grow(img: list[int], n: int) -> None:
    if len(img) < n:
        img.extend([0] * (n - len(img)))


class _FaultyHandler(ServerRequestHandler):
    """The pymodbus request handler, plus the per-unit faults of the simulation."""

    async def handle_request(self):
        pdu, addr = self.last_pdu, self.last_addr
        if not pdu:
            return
        dev = self.server.sim_units.get(pdu.dev_id)
        fault = dev.fault if dev is not None else None
        if fault is None or fault.kind == "exception":
            return await super().handle_request()
        if fault.kind == "silent":
            dev.requests += 1
            return None
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            self.last_pdu, self.last_addr = pdu, addr
            return await super().handle_request()
        dev.requests += 1
        if fault.kind == "garbage":
            self.transport.write(bytes(dev.rng.randrange(256) for _ in range(11)))
            return None
        # close: half an exception frame (header claims more), then hang up
        resp = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        resp.transaction_id, resp.dev_id = pdu.transaction_id, pdu.dev_id
        packet = self.framer.buildFrame(resp)
        self.transport.write(packet[: len(packet) // 2])
        self.transport.close()
        return None


class _Faulty:
    sim_units: dict[int, SimulatedDevice]

    def callback_new_connection(self):
        return _FaultyHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class _TcpServer(_Faulty, ModbusTcpServer):
    pass


class _SerialServer(_Faulty, ModbusSerialServer):
    pass


class Simulation:
    """Running simulated devices; stop with `await sim.stop()` (or `async with`)."""

    def __init__(self, site: Site, *, scenario: str = "normal", port: int | None = None,
                 serial: str | None = None, seed: int | None = None):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        rng = random.Random(seed)
        self.devices: dict[str, SimulatedDevice] = {}
        self.groups: dict[tuple, list[SimulatedDevice]] = {}
        for dev in site.devices:
            if not isinstance(dev, ModbusConfig):
                continue
            sd = SimulatedDevice(dev, random.Random(rng.random()), scenario)
            self.devices[dev.name] = sd
            if dev.driver == "modbus-rtu":
                key = ("rtu", serial or dev.serial, dev.baudrate, dev.bytesize, dev.parity, dev.stopbits)
            else:
                key = ("tcp", dev.host or "127.0.0.1", port or dev.port or 502,
                       "rtu" if dev.driver == "modbus-rtu-tcp" else "socket")
            group = self.groups.setdefault(key, [])
            if any(o.device.unit == dev.unit for o in group):
                raise ValueError(f"devices {group[0].device.name} and {dev.name} both use unit {dev.unit} "
                                 f"on {key[1]}:{key[2]}; give them different unit ids")
            group.append(sd)
        if not self.groups:
            raise ValueError("the site file has no Modbus devices to simulate")
        tcp_ports = [(k[1], k[2]) for k in self.groups if k[0] == "tcp"]
        if len(set(tcp_ports)) != len(tcp_ports):
            raise ValueError("modbus-tcp and modbus-rtu-tcp devices cannot share a port; use different ports")
        self.servers: list = []
        self.listening: list[str] = []

    async def start(self) -> "Simulation":
        for key, group in self.groups.items():
            simdevs = [d.simdevice() for d in group]
            if key[0] == "rtu":
                _, path, baud, bytesize, parity, stopbits = key
                server = _SerialServer(simdevs, framer=FramerType.RTU, port=path, baudrate=baud,
                                       bytesize=bytesize, parity=parity, stopbits=stopbits)
                where = f"serial {path}"
            else:
                _, host, port, framing = key
                server = _TcpServer(simdevs, address=(host, port),
                                    framer=FramerType.RTU if framing == "rtu" else FramerType.SOCKET)
                where = f"{host}:{port}" + (" (RTU over TCP)" if framing == "rtu" else "")
            server.sim_units = {d.device.unit: d for d in group}
            try:
                await server.serve_forever(background=True)
            except RuntimeError:
                await server.shutdown()
                await self.stop()
                raise RuntimeError(f"cannot serve on {where}: the port is in use, the address is not local, "
                                   "or the serial port cannot be opened; pick another (--port)") from None
            self.servers.append(server)
            units = ", ".join(f"{d.device.unit}={d.device.name}" for d in group)
            self.listening.append(f"{where} units {units}")
        return self

    async def stop(self) -> None:
        for server in self.servers:
            await server.shutdown()
        self.servers.clear()

    async def __aenter__(self) -> "Simulation":
        return self if self.servers else await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------------ test hooks
    def set_fault(self, name: str, kind: str | None, *, delay: float = 0.0, code: int = 4) -> None:
        """Inject a fault into device `name` (kind None heals it); see the module docstring."""
        if kind not in (None, "silent", "slow", "exception", "close", "garbage"):
            raise ValueError(f"unknown fault {kind!r}")
        self.devices[name].fault = None if kind is None else Fault(kind, delay, code)

    def pin(self, name: str, values: dict[str, float]) -> None:
        """Serve fixed values for these points of device `name` (others keep simulating)."""
        self.devices[name].pinned.update(values)

    def reject(self, name: str, address: str) -> None:
        """Make device `name` answer exception 2 for any read covering `address` (e.g. "hr:7")."""
        a = parse_modbus_address(address)
        self.devices[name].holes.add((a.area, a.address))

    def requests(self, name: str) -> int:
        """Requests device `name` has received (answered or not)."""
        return self.devices[name].requests
