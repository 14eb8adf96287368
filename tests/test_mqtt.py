"""The MQTT uplink against real mosquitto brokers: order, gaps, outages, window, status topic."""
from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from conftest import Mosquitto, free_port
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

    def __init__(self, broker: Mosquitto, topic: str = f"{PREFIX}/#", name: str = "sub", auth: tuple = (),
                 port: int | None = None):
        self.broker, self.topic, self.auth = broker, topic, auth
        self.port = port or broker.port
        # appended: a later subscriber with the same name continues the same record
        self.out = broker.workdir / f"{name}-{broker.port}.out"
        self.proc = subprocess.Popen(
            [shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p",
             str(self.port), "-t", topic, "-t", "ready/#", "-q", "1", "-c", "-i", f"{name}-{broker.port}", "-v",
             *auth], stdout=open(self.out, "ab"), stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Publish pings until one comes back: then the subscription is active (no sleep)."""
        deadline = time.monotonic() + timeout
        tag = f"ready/{time.monotonic_ns()}"
        n = 0
        while time.monotonic() < deadline:
            n += 1
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-t", f"{tag}/{n}",
                            "-m", "x", "-q", "1", *self.auth], stderr=subprocess.DEVNULL, timeout=5)
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                if tag in self.out.read_text(errors="replace"):
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

    sink = MqttSink(site.forward.get("mqtt"), site, buffer, encode, asyncio.Event(),
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


def test_a_payload_of_megabytes_arrives_whole_between_small_ones(tmp_path, mosquitto, buffer):
    """A row above the buffer's BIG and paho's packet above BIG_PACKET (the start-up CDDY of a large
    site): read back through the blob handle, written from a memoryview, in seq order with the rest."""
    from edge_agent.forward import mqtt as sink_module
    sub = Subscriber(mosquitto)
    site = make_site(tmp_path, url=mosquitto.url, inflight=4)
    pad = b"0123456789" * 300_000                       # 3 MB
    fill(buffer, 3)
    buffer.append([("CDDY", 1, time.time(), pad)])
    fill(buffer, 3)

    def big_encode(row):
        if row.type != "CDDY":
            return encode(row)
        return f"{PREFIX}/data/CDDY", b'{"seq":%d,"type":"CDDY","pad":"%b"}' % (row.seq, row.body), False

    async def body(task):
        await until(lambda: buffer.backlog("mqtt") == 0, what="buffer drained")
        assert getattr(sink_module, "BIG_PACKET") < len(pad)

    sink = MqttSink(site.forward.get("mqtt"), site, buffer, big_encode, asyncio.Event())
    run_sink(sink, body)
    assert sub.wait_seqs(7) == list(range(1, 8))
    (got,) = [orjson.loads(p) for t, p in sub.lines() if t.endswith("/data/CDDY")]
    assert got["seq"] == 4 and got["pad"].encode() == pad
    sub.stop()


SINK_SCRIPT = """
import asyncio, sys, time
sys.path.insert(0, {tests!r})
from test_mqtt import make_site, encode
from pathlib import Path
from edge_agent.buffer import Buffer
from edge_agent.forward.mqtt import MqttSink
site = make_site(Path({tmp!r}), url={url!r})
async def main():
    sink = MqttSink(site.forward.get("mqtt"), site, Buffer(Path({tmp!r}) / "child.sqlite"), encode, asyncio.Event())
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
    tmp_path.mkdir(parents=True, exist_ok=True)
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

    sink = MqttSink(site.forward.get("mqtt"), site, buffer, encode, asyncio.Event(), backoff_base=0.1, backoff_cap=0.5)
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

    sink = MqttSink(site.forward.get("mqtt"), site, buffer, encode, asyncio.Event(), backoff_base=0.1, backoff_cap=0.5)
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


class DelayProxy:
    """A loopback TCP proxy adding `delay` seconds each way (order kept): a WAN round trip, so the
    publish window has something to hide.  Runs its own event loop in a thread."""

    def __init__(self, target_port: int, delay: float):
        self.target, self.delay = target_port, delay
        self.port = free_port()
        self.frozen = False          # when set, nothing flows from the broker to the client
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()

    async def _client(self, r1, w1) -> None:
        r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self._pipe(r1, w2), self._pipe(r2, w1, downstream=True), return_exceptions=True)
        w1.close()
        w2.close()

    async def _pipe(self, reader, writer, downstream: bool = False) -> None:
        q: asyncio.Queue = asyncio.Queue()

        async def send():
            while True:
                due, data = await q.get()
                if data is None:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                while downstream and self.frozen:
                    await asyncio.sleep(0.01)
                writer.write(data)
        sender = asyncio.ensure_future(send())
        while data := await reader.read(65536):
            q.put_nowait((time.monotonic() + self.delay, data))
        q.put_nowait((0, None))
        await sender

    def stop(self) -> None:
        async def shutdown():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_window_keeps_many_in_flight(tmp_path, mosquitto, buffer):
    """Over a link with a 20 ms round trip, inflight=32 drains many times faster than inflight=1
    (which can do at most one message per round trip)."""
    proxy = DelayProxy(mosquitto.port, 0.010)
    n = 150

    def drain(inflight: int) -> tuple[float, int]:
        b = Buffer(tmp_path / f"b{inflight}.sqlite")
        fill(b, n, size=200)
        site = make_site(tmp_path, url=f"mqtt://127.0.0.1:{proxy.port}", inflight=inflight)
        sink = MqttSink(site.forward.get("mqtt"), site, b, encode, asyncio.Event())
        took = []

        async def body(task):
            t0 = time.perf_counter()
            peak = 0
            while b.backlog("mqtt"):
                peak = max(peak, sink.counters["inflight"])
                await asyncio.sleep(0.001)
            took.extend([time.perf_counter() - t0, peak])
        run_sink(sink, body)
        b.close()
        return took[0], took[1]

    try:
        one, _ = drain(1)
        many, peak = drain(32)
    finally:
        proxy.stop()
    assert one > n * 0.020 * 0.9                    # one at a time: a round trip each
    assert peak > 8                                 # the window was really used
    assert one / many > 5, f"inflight 32 took {many:.3f}s vs {one:.3f}s for inflight 1"


def test_failover_and_return_to_primary(tmp_path, mosquitto_factory, buffer, caplog):
    """Stop the primary mid-stream: delivery continues through the second broker with no seq gap;
    restart the primary: the sink goes back to it and keeps delivering."""
    caplog.set_level(logging.INFO, "edge_agent")
    a = persistent_broker(mosquitto_factory, tmp_path / "a").start()
    b = persistent_broker(mosquitto_factory, tmp_path / "b").start()
    sub_a, sub_b = Subscriber(a), Subscriber(b)
    site = make_site(tmp_path, url=[a.url, b.url], inflight=16)
    phases: dict[str, int] = {}

    async def stream(n_batches: int) -> None:
        for _ in range(n_batches):
            fill(buffer, 10, sink.wake)
            await asyncio.sleep(0.01)

    async def body(task):
        await stream(20)
        await until(lambda: sink.counters["acked"] >= 100, what="first deliveries")
        assert sink.broker == a.url
        await asyncio.to_thread(a.stop)
        await stream(20)
        await until(lambda: sink.connected and sink.broker == b.url, what="failover to b")
        await stream(20)
        phases["on_b"] = buffer.next_seq - 1
        await until(lambda: buffer.backlog("mqtt") == 0, what="drained through b")
        await asyncio.to_thread(a.start)
        await until(lambda: sink.connected and sink.broker == a.url, timeout=10, what="return to a")
        await stream(20)
        await until(lambda: buffer.backlog("mqtt") == 0, what="drained through a")
        phases["last"] = buffer.next_seq - 1

    sink = MqttSink(site.forward.get("mqtt"), site, buffer, encode, asyncio.Event(), backoff_base=0.1,
                    backoff_cap=0.5, primary_probe_every=0.3)
    run_sink(sink, body)
    last = phases["last"]
    for s in (sub_a, sub_b):
        s.stop()
    sub_a = Subscriber(a)                      # collect what the restarted primary kept for `sub`
    got_a, got_b = sub_a.seqs(), sub_b.seqs()
    assert set(got_a) | set(got_b) >= set(range(1, last + 1)), "seq gap across the switch"
    assert set(got_b) & set(range(101, phases["on_b"] + 1)), "nothing went through the second broker"
    assert set(range(phases["on_b"] + 1, last + 1)) <= set(got_a), "did not return to the primary"
    for got in (got_a, got_b):
        assert_in_order_per_connection(got)
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_agent.forward.mqtt"]
    assert any("switching from" in m and str(b.port) in m for m in lines), lines
    sub_a.stop()


def test_stalled_broker_is_left_and_rows_resent(tmp_path, mosquitto, buffer, caplog):
    """A broker that stops answering (no PUBACK, connection still open) is detected after
    stall_timeout; the unacknowledged rows are sent again on the next connection."""
    caplog.set_level(logging.INFO, "edge_agent")
    proxy = DelayProxy(mosquitto.port, 0.0)
    sub = Subscriber(mosquitto)
    site = make_site(tmp_path, url=f"mqtt://127.0.0.1:{proxy.port}", keepalive=60)
    fill(buffer, 10)

    async def body(task):
        await until(lambda: sink.counters["acked"] == 10, what="first rows")
        proxy.frozen = True
        fill(buffer, 10, sink.wake)
        await until(lambda: sink.counters["errors"] >= 1, timeout=10, what="stall detected")
        assert sink.counters["acked"] == 10
        proxy.frozen = False
        await until(lambda: buffer.backlog("mqtt") == 0, what="resent after reconnect")

    sink = MqttSink(site.forward.get("mqtt"), site, buffer, encode, asyncio.Event(), stall_timeout=1.0,
                    backoff_base=0.1, backoff_cap=0.2)
    try:
        run_sink(sink, body)
    finally:
        proxy.stop()
    assert set(sub.wait_seqs(20)) == set(range(1, 21))
    sub.stop()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("no PUBACK for 1s" in m and str(proxy.port) in m for m in lines), lines
