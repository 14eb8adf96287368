"""The modbus-tcp driver's wire: several reads in flight, matched by transaction id; one at a time where needed."""
from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from conftest import aio, free_port
from edge_agent.drivers.modbus_tcp import ModbusTcpDriver
from edge_agent.drivers.sim import serve
from edge_agent.drivers.sim.harness import Harness, site_from_yaml
from edge_agent.frame import Q_OK, Q_SUBSTATION_FAULT

pytestmark = pytest.mark.timeout(60)




def reg(a: int) -> int:
    return (a * 13 + 1) & 0xFFFF


class Gathering(asyncio.Protocol):
    """A device that takes every request arriving within 50 ms, then answers them in reverse order.

    `chunks` records how many requests each burst held; function 1 (coils) is
    never answered when `mute_coils` is set.
    """

    def __init__(self, chunks: list[int], mute_coils: bool = False):
        self.chunks, self.mute_coils, self.buf, self.held = chunks, mute_coils, b"", []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 12:
            self.held.append(struct.unpack_from(">HHHBBHH", self.buf))
            self.buf = self.buf[12:]
            if len(self.held) == 1:
                asyncio.get_running_loop().call_later(0.05, self._answer)

    def _answer(self) -> None:
        held, self.held = self.held, []
        self.chunks.append(len(held))
        out = []
        for tid, _, _, unit, fc, start, count in reversed(held):
            if fc == 1:
                if self.mute_coils:
                    continue
                pdu = bytes((1, (count + 7) // 8)) + bytes((count + 7) // 8)   # all coils off
            else:
                pdu = bytes((fc, 2 * count)) + b"".join(reg(a).to_bytes(2, "big") for a in range(start, start + count))
            out.append(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)
        if not self.transport.is_closing():
            self.transport.write(b"".join(out))


def site(tmp_path, port: int, inflight: int = 8, poll: str = "300ms"):
    # three reads per poll: hr:0-1, hr:40-42 (beyond max_gap) and co:0
    return site_from_yaml(f"""\
site: {{mine_code: "140211001234"}}
buffer: {{path: b.sqlite}}
devices:
  - {{name: d, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: 3, poll: {poll}, timeout: 250ms,
     retries: 1, inflight: {inflight}, points: [{{id: A, sensor: "0004", address: "hr:0"}},
     {{id: B, sensor: "0004", address: "hr:1"}}, {{id: C, sensor: "0004", address: "hr:40", type: uint32}},
     {{id: D, sensor: "0004", address: "hr:42"}}, {{id: E, sensor: "1004", address: "co:0"}}]}}
""", tmp_path)


TRUE = [reg(0), reg(1), reg(40) << 16 | reg(41), reg(42), 0.0]


@pytest.mark.parametrize("inflight,burst", [(8, 3), (2, 2), (1, 1)])
@aio
async def test_reads_go_out_together_and_answers_in_any_order_find_their_reads(tmp_path, inflight, burst):
    chunks: list[int] = []
    server = await asyncio.get_running_loop().create_server(lambda: Gathering(chunks), "127.0.0.1", 0)
    s = site(tmp_path, server.sockets[0].getsockname()[1], inflight)
    async with Harness(s) as h:
        await h.wait(lambda: h.count(0) >= 3, 10, "3 frames")
    server.close()
    assert isinstance(h.drivers[0], ModbusTcpDriver)
    for f in h.frames[0]:
        assert list(f.quality) == [Q_OK] * 5 and list(f.values) == TRUE
    assert max(chunks) == burst, chunks        # up to `inflight` reads on the wire at once
    assert h.drivers[0].counters["requests"] == 3 * h.drivers[0].counters["polls"]


@aio
async def test_a_device_that_answers_one_request_at_a_time_is_read_one_at_a_time(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent.drivers.modbus")
    port = free_port()
    s = site(tmp_path, port)
    async with await serve(s, seed=1) as sim:
        sim.set_fault("d", "one-at-a-time")     # answers the first of a burst, drops the rest
        sim.pin("d", {"A": 5, "B": 6, "C": 70000, "D": 8, "E": 1})
        async with Harness(s) as h:
            await h.wait(lambda: h.count(0) >= 4, 10, "4 frames")
    drv = h.drivers[0]
    # the very first poll already delivers: the reads it lost are read again one at a time
    for f in h.frames[0]:
        assert list(f.quality) == [Q_OK] * 5 and list(f.values) == [5, 6, 70000, 8, 1]
    assert drv.window == 1 and drv.counters["inflight"] == 1
    lines = [r.getMessage() for r in caplog.records if "device d " in r.getMessage()]
    assert len([m for m in lines if "one request at a time" in m]) == 1, lines
    assert not [m for m in lines if "unreachable" in m], lines
    assert h.states == [(0, True, "answering")]


@aio
async def test_a_read_that_never_answers_is_the_device_not_the_overlap(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge_agent.drivers.modbus")
    chunks: list[int] = []
    server = await asyncio.get_running_loop().create_server(lambda: Gathering(chunks, mute_coils=True),
                                                            "127.0.0.1", 0)
    s = site(tmp_path, server.sockets[0].getsockname()[1], poll="100ms")
    async with Harness(s, BACKOFF_START=0.1, BACKOFF_CAP=0.2) as h:
        await h.wait(lambda: h.count(0) >= 3, 10, "3 frames")
    server.close()
    drv = h.drivers[0]
    assert list(h.frames[0][-1].quality) == [Q_SUBSTATION_FAULT] * 5
    assert drv.window == 8, "one at a time did not help, so the device keeps its window"
    assert not [r for r in caplog.records if "one request at a time" in r.getMessage()]
    assert [s[1] for s in h.states] == [False]


def test_inflight_is_a_modbus_tcp_key(tmp_path):
    from edge_agent.errors import ConfigError
    text = """\
site: {mine_code: "140211001234"}
buffer: {path: b.sqlite}
devices:
  - {name: bus-1, driver: modbus-rtu, serial: /dev/ttyUSB0, inflight: 2,
     points: [{id: A, sensor: "0004", address: "hr:0"}]}
"""
    with pytest.raises(ConfigError) as err:
        site_from_yaml(text, tmp_path)
    lines = [str(p) for p in err.value.problems]
    assert len(lines) == 1 and ":4: " in lines[0] and "inflight" in lines[0] and "only modbus-tcp" in lines[0], lines
    ok = site_from_yaml(text.replace("driver: modbus-rtu, serial: /dev/ttyUSB0", "driver: modbus-tcp, host: h"),
                        tmp_path)
    assert ok.devices[0].inflight == 2
