"""The kernel's graded-warning pass: levels, rate, baseline and ratio rules (compiled like kernel.py).

`Kernel.process` runs its own per-sample loop first and lists the samples of
points that have graded levels; `Ladder.run` then walks that list once.  Per
rule it computes the rule's quantity, runs one hysteresis machine per level
and side (delay both ways, as the old ladder), and the point's level is the
highest of its rules and of its old-ladder machines (mapped by the profile).
A change of that level goes to a flat log that `take_level_changes` turns
into `LevelChange`s.  Windows are NB buckets per rule, never samples; a
baseline point also keeps the running hour's sum and count, drained by
`take_hours` into SQLite (edge_agent/baseline.py), which writes the
baselines back with `set_baseline` once an hour.  Rules are tabled in README.md.
"""
import math
from array import array

try:
    import cython
except ImportError:  # an install without Cython runs this file as plain Python
    from edge_agent.filtering import _cython_shim as cython

from edge_agent.filtering import rules as spec
from edge_agent.filtering.layout import grown, zeros
from edge_agent.filtering.records import LevelChange

COMPILED = cython.compiled

NAN = cython.declare(cython.double, math.nan)
NB = cython.declare(cython.const[cython.int], 4)          # buckets per window (rules.py)
RING = cython.declare(cython.const[cython.int], 17)       # doubles per windowed rule (rules.py)
TH = cython.declare(cython.const[cython.int], 12)         # the kernel's th row (layout.py)
LCW = cython.declare(cython.const[cython.int], 7)         # level log row: point level previous rule thr value time
HRW = cython.declare(cython.const[cython.int], 4)         # hour log row: point hour sum count
F_ON = cython.declare(cython.const[cython.int], 1)
F_PEND = cython.declare(cython.const[cython.int], 2)
F_HIGH = cython.declare(cython.const[cython.int], 4)
NO_SRC = cython.declare(cython.const[cython.int], -100)
K_RATE = cython.declare(cython.const[cython.int], 1)
K_BASELINE = cython.declare(cython.const[cython.int], 2)
K_LEGACY = cython.declare(cython.const[cython.int], 4)
V_FRESH = cython.declare(cython.const[cython.int], 4)
HOUR = cython.declare(cython.double, 3600.0)
if (NB, RING, F_ON, F_PEND, F_HIGH, NO_SRC, K_RATE, K_BASELINE, K_LEGACY, V_FRESH) != (
        spec.NB, spec.RING, spec.F_ON, spec.F_PEND, spec.F_HIGH, spec.NO_SRC, spec.K_RATE, spec.K_BASELINE,
        spec.K_LEGACY, spec.V_FRESH):
    raise ImportError("edge_agent.filtering: ladder.py and rules.py disagree on the layout")


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
@cython.nogil
def _floor(x: cython.double) -> cython.double:
    # kernel.py's, again: two compiled modules share no C function without a .pxd
    k: cython.longlong = cython.cast(cython.longlong, x)
    if k > x:
        k -= 1
    return k


@cython.cfunc
@cython.exceptval(check=False)
@cython.nogil
def _emit_hour(log: cython.double[::1], pos: cython.Py_ssize_t, hacc: cython.double[::1], a: cython.Py_ssize_t,
               point: cython.int) -> cython.Py_ssize_t:
    """Log the hour accumulator at hacc[a] (hour, sum, count) of `point`; zero its sum and count."""
    b: cython.Py_ssize_t = pos * HRW
    log[b] = point
    log[b + 1] = hacc[a]
    log[b + 2] = hacc[a + 1]
    log[b + 3] = hacc[a + 2]
    hacc[a + 1] = 0.0
    hacc[a + 2] = 0.0
    return pos + 1


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
@cython.nogil
def _slot(o: cython.Py_ssize_t, bucket: cython.double) -> cython.Py_ssize_t:
    """Where bucket `bucket` of the ring at `o` lives: (id, a, b) at the returned offset."""
    return o + 5 + 3 * cython.cast(cython.Py_ssize_t, bucket - _floor(bucket / NB) * NB)


@cython.cclass
class Ladder:
    """Graded-warning state of one site: per point its level, per rule its machines and windows.

    `level` (array('B')) is each point's current level; `baseline` (array('d'),
    per rule, NaN unless a baseline rule) what `set_baseline` wrote.  Made by
    the Kernel from `thresholds["rules"]` and `thresholds["legacy_levels"]`.
    """
    level = cython.declare(object, visibility="readonly")
    baseline = cython.declare(object, visibility="readonly")
    n_points = cython.declare(cython.int, visibility="readonly")
    n_rules = cython.declare(cython.int, visibility="readonly")
    specs = cython.declare(object, visibility="readonly")
    lvf = cython.declare(object, visibility="readonly")
    _rs: cython.int[::1]
    _hp: cython.int[::1]
    _rkind: cython.schar[::1]
    _rabs: cython.uchar[::1]
    _ms: cython.int[::1]
    _ro: cython.int[::1]
    _rw: cython.double[::1]
    _rper: cython.double[::1]
    _rband: cython.double[::1]
    _mth: cython.double[::1]
    _mdly: cython.double[::1]
    _lg_lev: cython.uchar[::1]
    _lg_mach: cython.schar[::1]
    _level: cython.uchar[::1]
    _src: cython.int[::1]
    _lvf: cython.uchar[::1]          # per point: V_LEGACY | V_RULES | V_FRESH (rules.py)
    _rlev: cython.uchar[::1]
    _rbusy: cython.uchar[::1]
    _rq: cython.double[::1]
    _binv: cython.double[::1]
    _mflag: cython.uchar[::1]
    _mpend: cython.double[::1]
    _ring: cython.double[::1]
    _hacc: cython.double[::1]
    _latch: cython.int[::1]
    _th: cython.double[::1]
    _lc_arr = cython.declare(object)
    _lc: cython.double[::1]
    _lc_n: cython.Py_ssize_t
    _hr_arr = cython.declare(object)
    _hr: cython.double[::1]
    _hr_n: cython.Py_ssize_t

    def __init__(self, n_points, thresholds, cfg):
        from edge_agent.codes import legacy_levels
        n = int(n_points)
        a = spec.prepare(n, thresholds.get("rules"), tuple(thresholds.get("legacy_levels") or legacy_levels()), cfg)
        self.n_points, self.n_rules, self.specs, self.lvf = n, len(a["rkind"]), a["specs"], a["lvf"]
        self._rs, self._hp, self._rkind, self._rabs = a["rs"], a["hp"], a["rkind"], a["rabs"]
        self._ms, self._ro, self._rw, self._rper, self._rband = a["ms"], a["ro"], a["rw"], a["rper"], a["rband"]
        self._mth, self._mdly, self._lg_lev, self._lg_mach = a["mth"], a["mdly"], a["lg_lev"], a["lg_mach"]
        r, k = self.n_rules, len(a["mdly"])
        self.level = array("B", [0]) * n
        self._level = self.level
        self._src = array("i", [NO_SRC]) * max(n, 1)
        self._lvf = self.lvf
        self._rlev = array("B", [0]) * max(r, 1)
        self._rbusy = array("B", [0]) * max(r, 1)
        self._rq = zeros(max(r, 1), math.nan)
        self.baseline = zeros(r, math.nan)
        self._binv = zeros(max(r, 1), math.nan)
        self._mflag = array("B", a["mflag"]) if k else array("B", [0])
        self._mpend = zeros(max(k, 1), math.nan)
        self._ring = zeros(max(a["ring_n"], 1), math.nan)
        self._hacc = zeros(max(3 * a["hours"], 1), math.nan)
        self._lc_arr, self._hr_arr = zeros(0), zeros(0)
        self._lc, self._hr = self._lc_arr, self._hr_arr
        self._lc_n = self._hr_n = 0

    def attach(self, latch, th):
        """The kernel's latch and threshold arrays (read here for the old ladder's levels)."""
        self._latch, self._th = latch, th

    def run(self, index, values, sel, count, wall):
        """Apply the samples sel[:count] of one frame (j: valid sample j; -1-j: a fault sample j)."""
        n: cython.Py_ssize_t = count
        if n <= 0:
            return
        self._lc_arr = grown(self._lc_arr, self._lc_n * LCW, (self._lc_n + n) * LCW)
        self._hr_arr = grown(self._hr_arr, self._hr_n * HRW, (self._hr_n + n) * HRW)
        self._lc, self._hr = self._lc_arr, self._hr_arr
        idx: cython.int[::1] = index
        vals: cython.double[::1] = values
        sl: cython.int[::1] = sel
        rs: cython.int[::1] = self._rs
        hp: cython.int[::1] = self._hp
        rkind: cython.schar[::1] = self._rkind
        rabs: cython.uchar[::1] = self._rabs
        ms: cython.int[::1] = self._ms
        ro: cython.int[::1] = self._ro
        rw: cython.double[::1] = self._rw
        rper: cython.double[::1] = self._rper
        rband: cython.double[::1] = self._rband
        mth: cython.double[::1] = self._mth
        mdly: cython.double[::1] = self._mdly
        lg_lev: cython.uchar[::1] = self._lg_lev
        lg_mach: cython.schar[::1] = self._lg_mach
        level: cython.uchar[::1] = self._level
        src: cython.int[::1] = self._src
        lvf: cython.uchar[::1] = self._lvf
        rlev: cython.uchar[::1] = self._rlev
        rbusy: cython.uchar[::1] = self._rbusy
        rq: cython.double[::1] = self._rq
        binv: cython.double[::1] = self._binv
        mflag: cython.uchar[::1] = self._mflag
        mpend: cython.double[::1] = self._mpend
        ring: cython.double[::1] = self._ring
        hacc: cython.double[::1] = self._hacc
        latch: cython.int[::1] = self._latch
        th: cython.double[::1] = self._th
        lc: cython.double[::1] = self._lc
        hr: cython.double[::1] = self._hr
        lc_n: cython.Py_ssize_t = self._lc_n
        hr_n: cython.Py_ssize_t = self._hr_n
        t: cython.double = wall
        hour: cython.double = _floor(t / HOUR)
        last_w: cython.double = NAN            # bucket ids of this frame, for the last width seen
        bid: cython.double = NAN
        s: cython.Py_ssize_t
        j: cython.Py_ssize_t
        i: cython.int
        r: cython.int
        k: cython.int
        f: cython.int
        on: cython.int
        tgt: cython.int
        lev: cython.int
        hold: cython.int
        prev: cython.int
        cause: cython.int
        busy: cython.int
        bits: cython.int
        o: cython.Py_ssize_t
        a: cython.Py_ssize_t
        b: cython.Py_ssize_t
        back: cython.int
        v: cython.double
        q: cython.double
        w: cython.double
        want: cython.double
        thr: cython.double
        val: cython.double
        with cython.nogil:
            for s in range(n):
                j = sl[s]
                if j < 0:          # a fault sample: rules hold their levels, a pending delay restarts
                    i = idx[-1 - j]
                    for r in range(rs[i], rs[i + 1]):
                        if rbusy[r]:
                            for k in range(ms[r], ms[r + 1]):
                                mflag[k] &= ~F_PEND
                            rbusy[r] = 0
                    continue
                i = idx[j]
                v = vals[j]
                if hp[i] >= 0:     # the running hour's sum and count, for the baselines
                    a = 3 * hp[i]
                    if hacc[a] != hour:
                        if hacc[a + 2] > 0:
                            hr_n = _emit_hour(hr, hr_n, hacc, a, i)
                        hacc[a] = hour
                        hacc[a + 1] = 0.0
                        hacc[a + 2] = 0.0
                    hacc[a + 1] += v
                    hacc[a + 2] += 1.0
                for r in range(rs[i], rs[i + 1]):
                    q = v
                    if rkind[r] == K_RATE or rkind[r] == K_BASELINE:
                        w = rw[r]
                        if w != last_w:
                            last_w = w
                            bid = _floor(t / w)
                        o = ro[r]
                        if ring[o] != bid:          # a new bucket: start it, cache what the window needs
                            a = _slot(o, bid)
                            ring[a] = bid
                            ring[o] = bid
                            ring[o + 4] = a
                            if rkind[r] == K_RATE:  # first sample of the oldest bucket still in the window
                                ring[a + 1] = t
                                ring[a + 2] = v
                                for back in range(NB - 1, -1, -1):
                                    want = bid - back
                                    b = _slot(o, want)
                                    if ring[b] == want:
                                        ring[o + 1] = ring[b + 1]
                                        ring[o + 2] = ring[b + 2]
                                        break
                            else:                   # sums of the earlier buckets still in the window
                                ring[a + 1] = 0.0
                                ring[a + 2] = 0.0
                                ring[o + 1] = 0.0
                                ring[o + 2] = 0.0
                                ring[o + 3] = bid
                                for back in range(1, NB):
                                    want = bid - back
                                    b = _slot(o, want)
                                    if ring[b] == want:
                                        ring[o + 1] += ring[b + 1]
                                        ring[o + 2] += ring[b + 2]
                                        ring[o + 3] = want
                        if rkind[r] == K_RATE:
                            # defined once the reference is at least half a window old
                            if t - ring[o + 1] >= 0.5 * NB * rw[r]:
                                q = (v - ring[o + 2]) / (t - ring[o + 1]) * rper[r]
                                if rabs[r] and q < 0:
                                    q = -q
                            else:
                                q = NAN
                        else:
                            a = cython.cast(cython.Py_ssize_t, ring[o + 4])
                            ring[a + 1] += v
                            ring[a + 2] += 1.0
                            # defined once the buckets span half the window, and with a baseline > 0
                            if bid - ring[o + 3] >= NB // 2:
                                q = (ring[o + 1] + ring[a + 1]) / (ring[o + 2] + ring[a + 2]) * binv[r] - 100.0
                            else:
                                q = NAN
                    rq[r] = q
                    if not (q == q):       # undefined: the rule holds its level
                        continue
                    if rlev[r] == 0 and not rbusy[r] and rband[2 * r] < q and q < rband[2 * r + 1]:
                        continue
                    lev = 0
                    busy = 0
                    for k in range(ms[r], ms[r + 1]):
                        f = mflag[k]
                        on = f & F_ON
                        if f & F_HIGH:
                            tgt = q >= mth[2 * k + 1] if on else q >= mth[2 * k]
                        else:
                            tgt = q <= mth[2 * k + 1] if on else q <= mth[2 * k]
                        if tgt == on:
                            f &= ~F_PEND
                        elif mdly[k] > 0.0:
                            if not (f & F_PEND):
                                mpend[k] = t
                                f |= F_PEND
                            if t - mpend[k] >= mdly[k]:
                                f ^= F_ON
                                f &= ~F_PEND
                        else:
                            f ^= F_ON
                        mflag[k] = f
                        if f & F_ON and (f >> 4) > lev:
                            lev = f >> 4
                        if f & F_PEND:
                            busy = 1
                    rlev[r] = lev
                    rbusy[r] = busy
                # the point's level: the highest of its old-ladder machines and its rules
                bits = latch[i] & 63
                if lvf[i] & V_FRESH:   # restored after a restart: a machine waiting out its delay still counts
                    if (latch[i] >> 9) & 63:
                        bits |= (latch[i] >> 9) & 63
                    else:
                        lvf[i] &= ~V_FRESH
                lev = lg_lev[bits]
                hold = -1 - lg_mach[bits] if lev > 0 else NO_SRC
                for r in range(rs[i], rs[i + 1]):
                    if rlev[r] > lev:
                        lev = rlev[r]
                        hold = r
                prev = level[i]
                if lev != prev:
                    cause = hold if lev > prev else src[i]
                    thr = NAN
                    val = v
                    if cause >= 0:
                        val = rq[cause]
                        for k in range(ms[cause], ms[cause + 1]):
                            if (mflag[k] >> 4) == (lev if lev > prev else prev) and \
                                    ((mflag[k] & F_ON) != 0) == (lev > prev):
                                thr = mth[2 * k] if lev > prev else mth[2 * k + 1]
                                break
                    elif cause != NO_SRC:
                        thr = th[TH * i + 2 * (-1 - cause) + (0 if lev > prev else 1)]
                    b = lc_n * LCW
                    lc[b] = i
                    lc[b + 1] = lev
                    lc[b + 2] = prev
                    if cause >= 0:
                        lc[b + 3] = rkind[cause]
                    elif cause != NO_SRC or rs[i] == rs[i + 1]:   # a seeded level without rules: the old ladder
                        lc[b + 3] = K_LEGACY
                    else:
                        lc[b + 3] = rkind[rs[i]]
                    lc[b + 4] = thr
                    lc[b + 5] = val
                    lc[b + 6] = t
                    lc_n += 1
                    level[i] = lev
                if lev > 0:
                    src[i] = hold
        self._lc_n, self._hr_n = lc_n, hr_n

    def take_level_changes(self):
        """Drain the level changes since the last call, in the order they happened."""
        log: cython.double[::1] = self._lc
        names = spec.RULE_NAMES
        r: cython.Py_ssize_t
        b: cython.Py_ssize_t
        out = []
        for r in range(self._lc_n):
            b = r * LCW
            out.append(LevelChange(cython.cast(cython.int, log[b]), cython.cast(cython.int, log[b + 1]),
                                   cython.cast(cython.int, log[b + 2]), names[cython.cast(cython.int, log[b + 3])],
                                   log[b + 4], log[b + 5], log[b + 6]))
        self._lc_n = 0
        return out

    def take_hours(self, now_wall, partial=False):
        """Drain the hourly sums: [(point, hour start, sum, count)], in the order they closed.

        Hours that ended at or before `now_wall` close here; with `partial`, the
        running hours are handed out too and restart from zero (the next call adds to them).
        """
        self._hr_arr = grown(self._hr_arr, self._hr_n * HRW, (self._hr_n + self.n_points) * HRW)
        self._hr = self._hr_arr
        log: cython.double[::1] = self._hr
        hacc: cython.double[::1] = self._hacc
        hp: cython.int[::1] = self._hp
        n: cython.Py_ssize_t = self._hr_n
        i: cython.Py_ssize_t
        a: cython.Py_ssize_t
        b: cython.Py_ssize_t
        now: cython.double = now_wall
        ended: cython.bint
        for i in range(self.n_points):
            a = 3 * hp[i]
            if a < 0 or not (hacc[a + 2] > 0):
                continue
            ended = (hacc[a] + 1.0) * HOUR <= now
            if ended or partial:
                n = _emit_hour(log, n, hacc, a, i)
                if ended:
                    hacc[a] = NAN
        out = [(cython.cast(cython.int, log[b * HRW]), log[b * HRW + 1] * HOUR, log[b * HRW + 2],
                cython.cast(cython.longlong, log[b * HRW + 3])) for b in range(n)]
        self._hr_n = 0
        return out

    def baseline_rules(self):
        """[(rule index, point, RuleSpec)] of every baseline rule, in rule order."""
        out = []
        r = 0
        for i, specs in enumerate(self.specs):
            for sp in specs:
                if sp.kind == "baseline":
                    out.append((r, i, sp))
                r += 1
        return out

    def set_baseline(self, rule, value):
        """The baseline of baseline rule `rule` (NaN, or <= 0: the rule cannot be evaluated and holds)."""
        v = float(value)
        self.baseline[rule] = v
        self._binv[rule] = 100.0 / v if v > 0 else math.nan

    # ------------------------------------------------------------------ carrying state

    def point_state(self, i):
        """(signature, array('d')) of point i: what `restore_point` needs to continue from here."""
        o: cython.Py_ssize_t
        x: cython.Py_ssize_t
        src = self._src[i]
        out = array("d", [self._level[i], src - self._rs[i] if src >= 0 else src])
        for r in range(self._rs[i], self._rs[i + 1]):
            out.append(self._rlev[r])
            out.append(self.baseline[r])
            for k in range(self._ms[r], self._ms[r + 1]):
                out.append(self._mflag[k] & F_ON)
            o = self._ro[r]
            if o >= 0:
                for x in range(RING):
                    out.append(self._ring[o + x])
        if self._hp[i] >= 0:
            for x in range(3):
                out.append(self._hacc[3 * self._hp[i] + x])
        return spec.signature(self.specs[i]), out

    def restore_point(self, i, signature, state, fresh=False):
        """Continue point i from `point_state()` of another Ladder (a reload) or a saved one (`fresh`: a
        restart).  A different signature restores only the point's level.  Pending delays restart."""
        o: cython.Py_ssize_t
        x: cython.Py_ssize_t
        self._level[i] = int(state[0])
        if fresh and state[0] > 0:
            self._lvf[i] |= V_FRESH
        else:
            self._lvf[i] &= ~V_FRESH
        if signature != spec.signature(self.specs[i]) or len(state) != len(self.point_state(i)[1]):
            self._src[i] = NO_SRC
            return False
        src = int(state[1])
        self._src[i] = src + self._rs[i] if src >= 0 else src
        p = 2
        for r in range(self._rs[i], self._rs[i + 1]):
            self._rlev[r] = int(state[p])
            self._rbusy[r] = 0
            self.set_baseline(r, state[p + 1])
            p += 2
            for k in range(self._ms[r], self._ms[r + 1]):
                self._mflag[k] = (self._mflag[k] & ~(F_ON | F_PEND)) | (F_ON if state[p] else 0)
                p += 1
            o = self._ro[r]
            if o >= 0:
                for x in range(RING):
                    self._ring[o + x] = state[p + x]
                p += RING
        if self._hp[i] >= 0:
            for x in range(3):
                self._hacc[3 * self._hp[i] + x] = state[p + x]
        return True

    def seed_level(self, i, level):
        """Start point i at `level` (an alarm still open from before a restart): its first valid sample
        re-evaluates it, so a condition that went away meanwhile ends with a change to the level found,
        while a condition that holds (or waits out an old-ladder delay) makes no new change."""
        self._level[i] = int(level)
        self._src[i] = NO_SRC
        if level > 0:
            self._lvf[i] |= V_FRESH

    def carry_over(self, old, old_index_of_new):
        """Continue every point from `old` (a Ladder): point i from old point old_index_of_new[i]
        (None or < 0: a new point, fresh state)."""
        for i, j in enumerate(old_index_of_new):
            if j is not None and j >= 0:
                sig, state = old.point_state(j)
                self.restore_point(i, sig, state)
