"""Buffer append and drain rates for 500-point CDSS messages, `normal` and `full`.

    python bench/buffer.py [--json] [--runs 5] [--seconds 1.0] [--drain-messages 2000]

Append: `Buffer.append` batches of 1 and 10 messages (one transaction each),
`tick()` once a second as the pipeline does; realistic CDSS JSON bodies of
500 records (~85 kB).  Drain: a mosquitto started on a free loopback port, one
aiomqtt client publishing QoS 1 with 32 in flight (peek by cursor, ack in
batches of 16 after PUBACK) until the backlog is empty.  Prints medians.
Targets (issue 4): append >= 500,000 points/s in normal; drain >= 100,000 points/s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import orjson

from edge_agent.buffer import Buffer
from edge_agent.drivers.sim.harness import free_port

ALL_SINKS = 3                 # Buffer()'s default sinks, mqtt and files

POINTS = 500
WINDOW = 32


def cdss_body(n: int = POINTS, t: float | None = None) -> bytes:
    """What the encoder stores for a CDSS message: n records in the profile's JSON keys."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    return orjson.dumps([{"point_code": f"14021100123401MN0001{i:04d}", "sensor_name": "甲烷",
                          "location": f"1201工作面回风隅角{i % 40}号", "value": round(0.3 + (i % 97) / 100, 2),
                          "unit": "%", "status": 0, "time": stamp} for i in range(n)])


def bench_append(workdir: Path, durability: str, per_txn: int, seconds: float) -> float:
    """Points per second appended for `seconds` into a fresh file."""
    path = workdir / f"append-{durability}-{per_txn}.sqlite"
    for side in ("", "-wal", "-shm"):
        Path(str(path) + side).unlink(missing_ok=True)
    buf = Buffer(path, durability=durability, max_size=64 * 1024**3)
    body = cdss_body()
    msgs = [("CDSS", ALL_SINKS, time.time(), body)] * per_txn
    n, t0 = 0, time.perf_counter()
    next_tick = t0 + 1.0
    while (now := time.perf_counter()) - t0 < seconds:
        buf.append(msgs)
        n += per_txn
        if now >= next_tick:
            buf.tick()
            next_tick += 1.0
    dt = time.perf_counter() - t0
    buf.close()
    return n * POINTS / dt


class Broker:
    def __init__(self, workdir: Path):
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 100000\nmax_inflight_messages 0\n")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start")
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(5)


async def drain(buf: Buffer, port: int) -> int:
    """Publish the whole MQTT backlog, QoS 1, WINDOW in flight; return messages delivered."""
    done = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-drain", max_inflight_messages=WINDOW + 4,
                              clean_session=True) as client:
        client.pending_calls_threshold = WINDOW + 8
        inflight: dict[asyncio.Task, int] = {}
        cursor, acked = 0, []
        while True:
            if len(inflight) < WINDOW:
                for row in buf.peek("mqtt", WINDOW - len(inflight), cursor):
                    payload = b'{"seq":%d,"type":"CDSS","mine_code":"140211001234","gateway":"gw-01",' \
                              b'"records":' % row.seq + row.body + b"}"
                    inflight[asyncio.ensure_future(client.publish("mine/140211001234/gw-01/CDSS", payload,
                                                                  qos=1))] = row.seq
                    cursor = row.seq
            if not inflight:
                break
            finished, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                t.result()
                acked.append(inflight.pop(t))
            if len(acked) >= WINDOW // 2 or not inflight:
                buf.ack("mqtt", acked)
                done += len(acked)
                acked = []
    return done


def bench_drain(workdir: Path, durability: str, messages: int, port: int) -> float:
    path = workdir / f"drain-{durability}.sqlite"
    for side in ("", "-wal", "-shm"):
        Path(str(path) + side).unlink(missing_ok=True)
    buf = Buffer(path, durability=durability, max_size=64 * 1024**3, sync_every=0)
    body = cdss_body()
    for _ in range(0, messages, 10):
        buf.append([("CDSS", 1, time.time(), body)] * 10)    # MQTT only: acked rows are deleted
    buf.tick()          # checkpoint, and flush the page cache: time the drain, not the fill's writeback
    os.sync()
    t0 = time.perf_counter()
    n = asyncio.run(drain(buf, port))
    dt = time.perf_counter() - t0
    assert n == messages and buf.backlog("mqtt") == 0, (n, buf.backlog("mqtt"))
    buf.close()
    return n * POINTS / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one append run")
    ap.add_argument("--drain-messages", type=int, default=2000)
    ap.add_argument("--dir", help="where the files go (default: a temporary folder)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="bench-buffer-", dir=args.dir)
    workdir = Path(tmp.name)
    results: dict[str, dict] = {"points_per_message": POINTS, "body_bytes": len(cdss_body()), "window": WINDOW,
                                "runs": args.runs}
    for durability in ("normal", "full"):
        for per_txn in (1, 10):
            rates = [bench_append(workdir, durability, per_txn, args.seconds) for _ in range(args.runs)]
            med = statistics.median(rates)
            results[f"append_{durability}_{per_txn}_per_txn"] = {
                "points_per_s": round(med), "messages_per_s": round(med / POINTS, 1)}
    broker = Broker(workdir)
    try:
        bench_drain(workdir, "normal", 200, broker.port)       # warm-up: connection, broker, page cache
        for durability in ("normal", "full"):
            rates = [bench_drain(workdir, durability, args.drain_messages, broker.port)
                     for _ in range(max(1, args.runs // 2 + 1))]
            med = statistics.median(rates)
            results[f"drain_{durability}"] = {"points_per_s": round(med), "messages_per_s": round(med / POINTS, 1)}
    finally:
        broker.stop()
        tmp.cleanup()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"buffer bench: {POINTS}-point CDSS messages ({results['body_bytes']} B bodies), medians of "
              f"{args.runs} runs")
        for k, v in results.items():
            if isinstance(v, dict):
                print(f"  {k:<28} {v['points_per_s']:>12,} points/s {v['messages_per_s']:>10,} messages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
