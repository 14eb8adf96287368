"""The MQTT uplink against real mosquitto brokers: order, gaps, outages, window, status topic."""
from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from conftest import Mosquitto
from edge_agent.buffer import Buffer
from edge_agent.config import Site
from edge_agent.forward.mqtt import MqttSink

MINE, GW = "140211001234", "gw-01"
PREFIX = f"mine/{MINE}/{GW}"
STATUS = f"{PREFIX}/status"


def make_site(tmp_path: Path, **mqtt) -> Site:
    mqtt.setdefault("url", "mqtt://127.0.0.1:1883")
    site = Site.model_validate({"site": {"mine_code": MINE, "gateway": GW}, "forward": {"mqtt": mqtt}})
    return site.model_copy(update={"source": str(tmp_path / "site.yaml")})


def encode(row) -> tuple[str, bytes, bool]:
    return f"{PREFIX}/data/{row.type}", orjson.dumps({"seq": row.seq, "type": row.type}), False


def fill(buffer: Buffer, n: int, wake: asyncio.Event | None = None, size: int = 16) -> list[int]:
    seqs = buffer.append([("CDSS", 1, time.time(), b"x" * size) for _ in range(n)])
    if wake is not None:
        wake.set()
    return seqs


class Subscriber:
    """mosquitto_sub as a persistent-session QoS 1 subscriber (reconnects by itself) writing one line per message."""

    def __init__(self, broker: Mosquitto, topic: str = f"{PREFIX}/#", name: str = "sub", extra: tuple = ()):
        self.broker, self.topic = broker, topic
        self.out = broker.workdir / f"{name}-{broker.port}.out"
        self.proc = subprocess.Popen(
            [shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p",
             str(broker.port), "-t", topic, "-t", "ready/#", "-q", "1", "-c", "-i", f"{name}-{broker.port}", "-v",
             *extra], stdout=open(self.out, "wb"), stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Publish pings until one comes back: then the subscription is active (no sleep)."""
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline:
            n += 1
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.broker.port), "-t", f"ready/{n}",
                            "-m", "x", "-q", "1"], stderr=subprocess.DEVNULL, timeout=5)
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                if "ready/" in self.out.read_text(errors="replace"):
                    return
                time.sleep(0.02)
        raise TimeoutError("subscriber not ready")

    def lines(self) -> list[tuple[str, bytes]]:
        out = []
        for line in self.out.read_bytes().splitlines():
            topic, _, payload = line.partition(b" ")
            out.append((topic.decode(), payload))
        return out

    def seqs(self) -> list[int]:
        return [orjson.loads(p)["seq"] for t, p in self.lines() if "/data/" in t]

    def wait_seqs(self, last: int, timeout: float = 15.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.seqs()
            if got and set(range(1, last + 1)) <= set(got):
                return got
            time.sleep(0.05)
        got = self.seqs()
        missing = sorted(set(range(1, last + 1)) - set(got))
        raise AssertionError(f"missing {len(missing)} seqs, first {missing[:10]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


async def until(cond, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def assert_in_order_gapless(seqs: list[int], last: int, window: int) -> None:
    """Every seq 1..last present; out-of-order arrivals only as resends (bounded by the window)."""
    assert set(seqs) >= set(range(1, last + 1))
    dups = len(seqs) - len(set(seqs))
    # first arrivals are in increasing order
    firsts = list(dict.fromkeys(seqs))
    assert firsts == sorted(firsts)
    return dups


@pytest.fixture
def buffer(tmp_path):
    b = Buffer(tmp_path / "buffer.sqlite")
    yield b
    b.close()


def run_sink(sink: MqttSink, body) -> None:
    """Run sink.run() beside the async test body, then cancel it (clean shutdown)."""
    async def main():
        async with sink:
            task = asyncio.create_task(sink.run())
            try:
                await body(task)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- tests

def test_delivery_in_order_gapless_and_status(tmp_path, mosquitto, buffer):
    sub = Subscriber(mosquitto)
    site = make_site(tmp_path, url=mosquitto.url, inflight=8)
    fill(buffer, 200)

    async def body(task):
        wake = sink.wake
        await asyncio.to_thread(sub.wait_seqs, 200)
        fill(buffer, 50, wake)                 # live data after the backlog
        await until(lambda: buffer.backlog("mqtt") == 0, what="buffer drained")
        assert sink.connected and sink.broker == mosquitto.url

    sink = MqttSink(site.forward.mqtt, site, buffer, encode, asyncio.Event(),
                    status_detail=lambda: {"drops": {"CDSS": 3}})
    run_sink(sink, body)
    seqs = sub.wait_seqs(250)
    assert seqs == list(range(1, 251))        # one connection, no loss: exactly once, in order
    c = sink.counters
    assert c["published"] == 250 and c["acked"] == 250 and c["inflight"] == 0 and c["reconnects"] == 0
    sub.stop()
    status = [(t, p) for t, p in sub.lines() if t.startswith(STATUS)]
    assert (STATUS, b"online") in status and status[-1] == (STATUS, b"offline")   # clean shutdown
    detail = [orjson.loads(p) for t, p in status if t == STATUS + "/detail"]
    assert detail == [{"drops": {"CDSS": 3}}]


SINK_SCRIPT = """
import asyncio, sys, time
sys.path.insert(0, {tests!r})
from test_mqtt import make_site, encode
from pathlib import Path
from edge_agent.buffer import Buffer
from edge_agent.forward.mqtt import MqttSink
site = make_site(Path({tmp!r}), url={url!r})
async def main():
    sink = MqttSink(site.forward.mqtt, site, Buffer(Path({tmp!r}) / "child.sqlite"), encode, asyncio.Event())
    async with sink:
        await sink.run()
asyncio.run(main())
"""


def test_status_retained_and_will_on_crash(tmp_path, mosquitto):
    """`online` is retained while up; kill -9 of the agent leaves the retained will `offline`."""
    def retained() -> bytes:
        return subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-t", STATUS,
                               "-C", "1", "-W", "2"], capture_output=True, timeout=10).stdout.strip()

    script = SINK_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path), url=mosquitto.url)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 15
        while retained() != b"online":
            assert time.monotonic() < deadline and child.poll() is None, "never announced online"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 10
    while retained() != b"offline":
        assert time.monotonic() < deadline, "will not published"


def persistent_broker(factory, tmp_path) -> Mosquitto:
    """A stopped broker that remembers a QoS 1 subscription of client `sub`: what is published while
    that subscriber is away is queued for it, so the test can check every seq whatever the timing."""
    persist = f"persistence true\npersistence_location {tmp_path}/\nautosave_interval 1\n"
    broker = factory(extra_conf=persist)
    Subscriber(broker).stop()
    broker.stop()
    return broker


def test_broker_down_at_start_then_up(tmp_path, mosquitto_factory, buffer, caplog):
    caplog.set_level(logging.INFO, "edge_agent")
    broker = persistent_broker(mosquitto_factory, tmp_path)
    site = make_site(tmp_path, url=broker.url)
    fill(buffer, 100)

    async def body(task):
        await until(lambda: sink.counters["errors"] >= 3, what="failed attempts")
        assert not sink.connected and not task.done()
        fill(buffer, 100, sink.wake)          # buffered while down
        await asyncio.to_thread(broker.start)
        await until(lambda: buffer.backlog("mqtt") == 0, what="backlog drained")

    sink = MqttSink(site.forward.mqtt, site, buffer, encode, asyncio.Event(), backoff_base=0.1, backoff_cap=0.5)
    run_sink(sink, body)
    sub = Subscriber(broker)
    assert sub.wait_seqs(200) == list(range(1, 201))
    sub.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_agent.forward.mqtt"]
    refused = [m for m in lines if "connection refused" in m]
    assert len(refused) == 1, lines            # the same failure is logged once, not once per attempt
    assert f"127.0.0.1:{broker.port}" in refused[0] and "retrying in" in refused[0]
    assert sink.counters["acked"] == 200


def test_broker_restarted_mid_stream_no_gap(tmp_path, mosquitto_factory, buffer):
    broker = persistent_broker(mosquitto_factory, tmp_path).start()
    sub = Subscriber(broker)
    site = make_site(tmp_path, url=broker.url, inflight=16)

    async def body(task):
        total = 0
        for i in range(40):                   # a steady stream, ~25 messages per 20 ms
            total = fill(buffer, 25, sink.wake)[-1]
            if i == 15:
                await until(lambda: sink.counters["acked"] > 100, what="some delivered")
                await asyncio.to_thread(broker.stop)
            if i == 25:
                await asyncio.to_thread(broker.start)
            await asyncio.sleep(0.02)
        await until(lambda: buffer.backlog("mqtt") == 0, timeout=15, what="backlog drained")
        return total

    sink = MqttSink(site.forward.mqtt, site, buffer, encode, asyncio.Event(), backoff_base=0.1, backoff_cap=0.5)
    run_sink(sink, body)
    seqs = sub.wait_seqs(1000)
    dups = assert_in_order_per_connection(seqs)
    assert sink.counters["reconnects"] >= 1 and sink.counters["acked"] == 1000
    assert dups <= 16 * sink.counters["reconnects"]          # duplicates bounded by the window
    sub.stop()


def assert_in_order_per_connection(seqs: list[int]) -> int:
    """Arrivals increase except at resends after a reconnect; returns the duplicate count."""
    firsts = list(dict.fromkeys(seqs))
    assert firsts == sorted(firsts), "a seq arrived for the first time after a later one"
    return len(seqs) - len(firsts)


def test_window_keeps_many_in_flight(tmp_path, mosquitto, buffer):
    """With inflight=32 the drain is several times faster than one-at-a-time (same broker, same rows)."""
    n = 1500

    def drain(inflight: int) -> float:
        b = Buffer(tmp_path / f"b{inflight}.sqlite")
        fill(b, n, size=200)
        site = make_site(tmp_path, url=mosquitto.url, inflight=inflight)
        sink = MqttSink(site.forward.mqtt, site, b, encode, asyncio.Event())
        took = []

        async def body(task):
            await until(lambda: sink.connected, what="connect")
            t0 = time.perf_counter()
            peak = 0
            while b.backlog("mqtt"):
                peak = max(peak, sink.counters["inflight"])
                await asyncio.sleep(0.001)
            took.append(time.perf_counter() - t0)
            took.append(peak)
        run_sink(sink, body)
        b.close()
        return took

    one, _ = drain(1)
    many, peak = drain(32)
    assert peak > 8                                 # the window was really used
    assert one / many > 2.0, f"inflight 32 took {many:.3f}s vs {one:.3f}s for inflight 1"
