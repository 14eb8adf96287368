#!/usr/bin/env python3
"""What the operator console costs the agent at 10,000 points/s, with no browser and with one on the overview.

Starts a mosquitto and the simulated devices once (the same generated site as
bench/pipeline.py: N devices x M float32 CH4 points polled every P seconds),
then runs `edge-agent run` on it again and again in three modes, in turn:

    off       console.enabled: false                      (the baseline)
    idle      console on, no browser connected            (trend sampler only)
    overview  console on, headless Chromium on the overview page, live updates flowing

For each run it prints one JSON line: the agent's CPU (user+sys from /proc,
as % of one core) over the measured window, and, for the console modes, the
console's own CPU as it accounts for it (thread CPU time of its sampler and of
its live-page renders, from the agent's closing log line).  The summary gives
medians per mode and the differences against `off`.

    python bench/console.py --devices 50 --registers 200 --period 1 --duration 30 --repeat 3

The machine is shared: the whole-process difference is noisy (a few tenths
of a percent either way), the console's own account is not.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_seconds, make_site  # noqa: E402 (bench/ is not a package)

from edge_agent.drivers.sim.harness import free_port, wait_port  # noqa: E402

MODES = ("off", "idle", "overview")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLOSING = re.compile(r"sampler ([0-9.]+) s over (\d+) samples, live pages ([0-9.]+) s over (\d+) renders")


def site_for(base: Path, mode: str, console_port: int) -> Path:
    data = yaml.safe_load(base.read_text())
    data["console"] = {"enabled": mode != "off", "listen": f"127.0.0.1:{console_port}"}
    path = base.with_name(f"site-{mode}.yaml")
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def run_mode(mode: str, base: Path, work: Path, duration: float, warmup: float, browser) -> dict:
    port = free_port()
    site = site_for(base, mode, port)
    log = work / f"agent-{mode}.log"
    launched = time.monotonic()
    with open(log, "wb") as fh:
        agent = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "-c", str(site), "--log-level", "INFO"],
                                 stdout=fh, stderr=subprocess.STDOUT)
    page = None
    try:
        if mode != "off":
            wait_port(port, 60)
        if mode == "overview":
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#conn[data-state=on]", timeout=30000)
        time.sleep(warmup)
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(duration)
        c1, t1 = cpu_seconds(agent.pid), time.monotonic()
        if page is not None:
            updated = page.evaluate("document.body.dataset.updated") is not None
            page.close()
            page = None
        else:
            updated = None
    finally:
        if page is not None:
            page.close()
        lived = time.monotonic() - launched
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
    text = log.read_text(errors="replace")
    out = {"mode": mode, "agent_cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 2)}
    m = CLOSING.search(text)
    if mode != "off" and m:
        out.update(console_cpu_pct=round(100 * (float(m.group(1)) + float(m.group(3))) / lived, 3),
                   sampler_ms_per_sample=round(1000 * float(m.group(1)) / max(1, int(m.group(2))), 3),
                   render_ms=round(1000 * float(m.group(3)) / max(1, int(m.group(4))), 3),
                   renders=int(m.group(4)))
    if updated is not None:
        out["page_updated_live"] = updated
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--registers", type=int, default=200, help="points per device")
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    broker_port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"user root\nlistener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 1000000\nmax_inflight_messages 0\n")
    procs: list[subprocess.Popen] = []
    runs: list[dict] = []
    logs = open(work / "bench.log", "ab")
    try:
        procs.append(subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                                      stdout=logs, stderr=subprocess.STDOUT))
        wait_port(broker_port)
        sim_port = free_port()
        base = make_site(work, args.devices, args.registers, args.period, [sim_port], broker_port, free_port())
        data = yaml.safe_load(base.read_text())
        data["metrics"] = {"enabled": False}
        base.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        procs.append(subprocess.Popen([sys.executable, "-m", "edge_agent", "simulate", "-c", str(base),
                                       "--log-level", "WARNING"], stdout=logs, stderr=subprocess.STDOUT))
        wait_port(sim_port, 60)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS, headless=True)
            for i in range(args.repeat):
                for mode in MODES:
                    r = run_mode(mode, base, work, args.duration, args.warmup, browser)
                    r.update(run=i, points_per_s=round(args.devices * args.registers / args.period))
                    print(json.dumps(r), flush=True)
                    runs.append(r)
            browser.close()
    finally:
        for pr in procs:
            pr.terminate()
            pr.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    med = {m: {k: statistics.median(r[k] for r in runs if r["mode"] == m)
               for k in ("agent_cpu_pct", "console_cpu_pct") if all(k in r for r in runs if r["mode"] == m)}
           for m in MODES}
    summary = {"summary": med, "idle_minus_off_pct": round(med["idle"]["agent_cpu_pct"] - med["off"]["agent_cpu_pct"], 2),
               "overview_minus_off_pct": round(med["overview"]["agent_cpu_pct"] - med["off"]["agent_cpu_pct"], 2)}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
