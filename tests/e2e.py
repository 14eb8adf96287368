"""End-to-end helpers: a site file for the simulator, the agent as a subprocess, a subscriber."""
from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import yaml

from conftest import ROOT, edge_agent_cmd, wait_port


def wait_for(cond, timeout: float, what: str, interval: float = 0.05):
    """Poll `cond` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def make_site(tmp_path: Path, sim_port: int, mqtt_url: str | None, *, realtime_every: str = "2s",
              stats_window: str = "1m", name: str = "site.yaml", **top) -> Path:
    """The demo site (config/demo.yaml) pointed at a simulator port, a broker and tmp_path."""
    data = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"))
    for dev in data["devices"]:
        dev["port"] = sim_port
    data["buffer"]["path"] = str(tmp_path / "buffer.sqlite")
    data["forward"]["files"]["dir"] = str(tmp_path / "outbox")
    if mqtt_url is None:
        data["forward"].pop("mqtt")
    else:
        data["forward"]["mqtt"]["url"] = mqtt_url
    data["report"] = {"realtime_every": realtime_every, "stats_window": stats_window}
    data.update(top)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Proc:
    """A CLI subprocess with its output in a file (never a pipe that can fill up)."""

    def __init__(self, args: list[str], log: Path, env=None):
        self.log = log
        self.fh = open(log, "ab")
        self.proc = subprocess.Popen(edge_agent_cmd(*args), stdout=self.fh, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.fh.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.fh.close()


def start_simulator(tmp_path: Path, site: Path, port: int, scenario: str = "normal") -> Proc:
    p = Proc(["simulate", "-c", str(site), "--port", str(port), "--scenario", scenario], tmp_path / "sim.log")
    try:
        wait_port(port, timeout=20)
    except TimeoutError:
        p.kill()
        raise AssertionError(f"simulator did not listen on {port}:\n{p.text()}")
    return p


def last_seq(agent_log: str) -> int:
    """The agent logs `stopped; buffer closed at seq N` on a clean stop."""
    m = re.findall(r"buffer closed at seq (\d+)", agent_log)
    assert m, f"agent did not log a clean stop:\n{agent_log[-3000:]}"
    return int(m[-1])


class Subscriber:
    """A paho subscriber in its own thread: keeps every payload, by topic.

    With `session` set it uses a persistent session (clean_session=False), so
    a persistent broker queues QoS 1 messages for it while it is away.
    """

    def __init__(self, port: int, topic: str = "#", session: str | None = None):
        self.port, self.topic = port, topic
        self.messages: list[tuple[str, dict | bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=session or "",
                                  clean_session=session is None)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()

    def _on_connect(self, client, userdata, flags, reason, props):
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg):
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            body = msg.payload
        with self.lock:
            self.messages.append((msg.topic, body, bool(msg.retain)))

    def start(self) -> "Subscriber":
        self.subscribed.clear()
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscriber could not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def payloads(self, type_: str | None = None) -> list[dict]:
        with self.lock:
            return [b for t, b, _ in self.messages if isinstance(b, dict) and (type_ is None or b.get("type") == type_)]

    def seqs(self) -> list[int]:
        return [p["seq"] for p in self.payloads() if "seq" in p]


def catalog_size(site_path, *, sent: bool = False) -> int:
    """Every point the agent has for a site file: device points and derived-condition points; with `sent`,
    only those its records carry (not the local codes the profile does not send)."""
    from edge_agent.config import load_site
    from edge_agent.derived import Derived
    from edge_agent.points import Catalog
    from edge_agent.profile import load_profile

    site = load_site(site_path)
    catalog = Catalog(site, load_profile(site.profile))
    catalog.add_derived(Derived(site, catalog).points)
    return sum(rp.sent or not sent for rp in catalog.points)


@contextlib.asynccontextmanager
async def agent_running(agent, *, server=None, **run_kw):
    """`agent.run()` as a task for the body of an `async with`; stopped (and `server` too) at its end."""
    import asyncio
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, **run_kw))
    try:
        yield task
    finally:
        stop.set()
        await task
        if server is not None:
            await server.stop()
