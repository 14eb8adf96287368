"""Shared pydantic types of the site file: what every driver, sink and the site itself build on.

- `Model`: frozen, unknown keys are errors, populate by name.
- `Duration` (`500ms`, `20s`, `5m` -> seconds; `Period`: one longer than 0s), `Size` (`1GiB` -> bytes), `FreeText` (text
  that goes into records: the spec files' separators are refused).
- `Point`: the keys every point has, whatever its driver; a driver whose points have
  more (Modbus: `type`, `order`, `length`) subclasses it.
- `Device`: the keys every device has; each driver's config model subclasses it and
  narrows `driver` to its own names (see `edge_agent.registry`).
- `SinkConfig`: the keys every sink under `forward:` has (`name`, `enabled`).
- `field_error(field, reason)`: raise it from a model validator to pin a cross-field
  problem on one field (`file:line: ...points[T1].type: reason`).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
import types
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_serializer, \
    field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from edge_agent import levels as warning
from edge_agent.units import parse_duration, parse_size

def _longer_than_zero(v: float) -> float:
    if v <= 0:
        raise ValueError("must be longer than 0s")
    return v


Duration = Annotated[float, BeforeValidator(parse_duration)]
Period = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_longer_than_zero)]   # a Duration > 0
Size = Annotated[int, BeforeValidator(parse_size)]

# characters that would break the text-file framing if they appeared in free text
FRAMING_CHARS = (";", "~", "|")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _no_framing(v: str) -> str:
    if ";" not in v and "~" not in v and "|" not in v:     # FRAMING_CHARS; every point's texts pass here
        return v
    bad = [c for c in FRAMING_CHARS if c in v]
    if bad:
        raise ValueError(f"contains {' '.join(repr(c) for c in bad)}, which the spec files use as separators; "
                         "remove it")
    return v


FreeText = Annotated[str, BeforeValidator(lambda v: _no_framing(str(v)) if v is not None else "")]


def field_error(field: str | tuple, reason: str, value: Any = None) -> ValidationError:
    """A ValidationError located at `field` (relative to the model being validated)."""
    loc = (field,) if isinstance(field, str) else tuple(field)
    detail: InitErrorDetails = {"type": PydanticCustomError("value_error", reason), "loc": loc, "input": value}
    return ValidationError.from_exception_data("config", [detail])


# --------------------------------------------------------------------------- points

Kind = Literal["analog", "switch", "cumulative", "multistate"]


class Alarm(Model):
    high: float | None = None
    high_clear: float | None = None
    low: float | None = None
    low_clear: float | None = None


class Cutoff(Model):
    high: float | None = None
    restore: float | None = None
    low: float | None = None
    low_restore: float | None = None


class Warn(Model):
    high: float | None = None
    low: float | None = None


_POINT_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_SENSOR = re.compile(r"\d{4}")
_THRESHOLD_KEYS = frozenset({"alarm", "cutoff", "warn"})


class Point(Model):
    """One point of a device: what the kernel, the profile and every driver read."""
    id: str
    sensor: str
    kind: Kind | None = None           # default: from the sensor table
    address: str                       # the driver's grammar (Modbus hr:100, OPC UA ns=2;s=...)
    scale: float = 1.0                 # engineering = raw * scale + offset
    offset: float = 0.0
    unit: FreeText | None = None       # default: from the sensor table
    range: tuple[float, float] | None = None
    location: FreeText = ""
    x: float | None = None
    y: float | None = None
    z: float | None = None
    relations: FreeText = ""
    alarm: Alarm = Alarm()
    cutoff: Cutoff = Cutoff()
    warn: Warn = Warn()
    levels: warning.Levels | None = None        # graded warning: blue < yellow < orange < red (levels.py)
    rules: tuple[warning.Rule, ...] = ()        # rate, baseline and ratio rules, each giving a level
    delay: Duration = 0.0
    deadband: float | str = 0.0
    writable: bool = False
    decimals: int | None = Field(None, ge=0, le=6)
    sensor_name: FreeText | None = None  # default: the code table's name for the sensor type
    on_text: FreeText | None = None      # switch points (KG): the state 1 / state 0 texts; default: the code table's
    off_text: FreeText | None = None
    instrument: str | None = None        # several points, one record (edge_agent/profile/shapes.py): its name
    role: str | None = None              # this point's member of the instrument (level, temperature, x_disp ...)
    attrs: dict[str, FreeText | float] = Field(default_factory=dict)   # definition attributes a profile's
    #                                  `attributes:` names (a factory: pydantic deep-copies a `{}` default per point)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> str:
        v = str(v).strip() if isinstance(v, (str, int)) and not isinstance(v, bool) else v
        if not isinstance(v, str) or not _POINT_ID.fullmatch(v):
            raise ValueError("point id must be 1-32 letters, digits, '-', '_' or '.'")
        return v

    @field_validator("sensor", mode="before")
    @classmethod
    def _sensor(cls, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError("write the sensor code in quotes (\"0001\") so leading zeros survive")
        if not isinstance(v, str) or not _SENSOR.fullmatch(v):
            raise ValueError("sensor type code must be 4 digits in quotes, e.g. \"0001\"")
        return v

    @field_validator("deadband")
    @classmethod
    def _deadband(cls, v: float | str) -> float | str:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", v)
            if not m:
                raise ValueError("write an absolute deadband (0.02) or a percentage of the range (\"2%\")")
            return f"{float(m.group(1))}%"
        if v < 0 or math.isnan(v):
            raise ValueError("cannot be negative")
        return v

    @field_validator("range")
    @classmethod
    def _range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError("range is [low, high] with low < high")
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> "Point":
        if not _THRESHOLD_KEYS & self.__pydantic_fields_set__:    # the defaults: nothing set, nothing to cross
            return self
        a, c, w = self.alarm, self.cutoff, self.warn
        problems = []

        def le(lo_name: str, lo: float | None, hi_name: str, hi: float | None, strict: bool = False) -> None:
            if lo is None or hi is None:
                return
            if lo > hi or (strict and lo == hi):
                problems.append(f"{lo_name} ({lo:g}) must be {'below' if strict else 'at most'} "
                                f"{hi_name} ({hi:g})")

        le("alarm.high_clear", a.high_clear, "alarm.high", a.high)
        le("cutoff.restore", c.restore, "cutoff.high", c.high)
        le("alarm.high", a.high, "cutoff.high", c.high)
        le("warn.high", w.high, "alarm.high", a.high)
        le("alarm.low", a.low, "alarm.low_clear", a.low_clear)
        le("cutoff.low", c.low, "cutoff.low_restore", c.low_restore)
        le("cutoff.low", c.low, "alarm.low", a.low)
        le("alarm.low", a.low, "warn.low", w.low)
        le("alarm.low", a.low, "alarm.high", a.high, strict=True)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def data_type(self) -> str:
        """The value's type on the wire; drivers whose points declare one override this."""
        return "float64"

    def deadband_abs(self, span: float) -> float:
        if isinstance(self.deadband, str):
            return float(self.deadband[:-1]) / 100.0 * span
        return float(self.deadband)


# --------------------------------------------------------------------------- devices

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
    if not isinstance(pt, Point):
        return pt
    model = type(pt)
    given = pt.__pydantic_fields_set__
    shape = _SHAPES.get((model, frozenset(given)))
    if shape is None:
        names = tuple(k for k in model.model_fields if k in given)
        cls = type(model.__name__, (_base(model),), {"__slots__": names, "__module__": model.__module__,
                                                      "model_fields_set": frozenset(names)})
        shape = _SHAPES[(model, frozenset(given))] = (cls, tuple((k, vars(cls)[k].__set__) for k in names))
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


class Device(Model):
    """The keys every device has.  A driver's config model subclasses this, narrows `driver`
    to a Literal of its names and types `points` with its own point model."""
    name: str
    driver: str
    substation: FreeText | None = None   # substation code in records; default: 3-digit position
    location: FreeText = ""
    x: float | None = None
    y: float | None = None
    z: float | None = None
    poll: Period = 1.0
    poll_in_warning: warning.PollInWarning | None = None   # denser polls while a point is at a level
    timeout: Period = 0.5
    retries: int = Field(1, ge=0, le=10)
    points_file: str | None = None
    points: tuple[Point, ...] = ()
    system: str | None = None            # the monitoring system (`systems:`) it belongs to

    @model_validator(mode="after")
    def _compact(self) -> "Device":
        """Its points as CompactPoints once they validate: no device keeps a point model (see CompactPoint)."""
        self.__dict__["points"] = compact_points(self.points)
        return self

    @field_serializer("points", mode="wrap")
    def _dump_points(self, points: tuple, handler, info) -> Any:
        return handler(tuple(p.to_model() if isinstance(p, CompactPoint) else p for p in points))

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.fullmatch(v):
            raise ValueError("device name must be 1-64 letters, digits, '-', '_' or '.'")
        return v

    @model_validator(mode="after")
    def _dense_polls(self) -> "Device":
        piw = self.poll_in_warning
        if piw is not None and piw.period > self.poll:
            raise field_error(("poll_in_warning", "period"),
                              f"{piw.period:g}s is longer than the device's poll period ({self.poll:g}s); in "
                              "warning a device polls more often, not less: give a shorter period")
        return self


# --------------------------------------------------------------------------- upload targets

@dataclass(frozen=True)
class FtpTarget:
    tls: bool
    host: str
    port: int
    user: str
    password: str | None      # only when written in the URL (discouraged: use password_file)
    directory: str


def _target(url: str) -> FtpTarget:
    """`ftp[s]://[user[:password]@]host[:port][/dir]` -> FtpTarget; ValueError saying what to write otherwise."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL ({exc})") from None
    if u.scheme not in ("ftp", "ftps") or not u.hostname:
        raise ValueError(f"{url!r}: write ftp://user@host:21/dir or ftps://user@host:21/dir")
    return FtpTarget(tls=u.scheme == "ftps", host=u.hostname, port=port or 21,
                     user=unquote(u.username) if u.username else "anonymous",
                     password=unquote(u.password) if u.password is not None else None,
                     directory=unquote(u.path).strip("/"))


def _checked_upload(v: str | None) -> str | None:
    if v is not None:
        _target(v)
    return v


# an `upload:` URL, refused by the model unless ftp:// or ftps:// (also `systems[].upload`)
UploadUrl = Annotated[str | None, AfterValidator(_checked_upload)]



# --------------------------------------------------------------------------- sinks

class SinkConfig(Model):
    """The keys every sink under `forward:` has.  `name` tells several sinks of one kind apart
    (a list under `forward.<kind>`); a single sink is named after its kind."""
    kind: ClassVar[str] = ""           # its key under `forward:` (set by registry.register_sink)
    name: str | None = None
    enabled: bool = True

    @property
    def sink_name(self) -> str:
        """Its name in the buffer, the logs and /metrics."""
        return self.name or self.kind

    @property
    def field(self) -> str:
        """How messages name this block: `forward.mqtt`, or `forward.files[shfz]` in a list."""
        return f"forward.{self.kind}" if self.name is None else f"forward.{self.kind}[{self.name}]"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME.fullmatch(v):
            raise ValueError("sink name must be 1-64 letters, digits, '-', '_' or '.'")
        return v
