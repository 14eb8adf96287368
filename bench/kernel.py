"""Benchmark of the filtering kernel: compiled vs its pure-Python twin, in one run.

    python bench/kernel.py [--json] [--points 10000] [--frames 1000] [--pure-frames 40]

Frames of `--points` points (one device), realistic thresholds (CH4, CO, O2,
temperature, wind speed, switches; alarm, cut-off, pre-warning, deadband,
delay), values that drift around their levels with a few alarm excursions and
0.1 % NaN.  One frame = one second of wall time, so heartbeats, windows and
delays all fire.  Each frame is processed the way the pipeline does it:
`process`, `take_events`, `take_changes`, `take_stats` (and `take_level_changes`).
The pure twin runs `--pure-frames` frames (it is ~100x slower); rates are
point-updates per second, median of the repetitions.

The same site runs a second time with graded warning on every point: a
`levels:` ladder (blue..red around each signal's swing), a rate rule (over
60 s, per minute) and a baseline rule (over 120 s, against a baseline set
here), after WARMUP untimed frames so every window is full and every rule is
evaluated (`rules_updates_per_s`).
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
from edge_agent.filtering.rules import RuleSpec, Step  # noqa: E402
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
WARMUP = 120   # untimed frames before a run with rules: the baseline window (120 s) is full


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


def with_rules(cols, frames, n: int):
    """The same site, every point with a levels ladder, a rate rule and a baseline rule."""
    cols = dict(cols)
    rules, base = [], []
    for i in range(n):
        vals = [frames[f][i] for f in range(PERIOD) if frames[f][i] == frames[f][i]]
        lo, hi = min(vals), max(vals)
        mid, swing = (lo + hi) / 2, max((hi - lo) / 2, 1e-3)
        # above the normal swing, as a site sets them: the excursions (CH4) cross them, the rest rarely
        ladder = tuple(Step(lv, True, mid + swing * x, mid + swing * (x - 0.05), 2.0 if lv == 4 else 0.0)
                       for lv, x in ((1, 1.1), (2, 1.3), (3, 1.5), (4, 1.7)))
        rate = tuple(Step(lv, True, swing * x, swing * x * 0.9) for lv, x in ((1, 5.0), (2, 8.0), (4, 12.0)))
        increase = tuple(Step(lv, True, x, x - 5.0) for lv, x in ((1, 30.0), (2, 50.0), (3, 80.0), (4, 100.0)))
        rules.append((RuleSpec("level", ladder), RuleSpec("rate", rate, window=60.0, per=60.0, absolute=True),
                      RuleSpec("baseline", increase, window=120.0, against=7 * 86400.0)))
        base.append(max(mid, 1e-3))
    cols["rules"] = rules
    return cols, base


def run(kernel_cls, cols, values, n: int, frames: int, t0: float, base=None) -> float:
    k = kernel_cls(n, cols, realtime_every=20.0, stats_window=300.0)
    index, quality = array("i", range(n)), array("B", [0]) * n
    warm = 0
    if base is not None:
        for r, i, _ in k.ladder.baseline_rules():
            k.ladder.set_baseline(r, base[i])
        warm = WARMUP

    start = 0.0
    for f in range(warm + frames):
        if f == warm:
            start = time.process_time()   # CPU time of this one thread: the others on this box do not count
        wall = t0 + f
        k.process(Frame(0, wall, wall, index, values[f % PERIOD], quality))
        k.take_events()
        k.take_changes()
        k.take_level_changes()
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
    rcols, base = with_rules(cols, values, a.points)
    rfast = [run(Kernel, rcols, values, a.points, a.frames, t0, base) for _ in range(a.repeat)]
    rslow = [run(pure_cls, rcols, values, a.points, a.pure_frames, t0, base) for _ in range(max(1, a.repeat // 2))]
    res = {"compiled": COMPILED, "updates_per_s": round(statistics.median(fast)),
           "pure_updates_per_s": round(statistics.median(slow)),
           "ratio": round(statistics.median(fast) / statistics.median(slow), 1),
           "rules_updates_per_s": round(statistics.median(rfast)),
           "rules_pure_updates_per_s": round(statistics.median(rslow)),
           "rules_ratio": round(statistics.median(rfast) / statistics.median(rslow), 1),
           "points": a.points, "frames": a.frames, "pure_frames": a.pure_frames, "repeat": a.repeat}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"kernel ({'compiled' if COMPILED else 'NOT compiled: run setup.py build_ext --inplace'}): "
              f"{res['updates_per_s'] / 1e6:.1f}M point-updates/s; pure Python: "
              f"{res['pure_updates_per_s'] / 1e6:.3f}M/s; ratio {res['ratio']}x "
              f"({a.points} points x {a.frames} frames, pure {a.pure_frames} frames, median of {a.repeat}); "
              f"with levels, rate and baseline rules on every point: {res['rules_updates_per_s'] / 1e6:.1f}M/s, "
              f"pure {res['rules_pure_updates_per_s'] / 1e6:.3f}M/s, ratio {res['rules_ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
