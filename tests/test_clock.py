"""The wall clock stepped while the agent runs, and a clock absurd at start (edge_agent/clock.py).

The real agent in-process on the demo's simulated mine, forwarding to a test mosquitto and writing
spec files; `clock.step` moves the agent's one time source as an NTP step would.
"""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from e2e import Subscriber, agent_running, make_site
from edge_agent import clock
from edge_agent.agent import Agent
from edge_agent.config import load_site


@pytest.fixture(autouse=True)
def real_clock():
    clock.reset()
    yield
    clock.reset()


async def until(cond, timeout: float, what: str, run) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert not run.done(), "the agent stopped"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def cdss_files(outbox):
    """CDSS spec files in the order they were written (the sink's strictly increasing mtimes)."""
    return sorted(outbox.glob("*_CDSS_*.txt"), key=lambda p: p.stat().st_mtime_ns)


def stamp(path) -> str:
    return path.name.rsplit("_", 1)[1].removesuffix(".txt")       # yyyyMMddHHmmss


def test_steps_back_an_hour_and_ahead_a_day_while_running(tmp_path, sim, mosquitto, caplog):
    site = load_site(make_site(tmp_path, sim, mosquitto.url, realtime_every="1s", stats_window="10s"))
    outbox = tmp_path / "outbox"
    sub = Subscriber(mosquitto.port).start()
    caplog.set_level(logging.INFO, logger="edge_agent")
    marks = {}

    async def scenario():
        agent = Agent(site)
        async with agent_running(agent) as run:
            await until(lambda: len(cdss_files(outbox)) >= 3, 30, "CDSS files", run)
            marks["before"] = len(cdss_files(outbox))
            clock.step(-3600)
            await until(lambda: len(cdss_files(outbox)) >= marks["before"] + 3, 30, "CDSS after the step back", run)
            marks["back"] = len(cdss_files(outbox))
            clock.step(86400)
            await until(lambda: len(cdss_files(outbox)) >= marks["back"] + 3, 30, "CDSS after the step ahead", run)
            tjsj = len(sub.payloads("TJSJ"))
            await until(lambda: len(sub.payloads("TJSJ")) > tjsj, 30, "a statistics window after the steps", run)
            marks["health"] = agent.metrics_snapshot()["health"]

    asyncio.run(scenario())
    sub.stop()
    files = cdss_files(outbox)
    names = [p.name for p in files]
    assert len(set(names)) == len(names)
    stamps = [stamp(p) for p in files]
    # a receiver takes a type's files in name order: the names never go back, through both steps
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps
    assert stamps[-1][:8] > stamps[0][:8], "the step ahead shows in the names"
    # snapshots kept coming after the step back (before, they waited an hour for the old schedule)
    assert marks["back"] - marks["before"] >= 3
    # seq: every one once, no gap, no restart
    seqs = sub.seqs()
    assert seqs and sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1)), seqs[-20:]
    assert len(seqs) == len(set(seqs))
    steps = [r.getMessage() for r in caplog.records if "stepped" in r.getMessage()]
    assert len(steps) == 2 and "-3600" in steps[0] and "+86400" in steps[1], steps
    assert marks["health"]["state"] != "down" and not any("clock" in r for r in marks["health"]["reasons"])
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"


def test_each_systems_snapshots_keep_coming_after_a_step_back(tmp_path, sim, caplog):
    """With `systems:` every system keeps its own snapshot schedule on the wall clock; a step back
    re-aligns each (before, the snapshots of every system waited an hour for the old schedule)."""
    from test_systems import two_systems
    site = load_site(two_systems(tmp_path, sim))
    caplog.set_level(logging.INFO, logger="edge_agent")
    folders = [tmp_path / "outbox" / name for name in ("aqjk", "sbjk")]
    counts = {}

    async def scenario():
        agent = Agent(site)
        async with agent_running(agent) as run:
            await until(lambda: all(len(cdss_files(f)) >= 2 for f in folders), 30, "CDSS of both systems", run)
            counts["before"] = [len(cdss_files(f)) for f in folders]
            clock.step(-3600)
            await until(lambda: all(len(cdss_files(f)) >= n + 2 for f, n in zip(folders, counts["before"])), 30,
                        "CDSS of both systems after the step back", run)

    asyncio.run(scenario())
    for f in folders:
        stamps = [stamp(p) for p in cdss_files(f)]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), (f.name, stamps)
    assert any("stepped -3600" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"


def test_a_clock_absurd_at_start_is_logged_once_and_shown_in_health(tmp_path, sim, caplog):
    site = load_site(make_site(tmp_path, sim, None, realtime_every="1s"))
    clock.set_to(946684800.0)                 # 2000-01-01T00:00:00Z: an RTC whose battery died
    caplog.set_level(logging.INFO, logger="edge_agent")
    seen = {}

    async def scenario():
        agent = Agent(site)
        async with agent_running(agent) as run:
            await until(lambda: list((tmp_path / "outbox").glob("*_CDSS_2000*.txt")), 30, "a CDSS file", run)
            await asyncio.sleep(1.5)     # several clock ticks: the warning must stay one line
            seen["absurd"] = agent.metrics_snapshot()["health"]
            clock.reset()                 # NTP sets the clock
            await until(lambda: not agent.clock_watch.reason, 10, "the clock to be plausible", run)
            seen["fixed"] = agent.metrics_snapshot()["health"]

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.name == "edge_agent.clock" and r.levelno >= 30]
    assert len(warnings) == 1 and "2000-01-01" in warnings[0] and "timedatectl" in warnings[0], warnings
    assert seen["absurd"]["state"] == "degraded"
    assert any(r.startswith("clock: ") and "2000-01-01" in r for r in seen["absurd"]["reasons"]), seen
    assert not any(r.startswith("clock") for r in seen["fixed"]["reasons"]), seen
    fixed = [r.getMessage() for r in caplog.records if r.name == "edge_agent.clock" and "plausible again" in
             r.getMessage()]
    assert len(fixed) == 1


def test_absurd_bounds():
    assert clock.absurd(946684800.0) and clock.absurd(4102444800.0 + 86400 * 365 * 30)
    assert clock.absurd(time.time()) is None
