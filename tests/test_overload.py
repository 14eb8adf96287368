"""Overload: offered more than it can do, the agent skips and counts polls and its memory stays bounded.

Real parts only: `edge-agent simulate` and `edge-agent run` as subprocesses, a
mosquitto of the test's own, the agent's /metrics endpoint, /proc for RSS.
These tests assert behaviour (skips counted, delivery continuing, rows waiting
on disk, bounded RSS growth), never speed: bench/pipeline.py measures speed.
"""
from __future__ import annotations

import re
import signal
import urllib.request
from pathlib import Path

import yaml

from conftest import free_port, wait_port
from e2e import Proc, wait_for

# RSS may move by allocator noise and SQLite's page cache (a few MiB); a queue of the polls it
# could not make would add tens of MiB between the two late samples (hundreds of polls of
# ~20 KiB of values and ~50 KiB of JSON each)
RSS_GROWTH_BOUND_MB = 12.0


def _site(tmp: Path, sim_port: int, broker_port: int, metrics_port: int, *, devices: int, points: int,
          poll: str) -> Path:
    """`devices` Modbus TCP devices of `points` one-register CH4 points each (uint16 x 0.01)."""
    devs = []
    for d in range(devices):
        table = tmp / f"points-{d}.csv"
        table.write_text("id,sensor,address,type,scale\n" + "".join(
            f"D{d}P{r},0001,hr:{r},uint16,0.01\n" for r in range(points)), encoding="utf-8")
        devs.append({"name": f"dev{d}", "driver": "modbus-tcp", "host": "127.0.0.1", "port": sim_port,
                     "unit": d + 1, "poll": poll, "timeout": "2s", "points_file": table.name})
    data = {
        "site": {"mine_code": "140211001234", "mine_name": "overload", "gateway": "gw-ov"},
        "buffer": {"path": str(tmp / "buffer.sqlite")},
        "forward": {"mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}", "topic_prefix": "mine"}},
        "report": {"realtime_every": "5s", "stats_window": "1m"},
        "metrics": {"enabled": True, "listen": f"127.0.0.1:{metrics_port}"},
        "devices": devs,
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _metrics(port: int) -> dict[str, dict[str, float]]:
    """{metric name: {label text: value}} of the edge_agent_* samples."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, dict[str, float]] = {}
    for m in re.finditer(r"^(edge_agent_\w+?)(\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M):
        out.setdefault(m.group(1), {})[m.group(2) or ""] = float(m.group(3))
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _start(tmp_path: Path, broker_port: int, scenario: str = "steady", **shape) -> tuple[Proc, Proc, int]:
    sim_port, metrics_port = free_port(), free_port()
    site = _site(tmp_path, sim_port, broker_port, metrics_port, **shape)
    sim = Proc(["simulate", "-c", str(site), "--port", str(sim_port), "--scenario", scenario,
                "--log-level", "WARNING"], tmp_path / "sim.log")
    wait_port(sim_port, timeout=20)
    agent = Proc(["run", "-c", str(site), "--log-level", "WARNING"], tmp_path / "agent.log")
    wait_port(metrics_port, timeout=20)
    return sim, agent, metrics_port


def _total(m: dict, name: str) -> float:
    return sum(m.get(name, {}).values())


def test_polls_it_cannot_make_are_skipped_and_counted_and_memory_stays_bounded(tmp_path, mosquitto):
    # devices whose every answer takes 100 ms (scenario slow-answers), polled every 50 ms: each
    # poll of two reads takes at least 200 ms, so at least three ticks of four cannot be polled,
    # on any machine (a slower one only makes the polls longer)
    sim, agent, mport = _start(tmp_path, mosquitto.port, "slow-answers", devices=4, points=200, poll="50ms")
    try:
        wait_for(lambda: _total(_metrics(mport), "edge_agent_device_skipped_total") > 0, 30,
                 "skipped polls in /metrics")
        # the late samples: after some skipping, and again after many more polls were skipped
        wait_for(lambda: _total(_metrics(mport), "edge_agent_sink_acked_total") > 20, 30, "deliveries")
        first = _metrics(mport)
        rss_a = _rss_mb(agent.proc.pid)
        wait_for(lambda: _total(_metrics(mport), "edge_agent_device_skipped_total")
                 > _total(first, "edge_agent_device_skipped_total") + 200, 30, "more polls skipped")
        second = _metrics(mport)
        rss_b = _rss_mb(agent.proc.pid)
    finally:
        code = agent.stop()
        sim.stop()
    log = agent.text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    skipped, polls = (second["edge_agent_device_skipped_total"], second["edge_agent_device_polls_total"])
    # every device keeps polling (none starves) and counts the ticks it had to skip: each
    # poll overran at least one period
    for labels, n in polls.items():
        assert n > first["edge_agent_device_polls_total"][labels], f"device {labels} stopped polling"
        assert skipped[labels] >= n - 1, f"device {labels}: {skipped[labels]} skips in {n} polls"
    assert _total(second, "edge_agent_device_errors_total") == 0, "slow answers must not look like device failures"
    assert _total(second, "edge_agent_sink_acked_total") > _total(first, "edge_agent_sink_acked_total"), \
        "the polls it makes are delivered"
    assert rss_b - rss_a < RSS_GROWTH_BOUND_MB, f"RSS grew {rss_b - rss_a:.1f} MiB while skipping ({rss_a:.0f} -> " \
        f"{rss_b:.0f})"


def test_a_stalled_broker_leaves_rows_on_disk_not_in_memory(tmp_path, mosquitto):
    # a broker that stops reading (SIGSTOP): acquisition goes on, publishes stop at the in-flight
    # window, new rows wait in the SQLite buffer; after SIGCONT the backlog drains
    sim, agent, mport = _start(tmp_path, mosquitto.port, devices=4, points=200, poll="100ms")
    try:
        wait_for(lambda: _total(_metrics(mport), "edge_agent_sink_acked_total") > 20, 15, "deliveries")
        mosquitto.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: _total(_metrics(mport), "edge_agent_buffer_rows") > 60, 15, "rows waiting in the buffer")
            first, rss_a = _metrics(mport), _rss_mb(agent.proc.pid)
            wait_for(lambda: _total(_metrics(mport), "edge_agent_buffer_rows")
                     > _total(first, "edge_agent_buffer_rows") + 60, 15, "the backlog to grow")
            second, rss_b = _metrics(mport), _rss_mb(agent.proc.pid)
        finally:
            mosquitto.proc.send_signal(signal.SIGCONT)
        assert _total(second, "edge_agent_sink_inflight") <= 32, "publishes beyond the in-flight window"
        assert rss_b - rss_a < RSS_GROWTH_BOUND_MB, f"RSS grew {rss_b - rss_a:.1f} MiB while rows waited"
        backlog = _total(second, "edge_agent_buffer_rows")
        wait_for(lambda: _total(_metrics(mport), "edge_agent_buffer_rows") < backlog / 4, 20,
                 "the backlog to drain after the broker resumed")
    finally:
        code = agent.stop()
        sim.stop()
    assert code == 0, agent.text()[-3000:]
