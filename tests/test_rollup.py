"""Roll-up from points to monitoring items to the facility, counting as the tailings design code does."""
from __future__ import annotations

import math

import pytest

from edge_agent.filtering import LevelChange
from edge_agent.rollup import Item, Rollup

POINTS = {f"d/P{i}": i for i in range(8)}


def change(point: int, level: int, t: float = 0.0) -> LevelChange:
    return LevelChange(point, level, 0, "level", math.nan, 0.0, t)


def item_levels(roll: Rollup, steps) -> list[int]:
    """Apply (point, level) steps one by one; the first item's level after each."""
    out = []
    for point, level in steps:
        roll.update([change(point, level)])
        out.append(roll.level[0])
    return out


TABLE = [
    # name, rollup rule, (point, level) steps, item level after each
    ("4 blue points make the item yellow, its highest member alone keeps it blue", {},
     [(0, 1), (1, 1), (2, 1), (3, 1), (3, 0)], [1, 1, 1, 2, 1]),
    ("3 yellow make it orange (yellow counts as at least blue)", {},
     [(0, 2), (1, 2), (2, 2), (2, 1)], [2, 2, 3, 2]),
    ("2 orange make it red", {}, [(0, 3), (1, 3), (0, 0)], [3, 4, 3]),
    ("a red point makes the item red; falls follow the members", {}, [(5, 4), (5, 1), (5, 0)], [4, 1, 0]),
    ("counting only (highest: false): one red point is not enough", {"highest": False},
     [(0, 4), (1, 4), (2, 1), (3, 1)], [0, 4, 4, 4]),
    ("a step can be switched off", {"orange_to_red": None}, [(0, 3), (1, 3), (2, 3)], [3, 3, 3]),
    ("site numbers: 2 blue make yellow", {"blue_to_yellow": 2}, [(0, 1), (1, 1)], [1, 2]),
]


@pytest.mark.parametrize("name,rule,steps,expected", TABLE, ids=[r[0] for r in TABLE])
def test_item_levels(name, rule, steps, expected):
    roll = Rollup([Item(name="断面", points=tuple(POINTS), rollup=rule)], POINTS)
    assert item_levels(roll, steps) == expected


def test_changes_say_why_and_the_facility_counts_items():
    items = [Item(name="A", points=("d/P0", "d/P1", "d/P2", "d/P3")), Item(name="B", points=("d/P4",)),
             Item(name="库", items=("A", "B"), rollup={"blue_to_yellow": 2})]
    roll = Rollup(items, POINTS)
    got = []
    for p in range(4):
        got += roll.update([change(p, 1, t=float(p))])
    assert [(c.item, c.previous, c.level, c.rule, c.threshold, c.value, c.time) for c in got] == [
        ("A", 0, 1, "highest", pytest.approx(math.nan, nan_ok=True), 1.0, 0.0),
        ("库", 0, 1, "highest", pytest.approx(math.nan, nan_ok=True), 1.0, 0.0),
        ("A", 1, 2, "rollup", 4.0, 4.0, 3.0),           # 4 members at blue or above
        ("库", 1, 2, "highest", pytest.approx(math.nan, nan_ok=True), 1.0, 3.0)]
    got = roll.update([change(4, 1, t=9.0)])           # B blue too: 库 stays yellow, now by counting 2 items
    assert [(c.item, c.level, c.rule) for c in got] == [("B", 1, "highest")]
    got = roll.update([change(0, 0, t=10.0)])          # A falls back to blue: the count rule let go of it
    assert [(c.item, c.previous, c.level, c.rule, c.threshold, c.value) for c in got] == [
        ("A", 2, 1, "rollup", 4.0, 3.0)]               # 库 holds: 2 items at blue still make it yellow
    assert roll.levels == {"A": 1, "B": 1, "库": 2}


def test_points_in_no_item_change_nothing():
    roll = Rollup([Item(name="A", points=("d/P0",))], POINTS)
    assert roll.update([change(7, 4)]) == [] and roll.levels == {"A": 0}


def test_a_loop_is_refused():
    with pytest.raises(ValueError, match="loop"):
        Rollup([Item(name="A", items=("B",)), Item(name="B", items=("A",))], POINTS)
