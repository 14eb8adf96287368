"""Benchmark of the baseline file: what the hourly refresh and a flush cost the agent's event loop.

    python bench/baseline.py [--json] [--points 1000] [--days 8]

`--points` points, each with both baseline rules of the README (1h against 7d,
24h against 7d), a real kernel and a real SQLite file in a temporary folder
with `--days` of hourly sums.  Measures (CPU of this thread, median of 5):
the hourly refresh (every baseline computed), a flush (the running hours'
sums and every point's state written), and the file's size per point.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.baseline import HOUR, BaselineStore  # noqa: E402
from edge_agent.filtering import Kernel  # noqa: E402
from edge_agent.filtering.rules import RuleSpec, Step  # noqa: E402
from edge_agent.frame import Frame  # noqa: E402

T0 = 1_796_083_200.0


class Point:
    def __init__(self, i: int):
        self.index, self.code = i, f"14021100123401MN0053{i:08d}"


class Catalog:
    """What the store reads of a catalogue: points with an index and a code."""

    def __init__(self, n: int):
        self.points = [Point(i) for i in range(n)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--days", type=int, default=8)
    a = ap.parse_args(argv)
    n = a.points
    steps = tuple(Step(lv, True, x, x) for lv, x in ((1, 30.0), (2, 50.0), (3, 80.0), (4, 100.0)))
    specs = (RuleSpec("baseline", steps, window=HOUR, against=7 * 86400.0),
             RuleSpec("baseline", steps, window=24 * HOUR, against=7 * 86400.0))
    kernel = Kernel(n, {"rules": [specs] * n})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "buffer.baseline.sqlite"
        store = BaselineStore.open(path, Catalog(n), kernel, T0)
        idx, q = array("i", range(n)), array("B", [0]) * n
        for h in range(a.days * 24):          # one sample per point and hour is enough for sums
            t = T0 + h * HOUR
            kernel.process(Frame(0, t, t, idx, array("d", [10.0 + h % 24] * n), q))
            store.write_hours(t + HOUR, partial=False)
        now = T0 + a.days * 24 * HOUR + 60
        refresh, flush = [], []
        for _ in range(5):
            c = time.process_time()
            store.refresh(now)
            refresh.append(time.process_time() - c)
            kernel.process(Frame(0, now, now, idx, array("d", [12.0] * n), q))
            c = time.process_time()
            store.flush(now)
            flush.append(time.process_time() - c)
        store.close(now)
        size = path.stat().st_size
    res = {"points": n, "days": a.days, "refresh_ms": round(statistics.median(refresh) * 1e3, 1),
           "flush_ms": round(statistics.median(flush) * 1e3, 1), "file_bytes_per_point": round(size / n)}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"baselines of {n} points ({a.days} days of hours): hourly refresh {res['refresh_ms']} ms, "
              f"flush {res['flush_ms']} ms, file {res['file_bytes_per_point']} bytes per point")
    return 0


if __name__ == "__main__":
    sys.exit(main())
