"""The Modbus driver against the simulated devices over real TCP sockets."""
from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import struct
from array import array

import pytest
from hypothesis import given, settings, strategies as st
from pymodbus.client import AsyncModbusTcpClient

from conftest import ROOT, free_port
from edge_agent import registry
from edge_agent.config import load_site
from edge_agent.drivers import make_driver
from edge_agent.drivers.modbus_spec import ModbusPoint as Point, describe
from edge_agent.drivers.codec import BlockReader, Codec
from edge_agent.drivers.sim import serve
from edge_agent.drivers.sim.harness import Harness, site_from_yaml
from edge_agent.frame import Q_OK, Q_SENSOR_FAULT, Q_SUBSTATION_FAULT

pytestmark = pytest.mark.timeout(60)


def aio(fn):
    """Run an async test in a fresh event loop (pytest fixtures still apply)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return run

HEAD = """\
site: {{mine_code: "140211001234", gateway: gw-t}}
buffer: {{path: b.sqlite}}
devices:
"""


def demo_on(port: int):
    site = load_site(ROOT / "config" / "demo.yaml")
    return site.model_copy(update={"devices": tuple(d.model_copy(update={"port": port}) for d in site.devices)})


# ---------------------------------------------------------------- codec on the wire (independent of the sim)

@pytest.mark.parametrize("order,regs", [("ABCD", [0x3FC0, 0x0000]), ("CDAB", [0x0000, 0x3FC0]),
                                        ("BADC", [0xC03F, 0x0000]), ("DCBA", [0x0000, 0xC03F])])
def test_float32_orders_on_the_wire(order, regs):
    c = Codec(Point(id="P", sensor="0001", address="hr:0", type="float32", order=order))
    assert c.encode(1.5) == regs
    assert c.decode(struct.pack(">2H", *regs), 0) == 1.5


@pytest.mark.parametrize("order,regs", [
    ("ABCD", [0xFFFF, 0xFEE0, 0x8E04, 0xFB35]), ("CDAB", [0xFB35, 0x8E04, 0xFEE0, 0xFFFF]),
    ("BADC", [0xFFFF, 0xE0FE, 0x048E, 0x35FB]), ("DCBA", [0x35FB, 0x048E, 0xE0FE, 0xFFFF])])
def test_int64_orders_on_the_wire(order, regs):
    c = Codec(Point(id="P", sensor="0001", address="hr:0", type="int64", order=order))
    assert c.encode(-1234567890123) == regs
    assert c.decode(struct.pack(">4H", *regs), 0) == -1234567890123


def test_int16_badc_swaps_bytes_and_scale_offset():
    c = Codec(Point(id="P", sensor="0001", address="hr:0", type="int16", order="BADC", scale=0.1, offset=-5))
    assert c.encode(118.4) == [0xD204]          # raw 1234 = 0x04D2, bytes swapped
    assert c.decode(bytes([0xD2, 0x04]), 0) == pytest.approx(118.4)


def test_strings_are_parsed_as_numbers_or_nan():
    c = Codec(Point(id="P", sensor="0001", address="hr:0", type="string", length=3, scale=2.0))
    assert c.decode(b"12.5\0\0", 0) == 25.0
    assert c.decode(b" 7  \0\0", 0) == 14.0
    assert math.isnan(c.decode(b"ERR\0\0\0", 0))
    assert Codec(Point(id="P", sensor="0001", address="hr:0", type="string", length=2, order="BADC")
                 ).decode(b"1-5.", 0) == -1.5


# ---------------------------------------------------------------- every type in every order, exactly

TYPED = {"int16": -12345, "uint16": 54321, "int32": -123456789, "uint32": 3123456789,
         "int64": -1234567890123, "uint64": 2**53 - 1, "float32": -1.5, "float64": -12345.678}


def all_types_site(tmp_path, port: int):
    lines, values, addr = [], {}, 0
    for (typ, val), order in itertools.product(TYPED.items(), ("ABCD", "CDAB", "BADC", "DCBA")):
        pid = f"{typ}-{order}"
        lines.append(f"      - {{id: {pid}, sensor: '0001', address: 'hr:{addr}', type: {typ}, order: {order}}}")
        values[pid] = val
        addr += {"int16": 1, "uint16": 1}.get(typ, 4 if "64" in typ else 2)
    extra = [("S1", f"ir:10", "type: string, length: 4", 123.5), ("S2", "ir:14", "type: string, length: 3, order: BADC", -7.25),
             ("SC", "ir:0", "type: int16, scale: 0.1, offset: -5", 118.4),
             ("BO", "ir:1", "type: bool", 1.0), ("BT3", "ir:2.3", "", 1.0), ("BT4", "ir:2.4", "", 0.0),
             ("BT15", "ir:2.15", "", 1.0), ("C0", "co:0", "", 1.0), ("C1", "co:1", "", 0.0),
             ("C17", "co:17", "", 1.0), ("D5", "di:5", "", 1.0), ("D6", "di:6", "", 0.0)]
    for pid, a, more, val in extra:
        lines.append(f"      - {{id: {pid}, sensor: '0001', address: '{a}'{', ' + more if more else ''}}}")
        values[pid] = val
    text = HEAD.format() + f"""\
  - name: dev
    driver: modbus-tcp
    host: 127.0.0.1
    port: {port}
    unit: 7
    poll: 200ms
    timeout: 500ms
    points:
""" + "\n".join(lines) + "\n"
    return site_from_yaml(text, tmp_path), values


@aio
async def test_every_type_and_order_reads_exactly(tmp_path):
    port = free_port()
    site, values = all_types_site(tmp_path, port)
    async with await serve(site, seed=1) as sim:
        sim.pin("dev", values)
        async with Harness(site) as h:
            await h.wait(lambda: h.count(0) >= 2, 10, "two frames")
        frame = h.frames[0][-1]
        got = {rp.id: frame.values[k] for k, rp in enumerate(h.catalog.by_device[0])}
        assert list(frame.quality) == [Q_OK] * len(values)
        for pid, want in values.items():
            if pid == "SC":
                assert got[pid] == pytest.approx(want, abs=1e-9)
            else:
                assert got[pid] == want, pid
        # 32 typed points + ir (string, scaled, bits) + co + di: one request per area
        assert len(h.drivers[0].plan) == 4


@aio
async def test_registers_on_the_wire_match_hand_computed_bytes(tmp_path):
    """The sim and the driver share the codec, so check the wire against constants too."""
    port = free_port()
    site, values = all_types_site(tmp_path, port)
    async with await serve(site, seed=1) as sim:
        sim.pin("dev", values)
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        rr = await client.read_holding_registers(0, count=4, device_id=7)
        # int16 -12345 = 0xCFC7 at hr:0 (ABCD), hr:1 (CDAB: same), hr:2 (BADC: C7CF), hr:3 (DCBA: C7CF)
        assert rr.registers == [0xCFC7, 0xCFC7, 0xC7CF, 0xC7CF]
        rr = await client.read_input_registers(10, count=4, device_id=7)
        assert struct.pack(">4H", *rr.registers) == b"123.5\0\0\0"
        client.close()


@aio
async def test_nan_and_inf_are_sensor_faults(tmp_path):
    port = free_port()
    site, values = all_types_site(tmp_path, port)
    async with await serve(site, seed=1) as sim:
        sim.pin("dev", {**values, "float32-CDAB": math.nan, "float64-DCBA": math.inf})
        async with Harness(site) as h:
            await h.wait(lambda: h.count(0) >= 1, 10, "a frame")
        frame = h.frames[0][-1]
        ids = [rp.id for rp in h.catalog.by_device[0]]
        for pid in ("float32-CDAB", "float64-DCBA"):
            k = ids.index(pid)
            assert frame.quality[k] == Q_SENSOR_FAULT and math.isnan(frame.values[k])
        assert frame.quality[ids.index("float32-ABCD")] == Q_OK


# ---------------------------------------------------------------- the demo site

@aio
async def test_demo_site_frames_every_poll_with_plausible_values():
    port = free_port()
    site = demo_on(port)
    async with await serve(site, seed=3) as sim:
        async with Harness(site) as h:
            await h.wait(lambda: min(h.count(i) for i in range(3)) >= 4, 15, "4 frames per device")
    assert registry.load(registry.driver("modbus-tcp").factory) is type(h.drivers[0])
    for i, dev in enumerate(site.devices):
        pts = h.catalog.by_device[i]
        for f in h.frames[i]:
            assert list(f.index) == [p.index for p in pts]
            assert set(f.quality) == {Q_OK}
            for k, p in enumerate(pts):
                assert p.range_low <= f.values[k] <= p.range_high, (dev.name, p.id, f.values[k])
        # the schedule: 1 s apart (no drift, no stacking)
        gaps = [b - a for a, b in zip(h.arrivals[i], h.arrivals[i][1:])]
        assert all(0.8 < g < 1.2 for g in gaps), gaps
        assert h.drivers[i].online and h.drivers[i].counters["errors"] == 0
    ch4 = [f.values[0] for f in h.frames[0]]
    assert len(set(ch4)) == len(ch4), "methane changes every poll"
    assert h.drivers[0].counters["requests"] == 2 * h.drivers[0].counters["polls"]   # hr block + ir block
    assert sim.requests("gas-substation-1") >= h.drivers[0].counters["requests"]


def test_describe_prints_the_plan():
    site = demo_on(15020)
    from edge_agent.points import Catalog
    from edge_agent.profile.tables import load_profile
    cat = Catalog(site, load_profile("default"))
    lines = describe(site.devices[0], cat.by_device[0])
    assert lines[0].startswith("2 requests per poll")
    assert "read hr:0-5 (6 registers): T1 T2 T3 T4 T6" in lines[1]
    assert "read ir:0-0 (1 registers): T5" in lines[2]


# ---------------------------------------------------------------- unreachable, then back

@aio
async def test_unreachable_device_reports_16_logs_once_and_recovers(tmp_path, caplog):
    port = free_port()
    site = site_from_yaml(HEAD.format() + f"""\
  - {{name: lost, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: 1, poll: 100ms, timeout: 200ms,
     points: [{{id: T1, sensor: "0001", address: "hr:0", type: float32}}]}}
""", tmp_path)
    caplog.set_level(logging.INFO, logger="edge_agent.drivers.modbus")
    async with Harness(site, BACKOFF_START=0.2, BACKOFF_CAP=0.4) as h:
        await h.wait(lambda: h.count(0) >= 4, 10, "4 failed attempts")
        for f in h.frames[0]:
            assert list(f.quality) == [Q_SUBSTATION_FAULT] and math.isnan(f.values[0])
        assert not h.drivers[0].online
        assert h.states == [(0, False, f"cannot connect to 127.0.0.1:{port}")]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "lost" in warnings[0].getMessage() and "check" in warnings[0].getMessage()
        async with await serve(site, seed=1):
            await h.wait(lambda: h.drivers[0].online, 5, "recovery")
            n = h.count(0)
            await h.wait(lambda: h.count(0) >= n + 2, 5, "frames after recovery")
        assert h.frames[0][-1].quality[0] == Q_OK
        assert [s[1] for s in h.states] == [False, True]
        assert len([r for r in caplog.records if "online" in r.getMessage()]) == 1


@aio
async def test_backoff_doubles_with_jitter_up_to_the_cap(tmp_path):
    port = free_port()
    site = site_from_yaml(HEAD.format() + f"""\
  - {{name: lost, driver: modbus-tcp, host: 127.0.0.1, port: {port}, poll: 10ms, timeout: 100ms,
     points: [{{id: T1, sensor: "0001", address: "hr:0"}}]}}
""", tmp_path)
    async with Harness(site, BACKOFF_START=0.1, BACKOFF_CAP=0.4) as h:
        await h.wait(lambda: h.count(0) >= 6, 10, "6 attempts")
    gaps = [b - a for a, b in zip(h.arrivals[0], h.arrivals[0][1:])]
    for gap, nominal in zip(gaps, (0.1, 0.2, 0.4, 0.4, 0.4)):
        assert 0.8 * nominal - 0.02 <= gap <= 1.2 * nominal + 0.1, (gaps, nominal)


@aio
async def test_make_driver_context_never_raises_for_unreachable(tmp_path):
    site = site_from_yaml(HEAD.format() + """\
  - {name: far, driver: modbus-rtu-tcp, host: 127.0.0.1, port: 9, points: [{id: T1, sensor: "0001", address: "hr:0"}]}
""", tmp_path)
    frames = []
    from edge_agent.points import Catalog
    from edge_agent.profile.tables import load_profile
    drv = make_driver(0, site.devices[0], Catalog(site, load_profile("default")).by_device[0], frames.append)
    async with drv:
        assert await drv.poll_once() is False
    assert frames[0].quality[0] == Q_SUBSTATION_FAULT


# ------------------------------------------------------------------ block decode == per-point decode

_TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool", "string"]


@st.composite
def _block(draw):
    """Points at random (possibly overlapping) register addresses of one block, and its registers."""
    n = draw(st.integers(1, 12))
    points = []
    for i in range(n):
        typ = draw(st.sampled_from(_TYPES))
        addr = draw(st.integers(0, 40))
        if typ == "bool":
            address = f"hr:{addr}.{draw(st.integers(0, 15))}"
        else:
            address = f"hr:{addr}"
        points.append(Point(id=f"P{i}", sensor="0001", address=address, type=typ,
                            order=draw(st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"])),
                            length=draw(st.integers(1, 3)) if typ == "string" else None,
                            scale=draw(st.sampled_from([1.0, 0.1, 0.01, 2.5])),
                            offset=draw(st.sampled_from([0.0, -10.0, 3.5]))))
    codecs = [Codec(p) for p in points]
    count = max(c.address + c.count for c in codecs)
    regs = draw(st.lists(st.integers(0, 65535), min_size=count, max_size=count))
    return codecs, regs


@settings(max_examples=300, deadline=None)
@given(_block())
def test_block_reader_decodes_exactly_like_each_codec(block):
    codecs, regs = block
    members = sorted(enumerate(codecs), key=lambda m: m[1].address)
    values = array("d", [math.nan]) * len(codecs)
    quality = array("B", bytes(len(codecs)))
    BlockReader(0, len(regs), members, 128).read(regs, values, quality)
    buf = b"".join(r.to_bytes(2, "big") for r in regs)
    for pos, c in members:
        want = c.decode(buf, c.address * 2)
        if math.isnan(want) or math.isinf(want):
            assert math.isnan(values[pos]) and quality[pos] == 128, (c.type, c.order)
        else:
            assert values[pos] == want and quality[pos] == 0, (c.type, c.order, values[pos], want)
