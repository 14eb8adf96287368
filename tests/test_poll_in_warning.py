"""Denser sampling in warning (`poll_in_warning:`): the poll rate rises while a point is at a level, falls after.

The rate is measured from the frames the drivers deliver (their count and arrival
times, and the drivers' `dense_polls` counter), waiting on counts, not on sleeps:
- through the real agent, a simulated Modbus TCP device over a real socket whose
  point is pinned into yellow and back, across a reload that restarts the device;
- the drivers' shared schedule (drivers/pace.py Cadence) for Modbus RTU over a real pty
  pair and for OPC UA in poll mode against a real asyncua server.
"""
from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from pathlib import Path

import pytest

from conftest import aio, free_port
from edge_agent.agent import Agent
from edge_agent.config import load_site
from edge_agent.drivers import sim
from edge_agent.drivers.sim.harness import Harness, site_from_yaml
from test_modbus_rtu import pty_pair  # noqa: F401  (the fixture)
from test_reload import SpyAgent, edit_site, until

pytestmark = pytest.mark.timeout(90)

NORMAL, DENSE = 0.6, 0.1


def tcp_site(tmp_path, port: int):
    return site_from_yaml(f"""\
site: {{mine_code: "140211001234"}}
buffer: {{path: b.sqlite}}
metrics: {{enabled: false}}
console: {{enabled: false}}
devices:
  - name: borehole-3
    driver: modbus-tcp
    host: 127.0.0.1
    port: {port}
    poll: {NORMAL}s
    poll_in_warning: {{period: {DENSE}s, from: yellow}}
    timeout: 500ms
    points:
      - {{id: W, sensor: "0007", address: "hr:0", type: float32,
          levels: {{blue: {{high: 3.0}}, yellow: {{high: 5.0}}}}}}
  - name: quiet-1
    driver: modbus-tcp
    host: 127.0.0.1
    port: {port}
    unit: 2
    poll: {NORMAL}s
    timeout: 500ms
    points:
      - {{id: Q, sensor: "0007", address: "hr:0", type: float32, levels: {{blue: {{high: 3.0}}}}}}
""", tmp_path)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def test_a_device_polls_faster_while_a_point_is_in_warning_and_slows_after_it_clears(tmp_path):
    port = free_port()
    site = tcp_site(tmp_path, port)

    async def scenario():
        s1 = await sim.serve(site)
        try:
            s1.pin("borehole-3", {"W": 1.0})
            s1.pin("quiet-1", {"Q": 4.0})          # blue: a level, but no poll_in_warning
            agent = SpyAgent(site)
            stop = asyncio.Event()
            run = asyncio.create_task(agent.run(stop))
            times = agent.frame_times
            try:
                # normal: every 0.6 s; blue is below `from: yellow`, so still normal
                await until(lambda: len(times[0]) >= 4, 20, "frames at the normal period")
                s1.pin("borehole-3", {"W": 4.0})
                n = len(times[0])
                await until(lambda: len(times[0]) >= n + 3, 10, "frames at blue")
                normal = gaps(times[0])
                assert agent.kernel.level[0] == 1 and not agent.drivers[0].cadence.warning
                assert agent.drivers[0].counters["dense_polls"] == 0

                # yellow: every 0.1 s
                s1.pin("borehole-3", {"W": 6.0})
                await until(lambda: agent.drivers[0].cadence.warning, 10, "the device in warning")
                n = len(times[0])
                await until(lambda: len(times[0]) >= n + 12, 10, "frames in warning")
                dense = gaps(times[0][n:])
                drv = agent.drivers[0]
                assert drv.counters["dense_polls"] >= 12
                snap = agent.metrics_snapshot()["devices"]         # what /metrics and /health show
                assert snap["borehole-3"]["in_warning"] is True and snap["borehole-3"]["dense_polls"] >= 12
                assert "in_warning" not in snap["quiet-1"]

                # a reload that restarts the device (its timeout changed): still in warning
                edit_site(Path(site.source), lambda d: d["devices"][0].update(timeout="400ms"))
                await agent.reload(load_site(Path(site.source)))
                assert agent.drivers[0] is not drv and agent.drivers[0].cadence.warning
                n = len(times[0])
                await until(lambda: agent.drivers[0].counters["dense_polls"] >= 8, 10, "dense polls after reload")
                after_reload = gaps(times[0][n + 1:])

                # cleared: back to 0.6 s
                s1.pin("borehole-3", {"W": 1.0})
                await until(lambda: not agent.drivers[0].cadence.warning, 10, "the warning cleared")
                cleared_polls = agent.drivers[0].counters["dense_polls"]
                n = len(times[0])
                await until(lambda: len(times[0]) >= n + 4, 10, "frames after the warning")
                back = gaps(times[0][n:])
                assert agent.drivers[0].counters["dense_polls"] == cleared_polls
                assert agent.metrics_snapshot()["devices"]["borehole-3"]["in_warning"] is False
                quiet = gaps(times[1])
                s1.pin("borehole-3", {"W": 6.0})          # in warning again, then a restart
                await until(lambda: agent.drivers[0].cadence.warning, 10, "the device in warning again")
            finally:
                stop.set()
                await run
            again = Agent(load_site(Path(site.source)))   # the level comes back from the baseline file
            restarted_in_warning = again.drivers[0].cadence.warning
            again.baselines.close(time.time())
            again.alarms.book.close()
            again.buffer.close()
            assert restarted_in_warning
        finally:
            await s1.stop()
        return normal, dense, after_reload, back, quiet

    normal, dense, after_reload, back, quiet = asyncio.run(scenario())
    assert statistics.median(normal) == pytest.approx(NORMAL, abs=0.15), normal
    assert statistics.median(dense) < 2 * DENSE, dense
    assert statistics.median(after_reload) < 2 * DENSE, after_reload
    assert statistics.median(back) == pytest.approx(NORMAL, abs=0.15), back
    assert min(back) > NORMAL / 2, back              # no burst on the way out
    assert statistics.median(quiet) == pytest.approx(NORMAL, abs=0.15), quiet   # another device: untouched


async def _rates(h: Harness, warn) -> tuple[list[float], list[float], list[float]]:
    """Arrival gaps of device 0 before, during and after `warn(True)` ... `warn(False)`."""
    cad = h.drivers[0].cadence
    await h.wait(lambda: h.count(0) >= 4, 20, "frames at the normal period")
    normal = gaps(h.arrivals[0])
    warn(True)
    n = h.count(0)
    await h.wait(lambda: h.count(0) >= n + 12, 10, "frames in warning")
    dense = gaps(h.arrivals[0][n:])
    first = h.arrivals[0][n] - h.arrivals[0][n - 1]
    warn(False)
    n = h.count(0)
    await h.wait(lambda: h.count(0) >= n + 4, 10, "frames after the warning")
    assert not cad.warning
    return normal, dense + [first], gaps(h.arrivals[0][n:])


def _assert_rates(normal, dense, back, counters) -> None:
    assert statistics.median(normal) == pytest.approx(NORMAL, abs=0.15), normal
    assert statistics.median(dense[:-1]) < 2 * DENSE, dense
    assert dense[-1] < NORMAL, dense           # entering warning does not wait out the normal period
    assert statistics.median(back) == pytest.approx(NORMAL, abs=0.15), back
    assert counters["dense_polls"] >= 12


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat makes the pty pair")
@aio
async def test_modbus_rtu_follows_the_cadence(tmp_path, pty_pair):
    agent_end, device_end = pty_pair
    site = site_from_yaml(f"""\
site: {{mine_code: "140211001234"}}
buffer: {{path: b.sqlite}}
devices:
  - {{name: sub-1, driver: modbus-rtu, serial: {agent_end}, baudrate: 19200, unit: 1, poll: {NORMAL}s,
     poll_in_warning: {DENSE}s, timeout: 200ms, points: [{{id: A1, sensor: "0001", address: "hr:0", type: float32}}]}}
""", tmp_path)
    async with sim.Simulation(site, serial=device_end):
        async with Harness(site) as h:
            normal, dense, back = await _rates(h, h.drivers[0].cadence.warn)
            _assert_rates(normal, dense, back, h.drivers[0].counters)


@aio
async def test_opcua_poll_mode_follows_the_cadence(tmp_path):
    from edge_agent.drivers.opcua_sim import ServerThread, SimServer
    srv = ServerThread(SimServer(free_port(), names=["Level"])).start()
    try:
        site = site_from_yaml(f"""\
site: {{mine_code: "140211001234"}}
buffer: {{path: b.sqlite}}
devices:
  - name: pump-1
    driver: opcua
    url: {srv.sim.url}
    mode: poll
    poll: {NORMAL}s
    poll_in_warning: {{period: {DENSE}s, from: red}}
    points: [{{id: L, sensor: "0007", kind: analog, address: "ns=2;s=Level"}}]
""", tmp_path)
        async with Harness(site) as h:
            normal, dense, back = await _rates(h, h.drivers[0].cadence.warn)
            _assert_rates(normal, dense, back, h.drivers[0].counters)
    finally:
        srv.stop()


def test_cadence_without_poll_in_warning_never_changes():
    from edge_agent.drivers.pace import Cadence
    c = Cadence(2.0)
    assert not c.warn(True) and c.period == 2.0 and not c.warning



def test_check_names_line_and_field_of_a_bad_poll_in_warning(tmp_path, capsys):
    from test_config import check
    text = f"""\
site: {{mine_code: "140211001234"}}
buffer: {{path: b.sqlite}}
devices:
  - name: ok-1
    driver: modbus-tcp
    host: 127.0.0.1
    poll: 10s
    poll_in_warning: 1m
    points: [{{id: A, sensor: "0007", address: "hr:0", warn: {{high: 1.0}}}}]
  - name: pump-1
    driver: opcua
    url: opc.tcp://127.0.0.1:4840
    poll_in_warning: 1s
    points: [{{id: B, sensor: "0007", address: "ns=2;s=X"}}]
"""
    code, out = check(tmp_path, text, capsys)
    assert code == 1 and "Traceback" not in out, out
    where = tmp_path / "site.yaml"
    assert f"{where}:8: devices[ok-1].poll_in_warning.period: 60s is longer than the device's poll period" in out
    assert f"{where}:13: devices[pump-1].poll_in_warning: a subscribe-mode device" in out and "mode: poll" in out
    code, out = check(tmp_path, text.replace("poll_in_warning: 1m", "poll_in_warning: 5s")
                      .replace("    poll_in_warning: 1s\n", "    mode: poll\n    poll_in_warning: {period: 500ms, from: "
                               "orange}\n"), capsys)
    assert code == 0, out
    # pump-1 from orange but its point has no level at all: it would never poll faster (ok-1: warn is yellow)
    assert f"{where}: devices[pump-1].poll_in_warning: no point of this device reaches orange (the highest it " \
           "can reach: none)" in out, out
    assert "devices[ok-1].poll_in_warning" not in out
    a, b = load_site(where).devices
    assert (a.poll_in_warning.period, a.poll_in_warning.level) == (5.0, 1)      # the short form: from blue
    assert (b.poll_in_warning.period, b.poll_in_warning.level) == (0.5, 3)
    import os
    import subprocess
    from conftest import edge_agent_cmd
    for lang, line in (("en_US.UTF-8", "in warning (a point at orange or above): poll 0.5s"),
                       ("zh_CN.UTF-8", "预警时（有测点达到 orange 或以上）：采集周期 0.5 秒")):
        env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
        r = subprocess.run(edge_agent_cmd("check", "-v", "-c", str(where)), capture_output=True, text=True,
                           timeout=60, env={**env, "LANG": lang})
        assert r.returncode == 0 and line in r.stdout, r.stdout + r.stderr
