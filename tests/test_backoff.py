"""The one retry schedule every driver, sink and the FTP push use."""
from __future__ import annotations

import random

import pytest

from edge_agent.backoff import Backoff


def test_doubles_to_the_cap_with_a_spread_and_resets():
    b = Backoff(1.0, 60.0, rng=random.Random(7))
    nominal = []
    for _ in range(9):
        nominal.append(b.nominal)
        d = b.next()
        assert 0.8 * nominal[-1] <= d <= 1.2 * nominal[-1]
    assert nominal == [1, 2, 4, 8, 16, 32, 60, 60, 60] and b.failures == 9
    spread = [Backoff(10.0, 10.0).next() for _ in range(2000)]
    assert 8.0 <= min(spread) < 8.5 and 11.5 < max(spread) <= 12.0
    b.reset()
    assert b.nominal == 1.0 and b.failures == 0


@pytest.mark.parametrize("args", [(0, 1), (2, 1), (1, 2, 1.0)])
def test_refuses_a_schedule_that_makes_no_sense(args):
    with pytest.raises(ValueError):
        Backoff(*args)
