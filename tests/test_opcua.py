"""OPC UA driver against a real asyncua server on loopback (one server shared by the module).

The server runs on its own event loop in a background thread (ServerThread),
the driver in the test's `asyncio.run`, so they talk over a real socket.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest
from asyncua import ua

from conftest import free_port
from edge_agent.config import Site
from edge_agent.drivers.opcua import OpcUaDevice, check_connect
from edge_agent.drivers.opcua_sim import ServerThread, SimServer
from edge_agent.filtering import Kernel
from edge_agent.points import Catalog
from edge_agent.profile.tables import load_profile

NAMES = ["Speed", "Temp", "Current", "Level", "Dead"]


@pytest.fixture(scope="module")
def srv():
    s = ServerThread(SimServer(free_port(), names=NAMES)).start()
    yield s
    s.stop()


def catalog(url: str, points: list[dict], **kw) -> Catalog:
    """A one-device site (opcua device `belt-1`) through the real Site and Catalog."""
    site = Site.model_validate({
        "site": {"mine_code": "140211001234"},
        "devices": [{"name": "belt-1", "driver": "opcua", "url": url, "points": points, **kw}]})
    return Catalog(site, load_profile("default"))


def device(url: str, points: list[dict], **kw):
    """The device config and its resolved points."""
    cat = catalog(url, points, **kw)
    return cat.site.devices[0], cat.by_device[0]


class KernelFeed:
    """The real threshold kernel fed with the driver's frames, as the agent does; keeps its events."""

    def __init__(self, cat: Catalog):
        self.kernel = Kernel(len(cat), cat.thresholds())
        self.events = []

    def __call__(self, frame) -> None:
        self.kernel.process(frame)
        self.events += [(e.point, e.anomaly, e.begin) for e in self.kernel.take_events()]


def pt(pid: str, address: str, **kw) -> dict:
    return {"id": pid, "sensor": "0053", "kind": "analog", "address": address, **kw}


class Run:
    """The driver's run() as a task, plus every Frame it emitted."""

    def __init__(self, dev, points, **kw):
        self.frames = []
        self.states = []
        self.drv = OpcUaDevice(0, dev, points, self.frames.append, **kw)
        self.drv.state_changed = lambda i, online, reason: self.states.append((online, reason))

    def seen(self, gi: int) -> list[tuple[float, int]]:
        """(value, quality) of global point `gi`, in arrival order."""
        return [(f.values[k], f.quality[k]) for f in self.frames for k in range(len(f)) if f.index[k] == gi]

    async def until(self, cond, timeout: float = 5.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; frames: {self.frames[-3:]}")
            await asyncio.sleep(0.02)


async def running(r: Run, body) -> None:
    async with r.drv:
        task = asyncio.create_task(r.drv.run())
        try:
            await body()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


def last(r: Run, gi: int):
    s = r.seen(gi)
    return s[-1] if s else None


def test_subscribe_values_statuses_and_batching(srv):
    dev, points = device(srv.sim.url, [pt("SPD", "ns=2;s=Sim.Speed", scale=2.0, offset=1.0),
                                       pt("TMP", "ns=2;s=Sim.Temp"), pt("CUR", "ns=2;s=Sim.Current")],
                         publishing_interval="100ms")
    r = Run(dev, points)

    async def body():
        await r.until(lambda: r.drv.online and all(r.seen(i) for i in range(3)), what="initial values")
        assert srv.call(_count, srv.sim) == 1
        n_frames = len(r.frames)
        # two writes inside one publishing interval arrive in one Frame, not one per value
        await srv.acall(_write_many, srv.sim, [("Speed", 1.5), ("Current", 7.0)])
        await r.until(lambda: last(r, 0) == (4.0, 0) and last(r, 2) == (7.0, 0), what="speed and current")
        both = [f for f in r.frames[n_frames:] if set(f.index) >= {0, 2}]
        assert both, "values written together were split over several frames"
        await srv.acall(srv.sim.write, "Temp", None, ua.StatusCodes.BadSensorFailure)
        await r.until(lambda: last(r, 1) is not None and last(r, 1)[1] == 128, what="Bad -> 128")
        assert math.isnan(last(r, 1)[0])
        await srv.acall(srv.sim.write, "Temp", None, ua.StatusCodes.BadNoCommunication)
        await r.until(lambda: last(r, 1)[1] == 16, what="BadNoCommunication -> 16")
        await srv.acall(srv.sim.write, "Temp", 21.5, ua.StatusCodes.UncertainLastUsableValue)
        await r.until(lambda: last(r, 1) == (21.5, 0), what="Uncertain value used")
        await srv.acall(srv.sim.write, "Temp", 22.0)
        await r.until(lambda: last(r, 1) == (22.0, 0), what="recovered")
        assert r.drv.counters["uncertain"] >= 1 and r.drv.counters["bad"] >= 1
        assert r.drv.counters["link_down"] >= 1
        f = r.frames[-1]
        assert abs(f.wall - time.time()) < 5 and f.mono <= time.monotonic()

    asyncio.run(running(r, body))
    assert r.states[0] == (True, "connected")
    assert all(a.mono <= b.mono and a.wall <= b.wall for a, b in zip(r.frames, r.frames[1:]))
    # a clean exit deletes the subscription on the server
    deadline = time.monotonic() + 5
    while srv.call(_count, srv.sim) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.call(_count, srv.sim) == 0


def test_bad_status_opens_and_closes_ycbj_004(srv):
    srv.call(srv.sim.write, "Current", 5.0)
    cat = catalog(srv.sim.url, [pt("CUR", "ns=2;s=Sim.Current")], publishing_interval="50ms")
    feed = KernelFeed(cat)
    r = Run(cat.site.devices[0], cat.by_device[0])
    r.drv.on_frame = lambda f: (r.frames.append(f), feed(f))

    async def body():
        await r.until(lambda: last(r, 0) == (5.0, 0), what="initial value")
        await srv.acall(srv.sim.write, "Current", None, ua.StatusCodes.BadSensorFailure)
        await r.until(lambda: (0, "004", True) in feed.events, what="YCBJ 004 to open")
        assert feed.kernel.status[0] & 128
        await srv.acall(srv.sim.write, "Current", 5.5)
        await r.until(lambda: (0, "004", False) in feed.events, what="YCBJ 004 to close")
        assert feed.kernel.status[0] & 128 == 0 and feed.kernel.value[0] == 5.5

    asyncio.run(running(r, body))
    assert [e for e in feed.events if e[1] == "004"] == [(0, "004", True), (0, "004", False)]


def test_deadband_is_filtered_by_the_server(srv):
    srv.call(srv.sim.write, "Level", 10.0)
    dev, points = device(srv.sim.url, [pt("LVL", "ns=2;s=Sim.Level", deadband=0.5)],
                         publishing_interval="50ms")
    r = Run(dev, points)

    async def body():
        await r.until(lambda: last(r, 0) == (10.0, 0), what="initial value")
        # 10.2 and 10.4 are within 0.5 of the value before (asyncua's server compares with the previous
        # sample, the spec says the last reported value: steps chosen so both readings agree)
        for v in (10.2, 10.4, 11.0):
            await srv.acall(srv.sim.write, "Level", v)
            await asyncio.sleep(0.15)
        await r.until(lambda: last(r, 0) == (11.0, 0), what="change beyond the deadband")
        assert [v for v, _ in r.seen(0)] == [10.0, 11.0]

    asyncio.run(running(r, body))


def test_poll_mode_reads_all_points_split_by_max_nodes_per_read(srv):
    limit = ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)
    srv.call(_set, srv.sim, limit, ua.Variant(2, ua.VariantType.UInt32))
    try:
        for name, v in (("Speed", 1.0), ("Temp", 2.0), ("Current", 3.0)):
            srv.call(srv.sim.write, name, v)
        dev, points = device(srv.sim.url, [pt("SPD", "ns=2;s=Sim.Speed"), pt("TMP", "ns=2;s=Sim.Temp"),
                                           pt("CUR", "/Objects/2:Sim/2:Current"), pt("DEAD", "ns=2;s=Sim.Dead")],
                             mode="poll", poll="100ms")
        srv.call(srv.sim.write, "Dead", None, ua.StatusCodes.BadSensorFailure)
        r = Run(dev, points)

        async def body():
            await r.until(lambda: len(r.frames) >= 3, what="three polls")
            assert all(sorted(f.index) == [0, 1, 2, 3] for f in r.frames)
            assert [(f.values[0], f.values[1], f.values[2]) for f in r.frames[:1]] == [(1.0, 2.0, 3.0)]
            assert r.frames[0].quality[3] == 128
            await srv.acall(srv.sim.write, "Speed", 9.5)
            await r.until(lambda: last(r, 0) == (9.5, 0), what="new value polled")
            assert srv.call(_count, srv.sim) == 0   # poll mode holds no subscription
            c = r.drv.counters
            assert c["read_requests"] == 2 * c["reads"]   # 4 nodes, at most 2 per Read
            t = [f.mono for f in r.frames]
            gaps = [b - a for a, b in zip(t, t[1:])]
            assert 0.05 < sorted(gaps)[len(gaps) // 2] < 0.2

        asyncio.run(running(r, body))
    finally:
        srv.call(_set, srv.sim, limit, ua.Variant(10000, ua.VariantType.UInt32))


def test_missing_browse_path_is_named_and_the_rest_works(srv, caplog):
    dev, points = device(srv.sim.url, [pt("SPD", "/Objects/2:Sim/2:Speed"), pt("NOPE", "/Objects/2:Sim/2:Sped"),
                                       pt("GONE", "ns=2;s=Sim.Nothing")])
    r = Run(dev, points)
    caplog.set_level(logging.WARNING, logger="edge_agent")

    async def body():
        await r.until(lambda: last(r, 1) is not None and last(r, 2) is not None and last(r, 0) is not None)
        assert last(r, 1)[1] == 128 and last(r, 2)[1] == 128 and last(r, 0)[1] == 0

    asyncio.run(running(r, body))
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("edge_agent")]
    assert any("belt-1" in ln and "NOPE" in ln and "/Objects/2:Sim/2:Sped" in ln and "browse path" in ln
               for ln in lines), lines
    assert any("GONE" in ln and "ns=2;s=Sim.Nothing" in ln for ln in lines), lines
    problems = asyncio.run(check_connect(dev, points))
    assert len(problems) == 2 and "NOPE" in problems[0] and "/Objects/2:Sim/2:Sped" in problems[0], problems
    assert "GONE" in problems[1] and "BadNodeIdUnknown" in problems[1], problems


def test_unreachable_server_reports_16_once_and_keeps_trying(caplog):
    dev, points = device(f"opc.tcp://127.0.0.1:{free_port()}", [pt("A", "ns=2;s=A"), pt("B", "ns=2;s=B")])
    r = Run(dev, points)
    caplog.set_level(logging.DEBUG, logger="edge_agent")

    async def body():
        await r.until(lambda: r.drv.counters["connect_failures"] >= 2, timeout=5, what="a retry")

    asyncio.run(running(r, body))
    assert len(r.frames) == 1 and list(r.frames[0].quality) == [16, 16] and all(map(math.isnan, r.frames[0].values))
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "belt-1" in warnings[0] and "refused" in warnings[0], warnings
    assert r.states == [(False, warnings[0].split(": ", 1)[1].removesuffix("; retrying with backoff"))]
    assert not r.drv.online


async def _write_many(sim: SimServer, pairs) -> None:
    for name, v in pairs:
        await sim.write(name, v)


async def _count(sim: SimServer) -> int:
    return sim.subscription_count()


async def _set(sim: SimServer, nodeid, variant) -> None:
    await sim.server.write_attribute_value(nodeid, ua.DataValue(variant))
