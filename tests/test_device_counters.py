"""Each driver's own counters reach /metrics and /health as the standard polls/errors/timeouts."""
from __future__ import annotations

import asyncio
import time
import urllib.request

import orjson
import yaml

from conftest import free_port
from edge_agent.agent import Agent
from edge_agent.config import load_site
from e2e import agent_running
from test_metrics import samples
from test_opcua_reconnect import SimProcess


def opcua_site(tmp_path, url: str, metrics_port: int, mode: str):
    data = {"site": {"mine_code": "140211001234", "gateway": "gw-ua"},
            "buffer": {"path": str(tmp_path / "buffer.sqlite")},
            "forward": {"files": {"dir": str(tmp_path / "outbox")}},
            "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
            "devices": [{"name": "belt-1", "driver": "opcua", "url": url, "mode": mode, "poll": "200ms",
                         "timeout": "1s",
                         "points": [{"id": f"P{i}", "sensor": "0053", "kind": "analog",
                                     "address": f"ns=2;s=Sim.V{i}"} for i in range(3)]}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), "utf-8")
    return load_site(path)


def scrape(port: int) -> tuple[dict, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        metrics = samples(r.read().decode())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            health = orjson.loads(r.read())
    except urllib.error.HTTPError as e:       # 503 while degraded: the document is still there
        health = orjson.loads(e.read())
    return metrics, health


def counter(metrics: dict, name: str) -> float:
    return metrics.get((f"edge_agent_device_{name}_total", (("device", "belt-1"),)), 0.0)


def test_opcua_subscribe_mode_counts_polls_and_errors(tmp_path):
    sim = SimProcess(free_port()).start()
    port = free_port()
    site = opcua_site(tmp_path, sim.url, port, "subscribe")

    async def scenario():
        agent = Agent(site)
        ready = asyncio.Event()
        async with agent_running(agent, ready=ready.set):
            await asyncio.wait_for(ready.wait(), 30)
            deadline = time.monotonic() + 30
            while True:       # the server rewrites its nodes every 0.2 s: publish responses arrive
                metrics, health = await asyncio.to_thread(scrape, port)
                if counter(metrics, "polls") >= 3:
                    break
                assert time.monotonic() < deadline, metrics
                await asyncio.sleep(0.2)
            assert health["devices"]["belt-1"]["polls"] >= 3 and health["devices"]["belt-1"]["online"]
            assert counter(metrics, "errors") == 0
            sim.stop()          # the session is lost, reconnects are refused: errors count up
            while True:
                metrics, health = await asyncio.to_thread(scrape, port)
                if counter(metrics, "errors") >= 2:
                    break
                assert time.monotonic() < deadline + 30, metrics
                await asyncio.sleep(0.2)
            assert health["devices"]["belt-1"]["errors"] >= 2 and not health["devices"]["belt-1"]["online"]

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()
