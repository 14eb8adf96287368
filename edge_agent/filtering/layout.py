"""How the kernel lays a site's thresholds out in flat arrays (plain Python, run once per Kernel).

`prepare(n, thresholds)` normalises `Catalog.thresholds()` into the arrays the
per-frame loop reads, so the loop never meets a missing level or a degenerate
range: a missing clear level becomes the entry level, a missing deadband or
delay becomes 0, a range with high <= low counts as not configured.
"""
from __future__ import annotations

import math
import mmap
from array import array

from edge_agent import codes

# state machines, in order: (entry column, clear column); even = high side, odd = low side
# (edge_agent/codes.py).  Pre-warnings have no clear level: they clear where they enter.
MACHINES = tuple((m.enter, m.clear) for m in codes.MACHINES)
# keys of Catalog.thresholds() that are not one value per point (the graded-warning pass reads them)
NOT_COLUMNS = ("rules", "legacy_levels")
TH = 2 * len(MACHINES)     # per point in `th`: (entry, clear) per machine
LIM = 4                    # per point in `lim`: fault below, fault above, quiet band low, quiet band high
FAR = 1.0                  # a value beyond the range by more than FAR x its span is a sensor fault
BIG = 1.7976931348623157e308


def zeros(n: int, fill: float = 0.0) -> array:
    return array("d", [fill]) * n


def untouched_zeros(n: int) -> memoryview:
    """n doubles of 0.0 in anonymous memory the kernel maps only as they are written: a state array
    that stays mostly zero (the open-event accumulators, 63 doubles per point: 25 MB at 50,000 points)
    then costs RSS only for the pages of the points that had an event.  Indexable and writable like
    an array('d') (a memoryview of format 'd')."""
    return memoryview(mmap.mmap(-1, 8 * max(n, 1))).cast("d")


def grown(arr: array, used: int, need: int) -> array:
    """A larger copy of a log array (never resized in place: a memoryview may hold it)."""
    if len(arr) >= need:
        return arr
    new = zeros(max(need, 2 * len(arr)))
    new[:used] = arr[:used]
    return new


def prepare(n: int, thresholds: dict) -> dict[str, array]:
    """The kernel's read-only per-point arrays: th, cfg (bit m: machine m configured), rlo, rhi, lim,
    db, dly, kind.  Raises ValueError when a column's length is not n."""
    for name, column in thresholds.items():
        if name not in NOT_COLUMNS and len(column) != n:
            raise ValueError(f"thresholds[{name!r}] has {len(column)} entries for {n} points")
    nan = math.nan
    col = thresholds.get
    th, cfg = zeros(TH * n), array("i", [0]) * n
    for m, (enter_name, clear_name) in enumerate(MACHINES):
        enter, clear = col(enter_name), col(clear_name)
        if enter is None:
            continue
        for i in [i for i, e in enumerate(enter) if e == e]:     # the points with this level (most have none)
            e = float(enter[i])
            c = float(clear[i]) if clear is not None else nan
            th[TH * i + 2 * m] = e
            th[TH * i + 2 * m + 1] = c if c == c else e
            cfg[i] |= 1 << m
    rlo = array("d", col("range_low", zeros(n, nan)))
    rhi = array("d", col("range_high", zeros(n, nan)))
    lim = zeros(LIM * n)
    inf = math.inf
    for i in range(n):
        lo, hi = rlo[i], rhi[i]
        if hi > lo:
            lim[LIM * i] = max(lo - FAR * (hi - lo), -BIG)
            lim[LIM * i + 1] = min(hi + FAR * (hi - lo), BIG)
        else:                 # no usable range: no over-range; only a non-finite value is a fault
            rlo[i] = rhi[i] = nan
            lim[LIM * i], lim[LIM * i + 1] = -BIG, BIG
        # quiet band: strictly between every low entry and every high entry, no machine can enter,
        # so the loop skips the machines of a point at rest there
        on = cfg[i]
        if not on:
            lim[LIM * i + 2], lim[LIM * i + 3] = -inf, inf
            continue
        highs = [th[TH * i + 2 * m] for m in (0, 2, 4) if on & (1 << m)]
        lows = [th[TH * i + 2 * m] for m in (1, 3, 5) if on & (1 << m)]
        lim[LIM * i + 2] = max(lows) if lows else -inf
        lim[LIM * i + 3] = min(highs) if highs else inf
    return {
        "th": th, "cfg": cfg, "rlo": rlo, "rhi": rhi, "lim": lim,
        "db": array("d", [d if d == d and d > 0 else 0.0 for d in col("deadband", zeros(n))]),
        "dly": array("d", [d if d == d and d > 0 else 0.0 for d in col("delay", zeros(n))]),
        "kind": array("b", col("kind", array("b", [0]) * n)),
    }
