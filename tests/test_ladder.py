"""Graded warning in the kernel: levels, rate, baseline and ratio rules, table-driven, both twins.

Each table gives one point's rule, a sample stream (t relative to T0, value)
and the exact level after every sample, at each edge: entering at the entry
value, holding below a delay, clearing with hysteresis, jumping and falling
two levels.  Rules are built from the site-file models (edge_agent/levels.py),
so these also pin what a site file means.
"""
from __future__ import annotations

import math

import pytest

from edge_agent.levels import BaselineRule, Levels, RateRule, RatioRule
from edge_agent.filtering.rules import RuleSpec, Step
from test_kernel import K, T0, frame, thresholds  # noqa: F401  (K: the twins fixture)

NAN = math.nan
LADDER = Levels.model_validate({"blue": {"high": 3.0, "clear": 2.9}, "yellow": {"high": 3.5},
                                "orange": {"high": 4.0}, "red": {"high": 4.5, "delay": "3s"}})


def level_rule(data: dict) -> RuleSpec:
    return RuleSpec("level", Levels.model_validate(data).steps())


def kernel(K, specs, n: int = 1, **th):
    cols = thresholds(n, **th)
    cols["rules"] = [tuple(specs)] * n
    return K(n, cols)


def levels_of(k, samples, point: int = 0):
    """Feed (t, v) or (t, v, quality); the point's level after each sample."""
    out = []
    for s in samples:
        t, v, q = (tuple(s) + (0,))[:3]
        k.process(frame(T0 + t, [v], [point], [q]))
        out.append(k.level[point])
    return out


def at_seconds(values, step: float = 1.0):
    return [(i * step, v) for i, v in enumerate(values)]


# ----------------------------------------------------------------------------- absolute levels

LEVEL_TABLE = [
    ("enter each level exactly at its entry value (red after its delay)",
     [(0, 2.9), (1, 3.0), (2, 3.49), (3, 3.5), (4, 4.0), (5, 4.5), (8, 4.5)], [0, 1, 1, 2, 3, 3, 4]),
    ("hold below the delay: red only once 4.5 held for 3 s",
     [(0, 4.6), (1, 4.6), (2, 4.6), (3, 4.6)], [3, 3, 3, 4]),
    ("a dip restarts the delay",
     [(0, 4.6), (1, 4.4), (2, 4.6), (4, 4.6), (5, 4.6)], [3, 3, 3, 3, 4]),
    ("clear with hysteresis: blue stays down to 2.9, leaves below it",
     at_seconds([3.0, 2.95, 2.9, 2.89, 2.95, 3.0]), [1, 1, 1, 0, 0, 1]),
    ("jump two levels in one sample", at_seconds([2.0, 4.1]), [0, 3]),
    ("fall two levels in one sample", at_seconds([4.1, 3.6, 2.0]), [3, 2, 0]),
    ("the delay holds both ways: red stays 3 s after the value left it",
     [(0, 4.6), (3, 4.6), (4, 4.1), (6, 4.1), (7, 4.1)], [3, 4, 4, 4, 3]),
    ("a sensor fault holds the level and restarts a pending delay",
     [(0, 4.6), (1, NAN), (2, 4.6), (4, 4.6), (5, 4.6), (6, NAN), (7, 2.0), (10, 2.0)], [3, 3, 3, 3, 4, 4, 4, 0]),
    ("a device fault (quality 16) holds the level too", [(0, 3.6), (1, 9.0, 16), (2, 3.6)], [2, 2, 2]),
]


@pytest.mark.parametrize("name,samples,expected", LEVEL_TABLE, ids=[r[0] for r in LEVEL_TABLE])
def test_absolute_levels(K, name, samples, expected):
    k = kernel(K, [RuleSpec("level", LADDER.steps())])
    assert levels_of(k, samples) == expected


LOW_TABLE = [
    ("low side: enters at or below, clears above the clear level",
     {"blue": {"low": 1.0, "clear": 1.2}, "red": {"low": 0.5}},
     at_seconds([1.5, 1.0, 1.1, 0.5, 0.6, 1.2, 1.21]), [0, 1, 1, 4, 1, 1, 0]),
    ("high and low on one level", {"orange": {"high": 9.0, "low": 1.0, "high_clear": 8.0, "low_clear": 2.0}},
     at_seconds([5.0, 9.0, 8.0, 7.9, 1.0, 2.0, 2.1]), [0, 3, 3, 0, 3, 3, 0]),
]


@pytest.mark.parametrize("name,ladder,samples,expected", LOW_TABLE, ids=[r[0] for r in LOW_TABLE])
def test_low_side_levels(K, name, ladder, samples, expected):
    k = kernel(K, [level_rule(ladder)])
    assert levels_of(k, samples) == expected


def test_changes_name_rule_threshold_value_and_time(K):
    k = kernel(K, [RuleSpec("level", LADDER.steps())])
    levels_of(k, [(0, 3.2), (1, 4.2), (2, 4.6), (5, 4.7), (6, 2.5), (9, 2.5)])
    got = [(c.point, c.level, c.previous, c.rule, c.threshold, c.value, c.time - T0) for c in k.take_level_changes()]
    assert got == [(0, 1, 0, "level", 3.0, 3.2, 0), (0, 3, 1, "level", 4.0, 4.2, 1),
                   (0, 4, 3, "level", 4.5, 4.7, 5),
                   (0, 0, 4, "level", 4.5, 2.5, 9)]   # red's clear level (= entry) on the way down, after the delay
    assert k.take_level_changes() == []                # drained


# ----------------------------------------------------------------------------- the old ladder

LEGACY = dict(warn_high=0.8, alarm_high=1.0, alarm_high_clear=0.9, cutoff_high=1.5, cutoff_restore=1.0)


def test_old_thresholds_map_onto_levels_by_default(K):
    k = kernel(K, [], **LEGACY)
    assert levels_of(k, at_seconds([0.5, 0.8, 1.0, 1.5, 1.0, 0.95, 0.85, 0.5])) == [0, 2, 3, 4, 4, 3, 2, 0]
    changes = k.take_level_changes()
    assert [(c.rule, c.level, c.threshold) for c in changes] == [
        ("legacy", 2, 0.8), ("legacy", 3, 1.0), ("legacy", 4, 1.5), ("legacy", 3, 1.0), ("legacy", 2, 0.9),
        ("legacy", 0, 0.8)]
    assert k.status[0] == 0


def test_the_profile_decides_what_the_old_ladder_counts_as(K):
    cols = thresholds(1, **LEGACY)
    cols["legacy_levels"] = (3, 3, 4, 4, 0, 0)       # alarm orange, cut-off red, pre-warnings not counted
    k = K(1, cols)
    assert levels_of(k, at_seconds([0.8, 1.0, 1.6, 0.5])) == [0, 3, 4, 0]


def test_a_point_takes_the_highest_of_its_rules_and_the_old_ladder(K):
    k = kernel(K, [level_rule({"blue": {"high": 0.5}, "yellow": {"high": 0.7}})], **LEGACY)
    assert levels_of(k, at_seconds([0.6, 0.75, 1.0, 0.75, 0.6, 0.1])) == [1, 2, 3, 2, 1, 0]
    assert [c.rule for c in k.take_level_changes()] == ["level", "level", "legacy", "legacy", "level", "level"]


# ----------------------------------------------------------------------------- rate of change

def rate(**kw) -> RuleSpec:
    return RateRule.model_validate({"kind": "rate", **kw}).spec()


RATE_TABLE = [
    # window 4 s = 4 buckets of 1 s; the rate is per second
    ("undefined until the reference is half a window old, then the change per second",
     rate(per="1s", window="4s", levels={"blue": 0.5, "red": 2.0}),
     at_seconds([0.0, 1.0, 2.0, 3.0]), [0, 0, 1, 1]),
    ("jump two levels: a steep rise", rate(per="1s", window="4s", levels={"blue": 0.5, "yellow": 1.0, "orange": 2.0}),
     at_seconds([0.0, 0.0, 0.0, 6.0]), [0, 0, 0, 3]),
    ("the reference moves with the window: a rise that stops clears",
     rate(per="1s", window="4s", levels={"blue": 0.5}), at_seconds([0, 0, 0, 3, 3, 3, 3, 3]), [0, 0, 0, 1, 1, 1, 0, 0]),
    ("clear with hysteresis (clear: 0.2 below each level)",
     rate(per="1s", window="4s", clear=0.2, levels={"blue": 1.0}),
     at_seconds([0, 1, 2, 3, 3.85, 4.7, 5.3]), [0, 0, 1, 1, 1, 1, 0]),
    ("per 1 min: the same samples, 60 times the rate",
     rate(per="1m", window="4s", levels={"blue": 20.0, "red": 30.0}), at_seconds([0, 0.5, 1.0, 1.5]), [0, 0, 4, 4]),
    ("side low: falling values", rate(per="1s", window="4s", side="low", levels={"yellow": 1.0}),
     at_seconds([9, 8, 7, 6, 6, 6, 6]), [0, 0, 2, 2, 0, 0, 0]),
    ("side both: either way", rate(per="1s", window="4s", side="both", levels={"yellow": 1.0}),
     at_seconds([5, 5, 7, 7, 7, 7, 7, 4, 4]), [0, 0, 2, 0, 0, 0, 0, 2, 2]),
    ("hold below the delay", rate(per="1s", window="4s", delay="2s", levels={"blue": 0.5}),
     at_seconds([0, 1, 2, 3, 4, 5]), [0, 0, 0, 0, 1, 1]),
]


@pytest.mark.parametrize("name,spec,samples,expected", RATE_TABLE, ids=[r[0] for r in RATE_TABLE])
def test_rate_rules(K, name, spec, samples, expected):
    k = kernel(K, [spec])
    assert levels_of(k, samples) == expected


def test_a_rate_change_carries_the_rate(K):
    k = kernel(K, [rate(per="1s", window="4s", levels={"blue": 0.5})])
    levels_of(k, at_seconds([0.0, 1.0, 2.0]))
    (c,) = k.take_level_changes()
    assert (c.rule, c.level, c.threshold, c.value) == ("rate", 1, 0.5, 1.0)


def test_a_gap_longer_than_the_window_makes_the_rate_undefined_and_the_level_holds(K):
    k = kernel(K, [rate(per="1s", window="4s", levels={"blue": 0.5})])
    assert levels_of(k, [(0, 0), (1, 1), (2, 2), (60, 0), (61, 0), (62, 0), (63, 0)]) == [0, 0, 1, 1, 1, 0, 0]


# ----------------------------------------------------------------------------- baseline

def baseline_spec(window: float = 4.0, increase=(30.0, 50.0, 80.0, 100.0), clear: float = 0.0,
                  delay: float = 0.0) -> RuleSpec:
    return RuleSpec("baseline", tuple(Step(i + 1, True, x, x - clear, delay) for i, x in enumerate(increase)),
                    window=window, against=7 * 86400.0)


BASELINE_TABLE = [
    ("undefined until half the window has buckets; then +30% is blue", 10.0,
     at_seconds([13, 13, 13, 13]), [0, 0, 1, 1]),
    ("the window mean, not the sample: one high sample moves it a little", 10.0,
     at_seconds([10, 10, 10, 10, 16]), [0, 0, 0, 0, 0]),     # (10+10+10+16)/4 = 11.5: +15%
    ("jump two levels", 10.0, at_seconds([10, 10, 10, 10, 40]), [0, 0, 0, 0, 2]),   # 17.5: +75%
    ("fall two levels as the window moves on", 10.0, at_seconds([18, 18, 18, 18, 13, 13, 13, 13]),
     [0, 0, 3, 3, 2, 2, 1, 1]),
    ("no baseline (NaN): no level", NAN, at_seconds([50, 50, 50, 50]), [0, 0, 0, 0]),
    ("a baseline of 0 cannot be exceeded by a percentage: no level", 0.0, at_seconds([5, 5, 5]), [0, 0, 0]),
]


@pytest.mark.parametrize("name,base,samples,expected", BASELINE_TABLE, ids=[r[0] for r in BASELINE_TABLE])
def test_baseline_rules(K, name, base, samples, expected):
    k = kernel(K, [baseline_spec()])
    k.ladder.set_baseline(0, base)
    assert levels_of(k, samples) == expected


def test_baseline_holds_below_its_delay(K):
    k = kernel(K, [baseline_spec(delay=3.0)])
    k.ladder.set_baseline(0, 10.0)
    # the window mean is +30 % from the 3rd sample (t=2) on: blue only once that held 3 s (t=5)
    assert levels_of(k, at_seconds([13, 13, 13, 13, 13, 13])) == [0, 0, 0, 0, 0, 1]


def test_baseline_clears_with_hysteresis_and_carries_the_percentage(K):
    k = kernel(K, [baseline_spec(increase=(30.0,), clear=5.0)])
    k.ladder.set_baseline(0, 10.0)
    # window means 13, 12.9, 12.8, 12.7, 12.525 (+25.25%: still blue), then 12.45 (+24.5%: below 25)
    assert levels_of(k, at_seconds([13, 13, 13, 12.6, 12.6, 12.6, 12.3])) == [0, 0, 1, 1, 1, 1, 1]
    assert levels_of(k, [(7, 12.3), (8, 12.3)]) == [0, 0]
    up, down = k.take_level_changes()
    assert (up.rule, up.threshold, up.value) == ("baseline", 30.0, pytest.approx(30.0))
    assert (down.rule, down.level, down.threshold) == ("baseline", 0, 25.0) and down.value < 25.0


def test_a_new_baseline_applies_from_the_next_sample(K):
    k = kernel(K, [baseline_spec()])
    k.ladder.set_baseline(0, 20.0)
    assert levels_of(k, at_seconds([20, 20, 20])) == [0, 0, 0]
    k.ladder.set_baseline(0, 10.0)
    assert levels_of(k, [(3, 20)]) == [4] and k.ladder.baseline[0] == 10.0


def test_hourly_sums_close_per_hour_and_hand_out_the_running_hour(K):
    k = kernel(K, [baseline_spec(), baseline_spec(window=8.0)])     # two rules, one point: one hourly sum
    h0 = math.floor(T0 / 3600) * 3600
    for t, v in [(h0 + 10, 1.0), (h0 + 20, 3.0), (h0 + 3600, 5.0), (h0 + 3610, NAN), (h0 + 3620, 7.0)]:
        k.process(frame(t, [v]))
    assert k.ladder.take_hours(h0 + 3630) == [(0, h0, 4.0, 2)]
    assert k.ladder.take_hours(h0 + 3630, partial=True) == [(0, h0 + 3600, 12.0, 2)]
    k.process(frame(h0 + 3700, [1.0]))
    assert k.ladder.take_hours(h0 + 7200) == [(0, h0 + 3600, 1.0, 1)]     # the rest of that hour
    assert k.ladder.take_hours(h0 + 9999) == []


# ----------------------------------------------------------------------------- ratio to a design value

RATIO_TABLE = [
    ("phreatic line: orange at 1.1 x the design depth, red at it (low side)",
     {"design": 10.0, "side": "low", "levels": {"orange": 1.1, "red": 1.0}},
     at_seconds([12.0, 11.0, 10.5, 10.0, 11.5]), [0, 3, 3, 4, 0]),
    ("slide displacement: orange at 80% of red (high side), hysteresis 5% of each level",
     {"design": 50.0, "levels": {"orange": 0.8, "red": 1.0}, "clear": "5%"},
     at_seconds([30, 40, 38.5, 50, 47.6, 47.4, 37.9]), [0, 3, 3, 4, 4, 3, 0]),
    ("jump two levels: from none past yellow and orange to red in one sample",
     {"design": 10.0, "levels": {"blue": 0.7, "yellow": 0.8, "orange": 0.9, "red": 1.0}},
     at_seconds([6.0, 7.5, 10.2, 8.5, 6.0]), [0, 1, 4, 2, 0]),
    ("hold below the delay: red only once it held 2 s",
     {"design": 10.0, "levels": {"orange": 0.9, "red": 1.0}, "delay": "2s"},
     at_seconds([10.5, 10.5, 10.5, 10.5]), [0, 0, 4, 4]),
]


@pytest.mark.parametrize("name,rule,samples,expected", RATIO_TABLE, ids=[r[0] for r in RATIO_TABLE])
def test_ratio_rules(K, name, rule, samples, expected):
    k = kernel(K, [RatioRule.model_validate({"kind": "ratio", **rule}).spec()])
    assert levels_of(k, samples) == expected
    assert {c.rule for c in k.take_level_changes()} == {"ratio"}


# ----------------------------------------------------------------------------- several rules, reloads

def test_rules_combine_and_the_fall_names_the_rule_that_held(K):
    k = kernel(K, [RuleSpec("level", LADDER.steps()), rate(per="1s", window="4s", levels={"red": 1.0})])
    # at 3 s the rate (1/s) is red at once while the ladder's red waits 3 s; at 5 s the rate falls
    # below 1/s (the window starts at 3.1): orange, until the ladder's red enters at 6 s
    assert levels_of(k, at_seconds([3.0, 3.0, 3.1, 6.0, 6.0, 6.0, 6.0])) == [1, 1, 1, 4, 4, 3, 4]
    changes = k.take_level_changes()
    assert [(c.level, c.previous, c.rule) for c in changes] == [(1, 0, "level"), (4, 1, "rate"), (3, 4, "rate"),
                                                                (4, 3, "level")]


def test_points_without_graded_levels_never_change_level(K):
    k = K(2, thresholds(2, per_point=[{}, {"range_low": 0.0, "range_high": 4.0}]))
    for t in range(5):
        k.process(frame(T0 + t, [9.0, 9.0]))
    assert list(k.level) == [0, 0] and k.take_level_changes() == []


def test_set_thresholds_keeps_rule_state_when_the_rules_keep_their_shape(K):
    k = kernel(K, [RuleSpec("level", LADDER.steps()), rate(per="1s", window="4s", levels={"blue": 0.5})])
    levels_of(k, at_seconds([3.6, 3.6, 3.7]))
    k.take_level_changes()
    lower = Levels.model_validate({"blue": {"high": 1.0}, "yellow": {"high": 2.0}, "orange": {"high": 3.0},
                                   "red": {"high": 3.65}})
    cols = thresholds(1)
    cols["rules"] = [(RuleSpec("level", lower.steps()), rate(per="1s", window="4s", levels={"blue": 0.5}))]
    k.set_thresholds(cols)
    assert k.level[0] == 2                         # kept through the reload
    assert levels_of(k, [(3, 3.7)]) == [4]         # the new ladder applies from the next sample
    assert [(c.previous, c.level) for c in k.take_level_changes()] == [(2, 4)]


def test_point_state_restores_into_a_new_kernel(K):
    specs = [RuleSpec("level", LADDER.steps()), rate(per="1s", window="4s", levels={"blue": 0.5})]
    a, b = kernel(K, specs), kernel(K, specs)
    levels_of(a, at_seconds([0.0, 1.0, 3.6, 3.6]))
    sig, state = a.ladder.point_state(0)
    assert b.ladder.restore_point(0, sig, state, fresh=True)
    assert b.level[0] == a.level[0] == 2
    assert levels_of(b, [(4, 3.6), (5, 2.0), (6, 2.0)]) == levels_of(a, [(4, 3.6), (5, 2.0), (6, 2.0)])
    other = kernel(K, [RuleSpec("level", LADDER.steps())])
    assert not other.ladder.restore_point(0, sig, state) and other.level[0] == 2   # only the level


def test_baseline_rules_are_listed_for_the_store(K):
    k = kernel(K, [RuleSpec("level", LADDER.steps()), baseline_spec()], n=2)
    assert [(r, i, sp.kind) for r, i, sp in k.ladder.baseline_rules()] == [(1, 0, "baseline"), (3, 1, "baseline")]
    assert math.isnan(k.ladder.baseline[1])


def test_the_config_models_compile_to_specs():
    assert RateRule.model_validate({"kind": "rate", "per": "1h", "levels": {"blue": 0.2}}).spec().window == 3600.0
    b = BaselineRule.model_validate({"kind": "baseline", "window": "24h", "factor": [1.3, 1.5, 1.8, 2.0]}).spec()
    assert [(s.level, s.enter) for s in b.steps] == [(1, 30.0), (2, 50.0), (3, 80.0), (4, 100.0)]
    assert b.against == 7 * 86400.0


def test_a_seeded_level_ends_when_the_condition_went_away_and_holds_when_it_did_not(K):
    """What the alarm book does after a restart for an alarm still open: seed the point's level."""
    k = kernel(K, [], n=3, **LEGACY, delay=2.0)
    for i in range(3):
        k.ladder.seed_level(i, 3)                      # orange (alarm) before the restart
    # point 0 went back to normal; point 1 is still in alarm (its machine waits out the 2 s delay
    # again); point 2 is only at the pre-warning now
    k.process(frame(T0, [0.5, 1.2, 0.85]))
    k.process(frame(T0 + 2, [0.5, 1.2, 0.85]))
    got = [(c.point, c.previous, c.level, c.rule) for c in k.take_level_changes()]
    assert got == [(0, 3, 0, "legacy"), (2, 3, 2, "legacy")]
    assert list(k.level) == [0, 3, 2]
