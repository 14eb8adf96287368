"""OPC UA session loss and recovery: server restart, frozen server, dropped link; no subscription leaks."""
from __future__ import annotations

import asyncio
import logging
import math
import signal
import subprocess
import sys
import time

import pytest
from asyncua import Client

from conftest import free_port, stop_process
from edge_agent.drivers.opcua_sim import ServerThread, SimServer
from test_opcua import KernelFeed, Run, catalog, device, pt, running


class SimProcess:
    """`python -m edge_agent.drivers.opcua_sim` in a subprocess, so it can be stopped, frozen, restarted."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"opc.tcp://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SimProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_agent.drivers.opcua_sim", "--port",
                                      str(self.port), "--nodes", "3", "--change-every", "0.2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()   # the server says READY once it accepts connections
        assert line.startswith("READY"), f"sim server did not start: {line!r}"
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def signal(self, sig) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)


@pytest.fixture
def sim():
    s = SimProcess(free_port())
    yield s
    s.stop()


async def subscriptions_on(url: str) -> int:
    """How many subscriptions the server holds, read by an independent client (which holds none)."""
    async with Client(url, timeout=2) as c:
        return await c.get_node("ns=2;s=Sim.SubscriptionCount").read_value()


def values_after(r: Run, k: int) -> list[float]:
    return [v for f in r.frames[k:] for v, q in zip(f.values, f.quality) if q == 0]


def test_server_restart_recovers_without_leaks(sim, caplog):
    sim.start()
    dev, points = device(sim.url, [pt(f"V{i}", f"ns=2;s=Sim.V{i}") for i in range(3)], publishing_interval="100ms")
    r = Run(dev, points, backoff_max=2.0)
    caplog.set_level(logging.INFO, logger="edge_agent")

    async def body():
        await r.until(lambda: r.drv.online and len(values_after(r, 0)) >= 6, what="values before the outage")
        assert await subscriptions_on(sim.url) == 1
        await asyncio.to_thread(sim.stop)
        await r.until(lambda: not r.drv.online, timeout=5, what="the loss to be noticed")
        outage = len(r.frames)
        assert list(r.frames[-1].quality) == [16, 16, 16] and all(map(math.isnan, r.frames[-1].values))
        await asyncio.sleep(10)           # the server stays down for 10 s (the scenario, not a sync)
        assert not r.drv.online and len(r.frames) == outage   # one outage frame, not one per attempt
        await asyncio.to_thread(sim.start)
        await r.until(lambda: r.drv.online and len(values_after(r, outage)) >= 6, timeout=8,
                      what="records to resume after the restart")
        assert await subscriptions_on(sim.url) == 1

    asyncio.run(running(r, body))
    assert [online for online, _ in r.states] == [True, False, True]
    c = r.drv.counters
    assert c["sessions"] == 2 and c["losses"] == 1 and c["connect_failures"] >= 2
    lost = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(lost) == 1 and "belt-1" in lost[0] and "session lost" in lost[0], lost


def test_frozen_server_is_caught_by_the_watchdog(sim):
    sim.start()
    dev, points = device(sim.url, [pt("V0", "ns=2;s=Sim.V0")], publishing_interval="100ms", timeout="1s")
    r = Run(dev, points, backoff_max=2.0)

    async def body():
        await r.until(lambda: r.drv.online and len(values_after(r, 0)) >= 3, what="values")
        sim.signal(signal.SIGSTOP)       # socket stays open, nothing answers: only a watchdog can tell
        t0 = time.monotonic()
        await r.until(lambda: not r.drv.online, timeout=12, what="the watchdog to declare the session lost")
        assert time.monotonic() - t0 < 2 * r.drv.watchdog + 1
        sim.signal(signal.SIGCONT)
        k = len(r.frames)
        await r.until(lambda: r.drv.online and len(values_after(r, k)) >= 3, timeout=10, what="recovery")

    asyncio.run(running(r, body))
    assert r.drv.counters["losses"] == 1


def test_dropped_link_orphan_session_expires_on_the_server():
    s = ServerThread(SimServer(free_port(), names=["A"])).start()
    try:
        cat = catalog(s.sim.url, [pt("A", "ns=2;s=Sim.A")], publishing_interval="100ms")
        feed = KernelFeed(cat)
        r = Run(cat.site.devices[0], cat.by_device[0])
        r.drv.on_frame = lambda f: (r.frames.append(f), feed(f))
        r.drv.session_timeout = 5.0      # the server's minimum; the default is 15 s

        async def body():
            await r.until(lambda: r.drv.online, what="connect")
            await s.acall(s.sim.drop_connections)
            await r.until(lambda: r.drv.counters["sessions"] == 2 and r.drv.online, timeout=5, what="reconnect")
            await s.acall(s.sim.write, "A", 5.0)
            await r.until(lambda: r.frames[-1].values[0] == 5.0, what="values on the new session")
            # the old session outlives its socket (spec), then times out with its subscription
            await r.until(lambda: s.call(_count, s.sim) == 1, timeout=9, what="the orphan to expire")

        asyncio.run(running(r, body))
        assert r.drv.counters["losses"] == 1
        # the outage frame makes the kernel open YCBJ 006 (substation unreachable); recovery closes it
        assert [e for e in feed.events if e[1] == "006"] == [(0, "006", True), (0, "006", False)]
    finally:
        s.stop()


async def _count(sim: SimServer) -> int:
    return sim.subscription_count()
