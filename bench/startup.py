#!/usr/bin/env python3
"""Start-up time and peak memory of `edge-agent run` at 10,000 and 50,000 configured points.

For each site (N points as devices x 200 float32 points, inline in the YAML or in
CSV point tables, polled so that 10,000 points/s are offered: 1 s at 10,000
points, 5 s at 50,000) it runs bench/pipeline.py's whole setup (prepared-answer
simulators, a private mosquitto, a subscriber) and reports `startup_s` (launch
of `edge-agent run` to the first CDSS at the subscriber) and the agent's peak
RSS (VmHWM) after it has run `--duration` seconds past the warm-up, against
issue 19's budget (60 MB + 2 kB per configured point).

`--stages` instead loads the same sites in a fresh interpreter and prints the
RSS after each step (imports, load_site, Agent(), the start-up definitions, a collection), which says
where the megabytes go.

    python bench/startup.py --json
    python bench/startup.py --points 10000 --mode inline --repeat 3 --json
    python bench/startup.py --stages
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import make_site, run_once  # noqa: E402

REGISTERS = 200

STAGES = r'''
import sys, time, gc, asyncio
t0 = time.perf_counter()
def rss():
    got = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            got[k] = round(int(v.split()[0]) / 1024, 1)
    return got
out = {"start": rss()}
import edge_agent.cli as cli
try:                                       # what `run` does first (older versions: build every parser)
    from edge_agent import memory
    memory.map_large_allocations()
    cli.build_parser("run")
except ImportError:
    memory = None
    cli.build_parser()
from edge_agent.agent import Agent
from edge_agent.config import load_site
out["imports"] = rss(); out["imports_s"] = round(time.perf_counter() - t0, 3)
t = time.perf_counter()
site = load_site(sys.argv[1])
out["load_site"] = rss(); out["load_site_s"] = round(time.perf_counter() - t, 3)
async def main():
    if memory is not None:
        memory.settle()                    # as `run` does before Agent()
    t = time.perf_counter()
    agent = Agent(site)
    out["agent"] = rss(); out["agent_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    agent.definitions(time.time())            # what `run` encodes first: CDDY, FZDY of every point
    out["definitions"] = rss(); out["definitions_s"] = round(time.perf_counter() - t, 3)
    gc.collect()
    out["collected"] = rss()
    out["modules"] = len(sys.modules)
asyncio.run(main())
print(__import__("json").dumps(out))
'''


def budget_mb(points: int) -> float:
    return 60 + 2 * points / 1024


def one(points: int, mode: str, duration: float, warmup: float, work: Path) -> dict:
    devices = points // REGISTERS
    period = points / 10_000
    sims = max(1, -(-devices // 247))
    r = run_once(devices, REGISTERS, period, duration, warmup, sims, work, point_type="float32", points=mode)
    return {"points": points, "mode": mode, "startup_s": r["startup_s"], "peak_rss_mb": r["agent_peak_rss_mb"],
            "budget_mb": round(budget_mb(points), 1), "agent_cpu_fraction_of_core": r["agent_cpu_fraction_of_core"],
            "acquired_points_per_s": r["acquired_points_per_s"], "gaps": r["gaps"]}


def stages(points: int, mode: str, work: Path) -> dict:
    devices = points // REGISTERS
    ports = [15020 + i for i in range(max(1, -(-devices // 247)))]
    site = make_site(work, devices, REGISTERS, points / 10_000, ports, 1883, 19999, "float32", mode)
    got = subprocess.run([sys.executable, "-c", STAGES, str(site)], capture_output=True, text=True, check=True)
    return {"points": points, "mode": mode, **json.loads(got.stdout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, action="append", help="configured points (default 10000 and 50000)")
    ap.add_argument("--mode", choices=("inline", "csv"), action="append", help="default both")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds from launch before the window")
    ap.add_argument("--repeat", type=int, default=1, help="runs per site; figures are medians")
    ap.add_argument("--stages", action="store_true", help="RSS after each start-up step, in-process")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-startup-") as tmp:
        for points in args.points or [10_000, 50_000]:
            for mode in args.mode or ["inline", "csv"]:
                if args.stages:
                    r = stages(points, mode, Path(tempfile.mkdtemp(dir=tmp)))
                else:
                    runs = [one(points, mode, args.duration, args.warmup, Path(tempfile.mkdtemp(dir=tmp)))
                            for _ in range(args.repeat)]
                    r = dict(runs[0])
                    for k in ("startup_s", "peak_rss_mb", "agent_cpu_fraction_of_core"):
                        vals = [x[k] for x in runs if x[k] is not None]
                        r[k] = round(statistics.median(vals), 3) if vals else None
                    r["runs"] = len(runs)
                    r["within_budget"] = r["peak_rss_mb"] <= r["budget_mb"]
                print(json.dumps(r) if args.json else r, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
