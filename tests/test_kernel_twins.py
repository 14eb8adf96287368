"""The compiled kernel and its pure-Python twin give identical outputs.

Random configurations (thresholds in any order, missing ones, delays,
deadbands, all four kinds) and random streams (NaN and infinite values, driver
faults, wall clocks that go backwards, a NaN clock, indices that are no
point's) go through both twins side by side; after every call the reports,
state arrays, events, changes, statistics and counters must be the same.
"""
from __future__ import annotations

import math
import random
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.filtering import SOURCES, load_pure
from test_kernel import COLUMNS, NOT_BUILT, T0, compiled_module, frame, plain

NAN, INF = math.nan, math.inf
LEVELS = [NAN, NAN, -1.0, 0.0, 0.5, 0.9, 1.0, 1.5, 2.0, 4.0]


@pytest.fixture(scope="module")
def twins():
    mod = compiled_module()
    if mod is None:
        pytest.skip(NOT_BUILT)
    from edge_agent.filtering import ladder
    if not ladder.COMPILED:
        pytest.fail("kernel.py is compiled but ladder.py is not: rebuild (python setup.py build_ext --inplace)")
    for built, source in zip((mod, ladder), SOURCES):
        so = __import__("pathlib").Path(built.__file__)
        if so.stat().st_mtime < source.stat().st_mtime:
            pytest.fail(f"{so.name} is older than {source.name}: rebuild it (python setup.py build_ext --inplace)")
    return mod.Kernel, load_pure().Kernel


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def assert_same_state(fast, slow):
    for name in ("value", "status", "time"):
        fa, sa = getattr(fast, name), getattr(slow, name)
        assert all(same(x, y) for x, y in zip(fa, sa)), name
    assert (fast.rejected, fast.invalid) == (slow.rejected, slow.invalid)


def run_both(fast, slow, ops):
    for op in ops:
        if op[0] == "frame":
            _, wall, index, values, quality = op
            f = frame(wall, values, index, quality)
            assert list(fast.process(f)) == list(slow.process(f))
            assert plain(fast.take_events()) == plain(slow.take_events())
            assert plain(fast.take_changes()) == plain(slow.take_changes())
        else:
            assert plain(fast.take_stats(op[1])) == plain(slow.take_stats(op[1]))
        assert_same_state(fast, slow)


@st.composite
def configs(draw):
    n = draw(st.integers(1, 5))
    cols = {c: array("d", [draw(st.sampled_from(LEVELS)) for _ in range(n)]) for c in COLUMNS[:12]}
    cols["deadband"] = array("d", [draw(st.sampled_from([NAN, 0.0, 0.1, 0.5])) for _ in range(n)])
    cols["delay"] = array("d", [draw(st.sampled_from([NAN, 0.0, 0.0, 1.0, 3.0])) for _ in range(n)])
    cols["kind"] = array("b", [draw(st.integers(0, 3)) for _ in range(n)])
    return n, cols


value_st = st.one_of(st.sampled_from(LEVELS + [INF, -INF, 8.0, -5.0, 1e300]),
                     st.floats(-3, 6, allow_nan=False).map(lambda x: round(x, 1)))


@st.composite
def streams(draw, n):
    ops, wall = [], T0
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.integers(0, 5)) == 0:
            ops.append(("stats", wall + draw(st.sampled_from([-5.0, 0.0, 3.0, 100.0]))))
            continue
        wall += draw(st.sampled_from([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 7.0]))
        size = draw(st.integers(0, n + 1))
        index = [draw(st.integers(-1, n)) if draw(st.integers(0, 9)) == 0 else draw(st.integers(0, n - 1))
                 for _ in range(size)]
        values = [draw(value_st) for _ in range(size)]
        quality = [draw(st.sampled_from([0, 0, 0, 0, 16, 128, 144, 4])) for _ in range(size)]
        ops.append(("frame", NAN if draw(st.integers(0, 30)) == 0 else wall, index, values, quality))
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_twins_agree_on_random_configs_and_streams(twins, data):
    fast_cls, slow_cls = twins
    n, cols = data.draw(configs())
    every = data.draw(st.sampled_from([1.0, 5.0, 20.0]))
    window = data.draw(st.sampled_from([3.0, 10.0, 60.0]))
    ops = data.draw(streams(n))
    run_both(fast_cls(n, cols, every, window), slow_cls(n, cols, every, window), ops)


def test_twins_agree_on_a_large_site(twins):
    """1,000 points over 120 frames: log growth, many windows, many events."""
    fast_cls, slow_cls = twins
    rnd = random.Random(3)
    n = 1000
    cols = {c: array("d", [NAN]) * n for c in COLUMNS}
    for i in range(n):
        cols["range_low"][i], cols["range_high"][i] = 0.0, 4.0
        cols["alarm_high"][i], cols["alarm_high_clear"][i] = 1.0, 0.9
        cols["cutoff_high"][i], cols["cutoff_restore"][i] = 1.5, 1.0
        cols["warn_low"][i] = 0.2
        cols["deadband"][i] = 0.05
        cols["delay"][i] = rnd.choice([0.0, 0.0, 2.0])
    cols["kind"] = array("b", [rnd.choice([0, 0, 0, 1, 2, 3]) for _ in range(n)])
    fast, slow = fast_cls(n, cols, 20.0, 30.0), slow_cls(n, cols, 20.0, 30.0)
    level = [rnd.uniform(0, 2) for _ in range(n)]
    ops = []
    for f in range(120):
        idx = list(range(n))
        level = [max(-0.1, x + rnd.gauss(0, 0.15)) for x in level]
        vals = [NAN if rnd.random() < 0.003 else x for x in level]
        q = [16 if 40 <= f < 45 and i < 150 else 0 for i in idx]
        ops.append(("frame", T0 + f - (5 if f % 37 == 36 else 0), idx, vals, q))
        if f % 10 == 9:
            ops.append(("stats", T0 + f))
    run_both(fast, slow, ops)


# ----------------------------------------------------------------------------- graded warning

from edge_agent.filtering.rules import KINDS, RuleSpec, Step  # noqa: E402


@st.composite
def rule_specs(draw):
    kind = draw(st.sampled_from(KINDS))
    steps = []
    for level in draw(st.lists(st.integers(1, 4), max_size=4, unique=True)):
        high = draw(st.booleans())
        enter = draw(st.sampled_from(LEVELS[2:] + [10.0, 30.0, -1.0]))
        clear = enter + draw(st.sampled_from([NAN, 0.0, -0.2, 0.2, -5.0]))
        steps.append(Step(level, high, enter, clear, draw(st.sampled_from([0.0, 0.0, 1.0, 2.5]))))
    return RuleSpec(kind, tuple(steps), window=draw(st.sampled_from([2.0, 4.0, 8.0])),
                    per=draw(st.sampled_from([1.0, 60.0])), against=86400.0, absolute=draw(st.booleans()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_twins_agree_on_graded_levels(twins, data):
    """Random rules of every kind over random streams: the same levels, level changes and hourly sums."""
    fast_cls, slow_cls = twins
    n, cols = data.draw(configs())
    cols["rules"] = [tuple(data.draw(st.lists(rule_specs(), max_size=3))) for _ in range(n)]
    cols["legacy_levels"] = tuple(data.draw(st.lists(st.integers(0, 4), min_size=6, max_size=6)))
    fast, slow = fast_cls(n, cols, 5.0, 60.0), slow_cls(n, cols, 5.0, 60.0)
    for r, _, _ in fast.ladder.baseline_rules():
        base = data.draw(st.sampled_from([NAN, 0.0, 0.5, 1.0, 2.0]))
        fast.ladder.set_baseline(r, base)
        slow.ladder.set_baseline(r, base)
    for op in data.draw(streams(n)):
        if op[0] == "frame":
            _, wall, index, values, quality = op
            f = frame(wall, values, index, quality)
            assert list(fast.process(f)) == list(slow.process(f))
            assert plain(fast.take_level_changes()) == plain(slow.take_level_changes())
        else:
            partial = data.draw(st.booleans())
            assert fast.ladder.take_hours(op[1], partial) == slow.ladder.take_hours(op[1], partial)
        assert list(fast.level) == list(slow.level)
        assert_same_state(fast, slow)
    for i in range(n):
        (sa, a), (sb, b) = fast.ladder.point_state(i), slow.ladder.point_state(i)
        assert sa == sb and all(same(x, y) for x, y in zip(a, b))
