"""Validated points without pydantic's per-instance weight: `CompactPoint`, `compact(model)`.

A site's points validate as pydantic models (edge_agent/model.py `Point` and the drivers'
subclasses); each then becomes a CompactPoint, which reads the same and weighs a tenth
(BENCHMARKS.md, "Second round, part 3").  `Device` compacts its points once they validate,
the CSV point tables each row; `sharing()` makes equal values one object across a whole site.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import types
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError


class CompactPoint:
    """A validated point, without pydantic's per-instance weight: what `Device.points` holds.

    A point model instance keeps a ~28-entry `__dict__`, a set of given keys and copies of its
    default sub-models (~1.2-1.6 kB); this keeps only the keys the site file gave, in slots
    (~90 bytes for seven keys), reads every other field from its class (the model's defaults,
    one shared object each), and shares equal texts, numbers and sub-models between points.
    Every field, property and method of the model reads the same (`data_type`,
    `deadband_abs`, a driver's own); the rest of pydantic's interface (`model_dump`,
    `model_copy`, ...) goes through `to_model()`, the model rebuilt without validation.
    Build one with `compact(model)`; `Device` does it for its points once they validate.
    """
    __slots__ = ()
    model: ClassVar[type] = BaseModel          # the pydantic model it stands for
    model_fields_set: ClassVar[frozenset] = frozenset()   # the keys the site file gave (slots)

    def to_model(self) -> BaseModel:
        """The pydantic model this point stands for (built without validating again)."""
        given = self.model_fields_set
        return self.model.model_construct(_fields_set=set(given), **{k: getattr(self, k) for k in given})

    def model_dump(self, **kw) -> dict:
        return self.to_model().model_dump(**kw)

    def model_copy(self, *, update=None, deep: bool = False):
        return compact(self.to_model().model_copy(update=update, deep=deep))

    @property
    def model_fields(self) -> dict:
        return self.model.model_fields

    def _values(self) -> tuple:
        return tuple(getattr(self, k) for k in self.model.model_fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CompactPoint):
            return self.model is other.model and self._values() == other._values()
        if isinstance(other, BaseModel) and type(other) is self.model:
            return self._values() == tuple(getattr(other, k) for k in self.model.model_fields)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.model, self._values()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise ValidationError.from_exception_data(self.model.__name__, [
            {"type": "frozen_instance", "loc": (name,), "input": value}])

    __delattr__ = __setattr__

    def __copy__(self) -> "CompactPoint":
        return self

    def __deepcopy__(self, memo: dict) -> "CompactPoint":
        return self

    def __reduce__(self):
        return compact, (self.to_model(),)

    def __repr__(self) -> str:
        return repr(self.to_model())

    def __str__(self) -> str:
        return str(self.to_model())

    def __getattr__(self, name: str) -> Any:    # only for what neither the slots nor the class have
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.to_model(), name)


_BASES: dict[type, type] = {}
_SHAPES: dict[tuple, tuple] = {}
_LAST: dict[type, tuple] = {}        # per point model: the last (given keys, shape)
_POOL_SIZE = 1 << 15
# while `sharing()`: one object per distinct value (texts, numbers, sub-models)
_POOL: contextvars.ContextVar[dict | None] = contextvars.ContextVar("edge_agent_point_pool", default=None)


@contextlib.contextmanager
def sharing():
    """Points compacted inside share equal values across devices (`load_site` reads a site in one);
    outside, only within each device's points."""
    token = _POOL.set({})
    try:
        yield
    finally:
        _POOL.reset(token)


def _base(model: type) -> type:
    """The compact class of a point model: its defaults and its own properties and methods."""
    base = _BASES.get(model)
    if base is None:
        ns: dict[str, Any] = {"__slots__": (), "model": model, "__module__": model.__module__,
                              "__doc__": model.__doc__}
        for k, f in model.model_fields.items():
            ns[k] = f.get_default(call_default_factory=True)
        from edge_agent.model import Model
        for cls in reversed(model.__mro__[:model.__mro__.index(Model)]):
            for k, v in vars(cls).items():
                if not k.startswith("_") and k not in model.model_fields and isinstance(
                        v, (property, functools.cached_property, staticmethod, classmethod, types.FunctionType)):
                    ns[k] = v
        base = _BASES[model] = type(model.__name__, (CompactPoint,), ns)
    return base


def _key(v: Any) -> Any:
    """A dict key that tells apart what `==` does not (1 and 1.0 and True, 0.0 and -0.0)."""
    t = type(v)
    if t is float:
        return t, v, math.copysign(1.0, v)
    if t is tuple:
        return (t,) + tuple(_key(x) for x in v)
    if isinstance(v, BaseModel):
        return (t,) + tuple(_key(x) for x in v.__dict__.values())
    return t, v


def _shared(v: Any, pool: dict) -> Any:
    t = type(v)
    if t is str:
        key: Any = v
    elif v is None or t is bool:
        return v
    else:
        try:
            key = _key(v)
            hash(key)
        except TypeError:      # a dict (attrs) or a model holding one: kept as it is
            return v
    return pool.setdefault(key, v)


def compact(pt: Any, pool: dict | None = None) -> Any:
    """A validated point model as a `CompactPoint` (already one, or not a point model: as it is)."""
    from edge_agent.model import Point
    if not isinstance(pt, Point):
        return pt
    model = type(pt)
    given = pt.__pydantic_fields_set__
    last = _LAST.get(model)
    if last is not None and last[0] == given:      # the same keys as the point before: most points
        shape = last[1]
    else:
        shape = _SHAPES.get((model, frozenset(given)))
        if shape is None:
            names = tuple(k for k in model.model_fields if k in given)
            cls = type(model.__name__, (_base(model),), {"__slots__": names, "__module__": model.__module__,
                                                          "model_fields_set": frozenset(names)})
            shape = _SHAPES[(model, frozenset(given))] = (cls, tuple((k, vars(cls)[k].__set__) for k in names))
        _LAST[model] = (frozenset(given), shape)
    cls, setters = shape
    if pool is None:
        pool = _POOL.get()
        pool = {} if pool is None else pool
    out = object.__new__(cls)
    d = pt.__dict__
    for k, put in setters:
        v = d[k]
        put(out, pool.setdefault(v, v) if type(v) is str else _shared(v, pool))
    return out


def compact_points(points) -> tuple:
    """`points` as CompactPoints, sharing equal values (each model can go as soon as it is done)."""
    pool = _POOL.get()
    pool = {} if pool is None else pool
    if len(pool) > _POOL_SIZE:      # unique ids and addresses fill it: start again (what repeats comes back)
        pool.clear()
    return tuple(compact(pt, pool) for pt in points)
