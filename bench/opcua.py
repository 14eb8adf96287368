"""OPC UA driver throughput and cost: subscribe vs poll, 1,000 / 5,000 nodes changing every second.

    python bench/opcua.py [--nodes 1000 5000] [--seconds 10] [--json]

For each node count an asyncua server runs in another process
(`edge_agent.drivers.opcua_sim --change-every 1`) and rewrites every node once
a second; the driver runs here, in subscribe mode (publishing interval 1 s)
and in poll mode (poll 1 s), with an on_frame that only counts.  After a
warm-up (first full batch seen) it measures, over `--seconds`:

- changes/s    node changes the server really made per second (Sim.Tick x nodes; a loaded
               machine may not manage one rewrite of every node per second)
- values/s     values delivered to on_frame per second (notifications/s in
               subscribe mode, point reads/s in poll mode)
- frames/s     Frames per second (one per publish response / poll)
- cpu_ms/s     this process's CPU time (user+sys) per wall second
- cpu_s/M      this process's CPU seconds per million values delivered
- server_cpu   the server process's CPU per wall second (context only)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

import psutil
from asyncua import Client

from edge_agent.config import Site
from edge_agent.drivers.opcua import OpcUaDevice
from edge_agent.drivers.sim.harness import free_port
from edge_agent.points import Catalog
from edge_agent.profile.tables import load_profile


def make_device(url: str, n: int, mode: str):
    pts = [{"id": f"P{i}", "sensor": "0053", "kind": "analog", "address": f"ns=2;s=Sim.V{i}"} for i in range(n)]
    dev = {"name": "bench", "driver": "opcua", "url": url, "mode": mode, "poll": "1s",
           "publishing_interval": "1s", "points": pts}
    site = Site.model_validate({"site": {"mine_code": "140211001234"}, "devices": [dev]})
    return site.devices[0], Catalog(site, load_profile("default")).by_device[0]


async def measure(url: str, n: int, mode: str, seconds: float, server: psutil.Process) -> dict:
    dev, points = make_device(url, n, mode)
    got = {"values": 0, "frames": 0}
    full = asyncio.Event()

    def on_frame(f) -> None:
        got["values"] += len(f)
        got["frames"] += 1
        if len(f) >= n and (f.quality[0] == 0):
            full.set()

    drv = OpcUaDevice(0, dev, points, on_frame)
    async with drv:
        task = asyncio.create_task(drv.run())
        try:
            await asyncio.wait_for(full.wait(), 60)
            await asyncio.sleep(1.5)              # past the initial-values burst
            # a second client reads how often the server really rewrote all nodes
            async with Client(url, timeout=10, watchdog_intervall=60) as probe:
                tick = probe.get_node("ns=2;s=Sim.Tick")
                k0 = await tick.read_value()
                v0, f0 = got["values"], got["frames"]
                c0, s0, t0 = time.process_time(), server.cpu_times(), time.monotonic()
                await asyncio.sleep(seconds)
                c1, s1, t1 = time.process_time(), server.cpu_times(), time.monotonic()
                v, f = got["values"] - v0, got["frames"] - f0
                k1 = await tick.read_value()
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
    wall = t1 - t0
    cpu = c1 - c0
    return {"nodes": n, "mode": mode, "seconds": round(wall, 2),
            "changes_per_s": round((k1 - k0) * n / wall),
            "values_per_s": round(v / wall),
            "frames_per_s": round(f / wall, 2), "cpu_ms_per_s": round(cpu / wall * 1000, 1),
            "cpu_s_per_million": round(cpu / v * 1e6, 2) if v else None,
            "server_cpu_ms_per_s": round(((s1.user + s1.system) - (s0.user + s0.system)) / wall * 1000, 1)}


def start_server(n: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent.drivers.opcua_sim", "--port", str(port),
                             "--nodes", str(n), "--change-every", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise SystemExit(f"sim server with {n} nodes did not start")
    return proc, f"opc.tcp://127.0.0.1:{port}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--modes", nargs="+", default=["subscribe", "poll"], choices=["subscribe", "poll"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for n in args.nodes:
        proc, url = start_server(n)
        try:
            for mode in args.modes:
                rows.append(asyncio.run(measure(url, n, mode, args.seconds, psutil.Process(proc.pid))))
                if not args.json:
                    r = rows[-1]
                    print(f"{n:>6} nodes {mode:>9}: server {r['changes_per_s']:>6} changes/s, agent got "
                          f"{r['values_per_s']:>6} values/s  {r['frames_per_s']:>5} frames/s"
                          f"  agent {r['cpu_ms_per_s']:>6} ms CPU/s = {r['cpu_s_per_million']} s per million values"
                          f"  (server {r['server_cpu_ms_per_s']} ms CPU/s)", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    if args.json:
        print(json.dumps({"bench": "opcua", "cpus": os.cpu_count(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
