"""OPC UA faults against real asyncua servers: refused sessions, bad values, wrong types, nodes that go away.

What the log may hold: the driver's own lines, one per state change, naming the device and what to
do; nothing that asyncua's client logs itself (its `Received an error: ErrorMessage(...)` CRITICAL on
every refused attempt, its ERROR tracebacks). Points of a faulty device go to a fault status; a
healthy device on another server keeps its period meanwhile.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest
from asyncua import ua

from conftest import free_port
from edge_agent.drivers.opcua_sim import ServerThread, SimServer
from test_opcua import Run, device, last, pt, running
from test_opcua_security import PASSWORD, agent_warnings, pki, secure_device  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def secure(pki):  # noqa: F811
    d, client, _, server = pki
    s = ServerThread(SimServer(free_port(), names=["Speed"], cert=server.cert_pem, key=server.key_pem,
                               users={"op": PASSWORD}, trusted=[client.cert_pem], strict=True)).start()
    yield s
    s.stop()


def library_lines(caplog) -> list[str]:
    """What asyncua's client side logged at WARNING or above (the test servers' own lines left out)."""
    return [f"{rec.levelname} {rec.name}: {rec.getMessage()}" for rec in caplog.records
            if rec.name.startswith("asyncua") and not rec.name.startswith("asyncua.server")
            and rec.levelno >= logging.WARNING]


def _attempts(r: Run, n: int, timeout: float = 20):
    async def body():
        await r.until(lambda: r.drv.counters["connect_failures"] >= n, timeout=timeout, what=f"{n} attempts")
    return body


@pytest.mark.parametrize("case", ["stranger", "bad.pass"])
def test_a_refused_session_gives_one_driver_line_and_nothing_from_asyncua(secure, pki, caplog, case):  # noqa: F811
    dev, points = (secure_device(secure, pki, cert="stranger") if case == "stranger"
                   else secure_device(secure, pki, password="bad.pass"))
    r = Run(dev, points)
    caplog.set_level(logging.DEBUG)
    asyncio.run(running(r, _attempts(r, 3)))
    assert library_lines(caplog) == []
    warnings = agent_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith("device belt-1: "), warnings
    assert ("trust" if case == "stranger" else "password_file") in warnings[0]


def test_no_server_cert_file_and_no_unsecured_endpoint_says_set_server_cert_file(secure, pki, caplog):  # noqa: F811
    dev, points = secure_device(secure, pki)
    dev = dev.model_copy(update={"server_cert_file": None})
    r = Run(dev, points)
    caplog.set_level(logging.DEBUG)
    asyncio.run(running(r, _attempts(r, 2)))
    warnings = agent_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "server_cert_file" in warnings[0] and "trust" not in warnings[0], warnings
    assert library_lines(caplog) == []


def test_an_unsecured_device_against_a_secure_only_server_says_set_security(secure, caplog):
    dev, points = device(secure.sim.url, [pt("SPD", "ns=2;s=Sim.Speed")])
    r = Run(dev, points)
    caplog.set_level(logging.DEBUG)
    asyncio.run(running(r, _attempts(r, 2)))
    warnings = agent_warnings(caplog)
    assert len(warnings) == 1 and "security" in warnings[0] and "trust" not in warnings[0], warnings
    assert library_lines(caplog) == []


async def _retype(sim: SimServer, name: str, variant: ua.Variant) -> None:
    """Give a variable a value of another type (asyncua refuses a change of type unless the value is first
    cleared, as a server whose node was reconfigured would do)."""
    cleared = ua.DataValue()
    cleared.Value = None
    await sim.server.write_attribute_value(sim.nodes[name], cleared)
    await sim.server.write_attribute_value(sim.nodes[name], ua.DataValue(variant))


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
def test_wrong_types_and_nodes_that_disappear_fault_the_points_and_spare_the_healthy_device(mode, caplog):
    bad = ServerThread(SimServer(free_port(), names=["A", "B", "C"])).start()
    good = ServerThread(SimServer(free_port(), names=["Speed"])).start()
    try:
        dev, points = device(bad.sim.url, [pt("A", "ns=2;s=Sim.A"), pt("B", "ns=2;s=Sim.B"),
                                           pt("C", "ns=2;s=Sim.C")], mode=mode, poll="100ms",
                             publishing_interval="100ms")
        r = Run(dev, points)
        r.drv.node_probe = 0.3      # subscribe mode: look for deleted nodes every 0.3 s (30 s in production)
        gdev, gpoints = device(good.sim.url, [pt("SPD", "ns=2;s=Sim.Speed")], mode="poll", poll="100ms")
        gdev = gdev.model_copy(update={"name": "belt-2"})
        healthy = Run(gdev, gpoints)
        arrivals: list[float] = []
        healthy.drv.on_frame = lambda f: (healthy.frames.append(f), arrivals.append(time.monotonic()))
        caplog.set_level(logging.DEBUG)

        async def body():
            await r.until(lambda: r.drv.online and all(last(r, i) == (0.0, 0) for i in range(3)), timeout=10,
                          what="first values")
            await bad.acall(_retype, bad.sim, "A", ua.Variant("not a number", ua.VariantType.String))
            await bad.acall(_retype, bad.sim, "B", ua.Variant([1.0, 2.0], ua.VariantType.Double))
            await r.until(lambda: last(r, 0)[1] != 0 and last(r, 1)[1] != 0, what="wrong types to fault")
            assert math.isnan(last(r, 0)[0]) and math.isnan(last(r, 1)[0])
            await bad.acall(bad.sim.server.delete_nodes, [bad.sim.server.get_node(bad.sim.nodes["C"])])
            # polled, the read says so; subscribed, the server stays silent and the driver's node probe finds it
            await r.until(lambda: last(r, 2)[1] != 0, timeout=10, what="a deleted node to fault")
            assert math.isnan(last(r, 2)[0])
            await bad.acall(_retype, bad.sim, "A", ua.Variant(3.5, ua.VariantType.Double))
            await r.until(lambda: last(r, 0) == (3.5, 0), what="A to recover")
            assert not task.done() and r.drv.online
            # the healthy device, watched over the faults and 15 periods more
            await r.until(lambda: len(arrivals) >= 15, timeout=10, what="the healthy device's frames")

        async def both():
            nonlocal task
            async with healthy.drv:
                task = asyncio.create_task(healthy.drv.run())
                try:
                    await running(r, body)
                finally:
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task

        task = None
        asyncio.run(both())
        # the healthy device kept its 100 ms period throughout (loose bound: a shared 2-core machine)
        assert all(f.quality[0] == 0 for f in healthy.frames[1:]), healthy.frames
        gaps = [b - a for a, b in zip(arrivals[1:], arrivals[2:])]
        assert len(gaps) > 10 and max(gaps) < 1.0, (len(gaps), max(gaps, default=None))
        assert library_lines(caplog) == []
        assert not [rec for rec in caplog.records if rec.exc_info], "a traceback reached the log"
    finally:
        bad.stop()
        good.stop()
