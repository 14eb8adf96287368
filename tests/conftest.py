"""Shared test fixtures: real parts only (mosquitto, sockets, files)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.drivers.sim.harness import free_port, wait_port  # noqa: F401 (re-exported to tests)

ROOT = Path(__file__).resolve().parents[1]
# the CLI follows LANG/LANGUAGE (edge_agent.i18n): tests read its English text unless they ask for Chinese
os.environ["LANGUAGE"] = "en"


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """SIGTERM (and SIGCONT, in case it was paused), then SIGKILL after `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Mosquitto:
    """A mosquitto broker of the test's own, on a free loopback port, stopped by pid."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "", persistent: bool = False):
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_conf = extra_conf
        # persistent: sessions and queued QoS 1 messages survive a broker restart
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.conf.write_text(
            "user root\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            + (f"persistence true\npersistence_location {self.workdir}/\n"
               f"persistence_file mosquitto-{self.port}.db\nautosave_interval 0\n"
               if self.persistent else "persistence false\n") +
            "max_queued_messages 100000\n"
            "max_inflight_messages 0\n"
            f"{self.extra_conf}\n"
        )
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path):
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Make brokers on demand (e.g. start one later, or two for failover)."""
    made: list[Mosquitto] = []

    def make(port: int | None = None, extra_conf: str = "", start: bool = True, persistent: bool = False) -> Mosquitto:
        b = Mosquitto(tmp_path, port, extra_conf, persistent)
        made.append(b)
        return b.start() if start else b

    yield make
    for b in made:
        b.stop()


def edge_agent_cmd(*args: str) -> list[str]:
    """The CLI as a subprocess, with the interpreter running the tests."""
    return [sys.executable, "-m", "edge_agent", *args]


@pytest.fixture
def env_pure():
    """Environment for subprocesses forced onto the pure-Python kernel."""
    env = dict(os.environ)
    env["EDGE_AGENT_PURE_PYTHON"] = "1"
    return env


@pytest.fixture
def sim(tmp_path):
    """The demo site's simulated mine (`edge-agent simulate`) on a free port; yields the port."""
    from e2e import make_site, start_simulator   # e2e imports this module: import late

    port = free_port()
    proc = start_simulator(tmp_path, make_site(tmp_path, port, None, name="sim-site.yaml"), port)
    yield port
    proc.kill()
