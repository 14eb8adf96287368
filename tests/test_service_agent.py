"""The real agent as systemd sees it: READY=1, WATCHDOG=1 that stop while the loop is wedged,
STOPPING=1; /metrics whose counters move as the simulator runs; /health; `edge-agent status`.

These need the lead's integration of edge_agent.sdnotify and edge_agent.metrics into
agent.py/cli.py; until then they skip (the guard below says which part is missing).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, free_port
from e2e import Proc, catalog_size, make_site, wait_for
from edge_agent.sdnotify import WEDGE_ENV
from test_sdnotify import NotifyListener

_WIRING = (ROOT / "edge_agent" / "agent.py").read_text() + (ROOT / "edge_agent" / "cli.py").read_text()
needs_sdnotify = pytest.mark.skipif("sdnotify" not in _WIRING,
                                    reason="edge_agent.sdnotify is not wired into agent.py/cli.py yet")
needs_metrics = pytest.mark.skipif("MetricsServer" not in _WIRING,
                                   reason="edge_agent.metrics.MetricsServer is not wired into agent.py/cli.py yet")


@needs_sdnotify
def test_ready_watchdog_wedge_stopping(tmp_path, sim):
    site = make_site(tmp_path, sim, None, metrics={"enabled": False})
    lst = NotifyListener()
    env = dict(os.environ, NOTIFY_SOCKET=lst.name, WATCHDOG_USEC="1000000", **{WEDGE_ENV: "2.5"})
    env.pop("WATCHDOG_PID", None)
    agent = Proc(["run", "-c", str(site)], tmp_path / "agent.log", env=env)
    try:
        wait_for(lambda: "READY=1" in [m.split("\n")[0] for m in lst.texts()], 30, "READY=1")
        wait_for(lambda: len(lst.times("WATCHDOG=1")) >= 3, 10, "three WATCHDOG=1 pings")
        agent.proc.send_signal(signal.SIGUSR2)            # the debug hook blocks the loop for 2.5 s
        sent = lst.times("WATCHDOG=1")[-1]
        wait_for(lambda: any(t > sent + 2.5 for t in lst.times("WATCHDOG=1")), 15, "pings after the wedge")
        assert agent.stop() == 0, agent.text()
    finally:
        agent.kill()
        lst.close()
    texts = [m.split("\n")[0] for m in lst.texts()]
    assert texts.index("READY=1") < texts.index("WATCHDOG=1")
    assert "STOPPING=1" in texts[-3:]
    times = lst.times("WATCHDOG=1")
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    assert gaps[-1] >= 2.0, gaps                    # silent while wedged: systemd would restart it
    assert gaps[len(gaps) // 2] < 0.8, gaps         # otherwise every 0.5 s (WatchdogSec=1s)


def _scrape(url: str) -> dict[tuple, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@needs_metrics
def test_metrics_counters_move_as_the_simulator_runs(tmp_path, sim):
    mport = free_port()
    site = make_site(tmp_path, sim, None, metrics={"listen": f"127.0.0.1:{mport}", "enabled": True})
    agent = Proc(["run", "-c", str(site)], tmp_path / "agent.log")
    url = f"http://127.0.0.1:{mport}"
    polls = ("edge_agent_device_polls_total", (("device", "gas-substation-1"),))
    try:
        first = wait_for(lambda: _try(lambda: _scrape(url)), 30, "/metrics")
        wait_for(lambda: _scrape(url).get(polls, 0) >= first.get(polls, 0) + 3, 15, "3 more polls")
        second = _scrape(url)
        assert second[("edge_agent_device_online", (("device", "belt-1"),))] == 1
        assert second[("edge_agent_points", ())] == catalog_size(site)
        assert second[("edge_agent_sink_acked_total", (("sink", "files"),))] >= 1
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=5).read())
        assert health["state"] == "ok" and set(health["devices"]) == {"gas-substation-1", "belt-1", "bin-1"}
        res = subprocess.run([sys.executable, "-m", "edge_agent", "status", "--url", url], capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 0 and "devices: 3/3 online" in res.stdout, res.stdout + res.stderr
        assert agent.stop() == 0, agent.text()
    finally:
        agent.kill()


def _try(f):
    try:
        return f()
    except OSError:
        return None
