"""Task and context-manager helpers of the agent's shutdown and reload: bounded, and loud about what sticks.

- `close_devices([(driver, task, name), ...])`: cancel the tasks together, wait (bounded), close the drivers.
- `settle(tasks, timeout)`: wait for cancelled tasks, but not forever; a stuck one is named and left behind.
- `entered(items)`: enter several async context managers, exit them in reverse order; one failing to
  exit is logged and does not keep the others open.
"""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("edge_agent.agent")

SHUTDOWN_GRACE = 5.0                         # seconds a cancelled task gets before it is left behind


async def close_devices(devices: list[tuple]) -> None:
    """(driver, task, name) triples: cancel the tasks together, wait (bounded), close the links."""
    tasks = [t for _, t, _ in devices if t is not None]
    for t in tasks:
        t.cancel()
    await settle(tasks, SHUTDOWN_GRACE)
    for drv, _, name in devices:
        try:
            await drv.__aexit__(None, None, None)
        except Exception:
            log.exception("error while closing device %s", name)


async def settle(tasks: list[asyncio.Task], timeout: float) -> None:
    """Wait for cancelled tasks to finish, but not forever: a stuck one is named and left behind."""
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=timeout)
    for t in stuck:
        log.warning("shutdown: %s did not stop within %gs; leaving it", t.get_name(), timeout)
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            log.error("%s ended with an error: %s", t.get_name(), t.exception())


class entered:
    """Enter several async context managers, exit them in reverse order."""

    def __init__(self, items):
        self.items = items
        self.entered: list = []

    async def __aenter__(self):
        for it in self.items:
            await it.__aenter__()
            self.entered.append(it)
        return self

    async def __aexit__(self, *exc):
        for it in reversed(self.entered):
            try:
                await it.__aexit__(None, None, None)
            except Exception:  # a sink failing to close must not lose the buffer close
                log.exception("error while closing %s", type(it).__name__)
        return False
