"""A cheap Modbus TCP simulator for benchmarks: answers prepared once per tick, served by a bare protocol.

    sim = await PreparedSimulation(site, port=15020).start()
    ...
    await sim.stop()

    python -m edge_agent.drivers.sim.prepared -c SITE.yaml [--port P] [--scenario steady]

The pymodbus simulator (server.py) decodes, handles and encodes every request
in Python and costs about as much CPU as the agent it feeds, so a benchmark
of the two on one machine measures both.  This one serves the site's
modbus-tcp devices from register images computed in advance: `VARIANTS`
images per device layout, one per `REFRESH` tick of the same `DeviceModel`
the pymodbus simulator uses, cycled (a device's tick is offset by its
position, so devices of one layout do not show the same values at the same
time).  The answer to each distinct request (function, start, count) of each
image is built once and cached; serving a request is a dict look-up, a header
`pack` and a write.  Several requests in flight on one connection are answered
in order, as a pipelining device does.

Callers may rely on: values change every tick (VARIANTS is prime, so any poll
period that is a multiple of REFRESH sees a new image), the register layout and
byte orders are the driver's own `Codec`'s, unknown units answer exception 11
and addresses outside the device's map exception 2.  No fault injection: the
tests use server.py.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import signal
import struct
import sys
import time

from edge_agent.config import Site
from edge_agent.drivers.modbus_spec import ModbusConfig
from edge_agent.drivers.sim.dynamics import SCENARIOS
from edge_agent.drivers.sim.server import REFRESH, SimulatedDevice

VARIANTS = 37                 # prime: every period that is a whole number of ticks sees a new image
_MBAP = struct.Struct(">HHHB")
_REQUEST = struct.Struct(">BHH")
_AREA = {1: "co", 2: "di", 3: "hr", 4: "ir"}


class PreparedDevice:
    """The answers of one device layout: VARIANTS images, answers built on first use and kept."""

    def __init__(self, device: ModbusConfig, rng: random.Random, scenario: str):
        sim = SimulatedDevice(device, rng, scenario)
        self.images: list[dict[str, bytes]] = []
        self.bits: list[dict[str, list[int]]] = []
        for k in range(VARIANTS):
            sim.last = sim.model.values(1000.0 + k * REFRESH)
            words = sim._encode_all()
            self.images.append({a: struct.pack(f">{len(w)}H", *w) for a, w in words.items()})
            self.bits.append(words)
        self.answers: dict[tuple[int, int, int], list[bytes | None]] = {}

    def answer(self, fc: int, start: int, count: int, variant: int) -> bytes:
        """The PDU (function code onwards) answering read `fc` of `count` from `start`."""
        key = (fc, start, count)
        per = self.answers.get(key)
        if per is None:
            per = self.answers[key] = [None] * VARIANTS
        pdu = per[variant]
        if pdu is None:
            pdu = per[variant] = self._build(fc, start, count, variant)
        return pdu

    def _build(self, fc: int, start: int, count: int, variant: int) -> bytes:
        area = _AREA.get(fc)
        if area is None:
            return bytes((fc | 0x80, 1))
        if area in ("co", "di"):
            words = self.bits[variant].get(area)
            if not 1 <= count <= 2000 or words is None or (start + count + 15) // 16 > len(words):
                return bytes((fc | 0x80, 2))
            out = bytearray((count + 7) // 8)
            for j in range(count):
                a = start + j
                if (words[a // 16] >> (a % 16)) & 1:
                    out[j // 8] |= 1 << (j % 8)
            return bytes((fc, len(out))) + bytes(out)
        image = self.images[variant].get(area)
        if not 1 <= count <= 125 or image is None or 2 * (start + count) > len(image):
            return bytes((fc | 0x80, 2))
        return bytes((fc, 2 * count)) + image[2 * start:2 * (start + count)]


class _Connection(asyncio.Protocol):
    """One client connection: every complete request in the buffer answered, in order, in one write."""

    def __init__(self, units: dict[int, tuple[PreparedDevice, int]]):
        self.units = units
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        tick = int(time.monotonic() / REFRESH)
        pos, n = 0, len(buf)
        while n - pos >= 8:
            tid, pid, length, unit = _MBAP.unpack_from(buf, pos)
            if pid != 0 or not 2 <= length <= 254:
                self.transport.close()      # not Modbus TCP: a real device drops the connection too
                return
            if n - pos < 6 + length:
                break
            fc = buf[pos + 7]
            entry = self.units.get(unit)
            if entry is None:
                pdu = bytes((fc | 0x80, 11))
            elif length == 6 and fc in _AREA:
                _, start, count = _REQUEST.unpack_from(buf, pos + 7)
                dev, offset = entry
                pdu = dev.answer(fc, start, count, (tick + offset) % VARIANTS)
            else:
                pdu = bytes((fc | 0x80, 1))
            out.append(_MBAP.pack(tid, 0, len(pdu) + 1, unit))
            out.append(pdu)
            pos += 6 + length
        self.buf = buf[pos:]
        if out:
            self.transport.write(b"".join(out))


class PreparedSimulation:
    """The modbus-tcp devices of `site`, grouped by port, each port one asyncio server."""

    def __init__(self, site: Site, *, scenario: str = "steady", port: int | None = None,
                 seed: int | None = None, host: str = "127.0.0.1"):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        rng = random.Random(seed)
        layouts: dict[tuple, PreparedDevice] = {}
        self.ports: dict[int, dict[int, tuple[PreparedDevice, int]]] = {}
        self.host = host
        for i, dev in enumerate(site.devices):
            if dev.driver != "modbus-tcp":
                continue
            # devices with the same register layout share their images and cached answers
            layout = tuple((p.address, p.type, p.order, p.scale, p.offset, p.sensor, p.length)
                           for p in dev.points)
            if layout not in layouts:
                layouts[layout] = PreparedDevice(dev, random.Random(rng.random()), scenario)
            units = self.ports.setdefault(port or dev.port or 502, {})
            if dev.unit in units:
                raise ValueError(f"two devices use unit {dev.unit} on port {port or dev.port or 502}; "
                                 "give them different unit ids")
            units[dev.unit] = (layouts[layout], i * 7)
        if not self.ports:
            raise ValueError("the site file has no modbus-tcp devices to simulate")
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self) -> "PreparedSimulation":
        loop = asyncio.get_running_loop()
        for port, units in self.ports.items():
            self.servers.append(await loop.create_server(lambda u=units: _Connection(u), self.host, port,
                                                         reuse_address=True))
        return self

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()
        self.servers.clear()

    @property
    def listening(self) -> list[str]:
        return [f"{self.host}:{p} units {', '.join(str(u) for u in sorted(us))}" for p, us in self.ports.items()]


def main(argv: list[str] | None = None) -> int:
    from edge_agent.config import load_site
    from edge_agent.errors import ConfigError
    ap = argparse.ArgumentParser(prog="python -m edge_agent.drivers.sim.prepared",
                                 description="serve a site file's modbus-tcp devices from prepared answers")
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--scenario", default="steady")
    args = ap.parse_args(argv)
    try:
        site = load_site(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1

    async def run() -> int:
        try:
            sim = await PreparedSimulation(site, scenario=args.scenario, port=args.port).start()
        except (ValueError, OSError) as exc:
            print(f"prepared simulator: {exc}", flush=True)
            return 1
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        print("prepared simulator: listening on " + "; ".join(sim.listening), flush=True)
        await stop.wait()
        await sim.stop()
        return 0
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
