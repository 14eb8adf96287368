"""A reload builds a whole new pipeline or changes nothing; the state of unchanged points carries over."""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import yaml

from conftest import free_port
from edge_agent.agent import Agent
from edge_agent.config import load_site
from edge_agent.drivers import sim
from e2e import agent_running, make_site
from test_kernel import K, T0, edges, frame, thresholds  # noqa: F401 (K is a fixture)
from test_reload import edit_site, until


# ----------------------------------------------------------------------------- the kernel's part

def test_carry_over_keeps_alarms_delays_deadband_and_windows(K):  # noqa: F811
    old = K(3, thresholds(3, alarm_high=1.0, alarm_high_clear=0.9, deadband=0.5, per_point=[{}, {"delay": 10.0},
                                                                                          {}]), stats_window=60.0)
    old.process(frame(T0 + 1, [1.2, 1.5, 0.3]))      # p0 in alarm; p1 above but waiting out its delay
    assert edges(old.take_events()) == [("001", "high", True, 1.0, None)]
    old.process(frame(T0 + 2, [1.3, 1.5, 0.4]))
    old.take_events()
    # the new configuration puts a new point first; old 0, 1, 2 are new 1, 2, 3
    new = K(4, thresholds(4, alarm_high=1.0, alarm_high_clear=0.9, deadband=0.5,
                          per_point=[{}, {}, {"delay": 10.0}, {}]), stats_window=60.0)
    new.carry_over(old, [-1, 0, 1, 2])
    assert list(new.status) == [0, 1, 0, 0] and new.value[1] == 1.3 and new.value[3] == 0.4
    rep = new.process(frame(T0 + 12, [0.1, 1.25, 1.5, 0.45]))
    # no second begin for old p0; old p1's delay ran since T0+1, so it enters now; p3 moved less than
    # its deadband since it was last reported (T0+1 at 0.3): not reported
    begun = new.take_events()
    assert edges(begun) == [("001", "high", True, 12.0, None)] and begun[0].point == 2
    assert list(new.status) == [0, 1, 1, 0] and 3 not in list(rep)
    new.process(frame(T0 + 13, [0.1, 0.5, 1.5, 0.45]))
    ends = new.take_events()
    assert edges(ends) == [("001", "high", False, 1.0, 13.0)] and ends[0].point == 1
    assert ends[0].max == 1.3            # the alarm's extreme from before the reload counts
    stats = {s.point: s for s in new.take_stats(T0 + 60)}
    assert stats[1].count == 4 and stats[3].count == 4 and stats[0].count == 2   # one window, both kernels


def test_carry_over_keeps_graded_levels(K):  # noqa: F811
    """The graded-warning state of a point goes with it (Ladder.carry_over): no second rise."""
    from test_ladder import LADDER, kernel, levels_of
    from edge_agent.filtering.rules import RuleSpec

    specs = [RuleSpec("level", LADDER.steps())]
    old = kernel(K, specs)
    assert levels_of(old, [(0, 3.6)]) == [2]               # yellow
    old.take_level_changes()
    new = kernel(K, specs, n=2)                            # a new point first, the old one second
    new.carry_over(old, [-1, 0])
    assert list(new.level) == [0, 2]
    new.process(frame(T0 + 1, [0.0, 3.6]))
    assert new.take_level_changes() == []                  # still yellow: nothing changed
    new.process(frame(T0 + 2, [0.0, 4.1]))
    assert [(c.point, c.previous, c.level) for c in new.take_level_changes()] == [(1, 2, 3)]


# ----------------------------------------------------------------------------- through the agent

def alarm_everything(data: dict, device: str) -> None:
    """Every point of `device` in (low) alarm whatever it reads."""
    for dev in data["devices"]:
        if dev["name"] == device:
            for p in dev["points"]:
                if "levels" not in p:          # graded points alarm by their own levels
                    p["alarm"] = {"low": 1e6, "low_clear": 1e6}
                    p.pop("warn", None)


def ycbj_records(outbox) -> list[list[str]]:
    out = []
    for f in sorted(outbox.glob("*_YCBJ_*.txt")):
        records = f.read_text("utf-8").split("~")[1:-1]
        out += [r.split(";") for r in records]
    return out


def test_a_reload_that_adds_a_device_keeps_the_open_alarms(tmp_path):
    port = free_port()
    path = make_site(tmp_path, port, None)

    def ten_points(data):
        gas = next(d for d in data["devices"] if d["name"] == "gas-substation-1")
        gas["points"] += [{"id": f"X{i}", "sensor": "0003", "address": f"hr:{4 + i}", "type": "int16",
                           "scale": 0.1} for i in range(6, 11)]
        alarm_everything(data, "gas-substation-1")
    edit_site(path, ten_points)
    site = load_site(path)
    original = yaml.safe_load(path.read_text("utf-8"))

    async def scenario():
        agent = Agent(site)
        async with agent_running(agent, server=await sim.serve(site, port=port, scenario="steady")):
            gas = [p.index for p in agent.catalog.by_device[0] if p.cfg.levels is None]
            assert len(gas) == 10
            await until(lambda: all(agent.kernel.status[i] & 1 for i in gas), 20, "ten alarms open")

            def add_device(data):
                dev = dict(next(d for d in original["devices"] if d["name"] == "gas-substation-1"))
                dev["name"] = "gas-substation-2"
                dev["points"] = [{**p, "id": f"G{p['id']}", "alarm": {}} for p in dev["points"] if "levels" not in p]
                data["devices"].append(dev)
            edit_site(path, add_device)
            await agent.reload(load_site(path))
            assert all(agent.kernel.status[i] & 1 for i in gas)       # the same indices: appended device
            n = agent.devices[0].frames
            await until(lambda: agent.devices[0].frames >= n + 3 and agent.devices[3].frames >= 2, 20,
                        "frames after the reload")
            # a level the values are far from: every alarm ends
            def no_alarm(data):
                for d in data["devices"]:
                    if d["name"] == "gas-substation-1":
                        for p in d["points"]:
                            if "levels" not in p:
                                p["alarm"] = {"low": -1e6, "low_clear": -1e6}
            edit_site(path, no_alarm)
            await agent.reload(load_site(path))
            await until(lambda: not any(agent.kernel.status[i] & 1 for i in gas), 20, "the alarms to end")
            await until(lambda: sum(1 for r in ycbj_records(tmp_path / "outbox") if r[6]) >= 10, 20,
                        "the ends in the outbox")

    asyncio.run(scenario())
    by_point = defaultdict(list)
    for r in ycbj_records(tmp_path / "outbox"):
        if r[4] == "001" and "MN" in r[0][12:16] and r[0].startswith("14021100123401"):
            by_point[r[0]].append("begin" if r[6] == "" else "end")
    gas_codes = [c for c in by_point if not c.endswith(tuple(f"G{i}" for i in ("T1", "T2", "T3", "T4", "T5")))]
    assert len(gas_codes) >= 8, by_point                 # the analog points of the first device
    for code in gas_codes:
        assert by_point[code] == ["begin", "end"], (code, by_point[code])


def test_a_reload_whose_build_fails_changes_nothing(tmp_path, caplog):
    port = free_port()
    site = load_site(make_site(tmp_path, port, None))
    # a Site that never went through load_site: its sensor code is in no table
    dev = site.devices[0]
    dev = dev.model_copy(update={"points": (dev.points[0].model_copy(update={"sensor": "0999"}),) + dev.points[1:]})
    broken = site.model_copy(update={"devices": (dev,) + site.devices[1:]})

    async def scenario():
        agent = Agent(site)
        requests: asyncio.Queue = asyncio.Queue()       # as SIGHUP feeds them
        async with agent_running(agent, server=await sim.serve(site, port=port, scenario="steady"),
                                 reload_requests=requests):
            await until(lambda: all(s.frames >= 2 for s in agent.devices), 20, "frames")
            before = (agent.site, agent.kernel, list(agent.drivers))
            caplog.set_level(logging.INFO, logger="edge_agent")
            requests.put_nowait(broken)
            await until(lambda: any("reload" in r.getMessage() and r.levelno >= logging.ERROR
                                    for r in caplog.records), 10, "the reload's error line")
            assert (agent.site, agent.kernel, list(agent.drivers)) == before
            n = agent.devices[0].frames
            await until(lambda: agent.devices[0].frames >= n + 2, 10, "polling goes on")
            assert agent.reloads == 0

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if "reload" in r.getMessage()]
    assert any("cannot build the new configuration" in ln and "the running configuration stays" in ln
               for ln in lines), lines
    assert not any("applied" in ln for ln in lines)


def test_opcua_deadband_change_restarts_the_subscription(tmp_path):
    """The deadband is the server's DataChangeFilter: a reload that changes it needs a new session."""
    from edge_agent.drivers.opcua_sim import ServerThread, SimServer

    srv = ServerThread(SimServer(free_port(), names=["Flow"])).start()
    try:
        data = {"site": {"mine_code": "140211001234"}, "buffer": {"path": str(tmp_path / "buffer.sqlite")},
                "metrics": {"enabled": False},
                "devices": [{"name": "plc", "driver": "opcua", "url": srv.sim.url, "publishing_interval": "100ms",
                             "points": [{"id": "F1", "sensor": "0053", "kind": "analog", "range": [0, 100],
                                         "address": "ns=2;s=Sim.Flow", "deadband": 5}]}]}
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(data), "utf-8")
        site = load_site(path)
        seen: list[float] = []

        class Spy(Agent):
            def on_frame(self, f):
                seen.extend(v for v, q in zip(f.values, f.quality) if q == 0)
                super().on_frame(f)

        async def scenario():
            agent = Spy(site)
            async with agent_running(agent):
                await srv.acall(srv.sim.write, "Flow", 10.0)
                await until(lambda: 10.0 in seen, 15, "the first value")
                await srv.acall(srv.sim.write, "Flow", 12.0)       # within the deadband: the server keeps it
                await srv.acall(srv.sim.write, "Flow", 20.0)
                await until(lambda: 20.0 in seen, 10, "a change beyond the deadband")
                assert 12.0 not in seen
                first = agent.drivers[0]
                data["devices"][0]["points"][0]["deadband"] = 0.5
                path.write_text(yaml.safe_dump(data), "utf-8")
                await agent.reload(load_site(path))
                assert agent.drivers[0] is not first
                await until(lambda: agent.drivers[0].online, 15, "the new session")
                await srv.acall(srv.sim.write, "Flow", 21.0)       # beyond the new deadband only
                await until(lambda: 21.0 in seen, 10, "a change beyond the new deadband")

        asyncio.run(scenario())
    finally:
        srv.stop()


def test_an_alarm_whose_level_a_reload_removes_ends(K):  # noqa: F811
    old = K(1, thresholds(1, alarm_high=1.0))
    old.process(frame(T0 + 1, [2.0]))
    assert [e.begin for e in old.take_events()] == [True] and old.status[0] == 1
    new = K(1, thresholds(1))                      # alarm.high removed
    new.carry_over(old, [0])
    assert new.status[0] == 0
    ends = new.take_events()
    assert edges(ends) == [("001", "high", False, 1.0, 1.0)] and ends[0].max == 2.0
    new.process(frame(T0 + 2, [2.0]))
    assert new.take_events() == [] and new.status[0] == 0
