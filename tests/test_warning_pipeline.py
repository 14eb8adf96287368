"""Graded warning through the real agent: the simulated borehole walks blue -> red, a restart, and back.

The demo site's water level T6 (config/demo.yaml) on the simulator over real
Modbus TCP, in the `borehole-rise` walk (sped up here: one walk in 36 s
instead of 180 s); the agent hands its LevelChanges to `on_level_changes`.
Midway, at red, the agent stops and a new one starts on the same folder: the
level is restored from the baseline file, so there is no second rise, and the
fall still comes.  The roll-up follows the point's changes, and the alarm book
(edge_agent/alarms) opens one alarm at blue, raises it to red, and closes it
after the restart: the two halves of graded warning end to end.
"""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
import yaml

from conftest import free_port
from e2e import make_site
from edge_agent.agent import Agent
from edge_agent.config import load_site
from edge_agent.drivers import sim
from edge_agent.drivers.sim.dynamics import SCENARIOS
from test_reload import until


def warning_site(tmp_path, port):
    path = make_site(tmp_path, port, None)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for p in data["devices"][0]["points"]:
        if p["id"] == "T6":
            p["levels"]["red"]["delay"] = "1s"       # the walk is 5x faster than the demo's
    data["items"] = [{"name": "观测孔", "points": ["gas-substation-1/T6"]},
                     {"name": "矿井", "items": ["观测孔"], "rollup": {"blue_to_yellow": 1}}]
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_site(path)


def test_the_borehole_walks_through_every_level_and_a_restart_does_not_begin_it_again(tmp_path):
    SCENARIOS["borehole-rise-36s"] = dataclasses.replace(SCENARIOS["borehole-rise"], water_cycle=36.0)
    port = free_port()
    site = warning_site(tmp_path, port)

    async def scenario():
        server = await sim.serve(site, port=port, scenario="borehole-rise-36s")
        try:
            first, second = await run_until(site, lambda lv: lv == 4), None
            assert first.restored == 0
            second = await run_until(site, lambda lv: lv == 0)
            return first, second
        finally:
            await server.stop()

    class Run:
        pass

    async def run_until(site, done):
        agent = Agent(site)
        r = Run()
        r.t6 = next(p.index for p in agent.catalog.by_device[0] if p.id == "T6")
        r.restored = agent.kernel.level[r.t6]
        r.changes, r.items = [], []

        def consume(changes):
            r.changes += [c for c in changes if hasattr(c, "point")]
            r.items += [c for c in changes if hasattr(c, "item")]
        agent.on_level_changes = consume
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: any(c.point == r.t6 and done(c.level) for c in r.changes), 40, "the level")
            r.alarms = agent.alarms.book.list("all")
        finally:
            stop.set()
            await task
        return r

    first, second = asyncio.run(scenario())
    up = [(c.previous, c.level, c.rule, c.threshold) for c in first.changes if c.point == first.t6]
    assert up == [(0, 1, "level", 3.0), (1, 2, "level", 3.5), (2, 3, "level", 4.0), (3, 4, "level", 4.5)]
    assert [c.value >= c.threshold for c in first.changes if c.point == first.t6] == [True] * 4
    assert second.restored == 4                     # the baseline file gave the new agent its level
    down = [(c.previous, c.level) for c in second.changes if c.point == second.t6]
    assert down[0][0] == 4 and down[-1][1] == 0, down
    assert all(b < a for a, b in down), f"only falls after the restart (no second begin): {down}"
    assert all(c.threshold >= c.value for c in second.changes if c.point == second.t6)
    # the other points of the demo idle: nothing else changed level
    assert {c.point for c in first.changes + second.changes} == {first.t6}

    # the roll-up: the item follows its one point, the facility counts the item (1 blue -> yellow)
    assert [(c.item, c.level) for c in first.items if c.item == "观测孔"] == [("观测孔", n) for n in (1, 2, 3, 4)]
    assert [(c.item, c.level) for c in first.items if c.item == "矿井"][:2] == [("矿井", 2), ("矿井", 3)]
    assert [c.level for c in second.items if c.item == "观测孔"][-1] == 0       # seeded from the restored level
    assert [c.level for c in second.items if c.item == "矿井"][-1] == 0
    # the alarm book: one alarm per subject, opened before the restart and closed after it
    t6 = [a for a in first.alarms if a["point"] == "T6"]
    assert len(t6) == 1 and t6[0]["max_level"] == "red" and t6[0]["end"] is None
    t6_after = [a for a in second.alarms if a["point"] == "T6"]
    assert [a["id"] for a in t6_after] == [t6[0]["id"]] and t6_after[0]["end"] is not None
    assert {a["item"] for a in second.alarms if a["item"]} == {"观测孔", "矿井"}
    assert all(a["end"] is not None for a in second.alarms)


@pytest.mark.slow
def test_the_demo_shows_the_borehole_walk_at_full_speed(tmp_path):
    """`edge-agent demo --scenario borehole-rise`: one 3-minute walk, every colour in its summary, then none."""
    from e2e import Proc
    proc = Proc(["demo", "--scenario", "borehole-rise", "--duration", "175", "--workdir", str(tmp_path / "demo"),
                 "--mqtt", f"mqtt://127.0.0.1:{free_port()}"], tmp_path / "demo.log")
    try:
        assert proc.proc.wait(240) == 0, proc.text()[-3000:]
    finally:
        proc.kill()
    t6 = [line for line in proc.text().splitlines() if line.strip().startswith("T6 ")]
    colours = [next((c for c in ("blue", "yellow", "orange", "red") if line.endswith(c)), "none") for line in t6]
    walk = [c for i, c in enumerate(colours) if i == 0 or c != colours[i - 1]]
    assert walk == ["none", "blue", "yellow", "orange", "red", "orange", "yellow", "blue", "none"], walk
