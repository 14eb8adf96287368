"""sd_notify against a real AF_UNIX datagram socket: READY, STOPPING, watchdog pings, a wedged loop."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from edge_agent import sdnotify
from edge_agent.sdnotify import Watchdog, install_wedge_hook, notify, watchdog_interval


class NotifyListener:
    """What systemd does: a datagram socket that records (monotonic time, message) as they arrive.

    Reads in its own thread, so it keeps recording while the loop under test is blocked.
    """

    def __init__(self, abstract: bool = False):
        if abstract:
            self.name = f"@edge-agent-test-{uuid.uuid4().hex}"
            addr: str | bytes = b"\0" + self.name[1:].encode()
        else:
            # short folder: AF_UNIX paths are limited to 107 bytes
            self.dir = tempfile.mkdtemp(prefix="ntf")
            self.name = addr = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(addr)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def times(self, message: str) -> list[float]:
        with self.lock:
            return [t for t, m in self.messages if m == message]

    def texts(self) -> list[str]:
        with self.lock:
            return [m for _, m in self.messages]

    def wait_for(self, cond, timeout: float = 5.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {self.texts()!r}")
            time.sleep(0.01)

    def close(self) -> None:
        self.running = False
        self.thread.join(1)
        self.sock.close()
        if not self.name.startswith("@"):
            os.unlink(self.name)
            os.rmdir(self.dir)


@pytest.fixture
def listener(monkeypatch):
    lst = NotifyListener()
    monkeypatch.setenv("NOTIFY_SOCKET", lst.name)
    yield lst
    lst.close()


def test_no_socket_means_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    assert sdnotify.ready() is False


def test_ready_status_stopping_reach_a_path_socket(listener):
    assert sdnotify.ready("3 devices polling")
    assert sdnotify.status("buffering: uplink down")
    assert sdnotify.reloading()
    assert sdnotify.stopping()
    listener.wait_for(lambda: len(listener.texts()) == 4, what="4 messages")
    ready, status, reloading, stopping = listener.texts()
    assert ready == "READY=1\nSTATUS=3 devices polling"
    assert status == "STATUS=buffering: uplink down"
    assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert int(reloading.rsplit("=", 1)[1]) > 0
    assert stopping == "STOPPING=1"


def test_abstract_socket_name(monkeypatch):
    lst = NotifyListener(abstract=True)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", lst.name)
        assert sdnotify.ready()
        lst.wait_for(lambda: lst.texts() == ["READY=1"], what="READY=1 on the abstract socket")
    finally:
        lst.close()


def test_unreachable_socket_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert notify("READY=1") is False


def test_watchdog_interval_from_environment():
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": pid}) == 0.5
    assert watchdog_interval({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None


def test_watchdog_without_interval_returns_at_once():
    wd = Watchdog(None)
    wd.interval = None  # the environment of the test runner may not have a watchdog either way
    asyncio.run(asyncio.wait_for(wd.run(), 1))
    assert not wd.enabled and wd.pings == 0


def test_periodic_pings_every_half_interval(listener):
    async def main():
        wd = Watchdog(0.2)
        task = asyncio.create_task(wd.run())
        while len(listener.times("WATCHDOG=1")) < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        return wd

    wd = asyncio.run(asyncio.wait_for(main(), 10))
    times = listener.times("WATCHDOG=1")
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert wd.pings >= 5
    # interval/2 = 0.1 s; generous upper bound for a busy 2-core machine
    assert all(0.07 < g < 0.3 for g in gaps), gaps


def test_pings_stop_while_unhealthy_and_resume(listener):
    state = {"healthy": True}

    async def main():
        wd = Watchdog(0.1)
        task = asyncio.create_task(wd.run(lambda: state["healthy"]))
        while len(listener.times("WATCHDOG=1")) < 2:
            await asyncio.sleep(0.01)
        state["healthy"] = False
        await asyncio.sleep(0.06)           # let a ping already decided on arrive
        withheld_from = time.monotonic()
        await asyncio.sleep(0.4)            # 8 periods: a healthy watchdog would ping ~8 times
        withheld_to = time.monotonic()
        state["healthy"] = True
        n = len(listener.times("WATCHDOG=1"))
        while len(listener.times("WATCHDOG=1")) < n + 2:
            await asyncio.sleep(0.01)
        task.cancel()
        return wd, withheld_from, withheld_to

    wd, t0, t1 = asyncio.run(asyncio.wait_for(main(), 10))
    during = [t for t in listener.times("WATCHDOG=1") if t0 <= t <= t1]
    assert during == []
    assert wd.healthy


def test_health_check_that_raises_counts_as_unhealthy(listener):
    def broken() -> bool:
        raise RuntimeError("bug in the health check")

    async def main():
        wd = Watchdog(0.05)
        task = asyncio.create_task(wd.run(broken))
        await asyncio.sleep(0.3)
        task.cancel()
        return wd

    wd = asyncio.run(main())
    assert wd.pings == 0 and not wd.healthy
    assert listener.times("WATCHDOG=1") == []


def test_blocked_loop_stops_the_pings(listener, monkeypatch):
    monkeypatch.setenv(sdnotify.WEDGE_ENV, "0.8")

    async def main():
        loop = asyncio.get_running_loop()
        assert install_wedge_hook(loop)
        try:
            wd = Watchdog(0.1)
            task = asyncio.create_task(wd.run())
            while len(listener.times("WATCHDOG=1")) < 3:
                await asyncio.sleep(0.01)
            sent = time.monotonic()
            os.kill(os.getpid(), signal.SIGUSR2)   # the loop runs the hook and sleeps 0.8 s in it
            while time.monotonic() - sent < 0.9 or len([t for t in listener.times("WATCHDOG=1") if t > sent + 0.9]) < 2:
                await asyncio.sleep(0.01)
            task.cancel()
            return sent
        finally:
            loop.remove_signal_handler(signal.SIGUSR2)

    sent = asyncio.run(asyncio.wait_for(main(), 10))
    times = listener.times("WATCHDOG=1")
    gaps = [b - a for a, b in zip(times, times[1:]) if b > sent]
    # the loop was blocked ~0.8 s: one gap that long, instead of the usual 0.05 s
    assert max(gaps) >= 0.7, gaps
    assert any(t > sent + 0.9 for t in times), "pings resume after the loop unblocks"


def test_wedge_hook_is_off_by_default(monkeypatch):
    monkeypatch.delenv(sdnotify.WEDGE_ENV, raising=False)

    async def main():
        return install_wedge_hook(asyncio.get_running_loop())

    assert asyncio.run(main()) is False


CHILD = """
import asyncio, sys
from edge_agent import sdnotify

async def main():
    loop = asyncio.get_running_loop()
    assert sdnotify.install_wedge_hook(loop)
    wd = sdnotify.Watchdog()
    assert wd.interval == 0.2, wd.interval
    task = asyncio.create_task(wd.run())
    sdnotify.ready()
    await asyncio.sleep(float(sys.argv[1]))
    sdnotify.stopping()
    task.cancel()

asyncio.run(main())
"""


def test_a_service_process_seen_from_systemds_side(tmp_path):
    """A separate process, as systemd starts it: READY=1, pings, silence while wedged, STOPPING=1."""
    lst = NotifyListener()
    try:
        env = dict(os.environ, NOTIFY_SOCKET=lst.name, WATCHDOG_USEC="200000", **{sdnotify.WEDGE_ENV: "1.0"})
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen([sys.executable, "-c", CHILD, "3"], env=env)
        try:
            lst.wait_for(lambda: "READY=1" in lst.texts(), 10, "READY=1")
            lst.wait_for(lambda: len(lst.times("WATCHDOG=1")) >= 3, 5, "3 pings")
            wedged_at = time.monotonic()
            proc.send_signal(signal.SIGUSR2)
            lst.wait_for(lambda: any(t > wedged_at + 1.0 for t in lst.times("WATCHDOG=1")), 5, "pings after")
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        texts = lst.texts()
        assert texts.index("READY=1") < texts.index("WATCHDOG=1")
        assert texts[-1] == "STOPPING=1"
        times = lst.times("WATCHDOG=1")
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) >= 0.9, gaps          # silent for the second the loop was blocked
        assert sorted(gaps)[len(gaps) // 2] < 0.2, gaps   # otherwise every 0.1 s
    finally:
        lst.close()
