"""Benchmark: N simulated Modbus TCP devices x M registers polled every P seconds.

    python bench/modbus_poll.py [--devices 50] [--registers 200] [--period 1] [--duration 20] [--json]
    python bench/modbus_poll.py --devices 5 --registers 200 --one-per-point     # the unplanned baseline
    python bench/modbus_poll.py --driver pymodbus       # modbus-tcp through pymodbus (the first round's path)
    python bench/modbus_poll.py --sim pymodbus          # against the pymodbus simulator

The simulated devices run in a separate process (so their CPU is not counted);
the agent side is the real driver (one task and one TCP connection per
device, planned block reads) in this process.  Prints: requests per cycle
(planned, the minimum possible, and one-per-point), points/s read, and the
agent's CPU seconds per million points and as % of one core.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge_agent.drivers.plan import MAX_REGISTERS
from edge_agent.drivers.sim.harness import Harness, free_port, site_from_yaml, wait_port

SIM = {"pymodbus": ("import sys; from edge_agent.config import load_site; from edge_agent.drivers.sim import main; "
                    "sys.exit(main(load_site(sys.argv[1]), scenario='steady'))"),
       "prepared": "import sys; from edge_agent.drivers.sim.prepared import main; sys.exit(main(['-c', sys.argv[1]]))"}


def site_text(devices: int, registers: int, period: float, port: int, one_per_point: bool = False) -> str:
    # one-per-point: every other register, max_gap 0, so nothing can merge (the unplanned baseline)
    stride, gap = (2, 0) if one_per_point else (1, 10)
    out = ['site: {mine_code: "140211001234", gateway: bench}', "buffer: {path: b.sqlite}", "devices:"]
    for d in range(devices):
        out.append(f"  - name: dev{d}\n    driver: modbus-tcp\n    host: 127.0.0.1\n    port: {port}\n"
                   f"    unit: {d % 247 + 1}\n    poll: {period}s\n    timeout: 1s\n    max_gap: {gap}\n    points:")
        out += [f'      - {{id: D{d}R{r}, sensor: "0002", address: "hr:{r * stride}", scale: 0.01}}'
                for r in range(registers)]
    return "\n".join(out) + "\n"


async def measure(site, warmup: float, duration: float) -> dict:
    async with Harness(site, keep=0) as h:
        await h.wait(lambda: all(d.online for d in h.drivers), 30, "all devices online")
        await asyncio.sleep(warmup)
        polls0 = sum(d.counters["polls"] for d in h.drivers)
        req0 = sum(d.counters["requests"] for d in h.drivers)
        pts0 = sum(h.totals[i] * len(h.catalog.by_device[i]) for i in range(len(h.drivers)))
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(duration)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        polls = sum(d.counters["polls"] for d in h.drivers) - polls0
        reqs = sum(d.counters["requests"] for d in h.drivers) - req0
        pts = sum(h.totals[i] * len(h.catalog.by_device[i]) for i in range(len(h.drivers))) - pts0
        planned = sum(len(d.plan) for d in h.drivers)
        return {
            "requests_per_cycle_planned": planned,
            "requests_per_cycle_measured": round(reqs / polls * len(h.drivers), 2) if polls else None,
            "skipped": sum(d.counters["skipped"] for d in h.drivers),
            "errors": sum(d.counters["errors"] for d in h.drivers),
            "points_per_s": round(pts / wall),
            "agent_cpu_s_per_million_points": round(cpu / pts * 1e6, 2) if pts else None,
            "agent_cpu_percent_of_one_core": round(100 * cpu / wall, 1),
            "window_s": round(wall, 1),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--registers", type=int, default=200)
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--one-per-point", action="store_true",
                    help="baseline: one request per point (keep devices x registers under ~2,000/s)")
    ap.add_argument("--driver", choices=("tcp", "pymodbus"), default="tcp",
                    help="modbus-tcp driver: the bare-protocol one (default) or the pymodbus one")
    ap.add_argument("--sim", choices=("prepared", "pymodbus"), default="prepared", help="simulator")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.driver == "pymodbus":
        from edge_agent.drivers import modbus_spec
        from edge_agent.drivers.modbus import ModbusDriver
        modbus_spec.make = ModbusDriver          # the registry's factory for every Modbus framing
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        site = site_from_yaml(site_text(args.devices, args.registers, args.period, port, args.one_per_point), Path(tmp))
        sim = subprocess.Popen([sys.executable, "-c", SIM[args.sim], site.source], stdout=subprocess.DEVNULL)
        try:
            wait_port(port)
            res = asyncio.run(measure(site, args.warmup, args.duration))
        finally:
            sim.terminate()
            sim.wait(10)
    res = {"devices": args.devices, "registers": args.registers, "period_s": args.period,
           "mode": "one-per-point" if args.one_per_point else "planned", "driver": args.driver, "sim": args.sim,
           # the fewest requests that can cover M contiguous registers (planned mode's layout)
           "requests_per_cycle_minimum": args.devices * math.ceil(args.registers / MAX_REGISTERS),
           "requests_per_cycle_one_per_point": args.devices * args.registers, **res}
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:36} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
