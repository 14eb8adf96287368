"""Benchmark of the filtering kernel: compiled vs its pure-Python twin, in one run.

    python bench/kernel.py [--json] [--points 10000] [--frames 1000] [--pure-frames 40]

Frames of `--points` points (one device), realistic thresholds (CH4, CO, O2,
temperature, wind speed, switches; alarm, cut-off, pre-warning, deadband,
delay), values that drift around their levels with a few alarm excursions and
0.1 % NaN.  One frame = one second of wall time, so heartbeats, windows and
delays all fire.  Each frame is processed the way the pipeline does it:
`process`, `take_events`, `take_changes`, `take_stats`.  The pure twin runs
`--pure-frames` frames (it is ~100x slower); rates are point-updates per
second, median of the repetitions.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.filtering import COMPILED, Kernel, load_pure  # noqa: E402
from edge_agent.frame import Frame  # noqa: E402

NAN = math.nan
COLUMNS = ("range_low", "range_high", "alarm_high", "alarm_high_clear", "alarm_low", "alarm_low_clear",
           "cutoff_high", "cutoff_restore", "cutoff_low", "cutoff_low_restore", "warn_high", "warn_low",
           "deadband", "delay")
# sensor: (share, level, swing, thresholds...)
SENSORS = [
    ("CH4", 0.40, 0.35, 0.25, dict(range_low=0, range_high=4, alarm_high=1.0, alarm_high_clear=0.9,
                                   cutoff_high=1.5, cutoff_restore=1.0, warn_high=0.8, deadband=0.02)),
    ("CO", 0.15, 8.0, 6.0, dict(range_low=0, range_high=500, alarm_high=24, alarm_high_clear=20,
                                 deadband=1.0, delay=5)),
    ("O2", 0.15, 20.4, 0.8, dict(range_low=0, range_high=25, alarm_low=18.5, alarm_low_clear=19.0,
                                  warn_low=19.5, deadband=0.1)),
    ("T", 0.15, 24.0, 3.0, dict(range_low=0, range_high=40, alarm_high=30, alarm_high_clear=29,
                                 deadband=0.2)),
    ("WIND", 0.10, 2.0, 0.6, dict(range_low=0, range_high=15, alarm_low=0.3, alarm_low_clear=0.5,
                                   deadband=0.05)),
    ("SWITCH", 0.05, 0.0, 0.0, dict(range_low=0, range_high=1)),
]
PERIOD = 100   # distinct value frames, cycled; the signals are periodic so the cycle has no jump


def site(n: int, seed: int = 7):
    rnd = random.Random(seed)
    cols = {c: array("d", [NAN]) * n for c in COLUMNS}
    kind = array("b", [0]) * n
    frames = [array("d", [0.0]) * n for _ in range(PERIOD)]
    for i in range(n):
        r, acc = rnd.random(), 0.0
        for name, share, level, swing, th in SENSORS:
            acc += share
            if r < acc:
                break
        for c, v in th.items():
            cols[c][i] = v
        phase, noise = rnd.uniform(0, 2 * math.pi), swing * 0.05
        for f in range(PERIOD):
            if name == "SWITCH":
                kind[i] = 1
                v = 1.0 if (f + i) % 50 < 25 else 0.0
            else:
                v = level + swing * math.sin(2 * math.pi * f / PERIOD + phase) + rnd.gauss(0, noise)
                if name == "CH4" and rnd.random() < 0.002:
                    v = 1.7                                   # a short excursion past cut-off
            frames[f][i] = NAN if rnd.random() < 0.001 else v
    cols["kind"] = kind
    return cols, frames


def run(kernel_cls, cols, values, n: int, frames: int, t0: float) -> float:
    k = kernel_cls(n, cols, realtime_every=20.0, stats_window=300.0)
    index, quality = array("i", range(n)), array("B", [0]) * n
    start = time.process_time()   # CPU time of this one thread: the others on this box do not count
    for f in range(frames):
        wall = t0 + f
        k.process(Frame(0, wall, wall, index, values[f % PERIOD], quality))
        k.take_events()
        k.take_changes()
        k.take_stats(wall)
    return n * frames / (time.process_time() - start)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--frames", type=int, default=1_000)
    ap.add_argument("--pure-frames", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    cols, values = site(a.points)
    t0 = 1_796_000_100.0     # on a 5-minute window boundary
    fast = [run(Kernel, cols, values, a.points, a.frames, t0) for _ in range(a.repeat)]
    pure_cls = load_pure().Kernel
    slow = [run(pure_cls, cols, values, a.points, a.pure_frames, t0) for _ in range(max(1, a.repeat // 2))]
    res = {"compiled": COMPILED, "updates_per_s": round(statistics.median(fast)),
           "pure_updates_per_s": round(statistics.median(slow)),
           "ratio": round(statistics.median(fast) / statistics.median(slow), 1),
           "points": a.points, "frames": a.frames, "pure_frames": a.pure_frames, "repeat": a.repeat}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"kernel ({'compiled' if COMPILED else 'NOT compiled: run setup.py build_ext --inplace'}): "
              f"{res['updates_per_s'] / 1e6:.1f}M point-updates/s; pure Python: "
              f"{res['pure_updates_per_s'] / 1e6:.3f}M/s; ratio {res['ratio']}x "
              f"({a.points} points x {a.frames} frames, pure {a.pure_frames} frames, median of {a.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
