"""GNSS speed and acceleration derived at the edge (edge_agent/gnssmotion.py), as tables."""
from __future__ import annotations

import json
import math

import pytest

from edge_agent.gnssmotion import Motion, horizontal

H, D = 3600.0, 86400.0


def run(m: Motion, samples):
    return [m.update(t, d) for t, d in samples]


def close(a, b, tol=1e-9):
    if a is None or b is None:
        return a is b
    return all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b))


# displacement (mm) as a function of t (s), sampled every 10 min, window 1 h, mm/d and mm/d per day
CASES = [
    ("still", lambda t: (5.0, -3.0, 1.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    # 1 mm/h east, 0.5 mm/h north, settling 0.25 mm/h: 24, 12, -6 mm/d, no acceleration
    ("linear", lambda t: (t / H, 0.5 * t / H, -0.25 * t / H), (24.0, 12.0, -6.0), (0.0, 0.0, 0.0)),
]


@pytest.mark.parametrize("name,disp,speed,acc", CASES, ids=[c[0] for c in CASES])
def test_speed_and_acceleration_of_simple_series(name, disp, speed, acc):
    m = Motion(window=H, per=D)
    out = run(m, [(t, disp(t)) for t in range(0, 6 * 3600 + 1, 600)])
    assert out[0] == (None, None)
    assert out[3][0] is not None and out[3][1] is None, "speed from half a window on, acceleration later"
    for s, a in out[-20:]:
        assert close(s, speed) and close(a, acc), (s, a)


def test_quadratic_creep_gives_its_acceleration_exactly():
    a = 48.0 / D / D                # 48 mm/d per day
    m = Motion(window=H, per=D)
    out = run(m, [(t, (a * t * t / 2, 0.0, -a * t * t / 4)) for t in range(0, 12 * 3600 + 1, 600)])
    t_last = 12 * 3600
    speed, acc = out[-1]
    # a difference over one window: the speed at the window's middle
    assert close(speed, (a * (t_last - H / 2) * D, 0.0, -a * (t_last - H / 2) * D / 2))
    assert close(acc, (48.0, 0.0, -24.0), 1e-6)


TABLE = [
    # (what, samples, the expected result of the last update)
    ("too little history", [(0, (0, 0, 0)), (600, (1, 1, 1))], (None, None)),
    ("half a window is enough", [(0, (0, 0, 0)), (1800, (1, 0, 0))], ((48.0, 0.0, 0.0), None)),
    ("the reference nearest an hour ago, not the oldest",
     # speeds: 480 mm/d at 1800 s and 3600 s, then 1 mm in the last hour = 24 mm/d; so the speed fell by
     # 456 mm/d in an hour: -10944 mm/d per day
     [(0, (0, 0, 0)), (1800, (10, 0, 0)), (3600, (20, 0, 0)), (7200, (21, 0, 0))],
     ((24.0, 0.0, 0.0), (-10944.0, 0.0, 0.0))),
    ("a non-finite axis is ignored", [(0, (0, 0, 0)), (3600, (1, 0, 0)), (4200, (math.nan, 0, 0))],
     ((24.0, 0.0, 0.0), None)),
    ("a time not after the last is ignored", [(0, (0, 0, 0)), (3600, (1, 0, 0)), (3600, (9, 9, 9))],
     ((24.0, 0.0, 0.0), None)),
    ("a gap longer than the history starts afresh", [(0, (0, 0, 0)), (3600, (1, 0, 0)), (30000, (50, 0, 0))],
     (None, None)),
]


@pytest.mark.parametrize("what,samples,want", TABLE, ids=[t[0] for t in TABLE])
def test_table(what, samples, want):
    got = run(Motion(window=H, per=D), samples)[-1]
    assert close(got[0], want[0]) and close(got[1], want[1]), got


def test_history_is_bounded():
    m = Motion(window=H, per=D)
    run(m, [(t, (t / H, 0, 0)) for t in range(0, 10 * int(D), 60)])
    assert len(m.disp) <= 2 * H / 60 + 2 and len(m.speed) <= 2 * H / 60 + 2


def test_state_survives_a_reload_and_a_json_round_trip():
    samples = [(t, (t / H + 0.01 * math.sin(t), 0.2 * t / H, -0.1 * t / H)) for t in range(0, 5 * 3600, 300)]
    whole = run(Motion(window=H, per=D), samples)
    first = Motion(window=H, per=D)
    run(first, samples[:30])
    carried = Motion.restore(json.loads(json.dumps(first.state())), window=H, per=D)
    assert run(carried, samples[30:]) == whole[30:]
    # a changed window starts afresh (its history was for the old one)
    fresh = Motion.restore(first.state(), window=2 * H, per=D)
    assert fresh.update(*samples[30]) == (None, None)


def test_bad_arguments_and_horizontal():
    with pytest.raises(ValueError, match="longer than 0s"):
        Motion(window=0)
    assert horizontal((3.0, 4.0, 12.0)) == 5.0 and horizontal(None) is None
