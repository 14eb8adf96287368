"""The simulated mine: every Modbus device of a site file, served over real Modbus.

    sim = await serve(site, port=15020, seed=1)    # started; listening
    sim.set_fault("belt-1", "silent")              # fault injection for tests
    await sim.stop()

`main(site, port=None, scenario="normal")` runs it until SIGINT/SIGTERM (the
`edge-agent simulate` command).  Values come from `dynamics.py`, encoded with
the driver's own codec, so the simulator and the driver cannot drift.
"""
from __future__ import annotations

import asyncio
import signal

from edge_agent.config import Site
from edge_agent.drivers.sim.dynamics import SCENARIOS, Scenario
from edge_agent.drivers.sim.server import Simulation


async def serve(site: Site, *, scenario: str = "normal", port: int | None = None, serial: str | None = None,
                seed: int | None = None) -> Simulation:
    """Start serving every Modbus device of `site`; return the running `Simulation`.

    `port` overrides every TCP device's port (tests, demo); `serial` overrides
    the serial port of modbus-rtu devices (the far end of a pty pair).
    """
    return await Simulation(site, scenario=scenario, port=port, serial=serial, seed=seed).start()


start = serve


def main(site: Site, port: int | None = None, scenario: str = "normal") -> int:
    """Serve until SIGINT/SIGTERM; print one line per listening server.  Exit code."""
    async def run() -> int:
        try:
            sim = await serve(site, scenario=scenario, port=port)
        except (ValueError, RuntimeError, OSError) as exc:
            print(f"edge-agent simulate: {exc}", flush=True)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"edge-agent simulate: scenario {scenario}; listening on " + "; ".join(sim.listening)
              + "; Ctrl-C to stop", flush=True)
        try:
            await stop.wait()
        finally:
            await sim.stop()
        return 0
    return asyncio.run(run())


__all__ = ["serve", "start", "main", "Simulation", "SCENARIOS", "Scenario"]
