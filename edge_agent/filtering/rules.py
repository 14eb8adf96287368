"""What the kernel's graded-warning rules are made of, and how they are laid out in flat arrays.

Plain Python, run once per Kernel.  A point has any number of rules
(`RuleSpec`); each rule turns a sample into a quantity and compares it
against its `Step`s: one hysteresis state machine per level and side.

    level     the sample itself (a point's `levels:`)
    ratio     the sample, against steps that are a design value times a factor
    rate      the change over the last `window`, per `per` seconds (e.g. m/h)
    baseline  the mean over the last `window`, in % above a baseline the
              agent refreshes from hourly aggregates (edge_agent/baseline.py)

`prepare(n, rules, legacy, cfg)` returns the read-only arrays of the
compiled pass (ladder.py); `RuleSpec.signature()` says when two rules can
share state (a reload, a restart).
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from edge_agent.codes import MACHINES

KINDS = ("level", "rate", "baseline", "ratio")      # rule code = position; LevelChange.rule names
RULE_NAMES = KINDS + ("legacy",)                     # 4: the old ladder (warn/alarm/cut-off)
K_LEVEL, K_RATE, K_BASELINE, K_RATIO, K_LEGACY = range(5)
NB = 4                    # buckets per rate/baseline window (a power of two)
# per windowed rule, a ring: a header of HEAD doubles, then (bucket id, a, b) per bucket; a/b are the
# first sample (t, v) of the bucket for a rate, the sum and count of its samples for a baseline
#   0 end of the bucket now   1, 2 rate: the reference (t, v); baseline: sum, count of the earlier buckets
#   3 oldest bucket in the window (baseline)   4 the bucket now   5, 6 its sum, count (baseline)
#   7 bucket width   8 rate: seconds per unit of rate; baseline: 100 / baseline (NaN: none)
#   9, 10 rate: the values that keep the rule quiet for the rest of the bucket (ladder._rate_band)
HEAD = 11
RING = HEAD + 3 * NB
MARGIN = 1e-9             # the quiet band is this much (relative) inside the entry levels
F_ON, F_PEND, F_HIGH = 1, 2, 4    # machine flags; the level sits in bits 4..6
R_ABS = 8                 # rule kind flag: compare |rate|
R_BUSY = 8                # rule state flag beside its level: a machine waits out its delay
S_LEGACY = 1 << 30        # a sample in the kernel's list to the pass: its old-ladder machines changed
V_LEGACY, V_RULES, V_FRESH = 1, 2, 4   # per point: old thresholds mapped to levels; rules; restored level
NO_SRC = -100             # no rule holds a level (nothing yet, or state that could not be carried)
LEGACY_MASK = (1 << len(MACHINES)) - 1


@dataclass(frozen=True, slots=True)
class Step:
    """One level of one side of a rule: enters at `enter`, stays until beyond `clear`."""
    level: int        # 1 blue .. 4 red
    high: bool        # True: enters at q >= enter, stays while q >= clear; False: mirrored
    enter: float
    clear: float
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class RuleSpec:
    kind: str                   # one of KINDS
    steps: tuple[Step, ...]
    window: float = 0.0         # rate, baseline: seconds
    per: float = 1.0            # rate: the rate is per this many seconds
    against: float = 0.0        # baseline: seconds of history it compares with
    absolute: bool = False      # rate: compare |rate| (either direction)

    def signature(self) -> tuple:
        """What must match for a rule's state to carry over: kind, windows, the levels and sides."""
        return (self.kind, self.window, self.per, self.against, self.absolute,
                tuple((s.level, s.high) for s in self.steps))


def signature(specs) -> str:
    return repr(tuple(s.signature() for s in specs))


def legacy_tables(levels: tuple[int, ...]) -> tuple[array, array]:
    """For each combination of the old ladder's machine bits: the level it maps to and the machine
    that sets it (the first of the most severe)."""
    lev, mach = array("B", [0]) * (LEGACY_MASK + 1), array("b", [0]) * (LEGACY_MASK + 1)
    for bits in range(LEGACY_MASK + 1):
        for m in range(len(MACHINES)):
            if bits >> m & 1 and levels[m] > lev[bits]:
                lev[bits], mach[bits] = levels[m], m
    return lev, mach


def prepare(n: int, rules, legacy: tuple[int, ...], cfg) -> dict:
    """The compiled pass's read-only arrays.  `rules`: per point a sequence of RuleSpec (or None:
    no rules anywhere); `legacy`: the level of each old-ladder machine; `cfg`: the kernel's per-point
    bit m = machine m configured.  Raises ValueError when `rules` does not have n entries."""
    rules = list(rules) if rules is not None else [()] * n
    if len(rules) != n:
        raise ValueError(f"thresholds['rules'] has {len(rules)} entries for {n} points")
    if len(legacy) != len(MACHINES) or any(not 0 <= lv <= 4 for lv in legacy):
        raise ValueError(f"thresholds['legacy_levels'] must give a level 0..4 for each of {len(MACHINES)} machines")
    mapped = sum(1 << m for m, lv in enumerate(legacy) if lv > 0)
    rs, hp, lvf = array("i", [0]) * (n + 1), array("i", [-1]) * n, array("B", [0]) * n
    rkind, ms, ro = array("b"), array("i", [0]), array("i")
    ring, rband = array("d"), array("d")
    mth, mdly, mflag = array("d"), array("d"), array("B")
    hours = 0
    for i, specs in enumerate(rules):
        for spec in specs:
            kind = KINDS.index(spec.kind)
            rkind.append(kind | (R_ABS if spec.absolute else 0))
            windowed = kind in (K_RATE, K_BASELINE)
            ro.append(len(ring) if windowed else -1)
            if windowed:
                head = [-math.inf, math.nan, math.nan, math.nan, math.nan, 0.0, 0.0, spec.window / NB,
                        spec.per if kind == K_RATE else math.nan, math.nan, math.nan]
                ring.extend(head + [math.nan] * (RING - HEAD))
            if kind == K_BASELINE and hp[i] < 0:
                hp[i], hours = hours, hours + 1
            highs, lows = [math.inf], [-math.inf]
            for st in sorted(spec.steps, key=lambda s: (s.level, not s.high)):
                mth.extend((st.enter, st.clear if st.clear == st.clear else st.enter))
                mdly.append(st.delay if st.delay > 0 else 0.0)
                mflag.append((F_HIGH if st.high else 0) | st.level << 4)
                (highs if st.high else lows).append(st.enter)
            # quiet band: strictly between every low entry and every high entry no machine can enter;
            # a margin inside them, so a band checked without dividing never skips a machine that enters
            lo, hi = max(lows), min(highs)
            rband.extend((lo + MARGIN * max(abs(lo), 1.0) if math.isfinite(lo) else lo,
                          hi - MARGIN * max(abs(hi), 1.0) if math.isfinite(hi) else hi))
            ms.append(len(mdly))
        rs[i + 1] = len(rkind)
        lvf[i] = (V_RULES if rs[i + 1] > rs[i] else 0) | (V_LEGACY if int(cfg[i]) & mapped else 0)
    lg_lev, lg_mach = legacy_tables(tuple(legacy))
    return {"rs": rs, "hp": hp, "lvf": lvf, "rkind": rkind, "ms": ms, "ro": ro, "ring": ring,
            "rband": rband, "mth": mth, "mdly": mdly, "mflag": mflag, "hours": hours,
            "lg_lev": lg_lev, "lg_mach": lg_mach, "specs": rules}
