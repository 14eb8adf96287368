"""The threshold-filtering kernel: one source, compiled by Cython or run as plain Python.

Per sample of a point it decides the status bits, whether to report the
point now, which anomalies open or close, and feeds the per-window statistics.
State is a structure of arrays indexed by the global point index (Catalog);
the per-frame loop touches no Python object per point, runs without the GIL
when compiled, and writes events/statistics into flat logs that `take_*`
turns into objects.  Points with graded levels (`levels:`, `rules:`, or old
thresholds the profile maps onto levels) then go through the graded-warning
pass (ladder.py).  The rules are tabled in README.md in this folder.
"""
import math
from array import array

try:
    import cython
except ImportError:  # an install without Cython runs this file as plain Python
    from edge_agent.filtering import _cython_shim as cython

from edge_agent import codes
from edge_agent.filtering import layout
from edge_agent.filtering.layout import grown, untouched_zeros, zeros
from edge_agent.filtering.records import SLOTS, Change, Event, Stat

COMPILED = cython.compiled
if cython.compiled:
    from edge_agent.filtering import ladder as _ladder      # the compiled pass beside the compiled kernel
else:
    from edge_agent.filtering._twins import pure_ladder
    _ladder = pure_ladder()

NAN = cython.declare(cython.double, math.nan)
NM = cython.declare(cython.const[cython.int], 6)          # machines: alarm, cut-off, warn; high/low
TH = cython.declare(cython.const[cython.int], 12)         # per point in th (layout.py)
LIM = cython.declare(cython.const[cython.int], 4)         # per point in lim (layout.py)
NS = cython.declare(cython.const[cython.int], 9)          # event slots: machines, range, faults
ACC = cython.declare(cython.const[cython.int], 7)         # open event: start max max_t min min_t sum n
WIN = cython.declare(cython.const[cython.int], 8)         # window: start max max_t min min_t sum n delta
EVW = cython.declare(cython.const[cython.int], 11)        # event log row (see _emit_event)
STW = cython.declare(cython.const[cython.int], 10)        # stat log row (see _emit_stat)
CHW = cython.declare(cython.const[cython.int], 4)         # change log row: point time old new
B_RANGE = cython.declare(cython.const[cython.int], 64)    # latch bits: 1<<slot (edge_agent/codes.py)
B_FAULT = cython.declare(cython.const[cython.int], 128)
B_SUB = cython.declare(cython.const[cython.int], 256)
SLOT_BITS = cython.declare(cython.const[cython.int], 511)
PEND = cython.declare(cython.const[cython.int], 512)      # PEND << m: machine m waits out its delay
PEND_BITS = cython.declare(cython.const[cython.int], 63 * 512)
MACHINE_BITS = cython.declare(cython.const[cython.int], 63 | 63 * 512)
L_ALARM = cython.declare(cython.const[cython.int], 3)     # latch bits of the alarm machines -> status 1
L_CUTOFF = cython.declare(cython.const[cython.int], 12)   # ... of the cut-off machines -> status 2
ST_ALARM = cython.declare(cython.const[cython.int], 1)    # status bits (PROFILE.md, edge_agent/codes.py)
ST_CUTOFF = cython.declare(cython.const[cython.int], 2)
ST_OVER_RANGE = cython.declare(cython.const[cython.int], 8)
ST_SUBSTATION = cython.declare(cython.const[cython.int], 16)
ST_SENSOR = cython.declare(cython.const[cython.int], 128)
V_EVERY = cython.declare(cython.const[cython.int], 6)     # ladder flags: every sample goes to the pass (rules.py)
S_LEGACY = cython.declare(cython.const[cython.int], 1 << 30)   # ... and its old-ladder machines changed

Q_SUBSTATION = cython.declare(cython.const[cython.int], 16)  # Frame.quality bits
Q_SENSOR = cython.declare(cython.const[cython.int], 128)
if (TH, LIM) != (layout.TH, layout.LIM):      # compile-time constants here, so check they agree
    raise ImportError("edge_agent.filtering: kernel.py and layout.py disagree on the array layout")
_MINE = {"NM": NM, "NS": NS, "B_RANGE": B_RANGE, "B_FAULT": B_FAULT, "B_SUB": B_SUB, "L_ALARM": L_ALARM,
         "L_CUTOFF": L_CUTOFF, "ST_ALARM": ST_ALARM, "ST_CUTOFF": ST_CUTOFF, "ST_OVER_RANGE": ST_OVER_RANGE,
         "ST_SUBSTATION": ST_SUBSTATION, "ST_SENSOR": ST_SENSOR, "Q_SUBSTATION": Q_SUBSTATION,
         "Q_SENSOR": Q_SENSOR}
if _MINE != codes.kernel_constants() or SLOT_BITS != (1 << NS) - 1 or PEND != 1 << NS or \
        V_EVERY != _ladder.spec.V_RULES | _ladder.spec.V_FRESH or S_LEGACY != _ladder.spec.S_LEGACY:
    raise ImportError("edge_agent.filtering: kernel.py's constants disagree with edge_agent/codes.py: "
                      f"{_MINE} vs {codes.kernel_constants()}")


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
@cython.nogil
def _target(on: cython.bint, high: cython.bint, v: cython.double, enter: cython.double,
            clear: cython.double) -> cython.bint:
    """Hysteresis: a high machine enters at v >= enter and stays while v >= clear (low: mirrored)."""
    if high:
        return v >= clear if on else v >= enter
    return v <= clear if on else v <= enter


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
@cython.nogil
def _floor(x: cython.double) -> cython.double:
    k: cython.longlong = cython.cast(cython.longlong, x)
    if k > x:
        k -= 1
    return k


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
@cython.nogil
def _acc_add(acc: cython.double[::1], a: cython.Py_ssize_t, v: cython.double, t: cython.double) -> cython.int:
    """Add a valid sample to the min/max/avg accumulator starting at acc[a] (start max ... sum n)."""
    if acc[a + 6] == 0 or v > acc[a + 1]:
        acc[a + 1] = v
        acc[a + 2] = t
    if acc[a + 6] == 0 or v < acc[a + 3]:
        acc[a + 3] = v
        acc[a + 4] = t
    acc[a + 5] += v
    acc[a + 6] += 1
    return 0


@cython.cfunc
@cython.exceptval(check=False)
@cython.nogil
def _emit_event(log: cython.double[::1], pos: cython.Py_ssize_t, acc: cython.double[::1], a: cython.Py_ssize_t,
                point: cython.int, slot: cython.int, begin: cython.int, t: cython.double,
                value: cython.double) -> cython.Py_ssize_t:
    b: cython.Py_ssize_t = pos * EVW
    log[b] = point
    log[b + 1] = slot
    log[b + 2] = begin
    log[b + 3] = acc[a]
    log[b + 4] = t
    log[b + 5] = value
    log[b + 6] = acc[a + 1]
    log[b + 7] = acc[a + 2]
    log[b + 8] = acc[a + 3]
    log[b + 9] = acc[a + 4]
    log[b + 10] = acc[a + 5] / acc[a + 6] if acc[a + 6] > 0 else NAN
    return pos + 1


@cython.cfunc
@cython.exceptval(check=False)
@cython.nogil
def _emit_stat(log: cython.double[::1], pos: cython.Py_ssize_t, win: cython.double[::1], w: cython.Py_ssize_t,
               point: cython.int, width: cython.double) -> cython.Py_ssize_t:
    b: cython.Py_ssize_t = pos * STW
    log[b] = point
    log[b + 1] = win[w]
    log[b + 2] = win[w] + width
    log[b + 3] = win[w + 1]
    log[b + 4] = win[w + 2]
    log[b + 5] = win[w + 3]
    log[b + 6] = win[w + 4]
    log[b + 7] = win[w + 5] / win[w + 6]
    log[b + 8] = win[w + 6]
    log[b + 9] = win[w + 7]
    win[w] = NAN
    return pos + 1


@cython.cclass
class Kernel:
    """Per-point state machines for one site; `process(frame)` once per frame, in frame order.

    `value`, `status`, `time` are arrays indexed by global point index: the last
    valid value (NaN if none yet; faults keep it), the PROFILE.md status bits, and
    the wall time of the last accepted sample (NaN if none).  `rejected` counts
    point samples older than the point's last accepted one (dropped, state untouched).
    `level` (array('B')) is each point's graded-warning level (edge_agent.codes.LEVELS);
    `ladder` the graded-warning pass (baselines, hourly sums, carrying state).
    Frame arrays must be array('i') / array('d') / array('B') (the compiled twin
    reads their buffers).  Not thread-safe: one caller (the agent's event loop).
    """
    value = cython.declare(object, visibility="readonly")
    status = cython.declare(object, visibility="readonly")
    time = cython.declare(object, visibility="readonly")
    rejected = cython.declare(cython.longlong, visibility="readonly")
    invalid = cython.declare(cython.longlong, visibility="readonly")
    n_points = cython.declare(cython.int, visibility="readonly")
    realtime_every = cython.declare(cython.double, visibility="readonly")
    stats_window = cython.declare(cython.double, visibility="readonly")
    level = cython.declare(object, visibility="readonly")
    ladder = cython.declare(object, visibility="readonly")
    _lvf: cython.uchar[::1]          # the point has graded levels: its samples go to the ladder pass
    _sel_arr = cython.declare(object)
    _sel: cython.int[::1]            # this frame's samples for the ladder (j valid, -1-j fault)
    _th: cython.double[::1]          # per point TH: (entry, clear) per machine (layout.py)
    _rlo: cython.double[::1]
    _rhi: cython.double[::1]
    _lim: cython.double[::1]         # per point LIM: fault below, fault above, quiet band low, high
    _db: cython.double[::1]
    _dly: cython.double[::1]
    _kind: cython.schar[::1]
    _cfg: cython.int[::1]
    _value: cython.double[::1]
    _time: cython.double[::1]
    _status: cython.uchar[::1]
    _latch: cython.int[::1]
    _pend: cython.double[::1]        # per point NM: since when the machine's target differs (if PEND bit)
    _rep_v: cython.double[::1]
    _rep_t: cython.double[::1]
    _acc: cython.double[::1]         # per point NS x ACC
    _win: cython.double[::1]         # per point WIN
    _done: cython.double[::1]        # end of the last window take_stats closed: older samples skip stats
    _cum: cython.double[::1]         # cumulative points: last valid value
    _oldest: cython.double           # no open window starts before this: take_stats may skip its scan
    _out_arr = cython.declare(object)
    _out: cython.int[::1]
    _ev_arr = cython.declare(object)
    _ev: cython.double[::1]
    _ev_n: cython.Py_ssize_t
    _st_arr = cython.declare(object)
    _st: cython.double[::1]
    _st_n: cython.Py_ssize_t
    _ch_arr = cython.declare(object)
    _ch: cython.double[::1]
    _ch_n: cython.Py_ssize_t

    def __init__(self, n_points, thresholds, realtime_every=20.0, stats_window=300.0):
        n = int(n_points)
        if not realtime_every > 0 or not stats_window > 0:
            raise ValueError("realtime_every and stats_window must be > 0 seconds")
        arrays = layout.prepare(n, thresholds)
        self._th, self._cfg, self._rlo, self._rhi = arrays["th"], arrays["cfg"], arrays["rlo"], arrays["rhi"]
        self._lim, self._db, self._dly, self._kind = arrays["lim"], arrays["db"], arrays["dly"], arrays["kind"]
        self.n_points = n
        self.realtime_every = float(realtime_every)
        self.stats_window = float(stats_window)
        self.rejected = 0
        self.invalid = 0
        nan = math.nan
        self.value = zeros(n, nan)
        self.time = zeros(n, nan)
        self.status = array("B", [0]) * n
        self._value, self._time, self._status = self.value, self.time, self.status
        self._latch = array("i", [0]) * n
        self._pend = zeros(NM * n, nan)
        self._rep_v = zeros(n, nan)
        self._rep_t = zeros(n, nan)
        self._acc = untouched_zeros(NS * ACC * n)     # written only while a point has an event open
        self._win = zeros(WIN * n, nan)
        self._done = zeros(n, -math.inf)
        self._cum = zeros(n, nan)
        self._oldest = math.inf
        self._out_arr = array("i", [0]) * max(n, 1)
        self._out = self._out_arr
        self._ev_arr, self._st_arr, self._ch_arr = zeros(0), zeros(0), zeros(0)
        self._ev, self._st, self._ch = self._ev_arr, self._st_arr, self._ch_arr
        self._ev_n = self._st_n = self._ch_n = 0
        self._sel_arr = array("i", [0]) * max(n, 1)
        self._sel = self._sel_arr
        self._set_ladder(_ladder.Ladder(n, thresholds, arrays["cfg"]))

    def _set_ladder(self, ladder):
        ladder.attach(self._latch, self._th)
        self.ladder, self.level, self._lvf = ladder, ladder.level, ladder.lvf

    def set_thresholds(self, thresholds):
        """Replace every point's levels, range, deadband, delay and kind (a reload).

        Same points in the same order (n unchanged); per-point state, open events
        and statistics windows are kept, so a new level applies from the next sample.  Graded-warning
        state is kept for every point whose rules kept their kinds, windows and levels (a pending
        delay restarts).
        """
        arrays = layout.prepare(self.n_points, thresholds)
        self._th, self._cfg, self._rlo, self._rhi = arrays["th"], arrays["cfg"], arrays["rlo"], arrays["rhi"]
        self._lim, self._db, self._dly, self._kind = arrays["lim"], arrays["db"], arrays["dly"], arrays["kind"]
        ladder = _ladder.Ladder(self.n_points, thresholds, arrays["cfg"])
        ladder.carry_over(self.ladder, range(self.n_points))
        self._set_ladder(ladder)

    def carry_over(self, old, old_index_of_new):
        """Take over the state of the points `old` (a Kernel of the previous configuration) had.

        `old_index_of_new[i]` is new point i's index in `old`, or -1 for a point that starts
        fresh.  Every per-point state array is copied: last value, time and status, open events
        and their accumulators, pending delays, what was last reported (deadband, heartbeat),
        and, when `stats_window` is unchanged, the open statistics windows and the windows
        closed but not yet taken; and the graded-warning pass's state of each point
        (`Ladder.carry_over`).  An alarm whose level the new configuration no longer has ends
        (its end event is taken with the next frame's, at the point's last sample time).
        Call it on a new kernel, before its first frame.
        """
        o: Kernel = old
        src: cython.int[::1] = array("i", old_index_of_new)
        inv = array("i", [-1]) * max(o.n_points, 1)
        windows: cython.bint = self.stats_window == o.stats_window
        i: cython.Py_ssize_t
        j: cython.Py_ssize_t
        k: cython.Py_ssize_t
        gone: cython.int
        for i in range(self.n_points):
            j = src[i]
            if j < 0:
                continue
            inv[j] = i
            self._value[i], self._time[i], self._status[i] = o._value[j], o._time[j], o._status[j]
            self._latch[i], self._rep_v[i], self._rep_t[i], self._cum[i] = o._latch[j], o._rep_v[j], o._rep_t[j], \
                o._cum[j]
            for k in range(NM):
                self._pend[NM * i + k] = o._pend[NM * j + k]
            for k in range(NS * ACC):
                if o._acc[NS * ACC * j + k] != 0.0:      # pages of points without events stay untouched
                    self._acc[NS * ACC * i + k] = o._acc[NS * ACC * j + k]
            if windows:
                self._done[i] = o._done[j]
                for k in range(WIN):
                    self._win[WIN * i + k] = o._win[WIN * j + k]
            gone = self._latch[i] & 63 & ~self._cfg[i]     # on, but its level is not configured any more
            if gone:
                self._end_machines(i, gone)
        if windows:
            self._oldest = min(self._oldest, o._oldest)
            self._st_arr = grown(self._st_arr, self._st_n * STW, (self._st_n + o._st_n) * STW)
            self._st = self._st_arr
            for k in range(o._st_n):
                i = inv[cython.cast(cython.int, o._st[k * STW])]
                if i >= 0:
                    for j in range(STW):
                        self._st[self._st_n * STW + j] = o._st[k * STW + j]
                    self._st[self._st_n * STW] = i
                    self._st_n += 1
        self.ladder.carry_over(o.ladder, old_index_of_new)      # graded levels, baselines, pending rules
        self.rejected += o.rejected
        self.invalid += o.invalid

    def end_alarms(self, points):
        """End every open alarm of these points (their end events are taken with the next
        `take_events`, at each point's last sample time) and clear them: for the points a reload
        removes, whose alarms would otherwise never end.  Call it on the replaced kernel."""
        idx: cython.int[::1] = array("i", points)
        r: cython.Py_ssize_t
        for r in range(len(idx)):
            if self._latch[idx[r]] & 63:
                self._end_machines(idx[r], self._latch[idx[r]] & 63)

    def _end_machines(self, i, on):
        """Emit the end events of point i's machines in `on` (latch bits), at its last sample, and
        switch them off (the point's alarm and cut-off status bits follow what stays on)."""
        k: cython.int
        self._ev_arr = grown(self._ev_arr, self._ev_n * EVW, (self._ev_n + NM) * EVW)
        self._ev = self._ev_arr
        for k in range(NM):
            if (on >> k) & 1:
                self._ev_n = _emit_event(self._ev, self._ev_n, self._acc, (NS * i + k) * ACC, i, k, 0,
                                         self._time[i], self._value[i])
        self._latch[i] &= ~(on | on * PEND)
        self._status[i] &= ~(ST_ALARM | ST_CUTOFF)
        self._status[i] |= (ST_ALARM if self._latch[i] & L_ALARM else 0) | \
            (ST_CUTOFF if self._latch[i] & L_CUTOFF else 0)

    def _reserve(self, n):
        """Room for the worst case of n samples: every slot flips, one window and one change each."""
        if len(self._out_arr) < n:
            self._out_arr = array("i", [0]) * n
            self._out = self._out_arr
            self._sel_arr = array("i", [0]) * n
            self._sel = self._sel_arr
        self._ev_arr = grown(self._ev_arr, self._ev_n * EVW, (self._ev_n + NS * n) * EVW)
        self._st_arr = grown(self._st_arr, self._st_n * STW, (self._st_n + n + self.n_points) * STW)
        self._ch_arr = grown(self._ch_arr, self._ch_n * CHW, (self._ch_n + n) * CHW)
        self._ev, self._st, self._ch = self._ev_arr, self._st_arr, self._ch_arr

    def process(self, frame):
        """Apply one frame; return array('i') of the global indices to report now, in frame order.

        A point is reported when its status changed, when its valid value moved by more
        than its deadband since it was last reported, or when `realtime_every` passed
        since it was last reported (heartbeat, sample time).
        """
        n: cython.Py_ssize_t = len(frame.index)
        t: cython.double = frame.wall
        if n == 0:
            return array("i")
        if not (t - t == 0.0):   # NaN or infinite clock: nothing can be ordered against it
            self.rejected += n
            return array("i")
        self._reserve(n)
        idx: cython.int[::1] = frame.index
        vals: cython.double[::1] = frame.values
        qual: cython.uchar[::1] = frame.quality
        th: cython.double[::1] = self._th
        rlo: cython.double[::1] = self._rlo
        rhi: cython.double[::1] = self._rhi
        lim: cython.double[::1] = self._lim
        db: cython.double[::1] = self._db
        dly: cython.double[::1] = self._dly
        kind: cython.schar[::1] = self._kind
        cfg: cython.int[::1] = self._cfg
        value: cython.double[::1] = self._value
        ptime: cython.double[::1] = self._time
        status: cython.uchar[::1] = self._status
        latch: cython.int[::1] = self._latch
        pend: cython.double[::1] = self._pend
        rep_v: cython.double[::1] = self._rep_v
        rep_t: cython.double[::1] = self._rep_t
        acc: cython.double[::1] = self._acc
        win: cython.double[::1] = self._win
        done: cython.double[::1] = self._done
        cum: cython.double[::1] = self._cum
        out: cython.int[::1] = self._out
        lvf: cython.uchar[::1] = self._lvf
        sel: cython.int[::1] = self._sel
        ns: cython.Py_ssize_t = 0
        evlog: cython.double[::1] = self._ev
        stlog: cython.double[::1] = self._st
        chlog: cython.double[::1] = self._ch
        ev_n: cython.Py_ssize_t = self._ev_n
        st_n: cython.Py_ssize_t = self._st_n
        ch_n: cython.Py_ssize_t = self._ch_n
        npts: cython.int = self.n_points
        every: cython.double = self.realtime_every
        width: cython.double = self.stats_window
        ws: cython.double = _floor(t / width) * width    # the window this frame falls in
        opened: cython.bint = False
        rejected: cython.longlong = 0
        invalid: cython.longlong = 0
        count: cython.Py_ssize_t = 0
        j: cython.Py_ssize_t
        i: cython.int
        m: cython.int
        s: cython.int
        q: cython.int
        c: cython.int
        old: cython.int
        new: cython.int
        moved: cython.int
        st: cython.int
        a: cython.Py_ssize_t
        k: cython.Py_ssize_t
        v: cython.double
        p: cython.double
        d: cython.double
        prev: cython.double
        valid: cython.bint
        on: cython.bint
        with cython.nogil:
            for j in range(n):
                i = idx[j]
                if i < 0 or i >= npts:
                    invalid += 1
                    continue
                if t < ptime[i]:
                    rejected += 1
                    continue
                ptime[i] = t
                v = vals[j]
                q = qual[j]
                c = cfg[i]
                old = latch[i]
                prev = value[i]
                valid = False
                if q & Q_SUBSTATION:
                    new = (old | B_SUB) & ~PEND_BITS     # a delay needs the condition to hold on valid samples
                elif (q & Q_SENSOR) or not (lim[LIM * i] <= v and v <= lim[LIM * i + 1]):   # NaN fails too
                    new = ((old & ~B_SUB) | B_FAULT) & ~PEND_BITS
                else:
                    valid = True
                    new = old & ~(B_SUB | B_FAULT)
                    value[i] = v
                    if (new & MACHINE_BITS) or not (lim[LIM * i + 2] < v and v < lim[LIM * i + 3]):
                        for m in range(NM):
                            if c & (1 << m):
                                on = (new >> m) & 1
                                if _target(on, m % 2 == 0, v, th[TH * i + 2 * m], th[TH * i + 2 * m + 1]) == on:
                                    new &= ~(PEND << m)
                                elif dly[i] > 0.0:
                                    k = NM * i + m
                                    if not (new & (PEND << m)):
                                        pend[k] = t
                                        new |= PEND << m
                                    if t - pend[k] >= dly[i]:
                                        new ^= 1 << m
                                        new &= ~(PEND << m)
                                else:
                                    new ^= 1 << m
                    if v > rhi[i] or v < rlo[i]:      # NaN range (not configured): never
                        new |= B_RANGE
                    else:
                        new &= ~B_RANGE
                latch[i] = new
                # events: open, close, and feed the open ones
                if (old | new) & SLOT_BITS:
                    moved = (old ^ new) & SLOT_BITS
                    for s in range(NS):
                        if not ((old | new) >> s) & 1:
                            continue
                        a = (NS * i + s) * ACC
                        if (moved >> s) & 1 and (new >> s) & 1:
                            acc[a] = t
                            acc[a + 5] = 0.0
                            acc[a + 6] = 0.0
                            acc[a + 1] = acc[a + 2] = acc[a + 3] = acc[a + 4] = NAN
                        if valid and (new >> s) & 1:
                            _acc_add(acc, a, v, t)
                        if (moved >> s) & 1:
                            ev_n = _emit_event(evlog, ev_n, acc, a, i, s, (new >> s) & 1, t, value[i])
                # graded levels: every sample of a point with rules (or a restored level), and a point
                # whose old thresholds map onto levels when one of its machines changed
                if lvf[i] and ((lvf[i] & V_EVERY) or (valid and (old ^ new) & 63)):
                    if not valid:
                        sel[ns] = -1 - j
                    elif (old ^ new) & 63:
                        sel[ns] = j | S_LEGACY
                    else:
                        sel[ns] = j
                    ns += 1
                st = 0
                if new & L_ALARM:
                    st |= ST_ALARM
                if new & L_CUTOFF:
                    st |= ST_CUTOFF
                if new & B_RANGE:
                    st |= ST_OVER_RANGE
                if new & B_SUB:
                    st |= ST_SUBSTATION
                if new & B_FAULT:
                    st |= ST_SENSOR
                # report by exception, heartbeat, status change
                if (st != status[i] or not (t - rep_t[i] < every)
                        or (valid and not (abs(v - rep_v[i]) <= db[i]))):
                    out[count] = i
                    count += 1
                    rep_t[i] = t
                    rep_v[i] = value[i]
                status[i] = st
                if not valid:
                    continue
                # switch / multistate: value changes
                if (kind[i] == 1 or kind[i] == 3) and prev == prev and v != prev:
                    k = ch_n * CHW
                    chlog[k] = i
                    chlog[k + 1] = t
                    chlog[k + 2] = prev
                    chlog[k + 3] = v
                    ch_n += 1
                # statistics over wall-clock windows
                if t >= done[i]:
                    a = WIN * i
                    if win[a] == win[a] and win[a] != ws:
                        st_n = _emit_stat(stlog, st_n, win, a, i, width)
                    if win[a] != win[a]:
                        win[a] = ws
                        opened = True
                        win[a + 5] = 0.0
                        win[a + 6] = 0.0
                        win[a + 7] = 0.0
                    _acc_add(win, a, v, t)
                    if kind[i] == 2 and cum[i] == cum[i]:
                        win[a + 7] += v - cum[i] if v >= cum[i] else v
                if kind[i] == 2:
                    cum[i] = v
        self._ev_n, self._st_n, self._ch_n = ev_n, st_n, ch_n
        if ns:
            self.ladder.run(frame.index, frame.values, self._sel_arr, ns, t)
        if opened and ws < self._oldest:
            self._oldest = ws
        self.rejected += rejected
        self.invalid += invalid
        return self._out_arr[:count]

    def take_events(self):
        """Drain the events since the last call, in the order they happened."""
        log: cython.double[::1] = self._ev
        r: cython.Py_ssize_t
        b: cython.Py_ssize_t
        events = []
        for r in range(self._ev_n):
            b = r * EVW
            code, side = SLOTS[cython.cast(cython.int, log[b + 1])]
            begin = log[b + 2] != 0
            events.append(Event(cython.cast(cython.int, log[b]), code, side, begin, log[b + 3],
                                None if begin else log[b + 4], log[b + 5], log[b + 6], log[b + 7],
                                log[b + 8], log[b + 9], log[b + 10]))
        self._ev_n = 0
        return events

    def take_level_changes(self):
        """Drain the graded-warning level changes (LevelChange) since the last call, in order."""
        return self.ladder.take_level_changes()

    def take_changes(self):
        """Drain the value changes of switch and multistate points since the last call."""
        log: cython.double[::1] = self._ch
        r: cython.Py_ssize_t
        changes = [Change(cython.cast(cython.int, log[r * CHW]), log[r * CHW + 1], log[r * CHW + 2],
                          log[r * CHW + 3]) for r in range(self._ch_n)]
        self._ch_n = 0
        return changes

    def take_stats(self, now_wall):
        """Drain the windows that ended at or before `now_wall`, ordered by (start, point).

        Windows still open at that time close here; a late sample that belongs to a
        window already handed out is not counted in any window.
        """
        now: cython.double = now_wall
        width: cython.double = self.stats_window
        self._reserve(0)
        win: cython.double[::1] = self._win
        done: cython.double[::1] = self._done
        log: cython.double[::1] = self._st
        kind: cython.schar[::1] = self._kind
        n: cython.Py_ssize_t = self._st_n
        kept: cython.Py_ssize_t = 0
        i: cython.int
        a: cython.Py_ssize_t
        r: cython.Py_ssize_t
        b: cython.Py_ssize_t
        f: cython.Py_ssize_t
        oldest: cython.double = math.inf
        if self._oldest + width <= now:
            with cython.nogil:
                for i in range(self.n_points):
                    a = WIN * i
                    if win[a] == win[a] and win[a] + width <= now:
                        done[i] = win[a] + width
                        n = _emit_stat(log, n, win, a, i, width)
                    elif win[a] < oldest:
                        oldest = win[a]
            self._oldest = oldest
        stats = []
        for r in range(n):
            b = r * STW
            if log[b + 2] <= now:
                i = cython.cast(cython.int, log[b])
                stats.append(Stat(i, log[b + 1], log[b + 2], log[b + 3], log[b + 4], log[b + 5], log[b + 6],
                                  log[b + 7], cython.cast(cython.longlong, log[b + 8]),
                                  log[b + 9] if kind[i] == 2 else None))
            else:                   # ended after now_wall (a caller's clock behind the samples): keep
                for f in range(STW):
                    log[kept * STW + f] = log[b + f]
                kept += 1
        self._st_n = kept
        stats.sort(key=_stat_order)
        return stats


def _stat_order(s):
    return (s.start, s.point)
