"""Console test helpers: the agent and the simulated mine in a thread of their own, a headless Chromium.

`RunningAgent(site)` runs `Agent.run` (console included) and the simulator in
one event loop on a background thread, so a test thread can drive a real
browser at it; `call(fn)` runs `fn` in that loop and returns its result.
`browser()` launches Debian's chromium through Playwright (never a
downloaded browser) with the flags that work on this machine.
"""
from __future__ import annotations

import asyncio
import math
import os
import threading
import time

from edge_agent.agent import Agent
from edge_agent.errors import EdgeAgentError

CHROMIUM = os.environ.get("EDGE_AGENT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class RunningAgent:
    def __init__(self, site, *, scenario: str = "normal", sim_port: int, book_factory=None):
        self.site, self.scenario, self.sim_port = site, scenario, sim_port
        self.book_factory = book_factory
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
            if self.book_factory is not None:
                self.agent.alarms = self.book_factory(self.agent)
                self.agent.alarms.watch()
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


class LegacyBook:
    """The contract's alarm book (CONTRACT-web-alarms-console.md), fed from the kernel's alarm and
    cut-off bits: a stand-in producer until the alarms branch's real book is merged."""

    def __init__(self, agent, deadline: float = 900.0):
        self.agent = agent
        self.deadline = deadline
        self.alarms: dict[int, dict] = {}
        self.by_point: dict[int, int] = {}
        self.changed = asyncio.Event()
        self.writes: list[tuple] = []
        self._task = None

    def watch(self) -> None:
        """Called in the agent's loop: follow the kernel every 0.2 s."""
        async def run():
            while True:
                self._scan(time.time())
                await asyncio.sleep(0.2)
        self._task = asyncio.get_running_loop().create_task(run())

    def _scan(self, now: float) -> None:
        k = self.agent.kernel
        for rp in self.agent.catalog.points:
            s = int(k.status[rp.index])
            level = "red" if s & 2 else "orange" if s & 1 else None
            aid = self.by_point.get(rp.index)
            a = self.alarms.get(aid) if aid is not None else None
            if level and a is None:
                aid = len(self.alarms) + 1
                self.alarms[aid] = {
                    "id": aid, "device": self.agent.site.devices[rp.device].name, "point": rp.id,
                    "point_code": rp.code, "item": None, "sensor_name": rp.sensor_name, "location": rp.cfg.location,
                    "unit": rp.unit, "level": level, "max_level": level, "rule": "legacy",
                    "threshold": rp.cfg.alarm.high, "value": k.value[rp.index], "extreme": k.value[rp.index],
                    "start": now, "end": None, "state": "open", "acked_at": None, "acked_by": None,
                    "deadline": now + self.deadline, "overdue": False, "disposal": None}
                self.by_point[rp.index] = aid
                self.changed.set()
            elif a is not None and a["end"] is None:
                v = k.value[rp.index]
                if not math.isnan(v):
                    a["value"], a["extreme"] = v, max(a["extreme"], v)
                if level is None:
                    a["end"] = now
                    a["state"] = "closed" if a["state"] in ("open", "acked") else a["state"]
                    del self.by_point[rp.index]
                    self.changed.set()
                elif level != a["level"]:
                    a["level"] = level
                    a["max_level"] = "red" if "red" in (level, a["max_level"]) else level
                    self.changed.set()

    def list(self, state: str = "open") -> list[dict]:
        pick = {"open": lambda a: a["end"] is None, "overdue": lambda a: a["overdue"],
                "closed": lambda a: a["end"] is not None, "all": lambda a: True}[state]
        return [dict(a) for a in self.alarms.values() if pick(a)]

    def get(self, alarm_id: int) -> dict:
        if alarm_id not in self.alarms:
            raise BookError(404, f"alarm {alarm_id}: no such alarm")
        return dict(self.alarms[alarm_id])

    def ack(self, alarm_id: int, *, by: str) -> dict:
        a = self.alarms[self.get(alarm_id)["id"]]
        a.update(acked_at=time.time(), acked_by=by, state="acked" if a["end"] is None else a["state"])
        self.writes.append(("ack", alarm_id, by))
        self.changed.set()
        return dict(a)

    def dispose(self, alarm_id: int, *, handler: str, cause: str, action: str, handled_at: float | None = None):
        a = self.alarms[self.get(alarm_id)["id"]]
        if a["disposal"] is not None:
            raise BookError(409, f"alarm {alarm_id}: already disposed of")
        for name, text in (("handler", handler), ("cause", cause), ("action", action)):
            if not text or len(text) > 200 or any(c in text for c in ";~|"):
                raise BookError(400, f"{name}: empty, too long or contains ; ~ |")
        a["disposal"] = {"handler": handler, "cause": cause, "action": action, "handled_at": handled_at or time.time()}
        a["state"] = "disposed"
        self.writes.append(("dispose", alarm_id, handler, cause, action))
        self.changed.set()
        return dict(a)


class BookError(EdgeAgentError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def launch_browser(playwright):
    """Debian's chromium, headless; Playwright gives each launch a fresh --user-data-dir of its own."""
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} not found: apt-get install chromium (bash .ci/run does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
