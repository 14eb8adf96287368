#!/usr/bin/env python3
"""End-to-end pipeline benchmark: simulated devices -> `edge-agent run` -> mosquitto -> subscriber.

Starts, each in its own process: the simulated Modbus TCP devices
(`edge-agent simulate`), a mosquitto on a free loopback port, a subscriber
that counts records and checks `seq`, and `edge-agent run` on a generated site
file (N devices x M float registers, every point forwarded on every poll).
After a warm-up it measures for D seconds and prints one JSON line.

    python bench/pipeline.py --devices 50 --registers 200 --period 1 --duration 30 --json
    python bench/pipeline.py --max --json      # raise the load until the agent falls behind
"""
from __future__ import annotations

import argparse
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

import yaml

HERE = Path(__file__).resolve().parent
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: nothing listening on 127.0.0.1:{port} after {timeout}s")
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of a process (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_site(work: Path, devices: int, registers: int, period: float, sim_ports: list[int], broker: int) -> Path:
    """N devices x M float32 CH4 points, each device's points in a CSV point table (as sites do)."""
    devs = []
    for d in range(devices):
        table = work / f"points-dev{d}.csv"
        rows = ["id,sensor,address,type,order,location"]
        # original numbers distinct across devices, so point codes stay unique
        rows += [f"D{d}R{r},0001,hr:{2 * r},float32,CDAB,bench {d}/{r}" for r in range(registers)]
        table.write_text("\n".join(rows) + "\n", encoding="utf-8")
        devs.append({"name": f"dev{d}", "driver": "modbus-tcp", "host": "127.0.0.1",
                     "port": sim_ports[d % len(sim_ports)], "unit": 1 + d // len(sim_ports),
                     "poll": f"{period}s", "timeout": "1s", "points_file": table.name})
    site = {
        "site": {"mine_code": "140211001234", "mine_name": "bench", "gateway": "gw-bench"},
        "buffer": {"path": str(work / "buffer.sqlite"), "max_size": "2GiB"},
        "forward": {"mqtt": {"url": f"mqtt://127.0.0.1:{broker}", "topic_prefix": "mine"}},
        "report": {"realtime_every": "20s", "stats_window": "5m"},
        "metrics": {"enabled": False},
        "devices": devs,
    }
    path = work / "bench-site.yaml"
    path.write_text(yaml.safe_dump(site, allow_unicode=True, sort_keys=False))
    return path


SUBSCRIBER = r'''
import json, sys, time, threading
import orjson
import paho.mqtt.client as paho
port, out = int(sys.argv[1]), sys.argv[2]
state = {"msgs": 0, "records": 0, "seqs": set(), "dups": 0, "lat": [], "first": None, "last": None, "t0": None}
lock = threading.Lock()
def on_message(c, u, m):
    now = time.time()
    try:
        p = orjson.loads(m.payload)
    except Exception:
        return
    if not isinstance(p, dict) or "seq" not in p:
        return
    with lock:
        seq = p["seq"]
        if seq in state["seqs"]:
            state["dups"] += 1
        state["seqs"].add(seq)
        if state["t0"] is not None and p.get("type") == "CDSS":
            state["msgs"] += 1
            state["records"] += len(p["records"])
            if "ts" in p:
                state["lat"].append(now - p["ts"])
c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-sub")
c.on_message = on_message
c.on_connect = lambda c, u, f, r, p: c.subscribe("mine/#", qos=1)
c.connect("127.0.0.1", port)
c.loop_start()
for line in sys.stdin:
    cmd = line.strip()
    with lock:
        if cmd == "start":
            state["t0"] = time.time(); state["msgs"] = 0; state["records"] = 0; state["lat"] = []
        elif cmd == "stop":
            t = time.time() - state["t0"]
            lat = sorted(state["lat"])
            seqs = state["seqs"]
            gaps = (max(seqs) - min(seqs) + 1 - len(seqs)) if seqs else 0
            res = {"seconds": t, "msgs": state["msgs"], "records": state["records"], "dups": state["dups"],
                   "gaps": gaps, "p50": lat[len(lat)//2] if lat else None,
                   "p99": lat[int(len(lat)*0.99)] if lat else None}
            open(out, "w").write(json.dumps(res))
            print("done", flush=True)
'''


def run_once(devices: int, registers: int, period: float, duration: float, warmup: float, sims: int,
             work: Path) -> dict:
    exe = [sys.executable, "-m", "edge_agent"]
    broker_port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"user root\nlistener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 1000000\nmax_inflight_messages 0\n")
    procs: list[subprocess.Popen] = []
    logs = open(work / "bench.log", "ab")
    try:
        broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                                  stdout=logs, stderr=subprocess.STDOUT)
        procs.append(broker)
        wait_port(broker_port)
        sim_ports = [free_port() for _ in range(sims)]
        site = make_site(work, devices, registers, period, sim_ports, broker_port)
        for i, port in enumerate(sim_ports):
            sim_site = work / f"sim-{i}.yaml"
            data = yaml.safe_load(site.read_text())
            data["devices"] = [d for d in data["devices"] if d["port"] == port]
            sim_site.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
            procs.append(subprocess.Popen(exe + ["simulate", "-c", str(sim_site), "--log-level", "WARNING"],
                                          stdout=logs, stderr=subprocess.STDOUT))
        for port in sim_ports:
            wait_port(port, 60)
        sub_out = work / "sub.json"
        sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(broker_port), str(sub_out)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(sub)
        time.sleep(0.5)  # the subscriber connects; nothing is measured yet
        t_start = time.monotonic()
        agent = subprocess.Popen(exe + ["run", "-c", str(site), "--log-level", "WARNING"],
                                 stdout=logs, stderr=subprocess.STDOUT)
        procs.append(agent)
        time.sleep(warmup)
        sub.stdin.write("start\n")
        sub.stdin.flush()
        cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(duration)
        cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
        sub.stdin.write("stop\n")
        sub.stdin.flush()
        sub.stdout.readline()
        peak = rss_peak_mb(agent.pid)
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        got = json.loads(sub_out.read_text())
        offered = devices * registers / period
        delivered = got["records"] / got["seconds"]
        cpu = (cpu1 - cpu0) / (t1 - t0)
        return {
            "devices": devices, "registers": registers, "period_s": period, "duration_s": duration,
            "offered_points_per_s": offered,
            "delivered_points_per_s": round(delivered, 1),
            "messages_per_s": round(got["msgs"] / got["seconds"], 1),
            "agent_cpu_fraction_of_core": round(cpu, 4),
            "agent_cpu_s_per_million_points": round(cpu / delivered * 1e6, 2) if delivered else None,
            "agent_peak_rss_mb": round(peak, 1),
            "latency_p50_ms": None if got["p50"] is None else round(got["p50"] * 1000, 1),
            "latency_p99_ms": None if got["p99"] is None else round(got["p99"] * 1000, 1),
            "gaps": got["gaps"], "duplicates": got["dups"],
            "startup_s": None,
        }
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        logs.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--registers", type=int, default=200)
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--sims", type=int, default=1, help="simulator processes")
    ap.add_argument("--max", action="store_true", help="raise the load until the agent falls behind")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        if not args.max:
            results.append(run_once(args.devices, args.registers, args.period, args.duration, args.warmup,
                                    args.sims, Path(tmp)))
        else:
            period = args.period
            best = None
            while True:
                work = Path(tempfile.mkdtemp(dir=tmp))
                r = run_once(args.devices, args.registers, period, args.duration, args.warmup, args.sims, work)
                results.append(r)
                ok = r["delivered_points_per_s"] >= 0.99 * r["offered_points_per_s"]
                print(json.dumps(r), file=sys.stderr, flush=True)
                if not ok:
                    break
                best = r
                period /= 2
                if period < 0.01:
                    break
            results.append({"max_sustained_points_per_s": best["delivered_points_per_s"] if best else 0})
    for r in results:
        print(json.dumps(r) if args.json else "\n".join(f"{k:>32}: {v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
