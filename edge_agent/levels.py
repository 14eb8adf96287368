"""Graded warning in the site file: a point's `levels:` and `rules:`, and `items:` (roll-up).

    levels:                              # absolute levels: blue < yellow < orange < red
      blue:   {high: 3.0, clear: 2.9}    # each: high and/or low, clear (hysteresis), delay
      red:    {high: 4.5, delay: 30s}
    rules:
      - {kind: rate, per: 1h, window: 2h, levels: {blue: 0.2, red: 0.8}}      # change per hour
      - {kind: baseline, window: 1h, against: 7d, increase: ["30%", "50%", "80%", "100%"]}
      - {kind: baseline, window: 24h, against: 7d, factor: [1.3, 1.5, 1.8, 2.0]}
      - {kind: ratio, design: 12.0, side: low, levels: {red: 1.0, orange: 1.1}}  # x design value

Frozen models (validated where they stand: a ladder out of order is an error
of that key), `rule_specs(point)` for the kernel (edge_agent/filtering/rules.py),
and `problems(site, ...)`: the checks that need the device or the buffer
(a window shorter than the poll period, a baseline longer than buffer.max_age,
items naming unknown points or items).
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from edge_agent.codes import COLOURS, level_number
from edge_agent.errors import Problem
from edge_agent.filtering.rules import RuleSpec, Step
from edge_agent.units import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
HOUR, DAY = 3600.0, 86400.0


class Frozen(BaseModel):
    # as model.Model (model.Point imports this module, so it cannot import model)
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _percent(v: Any) -> float:
    """'30%' -> 30.0; a bare number is refused (0.3 or 30 would both be guesses)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", v) if isinstance(v, str) else None
    if m is None:
        raise ValueError(f"{v!r}: write an increase as a percentage in quotes, e.g. \"30%\" "
                         "(or give `factor: [1.3, ...]`)")
    return float(m.group(1))


def _ordered(values: dict[str, float], ascending: bool, what: str) -> None:
    """Raise ValueError unless the values go strictly up (or down) from blue to red."""
    given = [(c, values[c]) for c in COLOURS if values.get(c) is not None]
    for (c1, v1), (c2, v2) in zip(given, given[1:]):
        if (v2 <= v1) if ascending else (v2 >= v1):
            raise ValueError(f"{what}{c2} ({v2:g}) must be {'above' if ascending else 'below'} {what}{c1} "
                             f"({v1:g}): the ladder goes blue < yellow < orange < red")


# --------------------------------------------------------------------------- levels:

class Level(Frozen):
    high: float | None = None
    low: float | None = None
    clear: float | None = None           # the clear level of the one side given
    high_clear: float | None = None
    low_clear: float | None = None
    delay: Duration = 0.0

    @model_validator(mode="after")
    def _sides(self) -> "Level":
        if self.high is None and self.low is None:
            raise ValueError("give `high` and/or `low`")
        if self.clear is not None:
            if self.high is not None and self.low is not None:
                raise ValueError("with both `high` and `low`, give `high_clear` and `low_clear` instead of `clear`")
            if self.high_clear is not None or self.low_clear is not None:
                raise ValueError("give `clear` or `high_clear`/`low_clear`, not both")
        hc, lc = self.high_clears(), self.low_clears()
        if self.high is not None and hc is not None and hc > self.high:
            raise ValueError(f"the clear level ({hc:g}) of `high` must be at most {self.high:g}")
        if self.low is not None and lc is not None and lc < self.low:
            raise ValueError(f"the clear level ({lc:g}) of `low` must be at least {self.low:g}")
        if self.delay < 0:
            raise ValueError("delay cannot be negative")
        return self

    def high_clears(self) -> float | None:
        return self.high_clear if self.high_clear is not None else (self.clear if self.high is not None else None)

    def low_clears(self) -> float | None:
        return self.low_clear if self.low_clear is not None else (self.clear if self.low is not None else None)


class Levels(Frozen):
    blue: Level | None = None
    yellow: Level | None = None
    orange: Level | None = None
    red: Level | None = None

    @model_validator(mode="after")
    def _ladder(self) -> "Levels":
        got = {c: getattr(self, c) for c in COLOURS if getattr(self, c) is not None}
        if not got:
            raise ValueError("give at least one of blue, yellow, orange, red")
        _ordered({c: lv.high for c, lv in got.items()}, True, "")
        _ordered({c: lv.low for c, lv in got.items()}, False, "")
        return self

    def steps(self) -> tuple[Step, ...]:
        out = []
        for c in COLOURS:
            lv = getattr(self, c)
            if lv is None:
                continue
            n = level_number(c)
            if lv.high is not None:
                out.append(Step(n, True, lv.high, _nan(lv.high_clears()), lv.delay))
            if lv.low is not None:
                out.append(Step(n, False, lv.low, _nan(lv.low_clears()), lv.delay))
        return tuple(out)


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


# --------------------------------------------------------------------------- rules:

class LevelValues(Frozen):
    """A threshold per level, in the rule's own quantity."""
    blue: float | None = None
    yellow: float | None = None
    orange: float | None = None
    red: float | None = None

    def given(self) -> dict[str, float]:
        return {c: getattr(self, c) for c in COLOURS if getattr(self, c) is not None}


class _Rule(Frozen):
    clear: float | str | None = None     # hysteresis below each level: an amount, or "5%" of the level
    delay: Duration = 0.0

    @field_validator("clear")
    @classmethod
    def _clear(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, str):
            return f"{_percent(v)}%"
        if v is not None and not v >= 0:
            raise ValueError("cannot be negative")
        return v

    def _steps(self, values: dict[str, float], high: bool) -> tuple[Step, ...]:
        out = []
        for c, enter in values.items():
            if self.clear is None:
                gap = 0.0
            elif isinstance(self.clear, str):
                gap = abs(enter) * float(self.clear[:-1]) / 100.0
            else:
                gap = float(self.clear)
            out.append(Step(level_number(c), high, enter, enter - gap if high else enter + gap, self.delay))
        return tuple(out)


class RateRule(_Rule):
    kind: Literal["rate"]
    per: Duration                        # the rate's unit of time: 1h -> units per hour
    window: Duration | None = None       # measured over this long (default: `per`)
    side: Literal["high", "low", "both"] = "high"   # rising, falling (values are magnitudes), either way
    levels: LevelValues

    @model_validator(mode="after")
    def _check(self) -> "RateRule":
        if self.per <= 0 or (self.window is not None and self.window <= 0):
            raise ValueError("`per` and `window` must be longer than 0s")
        got = self.levels.given()
        if not got:
            raise ValueError("levels: give a rate for at least one of blue, yellow, orange, red")
        if any(v <= 0 for v in got.values()):
            raise ValueError("levels: rates are magnitudes above 0 (use `side: low` for falling values)")
        _ordered(got, True, "levels.")
        return self

    def spec(self) -> RuleSpec:
        got = self.levels.given()
        if self.side == "low":     # falling: rate <= -x
            steps = self._steps({c: -v for c, v in got.items()}, False)
        else:
            steps = self._steps(got, True)
        return RuleSpec("rate", steps, window=self.window or self.per, per=self.per, absolute=self.side == "both")


class BaselineRule(_Rule):
    kind: Literal["baseline"]
    window: Duration                     # the mean over the last `window` ...
    against: Duration = 7 * DAY          # ... against the same hours of the previous days (window < 1d),
                                         # or the mean of the `against` before the window (window >= 1d)
    increase: list[Any] | dict[str, Any] | None = None   # ["30%", ...] from blue, or {yellow: "50%", ...}
    factor: list[float] | dict[str, float] | None = None  # [1.3, ...]: mean >= factor x baseline

    @model_validator(mode="after")
    def _check(self) -> "BaselineRule":
        if (self.increase is None) == (self.factor is None):
            raise ValueError("give either `increase` (percentages) or `factor`")
        if self.window < HOUR or self.window % HOUR:
            raise ValueError(f"window ({self.window:g}s) must be whole hours (1h, 24h): baselines are hourly")
        if self.against < DAY or self.against % DAY:
            raise ValueError(f"against ({self.against:g}s) must be whole days (7d)")
        if self.window > self.against:
            raise ValueError("window must not be longer than against")
        _ordered(self.percentages(), True, "increase.")
        return self

    def percentages(self) -> dict[str, float]:
        """Percent above the baseline per level (factor 1.3 = 30%)."""
        raw = self.increase if self.increase is not None else self.factor
        if isinstance(raw, list):
            if not 1 <= len(raw) <= len(COLOURS):
                raise ValueError(f"give 1 to 4 values, from blue (got {len(raw)})")
            raw = dict(zip(COLOURS, raw))
        out = {}
        for c, v in raw.items():
            if c not in COLOURS:
                raise ValueError(f"{c!r} is not a level; use {', '.join(COLOURS)}")
            if self.increase is not None:
                out[c] = _percent(v)
            elif not (isinstance(v, (int, float)) and v > 1):
                raise ValueError(f"factor {v!r} must be a number above 1 (1.3 = 30% above the baseline)")
            else:
                out[c] = round((float(v) - 1.0) * 100.0, 9)
        return {c: out[c] for c in COLOURS if c in out}

    def spec(self) -> RuleSpec:
        return RuleSpec("baseline", self._steps(self.percentages(), True), window=self.window, against=self.against)


class RatioRule(_Rule):
    kind: Literal["ratio"]
    design: float                        # the design value (e.g. the red level from the design)
    side: Literal["high", "low"] = "high"    # high: v >= factor x design; low: v <= factor x design
    levels: LevelValues                  # a factor per level: orange 1.1 (x design)

    @model_validator(mode="after")
    def _check(self) -> "RatioRule":
        got = self.levels.given()
        if not got:
            raise ValueError("levels: give a factor for at least one of blue, yellow, orange, red")
        if self.design == 0 or not math.isfinite(self.design):
            raise ValueError("design must be a finite value other than 0")
        _ordered({c: v * self.design for c, v in got.items()}, self.side == "high", "levels.")
        return self

    def spec(self) -> RuleSpec:
        got = {c: v * self.design for c, v in self.levels.given().items()}
        return RuleSpec("ratio", self._steps(got, self.side == "high"))


Rule = Annotated[Union[RateRule, BaselineRule, RatioRule], Field(discriminator="kind")]


def rule_specs(point) -> tuple[RuleSpec, ...]:
    """What the kernel evaluates for a config.Point: its `levels:` first, then its `rules:` in order."""
    out = [RuleSpec("level", point.levels.steps())] if point.levels is not None else []
    return tuple(out) + tuple(r.spec() for r in point.rules)


class PollInWarning(Frozen):
    """A device's `poll_in_warning:`: poll every `period` while any of its points is at level `from`
    or above (default blue: at any level), back to `poll` once none is.  `poll_in_warning: 1m` is
    `{period: 1m, from: blue}`."""
    period: Duration
    from_: str = Field("blue", alias="from")

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return {"period": v} if isinstance(v, (str, int, float)) and not isinstance(v, bool) else v

    @field_validator("period")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("the period must be longer than 0s")
        return v

    @field_validator("from_")
    @classmethod
    def _colour(cls, v: str) -> str:
        if v not in COLOURS:
            raise ValueError(f"{v!r} is not a level; use one of {', '.join(COLOURS)}")
        return v

    @property
    def level(self) -> int:
        return level_number(self.from_)


def has_warning(site) -> bool:
    return any(p.levels is not None or p.rules for d in site.devices for p in d.points)


# --------------------------------------------------------------------------- checks that need the site

def point_problems(dev, pt, buffer) -> list[tuple[tuple, str]]:
    """(location below the point, reason) for each rule of `pt` its device or the buffer cannot serve."""
    out = []
    for ri, rule in enumerate(pt.rules):
        window = rule.spec().window          # ratio rules have none (0)
        if 0 < window < dev.poll:
            out.append((("rules", ri, "window"), f"the window ({window:g}s) is shorter than the device's poll "
                                                 f"period ({dev.poll:g}s): it would never hold two samples"))
        if rule.kind == "baseline" and rule.against + rule.window > buffer.max_age:
            out.append((("rules", ri, "against"),
                        f"the baseline needs {(rule.against + rule.window) / DAY:g} days of history but "
                        f"buffer.max_age keeps {buffer.max_age / DAY:g}; raise max_age or shorten `against`"))
    return out
