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
INF = cython.declare(cython.double, math.inf)
NB = cython.declare(cython.const[cython.int], 4)          # buckets per window (rules.py)
RING = cython.declare(cython.const[cython.int], 23)       # doubles per windowed rule (rules.py)
HEAD = cython.declare(cython.const[cython.int], 11)       # ... of which the header (rules.py)
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
R_ABS = cython.declare(cython.const[cython.int], 8)
R_BUSY = cython.declare(cython.const[cython.int], 8)
S_LEGACY = cython.declare(cython.const[cython.int], 1 << 30)   # sel: the old ladder's machines changed
V_FRESH = cython.declare(cython.const[cython.int], 4)
HOUR = cython.declare(cython.double, 3600.0)
if (NB, RING, HEAD, F_ON, F_PEND, F_HIGH, NO_SRC, K_RATE, K_BASELINE, K_LEGACY, V_FRESH, R_ABS, R_BUSY, S_LEGACY) != (
        spec.NB, spec.RING, spec.HEAD, spec.F_ON, spec.F_PEND, spec.F_HIGH, spec.NO_SRC, spec.K_RATE, spec.K_BASELINE,
        spec.K_LEGACY, spec.V_FRESH, spec.R_ABS, spec.R_BUSY, spec.S_LEGACY):
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
    return o + HEAD + 3 * (cython.cast(cython.longlong, bucket) & (NB - 1))     # NB is a power of two


@cython.cfunc
@cython.exceptval(check=False)
@cython.nogil
def _rate_band(ring: cython.double[::1], o: cython.Py_ssize_t, t: cython.double, lo: cython.double,
               hi: cython.double, absolute: cython.int) -> cython.int:
    """The values that keep a quiet rate rule quiet for the rest of the bucket that starts at t.

    The rate is (v - vref) * per / dt and dt only grows within a bucket (up to the
    window), so the band of v from the smallest (or largest) dt holds for every
    later sample; a little narrower for rounding.  NaN (no band) when the rate is
    not yet defined at t or the ladder is not one the band can describe.
    """
    vref: cython.double = ring[o + 2]
    per: cython.double = ring[o + 8]
    dt: cython.double = t - ring[o + 1]
    window: cython.double = NB * ring[o + 7]
    slack: cython.double = 1e-12 * (1.0 + abs(vref))
    ring[o + 9] = NAN
    ring[o + 10] = NAN
    if not (dt >= 0.5 * window):
        return 0
    if absolute:
        if hi > 0 and lo == -INF:
            ring[o + 9] = vref - hi * dt / per * (1.0 - 1e-9) + slack
            ring[o + 10] = vref + hi * dt / per * (1.0 - 1e-9) - slack
        return 0
    ring[o + 9] = vref + lo * (dt if lo < 0 else window) / per * (1.0 - 1e-9 if lo < 0 else 1.0 + 1e-9) + slack
    ring[o + 10] = vref + hi * (dt if hi > 0 else window) / per * (1.0 - 1e-9 if hi > 0 else 1.0 + 1e-9) - slack
    return 0


@cython.cfunc
@cython.exceptval(check=False)
@cython.nogil
def _new_bucket(ring: cython.double[::1], o: cython.Py_ssize_t, t: cython.double) -> cython.int:
    """Start the bucket of time t in the ring at `o`: the header's bucket and its end, the slot's id."""
    w: cython.double = ring[o + 7]
    bucket: cython.double = _floor(t / w)
    ring[o] = (bucket + 1.0) * w
    ring[o + 4] = bucket
    ring[_slot(o, bucket)] = bucket
    return 0


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
    _rkind: cython.schar[::1]        # per rule: its kind (rules.KINDS) | R_ABS
    _ms: cython.int[::1]
    _ro: cython.int[::1]
    _rband: cython.double[::1]
    _mth: cython.double[::1]
    _mdly: cython.double[::1]
    _lg_lev: cython.uchar[::1]
    _lg_mach: cython.schar[::1]
    _level: cython.uchar[::1]
    _src: cython.int[::1]
    _lvf: cython.uchar[::1]          # per point: V_LEGACY | V_RULES | V_FRESH (rules.py)
    _rf: cython.uchar[::1]           # per rule: its level | R_BUSY (a machine waits out its delay)
    _rq: cython.double[::1]
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
        self._rs, self._hp, self._rkind = a["rs"], a["hp"], a["rkind"]
        self._ms, self._ro, self._rband = a["ms"], a["ro"], a["rband"]
        self._mth, self._mdly, self._lg_lev, self._lg_mach = a["mth"], a["mdly"], a["lg_lev"], a["lg_mach"]
        r, k = self.n_rules, len(a["mdly"])
        self.level = array("B", [0]) * n
        self._level = self.level
        self._src = array("i", [NO_SRC]) * max(n, 1)
        self._lvf = self.lvf
        self._rf = array("B", [0]) * max(r, 1)
        self._rq = zeros(max(r, 1), math.nan)
        self.baseline = zeros(r, math.nan)
        self._mflag = array("B", a["mflag"]) if k else array("B", [0])
        self._mpend = zeros(max(k, 1), math.nan)
        self._ring = a["ring"] if len(a["ring"]) else zeros(1, math.nan)
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
        ms: cython.int[::1] = self._ms
        ro: cython.int[::1] = self._ro
        rband: cython.double[::1] = self._rband
        mth: cython.double[::1] = self._mth
        mdly: cython.double[::1] = self._mdly
        lg_lev: cython.uchar[::1] = self._lg_lev
        lg_mach: cython.schar[::1] = self._lg_mach
        level: cython.uchar[::1] = self._level
        src: cython.int[::1] = self._src
        lvf: cython.uchar[::1] = self._lvf
        rf: cython.uchar[::1] = self._rf
        rq: cython.double[::1] = self._rq
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
        lo: cython.double
        hi: cython.double
        dt: cython.double
        cnt: cython.double
        quiet: cython.bint
        changed: cython.bint
        s: cython.Py_ssize_t
        j: cython.Py_ssize_t
        i: cython.Py_ssize_t
        r: cython.Py_ssize_t
        k: cython.Py_ssize_t
        kind: cython.int
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
        want: cython.double
        thr: cython.double
        val: cython.double
        with cython.nogil:
            for s in range(n):
                j = sl[s]
                if j < 0:          # a fault sample: rules hold their levels, a pending delay restarts
                    i = idx[-1 - j]
                    for r in range(rs[i], rs[i + 1]):
                        if rf[r] & R_BUSY:
                            for k in range(ms[r], ms[r + 1]):
                                mflag[k] &= ~F_PEND
                            rf[r] &= ~R_BUSY
                    continue
                changed = (j & S_LEGACY) != 0
                j &= ~S_LEGACY
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
                    kind = rkind[r] & 7
                    quiet = rf[r] == 0
                    lo = rband[2 * r]
                    hi = rband[2 * r + 1]
                    if kind == K_RATE:
                        o = ro[r]
                        if t >= ring[o]:        # a new bucket: its first sample; the window's reference
                            _new_bucket(ring, o, t)
                            a = _slot(o, ring[o + 4])
                            ring[a + 1] = t
                            ring[a + 2] = v
                            for back in range(NB - 1, -1, -1):
                                want = ring[o + 4] - back
                                b = _slot(o, want)
                                if ring[b] == want:
                                    ring[o + 1] = ring[b + 1]
                                    ring[o + 2] = ring[b + 2]
                                    break
                            _rate_band(ring, o, t, lo, hi, rkind[r] & R_ABS)
                        if quiet and ring[o + 9] < v and v < ring[o + 10]:   # quiet for this whole bucket
                            continue
                        dt = t - ring[o + 1]
                        if not (dt >= 0.5 * NB * ring[o + 7]):   # the reference is under half a window old
                            continue                            # (or none): undefined, the rule holds
                        q = (v - ring[o + 2]) * ring[o + 8]
                        if rkind[r] & R_ABS and q < 0:
                            q = -q
                        if quiet and lo * dt < q and q < hi * dt:   # the band, without dividing
                            continue
                        q = q / dt
                    elif kind == K_BASELINE:
                        o = ro[r]
                        if t >= ring[o]:        # a new bucket: the sums of the earlier ones still in the window
                            if ring[o + 4] == ring[o + 4]:
                                a = _slot(o, ring[o + 4])
                                ring[a + 1] = ring[o + 5]
                                ring[a + 2] = ring[o + 6]
                            _new_bucket(ring, o, t)
                            ring[o + 1] = 0.0
                            ring[o + 2] = 0.0
                            ring[o + 3] = ring[o + 4]
                            ring[o + 5] = 0.0
                            ring[o + 6] = 0.0
                            for back in range(1, NB):
                                want = ring[o + 4] - back
                                b = _slot(o, want)
                                if ring[b] == want:
                                    ring[o + 1] += ring[b + 1]
                                    ring[o + 2] += ring[b + 2]
                                    ring[o + 3] = want
                        ring[o + 5] += v
                        ring[o + 6] += 1.0
                        if not (ring[o + 4] - ring[o + 3] >= NB // 2):   # under half a window of buckets
                            continue
                        cnt = ring[o + 2] + ring[o + 6]
                        q = (ring[o + 1] + ring[o + 5]) * ring[o + 8]    # NaN without a baseline
                        if quiet and (lo + 100.0) * cnt < q and q < (hi + 100.0) * cnt:
                            continue
                        q = q / cnt - 100.0
                        if not (q == q):
                            continue
                    else:
                        q = v
                        if quiet and lo < q and q < hi:
                            continue
                    rq[r] = q
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
                            busy = R_BUSY
                    if (lev | busy) != rf[r]:
                        if lev != (rf[r] & 7):
                            changed = True
                        rf[r] = lev | busy
                # the point's level: the highest of its old-ladder machines and its rules (only a
                # change of one of those can change it)
                if not changed and not (lvf[i] & V_FRESH):
                    continue
                bits = latch[i] & 63
                if lvf[i] & V_FRESH:   # restored after a restart: a machine waiting out its delay still counts
                    if (latch[i] >> 9) & 63:
                        bits |= (latch[i] >> 9) & 63
                    else:
                        lvf[i] &= ~V_FRESH
                lev = lg_lev[bits]
                hold = -1 - lg_mach[bits] if lev > 0 else NO_SRC
                for r in range(rs[i], rs[i + 1]):
                    if (rf[r] & 7) > lev:
                        lev = rf[r] & 7
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
                        lc[b + 3] = rkind[cause] & 7
                    elif cause != NO_SRC or rs[i] == rs[i + 1]:   # a seeded level without rules: the old ladder
                        lc[b + 3] = K_LEGACY
                    else:
                        lc[b + 3] = rkind[rs[i]] & 7
                    lc[b + 4] = thr
                    lc[b + 5] = val
                    lc[b + 6] = t
                    lc_n += 1
                    level[i] = lev
                if lev > 0 and src[i] != hold:
                    src[i] = hold
        self._lc_n, self._hr_n = lc_n, hr_n

    def take_level_changes(self):
        """Drain the level changes since the last call, in the order they happened."""
        if self._lc_n == 0:        # the usual frame: nothing changed
            return []
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
        if self._ro[rule] >= 0 and self._rkind[rule] & 7 == K_BASELINE:
            self._ring[self._ro[rule] + 8] = 100.0 / v if v > 0 else math.nan

    # ------------------------------------------------------------------ carrying state

    def point_state(self, i):
        """(signature, array('d')) of point i: what `restore_point` needs to continue from here."""
        o: cython.Py_ssize_t
        x: cython.Py_ssize_t
        src = self._src[i]
        out = array("d", [self._level[i], src - self._rs[i] if src >= 0 else src])
        for r in range(self._rs[i], self._rs[i + 1]):
            out.append(self._rf[r] & 7)
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
            self._rf[r] = int(state[p])
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
