"""Reload (SIGHUP): unchanged devices keep their cadence, new thresholds apply, bad files are rejected."""
from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict

import yaml

from conftest import free_port
from e2e import Proc, make_site, start_simulator, wait_for
from edge_agent.agent import Agent
from edge_agent.config import load_site
from edge_agent.drivers import sim


class SpyAgent(Agent):
    """The real agent, noting when each device's frames arrive."""

    def __init__(self, site):
        self.frame_times: dict[int, list[float]] = defaultdict(list)
        super().__init__(site)

    def on_frame(self, frame):
        self.frame_times[frame.device].append(time.monotonic())
        super().on_frame(frame)


async def until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def edit_site(path, edit) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_reload_keeps_unchanged_devices_polling_and_applies_new_thresholds(tmp_path):
    port = free_port()
    path = make_site(tmp_path, port, None)
    site = load_site(path)

    async def scenario():
        server = await sim.serve(site, port=port, scenario="steady")
        agent = SpyAgent(site)
        names = [d.name for d in site.devices]
        gas, belt, bin_ = names.index("gas-substation-1"), names.index("belt-1"), names.index("bin-1")
        t1 = next(p.index for p in agent.catalog.by_device[gas] if p.id == "T1")
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: all(len(agent.frame_times[i]) >= 3 for i in range(len(names))), 20, "frames")
            assert not agent.kernel.status[t1] & 1
            kept_driver, restarted_driver = agent.drivers[gas], agent.drivers[bin_]

            # CH4 idles at 0.2-0.5 %: an alarm level of 0.1 puts T1 in alarm; bin-1 polls faster
            def edit(data):
                for dev in data["devices"]:
                    if dev["name"] == "gas-substation-1":
                        dev["points"][0]["alarm"] = {"high": 0.1, "high_clear": 0.09}
                        dev["points"][0]["cutoff"] = {"high": 3.0, "restore": 2.5}
                    if dev["name"] == "bin-1":
                        dev["poll"] = "500ms"
            edit_site(path, edit)
            reload_at = time.monotonic()
            await agent.reload(load_site(path))
            n = len(agent.frame_times[gas])
            await until(lambda: len(agent.frame_times[gas]) >= n + 3, 10, "frames after the reload")
            await until(lambda: agent.kernel.status[t1] & 1, 10, "T1 in alarm under the new level")

            # the gas device's points changed only in thresholds: same driver, no gap in its cadence
            assert agent.drivers[gas] is kept_driver
            assert agent.drivers[belt] is not None
            times = agent.frame_times[gas]
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert max(gaps) < 1.5, gaps          # poll 1 s: no missed poll across the reload
            # bin-1 changed its poll: restarted, now at 0.5 s
            assert agent.drivers[bin_] is not restarted_driver
            await until(lambda: sum(t > reload_at for t in agent.frame_times[bin_]) >= 4, 10, "fast bin frames")
            after = [t for t in agent.frame_times[bin_] if t > reload_at]
            assert min(b - a for a, b in zip(after[1:], after[2:])) < 0.8
            assert agent.reloads == 1
        finally:
            stop.set()
            await run
            await server.stop()

    asyncio.run(scenario())
    # definitions changed: CDDY announced again (the start one plus the reload one)
    cddy = sorted((tmp_path / "outbox").glob("*_CDDY_*.txt"))
    assert len(cddy) == 2, cddy
    assert ";0.1;0.09;" in cddy[-1].read_text("utf-8")


def test_sighup_with_a_bad_file_keeps_running_then_applies_a_good_one(tmp_path):
    port = free_port()
    path = make_site(tmp_path, port, None)
    simproc = start_simulator(tmp_path, make_site(tmp_path, port, None, name="sim.yaml"), port)
    agent = Proc(["run", "-c", str(path)], tmp_path / "agent.log")
    try:
        wait_for(lambda: "running:" in agent.text(), 30, "the agent to start")
        good = path.read_text("utf-8")
        path.write_text(good.replace("poll: 1s", "poll: soon", 1), "utf-8")
        agent.proc.send_signal(signal.SIGHUP)
        line = wait_for(lambda: [ln for ln in agent.text().splitlines() if "reload rejected" in ln], 10,
                        "the rejection line")
        assert "poll" in line[0] and "not a duration" in line[0] and str(path) in line[0]
        assert agent.proc.poll() is None
        path.write_text(good.replace("high: 1.0, high_clear: 0.9", "high: 1.2, high_clear: 1.1"), "utf-8")
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: applied" in agent.text(), 10, "the reload to apply")
        assert agent.stop() == 0
    finally:
        agent.kill()
        simproc.kill()
    assert "Traceback" not in agent.text()
