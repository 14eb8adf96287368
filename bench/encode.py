"""Benchmark: CDSS bodies encoded per second (the hot path of the profile encoder).

A generated site of N points (mixed CH4/CO/temperature/switch), state arrays
as the kernel keeps them (array('d') values and times, array('B') statuses),
every point encoded per call (a full CDSS snapshot) and in frames of 200
points (what one device poll reports).  Also the MQTT envelope and the text
rendering of one snapshot.  Rates are per CPU-second of this process (median
of --repeat runs), so they mean "on one core" even on a busy machine.

    python bench/encode.py [--points 10000] [--repeat 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from array import array
from pathlib import Path

import orjson
import yaml

from edge_agent.config import load_site
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from edge_agent.profile.encode import Encoder
from edge_agent.profile.textfile import render
from edge_agent.profile.timefmt import local

SENSORS = ["0001", "0004", "0003", "1004", "0002"]


def make_site(folder: Path, points: int, per_device: int = 200) -> Path:
    devices = []
    for d in range(max(1, points // per_device)):
        pts = [{"id": f"D{d}P{i}", "sensor": SENSORS[i % len(SENSORS)],
                "address": f"hr:{i}" if SENSORS[i % len(SENSORS)] != "1004" else f"co:{i}",
                "location": f"{d}号分站测点{i}", "alarm": {"high": 1.0, "high_clear": 0.9}}
               for i in range(min(per_device, points - d * per_device))]
        devices.append({"name": f"dev{d}", "driver": "modbus-tcp", "host": "127.0.0.1", "port": 502,
                        "points": pts})
    site = {"site": {"mine_code": "140211001234", "mine_name": "基准煤矿", "gateway": "gw-bench"},
            "devices": devices}
    path = folder / "bench-site.yaml"
    path.write_text(yaml.safe_dump(site, allow_unicode=True), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        site = load_site(make_site(Path(tmp), args.points))
    profile = load_profile(site.profile)
    catalog = Catalog(site, profile)
    enc = Encoder(site, catalog, profile)
    n = len(catalog)
    rnd = random.Random(1)
    now = time.time()
    values = array("d", (rnd.uniform(0, 2) for _ in range(n)))
    statuses = array("B", (rnd.choice((0, 0, 0, 1, 3, 16)) for _ in range(n)))
    times = array("d", (now - rnd.uniform(0, 5) for _ in range(n)))
    everything = range(n)

    def rate(fn, records: int) -> float:
        # CPU time of this process, not wall time: the figure means "per second of one core"
        # and holds on a machine shared with other work
        runs = []
        for _ in range(args.repeat):
            t0 = time.process_time()
            fn()
            runs.append(records / max(time.process_time() - t0, 1e-9))
        return statistics.median(runs)

    snapshot = rate(lambda: enc.cdss(everything, values, statuses, times, now), n)
    frames = [range(s, min(n, s + 200)) for s in range(0, n, 200)]
    framed = rate(lambda: [enc.cdss(f, values, statuses, times, now) for f in frames], n)
    body = enc.cdss(everything, values, statuses, times, now)
    env = rate(lambda: enc.envelope(1, "CDSS", now, body), 1)
    text = rate(lambda: render(profile, site, "CDSS", local(now, None), orjson.loads(body)), n)
    out = {"points": n, "cdss_snapshot_records_per_s": round(snapshot),
           "cdss_frames_of_200_records_per_s": round(framed), "envelopes_per_s_of_snapshot": round(env),
           "text_file_records_per_s": round(text), "body_bytes_per_record": round(len(body) / n, 1),
           "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:36} {v}")


if __name__ == "__main__":
    main()
