"""Roll-up: points make monitoring items, items make a facility (`items:` in the site file).

    items:
      - {name: 浸润线-1断面, points: [piezo/P1, piezo/P2, piezo/P3, piezo/P4]}
      - {name: 尾矿库, items: [浸润线-1断面, 坝体位移]}                  # the facility
        rollup: {blue_to_yellow: 4, yellow_to_orange: 3, orange_to_red: 2}

An item's level is the highest of: its most severe member's level (`highest:
true`, the default), yellow when `blue_to_yellow` members are at blue or above,
orange when `yellow_to_orange` are at yellow or above, red when `orange_to_red`
are at orange or above (defaults from the tailings design code, GB 50863: 4, 3, 2).
Members are points (`device/id`, or an id no other device uses) and other items.

`Rollup(site.items, catalog).update(changes)` takes the kernel's LevelChanges
(only changes: never called per frame without one) and returns the
`ItemLevelChange`s they cause, children before parents.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field, field_validator

from edge_agent.levels import Frozen

NAN = math.nan


class RollupRule(Frozen):
    blue_to_yellow: int | None = Field(4, ge=1)      # members at blue or above that make the item yellow
    yellow_to_orange: int | None = Field(3, ge=1)
    orange_to_red: int | None = Field(2, ge=1)
    highest: bool = True                              # the item is at least its most severe member's level

    def steps(self) -> tuple[tuple[int, int, int], ...]:
        """(members needed, at or above level, make level), None steps left out."""
        return tuple((n, lv, lv + 1) for n, lv in ((self.blue_to_yellow, 1), (self.yellow_to_orange, 2),
                                                   (self.orange_to_red, 3)) if n is not None)


class Item(Frozen):
    name: str
    points: tuple[str, ...] = ()    # device/id
    items: tuple[str, ...] = ()     # other items' names
    rollup: RollupRule = RollupRule()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not 1 <= len(v) <= 64 or any(c in v for c in ";~|/"):
            raise ValueError("an item name is 1-64 characters without ';', '~', '|' or '/'")
        return v


@dataclass(slots=True)
class ItemLevelChange:
    """An item's level changed; fields as edge_agent.filtering.LevelChange, `item` instead of `point`.

    `rule` is "rollup" (counting members: `threshold` the members needed, `value`
    the members at the counted level) or "highest" (the most severe member:
    `threshold` NaN, `value` the members at that level); on a fall, the rule that
    held the previous level, with the count now.
    """
    item: str
    level: int
    previous: int
    rule: str
    threshold: float
    value: float
    time: float


def point_names(catalog) -> dict[str, int]:
    """'device/id' -> global index, and 'id' where no other device has that id."""
    out: dict[str, int] = {}
    seen: dict[str, int] = {}
    for di, dev in enumerate(catalog.site.devices):
        for rp in catalog.by_device[di]:
            out[f"{dev.name}/{rp.id}"] = rp.index
            seen[rp.id] = seen.get(rp.id, 0) + 1
            out.setdefault(rp.id, rp.index)
    return {k: v for k, v in out.items() if "/" in k or seen[k] == 1}


def problems(site) -> list[tuple[tuple, str]]:
    """(location, reason) for items that name unknown or ambiguous points, unknown items, or loop."""
    ids: dict[str, int] = {}
    full: set[str] = set()
    for dev in site.devices:
        for pt in dev.points:
            full.add(f"{dev.name}/{pt.id}")
            ids[pt.id] = ids.get(pt.id, 0) + 1
    out = []
    names = [it.name for it in site.items]
    for k, it in enumerate(site.items):
        if names.index(it.name) != k:
            out.append((("items", k, "name"), f"item name {it.name!r} is used twice"))
        if not it.points and not it.items:
            out.append((("items", k), "an item needs `points` and/or `items`"))
        for m, ref in enumerate(it.points):
            if "/" in ref and ref not in full:
                out.append((("items", k, "points", m), f"{ref!r}: no such point; write device/id as in `devices:`"))
            elif "/" not in ref and ids.get(ref, 0) != 1:
                why = "no point has this id" if ref not in ids else "several devices have a point with this id"
                out.append((("items", k, "points", m), f"{ref!r}: {why}; write device/id"))
        for m, ref in enumerate(it.items):
            if ref not in names:
                out.append((("items", k, "items", m), f"{ref!r}: no item has this name"))
    if not out and _order(site.items) is None:
        out.append((("items",), "items contain each other in a loop; a facility's items cannot contain it"))
    return out


def _order(items) -> list[int] | None:
    """Items with children before parents (None: a loop)."""
    by_name = {it.name: k for k, it in enumerate(items)}
    done: list[int] = []
    state = [0] * len(items)     # 0 new, 1 on the path, 2 done

    def visit(k: int) -> bool:
        if state[k] == 1:
            return False
        if state[k] == 0:
            state[k] = 1
            if not all(visit(by_name[c]) for c in items[k].items):
                return False
            state[k] = 2
            done.append(k)
        return True

    return done if all(visit(k) for k in range(len(items))) else None


class Rollup:
    """Item and facility levels, kept up to date from level changes.  `levels`: name -> level."""

    def __init__(self, site_items, catalog):
        names = point_names(catalog) if not isinstance(catalog, dict) else catalog
        self.items = tuple(site_items)
        order = _order(self.items)
        if order is None:
            raise ValueError("items contain each other in a loop")
        self.order = {k: pos for pos, k in enumerate(order)}
        by_name = {it.name: k for k, it in enumerate(self.items)}
        self.of_point: dict[int, list[int]] = {}
        self.parents: list[list[int]] = [[] for _ in self.items]
        self.member: list[dict] = [{} for _ in self.items]     # member key -> its level
        for k, it in enumerate(self.items):
            for ref in it.points:
                self.of_point.setdefault(names[ref], []).append(k)
                self.member[k][("p", names[ref])] = 0
            for ref in it.items:
                self.parents[by_name[ref]].append(k)
                self.member[k][("i", by_name[ref])] = 0
        self.exact = [[len(self.member[k])] + [0] * 4 for k in range(len(self.items))]
        self.level = [0] * len(self.items)
        self.cause: list[tuple[str, float, int]] = [("highest", NAN, 0)] * len(self.items)

    @property
    def levels(self) -> dict[str, int]:
        return {it.name: self.level[k] for k, it in enumerate(self.items)}

    def seed(self, point_levels) -> None:
        """Take the points' current levels (e.g. `kernel.level` after a restart or a reload) as they are:
        item levels follow, and no change is reported for them."""
        for key_point, ks in self.of_point.items():
            for k in ks:
                self._set(k, ("p", key_point), int(point_levels[key_point]))
        for k in sorted(self.order, key=self.order.__getitem__):
            self._evaluate(k, math.nan)
            for parent in self.parents[k]:
                self._set(parent, ("i", k), self.level[k])

    def update(self, changes) -> list:
        """The item changes the point changes cause, in order (children before parents)."""
        out: list[ItemLevelChange] = []
        for c in changes:
            pending = {k: ("p", c.point, c.level) for k in self.of_point.get(c.point, ())}
            while pending:
                k = min(pending, key=self.order.__getitem__)
                key0, key1, lv = pending.pop(k)
                self._set(k, (key0, key1), lv)
                ch = self._evaluate(k, c.time)
                if ch is not None:
                    out.append(ch)
                    for parent in self.parents[k]:
                        pending[parent] = ("i", k, ch.level)
        return out

    def _set(self, k: int, key: tuple, level: int) -> None:
        old = self.member[k][key]
        self.member[k][key] = level
        self.exact[k][old] -= 1
        self.exact[k][level] += 1

    def _count(self, k: int, at_least: int) -> int:
        return sum(self.exact[k][at_least:])

    def _evaluate(self, k: int, t: float) -> ItemLevelChange | None:
        rule = self.items[k].rollup
        lev, cause = 0, ("highest", NAN, 0)
        if rule.highest:
            top = max((lv for lv in range(1, 5) if self.exact[k][lv]), default=0)
            lev, cause = top, ("highest", NAN, top)
        for need, at, make in rule.steps():
            if self._count(k, at) >= need and make >= lev:
                lev, cause = make, ("rollup", float(need), at)
        prev = self.level[k]
        if lev == prev:
            self.cause[k] = cause if lev else self.cause[k]
            return None
        rule_name, threshold, at = cause if lev > prev else self.cause[k]
        value = self._count(k, at) if rule_name == "rollup" else self.exact[k][at] if at else 0
        self.level[k] = lev
        if lev:
            self.cause[k] = cause
        return ItemLevelChange(self.items[k].name, lev, prev, rule_name, threshold, float(value), t)
