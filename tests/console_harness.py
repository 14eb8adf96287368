"""Console test helpers: the agent and the simulated mine in a thread of their own, a headless Chromium.

`RunningAgent(site)` runs `Agent.run` (console included) and the simulator in
one event loop on a background thread, so a test thread can drive a real
browser at it; `call(fn)` runs `fn` in that loop and returns its result.
`browser()` launches Debian's chromium through Playwright (never a
downloaded browser) with the flags that work on this machine.
"""
from __future__ import annotations

import asyncio
import os
import threading

from edge_agent.agent import Agent

CHROMIUM = os.environ.get("EDGE_AGENT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class RunningAgent:
    def __init__(self, site, *, scenario: str = "normal", sim_port: int):
        self.site, self.scenario, self.sim_port = site, scenario, sim_port
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.agent: Agent | None = None
        self.thread = threading.Thread(target=self._main, name="agent", daemon=True)

    def start(self, timeout: float = 30) -> "RunningAgent":
        self.thread.start()
        if not self.ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"agent did not start: {self.error!r}")
        return self

    @property
    def url(self) -> str:
        return self.agent.web.url

    @property
    def book(self):
        """The agent's alarm book (call its methods through `call`: it lives in the agent's loop)."""
        return self.agent.alarms.book

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.ready.set()

    async def _run(self) -> None:
        from edge_agent.drivers import sim
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        server = await sim.start(self.site, port=self.sim_port, scenario=self.scenario, seed=7)
        try:
            self.agent = Agent(self.site)
            await self.agent.run(self.stop_event, ready=self.ready.set)
        finally:
            await server.stop()

    def call(self, fn, *args, timeout: float = 10):
        """Run fn(*args) in the agent's loop (coroutine functions awaited); return its result."""
        async def run():
            got = fn(*args)
            return await got if asyncio.iscoroutine(got) else got
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 30) -> None:
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.stop_event.set)
            except RuntimeError:
                pass
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the agent did not stop"


def launch_browser(playwright):
    """Debian's chromium, headless; Playwright gives each launch a fresh --user-data-dir of its own."""
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} not found: apt-get install chromium (bash .ci/run does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
