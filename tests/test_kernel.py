"""The filtering kernel's rules, table-driven, run against both twins (pure and compiled).

Each table gives a sample stream of one point and the exact status sequence
(and reports/events) the rules imply, including the hysteresis edges: exactly
at the entry level enters, exactly at the clear level stays.
"""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from array import array

import pytest

from conftest import ROOT
from edge_agent.filtering import Event, Stat, load_pure
from edge_agent.frame import Frame

NAN, INF = math.nan, math.inf
COLUMNS = ("range_low", "range_high", "alarm_high", "alarm_high_clear", "alarm_low", "alarm_low_clear",
           "cutoff_high", "cutoff_restore", "cutoff_low", "cutoff_low_restore", "warn_high", "warn_low",
           "deadband", "delay")
T0 = 1_796_000_100.0          # on a 5-minute (and 1-minute) boundary


def compiled_module():
    """The compiled twin, or None when setup.py build_ext has not built it."""
    from edge_agent.filtering import kernel
    return kernel if kernel.COMPILED else None


NOT_BUILT = "compiled kernel not built (run: python setup.py build_ext --inplace)"


@pytest.fixture(params=["pure", "compiled"])
def K(request):
    """The Kernel class of each twin."""
    if request.param == "pure":
        return load_pure().Kernel
    mod = compiled_module()
    if mod is None:
        pytest.skip(NOT_BUILT)
    return mod.Kernel


# ----------------------------------------------------------------------------- helpers

def thresholds(n: int = 1, kind: int = 0, per_point: list[dict] | None = None, **common) -> dict:
    """Catalog.thresholds()-shaped columns: NaN unless given (common to all points, or per point)."""
    cols = {c: array("d", [NAN]) * n for c in COLUMNS}
    cols["kind"] = array("b", [kind]) * n
    for i in range(n):
        for key, v in {**common, **(per_point[i] if per_point else {})}.items():
            cols[key][i] = v
    return cols


def frame(wall: float, values, index=None, quality=None, device: int = 0) -> Frame:
    index = list(range(len(values))) if index is None else index
    quality = [0] * len(values) if quality is None else quality
    return Frame(device, wall, wall, array("i", index), array("d", values), array("B", quality))


def feed(k, samples, point: int = 0):
    """Feed (t, v) or (t, v, q) samples of one point (t relative to T0); return (statuses, reported)."""
    statuses, reported = [], []
    for s in samples:
        t, v, q = (tuple(s) + (0,))[:3]
        rep = k.process(frame(T0 + t, [v], [point], [q]))
        statuses.append(k.status[point])
        reported.append(point in list(rep))
    return statuses, reported


def plain(records) -> list[tuple]:
    """Records as tuples, NaN made comparable."""
    def fix(x):
        return "nan" if isinstance(x, float) and math.isnan(x) else x
    return [tuple(fix(x) for x in dataclasses.astuple(r)) for r in records]


def edges(events) -> list[tuple]:
    """(anomaly, side, begin, start, end) relative to T0, for compact expectations."""
    return [(e.anomaly, e.side, e.begin, e.start - T0, None if e.end is None else e.end - T0) for e in events]


def stream(values, step: float = 1.0):
    return [(i * step, v) for i, v in enumerate(values)]


# ----------------------------------------------------------------------------- state machines

STATUS_TABLE = [
    # name, thresholds, values, expected statuses
    ("alarm high: enter at, stay at clear, leave below",
     dict(alarm_high=1.0, alarm_high_clear=0.9),
     [0.99, 1.0, 0.95, 0.9, 0.89, 1.0], [0, 1, 1, 1, 0, 1]),
    ("alarm high without a clear level clears at the entry level",
     dict(alarm_high=1.0), [1.0, 1.0, 0.99, 1.0], [1, 1, 0, 1]),
    ("alarm low: enter at, stay at clear, leave above",
     dict(alarm_low=18.5, alarm_low_clear=19.0),
     [19.0, 18.51, 18.5, 19.0, 19.01, 18.4], [0, 0, 1, 1, 0, 1]),
    ("cut-off over alarm: 3 while cut off, restore below restore level",
     dict(alarm_high=1.0, alarm_high_clear=0.9, cutoff_high=1.5, cutoff_restore=1.0),
     [1.49, 1.5, 1.2, 1.0, 0.99, 0.9, 0.89], [1, 3, 3, 3, 1, 1, 0]),
    ("cut-off low (cut below, restore above)",
     dict(cutoff_low=18.0, cutoff_low_restore=18.5), [18.1, 18.0, 18.5, 18.51], [0, 2, 2, 0]),
    ("over range both sides, limits inclusive",
     dict(range_low=0.0, range_high=4.0), [4.0, 4.01, 0.0, -0.01, 2.0], [0, 8, 0, 8, 0]),
    ("far outside the range (more than one span) is a sensor fault; faults hold over-range",
     dict(range_low=0.0, range_high=4.0), [1.0, 8.01, 8.0, -4.01, -4.0, 1.0], [0, 128, 8, 136, 8, 0]),
    ("NaN and infinity are sensor faults, range or not",
     dict(), [1.0, NAN, 2.0, INF, -INF, 3.0], [0, 128, 0, 128, 128, 0]),
    ("pre-warnings set no status bit", dict(warn_high=0.8, warn_low=0.1), [0.5, 0.8, 0.1, 0.5], [0, 0, 0, 0]),
    ("high and low alarm on one point", dict(alarm_high=5.0, alarm_high_clear=4.0, alarm_low=1.0,
                                             alarm_low_clear=2.0),
     [3.0, 5.0, 0.5, 1.5, 2.5, 4.5], [0, 1, 1, 1, 0, 0]),
]


@pytest.mark.parametrize("name,th,values,expected", STATUS_TABLE, ids=[r[0] for r in STATUS_TABLE])
def test_status_sequences(K, name, th, values, expected):
    k = K(1, thresholds(**th))
    statuses, _ = feed(k, stream(values))
    assert statuses == expected


def test_alarm_and_cutoff_events_in_order(K):
    k = K(1, thresholds(alarm_high=1.0, alarm_high_clear=0.9, cutoff_high=1.5, cutoff_restore=1.0,
                        warn_high=0.8, alarm_low=0.1, alarm_low_clear=0.2, warn_low=0.3))
    feed(k, stream([0.5, 0.8, 1.0, 1.5, 0.99, 0.89, 0.79, 0.3, 0.1, 0.21, 0.31]))
    assert edges(k.take_events()) == [
        ("009", "high", True, 1, None), ("001", "high", True, 2, None), ("002", "high", True, 3, None),
        ("002", "high", False, 3, 4), ("001", "high", False, 2, 5), ("009", "high", False, 1, 6),
        ("010", "low", True, 7, None), ("001", "low", True, 8, None), ("001", "low", False, 8, 9),
        ("010", "low", False, 7, 10)]
    assert k.take_events() == []          # drained


def test_jump_across_both_alarms_ends_one_and_begins_the_other(K):
    k = K(1, thresholds(alarm_high=5.0, alarm_high_clear=4.0, alarm_low=1.0, alarm_low_clear=2.0))
    feed(k, stream([6.0, 0.0]))
    assert edges(k.take_events()) == [("001", "high", True, 0, None), ("001", "high", False, 0, 1),
                                      ("001", "low", True, 1, None)]


# ----------------------------------------------------------------------------- delay

def test_delay_needs_the_condition_to_hold(K):
    k = K(1, thresholds(alarm_high=1.0, alarm_high_clear=0.9, delay=5.0))
    samples = [(0, 1.1), (3, 1.2), (5, 1.1),          # holds 5 s: enters at t=5
               (6, 0.5), (9, 0.5), (10, 1.2),         # leaving also waits: 6 -> 11; back above at 10: stays
               (12, 0.5), (16, 0.5), (17, 0.5)]       # leaves at 17 (12 + 5)
    statuses, _ = feed(k, samples)
    assert statuses == [0, 0, 1, 1, 1, 1, 1, 1, 0]
    assert edges(k.take_events()) == [("001", "high", True, 5, None), ("001", "high", False, 5, 17)]


def test_delay_flicker_restarts_the_wait(K):
    k = K(1, thresholds(alarm_high=1.0, delay=5.0))
    statuses, _ = feed(k, [(0, 1.1), (2, 0.5), (4, 1.1), (8, 1.1), (9, 1.1)])
    assert statuses == [0, 0, 0, 0, 1]


def test_delay_is_broken_by_a_fault_sample(K):
    k = K(1, thresholds(alarm_high=1.0, delay=5.0))
    statuses, _ = feed(k, [(0, 1.1), (2, NAN), (4, 1.1), (6, 1.1), (9, 1.1)])
    assert statuses == [0, 128, 0, 0, 1]


def test_faults_have_no_delay_and_hold_the_machines(K):
    k = K(1, thresholds(alarm_high=1.0, range_low=0.0, range_high=4.0, delay=5.0))
    statuses, _ = feed(k, [(0, 1.5), (5, 1.5), (6, NAN), (7, 4.5), (8, 1.5, 16), (9, 0.5)])
    # NaN: fault, alarm held; 4.5: over range (valid), alarm held by its clear level;
    # device away: held; 0.5: the alarm waits out its delay, over range clears at once
    assert statuses == [0, 1, 129, 9, 25, 1]


# ----------------------------------------------------------------------------- faults

def test_sensor_fault_keeps_last_value_and_opens_004(K):
    k = K(2, thresholds(2, range_low=0.0, range_high=4.0))
    k.process(frame(T0, [0.4, 0.5]))
    k.process(frame(T0 + 1, [NAN, 0.6], quality=[0, 128]))
    assert list(k.status) == [128, 128]
    assert list(k.value) == [0.4, 0.5]          # a faulty sample never becomes the value
    assert list(k.time) == [T0 + 1, T0 + 1]
    k.process(frame(T0 + 2, [0.45, 0.55]))
    assert list(k.status) == [0, 0]
    evs = k.take_events()
    assert edges(evs) == [("004", "", True, 1, None)] * 2 + [("004", "", False, 1, 2)] * 2
    assert [e.value for e in evs] == [0.4, 0.5, 0.45, 0.55]
    assert math.isnan(evs[2].max)               # no valid value while the fault held


def test_substation_fault_sets_16_keeps_values_and_opens_006_per_point(K):
    k = K(3, thresholds(3, alarm_high=1.0))
    assert math.isnan(k.value[2]) and math.isnan(k.time[2])
    k.process(frame(T0, [0.2, 1.2], index=[0, 1]))
    rep = k.process(frame(T0 + 1, [NAN, NAN], index=[0, 1], quality=[16, 16]))
    assert list(rep) == [0, 1]                  # status changed: reported
    assert list(k.status) == [16, 17, 0]        # the alarm holds while the device is away
    assert list(k.value)[:2] == [0.2, 1.2]
    k.process(frame(T0 + 2, [NAN, NAN], index=[0, 1], quality=[16, 16]))
    k.process(frame(T0 + 3, [0.3, 0.5], index=[0, 1]))
    assert list(k.status) == [0, 0, 0]
    assert list(k.value)[:2] == [0.3, 0.5] and math.isnan(k.value[2])   # point 2: never seen


def test_substation_fault_events(K):
    k = K(2, thresholds(2, alarm_high=1.0))
    k.process(frame(T0, [0.2, 1.2]))
    k.process(frame(T0 + 1, [NAN, NAN], quality=[16, 16]))
    k.process(frame(T0 + 4, [0.3, 0.5]))
    got = [(e.point, e.anomaly, e.begin, e.start - T0, e.end and e.end - T0, e.value) for e in k.take_events()]
    assert got == [(1, "001", True, 0, None, 1.2),
                   (0, "006", True, 1, None, 0.2), (1, "006", True, 1, None, 1.2),
                   (0, "006", False, 1, 4, 0.3), (1, "001", False, 0, 4, 0.5), (1, "006", False, 1, 4, 0.5)]


# ----------------------------------------------------------------------------- reports

def test_deadband_heartbeat_and_status_change_reports(K):
    k = K(1, thresholds(deadband=0.25, alarm_high=2.0), realtime_every=20.0)
    _, reported = feed(k, [(0, 1.0),      # first sample: reported
                           (1, 1.25),     # moved exactly the deadband: not
                           (2, 1.5),      # moved more than it: reported
                           (3, 1.3),      # 0.2 from the last report: not
                           (21, 1.3),     # 19 s since the last report: not yet
                           (22, 1.3),     # 20 s: heartbeat
                           (23, 2.0),     # status change (alarm)
                           (24, NAN),     # status change (fault)
                           (25, NAN),     # nothing new
                           (26, 2.0)])    # status change back
    assert reported == [True, False, True, False, False, True, True, True, False, True]


def test_zero_deadband_reports_every_change_only(K):
    k = K(1, thresholds(deadband=0.0))
    _, reported = feed(k, stream([1.0, 1.0, 1.0000001, 1.0000001]))
    assert reported == [True, False, True, False]


def test_report_array_lists_global_indices_in_frame_order(K):
    k = K(5, thresholds(5, deadband=0.5))
    assert list(k.process(frame(T0, [1.0, 1.0, 1.0], index=[4, 0, 2]))) == [4, 0, 2]
    assert list(k.process(frame(T0 + 1, [1.0, 2.0, 1.1], index=[4, 0, 2]))) == [0]
    assert list(k.process(frame(T0 + 2, [], index=[]))) == []


def test_out_of_order_samples_are_rejected_and_counted(K):
    k = K(2, thresholds(2, alarm_high=1.0))
    k.process(frame(T0 + 10, [0.5, 0.5]))
    assert list(k.process(frame(T0 + 9, [5.0, 5.0]))) == []
    assert k.rejected == 2
    assert list(k.status) == [0, 0] and list(k.value) == [0.5, 0.5] and list(k.time) == [T0 + 10] * 2
    k.process(frame(T0 + 10, [0.6], index=[1]))           # same time: accepted
    k.process(frame(NAN, [0.7], index=[1]))               # no usable clock: rejected
    assert k.rejected == 3 and k.value[1] == 0.6
    k.process(frame(T0 + 11, [0.1], index=[7]))           # not a point of this kernel
    assert k.invalid == 1 and k.rejected == 3


def test_thresholds_must_match_the_point_count(K):
    cols = thresholds(3)
    cols["alarm_high"] = array("d", [1.0])
    with pytest.raises(ValueError, match="alarm_high"):
        K(3, cols)


# ----------------------------------------------------------------------------- statistics

def test_window_statistics_aligned_to_the_wall_clock(K):
    k = K(2, thresholds(2), stats_window=300.0)
    for t, v in [(10, 2.0), (20, 5.0), (30, 1.0), (40, 5.0), (299.5, 3.0)]:
        k.process(frame(T0 + t, [v], index=[0]))
    assert k.take_stats(T0 + 299.9) == []                  # the window has not ended
    k.process(frame(T0 + 300, [7.0], index=[0]))          # first sample of the next window
    assert k.take_stats(T0 + 299.9) == []                  # ended after the caller's "now": kept
    stats = k.take_stats(T0 + 300)
    assert stats == [Stat(0, T0, T0 + 300, 5.0, T0 + 20, 1.0, T0 + 30, 16.0 / 5, 5, None)]
    assert k.take_stats(T0 + 300) == []                    # drained; point 1 had no sample: no record
    assert plain(k.take_stats(T0 + 900)) == plain([Stat(0, T0 + 300, T0 + 600, 7.0, T0 + 300, 7.0, T0 + 300,
                                                         7.0, 1, None)])


def test_faulty_samples_stay_out_of_statistics_and_late_ones_too(K):
    k = K(1, thresholds(range_low=0.0, range_high=10.0), stats_window=60.0)
    for t, v, q in [(0, 4.0, 0), (1, 50.0, 0), (2, NAN, 0), (3, 9.0, 128), (4, 3.0, 16), (5, 11.0, 0)]:
        k.process(frame(T0 + t, [v], quality=[q]))
    stats = k.take_stats(T0 + 60)
    assert [(s.count, s.max, s.min, s.avg) for s in stats] == [(2, 11.0, 4.0, 7.5)]
    assert stats[0].max_time == T0 + 5
    k.process(frame(T0 + 59, [1.0]))                       # a late sample of a window already handed out
    assert k.take_stats(T0 + 200) == []


def test_cumulative_points_sum_increments_per_window(K):
    k = K(1, thresholds(kind=2), stats_window=60.0)
    for t, v in [(0, 100.0), (30, 105.0), (59, 110.0), (60, 112.0), (90, 3.0), (100, 5.0)]:
        k.process(frame(T0 + t, [v]))
    stats = k.take_stats(T0 + 120)
    # 110 -> 112 counts in the second window; after the reset (112 -> 3) the counter counts from 0
    assert [(s.start - T0, s.delta) for s in stats] == [(0, 10.0), (60, 2.0 + 3.0 + 2.0)]


def test_stats_sorted_by_window_then_point(K):
    k = K(3, thresholds(3), stats_window=60.0)
    k.process(frame(T0, [1.0, 1.0], index=[2, 1]))
    k.process(frame(T0 + 60, [1.0], index=[0]))
    k.process(frame(T0 + 61, [1.0], index=[2]))
    assert [(s.start - T0, s.point) for s in k.take_stats(T0 + 1000)] == [(0, 1), (0, 2), (60, 0), (60, 2)]


# ----------------------------------------------------------------------------- switch / multistate

@pytest.mark.parametrize("kind", [1, 3])
def test_switch_and_multistate_value_changes(K, kind):
    k = K(1, thresholds(kind=kind))
    _, reported = feed(k, stream([0.0, 0.0, 1.0, 1.0, NAN, 2.0, 0.0]))
    assert reported == [True, False, True, False, True, True, True]
    assert [(c.time - T0, c.old, c.new) for c in k.take_changes()] == [(2, 0.0, 1.0), (5, 1.0, 2.0),
                                                                        (6, 2.0, 0.0)]
    assert k.take_changes() == []


def test_analog_points_yield_no_changes(K):
    k = K(1, thresholds())
    feed(k, stream([0.0, 1.0]))
    assert k.take_changes() == []


# ----------------------------------------------------------------------------- the CH4 trace

def test_ch4_trace_crosses_alarm_then_cutoff_then_restores(K):
    """A methane reading rises through alarm (1.0 %) and cut-off (1.5 %), then falls back."""
    k = K(1, thresholds(range_low=0.0, range_high=4.0, alarm_high=1.0, alarm_high_clear=0.9,
                        cutoff_high=1.5, cutoff_restore=1.0, deadband=0.02))
    trace = [0.42, 0.80, 1.00, 1.26, 1.50, 1.84, 1.62, 1.20, 0.98, 0.92, 0.88, 0.50]
    statuses, _ = feed(k, stream(trace, step=10.0))
    assert statuses == [0, 0, 1, 1, 3, 3, 3, 3, 1, 1, 0, 0]
    evs = k.take_events()
    assert [(e.anomaly, e.begin, e.start - T0, e.end and e.end - T0) for e in evs] == [
        ("001", True, 20, None), ("002", True, 40, None), ("002", False, 40, 80), ("001", False, 20, 100)]
    alarm_end, cut_end = evs[3], evs[2]
    assert (cut_end.max, cut_end.max_time - T0, cut_end.min, cut_end.min_time - T0) == (1.84, 50, 1.20, 70)
    assert cut_end.avg == pytest.approx((1.50 + 1.84 + 1.62 + 1.20) / 4)
    assert cut_end.value == 0.98
    assert (alarm_end.max, alarm_end.max_time - T0) == (1.84, 50)
    assert (alarm_end.min, alarm_end.min_time - T0) == (0.92, 90)
    assert alarm_end.avg == pytest.approx(sum(trace[2:10]) / 8)
    assert evs[0] == Event(0, "001", "high", True, T0 + 20, None, 1.0, 1.0, T0 + 20, 1.0, T0 + 20, 1.0)


# ----------------------------------------------------------------------------- wiring

def test_kernel_from_a_real_catalog(K):
    from edge_agent.config import load_site
    from edge_agent.points import Catalog
    from edge_agent.profile import load_profile
    site = load_site(ROOT / "config" / "demo.yaml", check_files=False)
    cat = Catalog(site, load_profile(site.profile, base=ROOT / "config"))
    k = K(len(cat), cat.thresholds(), realtime_every=site.report.realtime_every,
          stats_window=site.report.stats_window)
    first = cat.by_device[0]
    t1 = next(p for p in first if p.id == "T1")
    rep = k.process(frame(T0, [1.6 if p.index == t1.index else 0.0 for p in first], [p.index for p in first]))
    assert list(rep) == [p.index for p in first]
    assert k.status[t1.index] == 3


def _python(code: str, **env) -> str:
    full = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", code], env=full, cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_environment_variable_forces_the_pure_twin():
    code = "import edge_agent.filtering as f; print(f.COMPILED, f.Kernel.__module__)"
    assert _python(code, EDGE_AGENT_PURE_PYTHON="1") == "False edge_agent.filtering._pure_kernel"
    default = _python(code, EDGE_AGENT_PURE_PYTHON="")
    assert default == ("True edge_agent.filtering.kernel" if compiled_module() else
                       "False edge_agent.filtering.kernel")


def test_pure_twin_runs_without_cython_installed():
    """An install without Cython (and without the build) still gets a working kernel."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'cython' or name.startswith('Cython'):\n"
            "            raise ImportError('no Cython here')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from array import array\n"
            "from edge_agent.filtering import Kernel, COMPILED\n"
            "from edge_agent.frame import Frame\n"
            "nan = float('nan')\n"
            "k = Kernel(1, {'alarm_high': array('d', [1.0]), 'alarm_high_clear': array('d', [0.9])})\n"
            "k.process(Frame(0, 0.0, 100.0, array('i', [0]), array('d', [1.0]), array('B', [0])))\n"
            "print(COMPILED, k.status[0], 'cython' in sys.modules)\n")
    assert _python(code, EDGE_AGENT_PURE_PYTHON="1") == "False 1 False"
