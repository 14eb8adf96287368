"""The component registry: which drivers, sinks and record types exist, and what each one owns.

One `register_driver(DriverSpec(...))` / `register_sink(SinkSpec(...))` /
`register_record_type(RecordType(...))` call per component.  The built-in ones register
in `edge_agent/drivers/__init__.py`, `edge_agent/forward/__init__.py` and
`edge_agent/profile/types.py`, imported on the first lookup; a package may add its
own from an `edge_agent.components` entry point (its module registers on import), and a
test may call `register_*` directly.  Implementations are named "module:attr" and
imported on first use, so a Modbus-only gateway never imports asyncua.

A spec owns everything about its component that the rest of the agent needs:

- `config`: the pydantic model of its block in the site file (a `model.Device` subclass
  for a driver, a `model.SinkConfig` subclass for a sink).  Unknown keys are errors
  per component: an OPC UA device with `baudrate:` is refused.
- `factory`: "module:attr" (or a callable).  A driver's is called
  `factory(index, device, points, on_frame, base_dir=...)`; a sink's `factory(cfg, ctx)`
  with a `SinkContext`.
- `problems(cfg, site)`: what `check` prints and `run` refuses (beyond the model's own
  validation): a list of (location inside the block, reason); `warnings(cfg, site)`:
  what `check` only warns about (missing certificate files); both optional.
- `live_fields` / `live_point_fields` (drivers): the keys a reload applies without
  restarting the device; every other key restarts it.
- `secret_fields`: the keys that name a secret file (`password_file`, `key_file`).
- `counters`: the standard counters (`DEVICE_COUNTERS`, `SINK_COUNTERS`) as sums of the
  component's own `counters` entries, for /metrics and /health.
"""
from __future__ import annotations

import importlib
import logging
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    from edge_agent.model import Device, SinkConfig

log = logging.getLogger("edge_agent.registry")

ENTRY_POINT_GROUP = "edge_agent.components"
DEVICE_COUNTERS = ("polls", "errors", "timeouts", "skipped")
SINK_COUNTERS = ("published", "acked", "reconnects", "inflight")
# keys the pipeline reads and no driver does: a reload applies them without a restart
LIVE_DEVICE_FIELDS = frozenset({"location", "x", "y", "z", "substation"})
LIVE_POINT_FIELDS = frozenset({"alarm", "cutoff", "warn", "deadband", "delay", "location", "relations", "x", "y",
                               "z", "decimals", "unit", "range", "kind", "sensor_name", "on_text", "off_text",
                               "levels", "rules"})

Ref = str | Callable | None
Problems = list[tuple[tuple | str, str]]


def load(ref: Ref) -> Any:
    """A "module:attr" reference, imported now; a callable (or None) as it is."""
    if ref is None or not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _call(ref: Ref, *args) -> Problems:
    fn = load(ref)
    return list(fn(*args)) if fn is not None else []


def _summed(counters: Mapping[str, float], sources: Mapping[str, tuple[str, ...]], names: tuple[str, ...]) -> dict:
    return {k: sum(counters.get(c, 0) for c in sources.get(k, ())) for k in names}


@dataclass(frozen=True)
class DriverSpec:
    names: tuple[str, ...]                  # values of `driver:` this spec serves
    config: type                            # model.Device subclass
    factory: Ref                            # (index, device, points, on_frame, base_dir=) -> driver
    problems: Ref = None                    # (device, site) -> [(loc in the device block, reason)]
    warnings: Ref = None                    # (device, site) -> [(loc, reason)], `check` only
    describe: Ref = None                    # (device, points) -> lines for `check -v`
    connect: Ref = None                     # async (device, points, base_dir) -> problem lines, `check --connect`
    live_fields: frozenset[str] = LIVE_DEVICE_FIELDS
    live_point_fields: frozenset[str] = LIVE_POINT_FIELDS
    secret_fields: tuple[str, ...] = ()
    counters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def point_model(self) -> type:
        """The model of this driver's points (the item type of `config.points`)."""
        return typing.get_args(self.config.model_fields["points"].annotation)[0]

    def make(self, index: int, device, points, on_frame, *, base_dir=None):
        return load(self.factory)(index, device, points, on_frame, base_dir=base_dir)

    def problems_of(self, device, site) -> Problems:
        return _call(self.problems, device, site)

    def warnings_of(self, device, site) -> Problems:
        return _call(self.warnings, device, site)

    def restart_key(self, device) -> dict:
        """The part of `device` its driver reads: a reload restarts the device when this changes."""
        return device.model_dump(exclude={**dict.fromkeys(self.live_fields, True),
                                          "points": {"__all__": set(self.live_point_fields)}})

    def standard_counters(self, counters: Mapping[str, float]) -> dict:
        return _summed(counters, self.counters, DEVICE_COUNTERS)


@dataclass(frozen=True)
class SinkSpec:
    kind: str                               # its key under `forward:`
    config: type                            # model.SinkConfig subclass
    factory: Ref                            # (cfg, SinkContext) -> sink
    problems: Ref = None                    # (cfg, site) -> [(loc in the sink block, reason)]
    warnings: Ref = None
    secret_fields: tuple[str, ...] = ()
    counters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    live: bool = False                      # also gets each frame's changed points (report by exception)
    per_system: Ref = None                  # (cfg, system) -> the cfg of this sink for one monitoring system:
                                            # with `systems:`, one such sink per system gets that system's rows

    def make(self, cfg, ctx):
        return load(self.factory)(cfg, ctx)

    def problems_of(self, cfg, site) -> Problems:
        return _call(self.problems, cfg, site)

    def warnings_of(self, cfg, site) -> Problems:
        return _call(self.warnings, cfg, site)

    def standard_counters(self, counters: Mapping[str, float]) -> dict:
        return _summed(counters, self.counters, SINK_COUNTERS)

    def for_system(self, cfg, system):
        return load(self.per_system)(cfg, system)


@dataclass
class SinkContext:
    """What a sink factory gets besides its config."""
    name: str                               # the sink's name in the buffer (its kind, or forward.<kind>[].name)
    site: Any
    profile: Any
    buffer: Any
    wake: Any                               # asyncio.Event set after each commit
    encoder: Callable[[], Any]              # the current pipeline's Encoder (it changes on reload)
    status_detail: Callable[[], dict] | None = None


CADENCES = ("snapshot", "statistics", "definitions", "event")
PRIORITY_CLASSES = {0: "realtime", 1: "statistics", 2: "definitions", 3: "alarms"}


@dataclass(frozen=True)
class RecordType:
    """One record type of the networking profiles (CDSS, YCBJ, ... CGKCDSS).

    `fields`: every field its producer can fill (a profile lists the ones it sends, in its
    order); `priority`: its drop class when the buffer is full (0 realtime first ... 3
    alarms last); `retained`: MQTT retained unless the profile says otherwise; `cadence`:
    when the pipeline produces it (`snapshot` every report.realtime_every, `statistics`
    when windows close, `definitions` at start, on change and every definitions_every,
    `event` when the kernel or a rule reports anomalies; None: its own component makes it,
    e.g. the alarm book's MQTT records); `producer`: "module:function"
    called `producer(pipeline, now, data)` -> the message body, or None for nothing (`data`:
    the closed windows for `statistics`, the events for `event`, else None).
    A profile produces the registered types it lists under `records:`.
    """
    code: str
    fields: tuple[str, ...]
    priority: int
    cadence: str | None
    producer: Ref
    retained: bool = False

    def __post_init__(self):
        if self.priority not in PRIORITY_CLASSES:
            raise ValueError(f"record type {self.code}: priority must be one of {sorted(PRIORITY_CLASSES)}")
        if self.cadence is not None and self.cadence not in CADENCES:
            raise ValueError(f"record type {self.code}: cadence must be one of {', '.join(CADENCES)}")

    def produce(self, pipeline, now: float, data=None) -> bytes | None:
        return load(self.producer)(pipeline, now, data)


@dataclass(frozen=True)
class FileFormat:
    """How a profile's files look on disk (`files.format:` in a profile; `text` by default).

    `render(profile, site, type, when, records, *, seq)` -> (file name, bytes): `type` is the record
    type code (without a system prefix), `records` the buffered body parsed (dicts keyed by the
    profile's `records.<type>` fields, in order), `site` the system's view of the site (its
    `site.site` carries the system's code, name, model and manufacturer), `when` an aware datetime
    of the mine's local time (whole second), `seq` the buffer seq of the row.  It must be pure: the
    writer renames into place, takes an identical existing file as done, and on a name clash with
    other bytes renders again one second later.  `check(files)` -> [(key under `files`, reason)]
    for `load_profile`.
    """
    name: str
    render: Ref
    check: Ref = None

    def render_file(self, profile, site, type: str, when, records, *, seq: int = 0) -> tuple[str, bytes]:
        return load(self.render)(profile, site, type, when, records, seq=seq)

    def problems_of(self, files: dict) -> Problems:
        return _call(self.check, files)


_drivers: dict[str, DriverSpec] = {}
_formats: dict[str, FileFormat] = {}
_sinks: dict[str, SinkSpec] = {}
_records: dict[str, RecordType] = {}
_loaded = False


def _builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import edge_agent.drivers  # noqa: F401  (registers the built-in drivers)
    import edge_agent.forward  # noqa: F401  (registers the built-in sinks)
    import edge_agent.profile.types  # noqa: F401  (registers the built-in record types)
    import edge_agent.profile.formats  # noqa: F401  (registers the built-in file formats)
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
        except Exception as exc:  # a broken plug-in must not take the built-in components down
            log.error("plug-in %s (%s) cannot be loaded: %s", ep.name, ep.value, exc)
            continue
        if callable(target):
            target()


def register_driver(spec: DriverSpec) -> DriverSpec:
    """Add a driver (or replace one of the same name)."""
    _builtins()                 # the built-in ones first, so a plug-in may replace one
    for name in spec.names:
        _drivers[name] = spec
    return spec


def register_sink(spec: SinkSpec) -> SinkSpec:
    """Add a sink kind (or replace one of the same kind)."""
    _builtins()                 # the built-in ones first, so a plug-in may replace one
    if spec.config.kind != spec.kind:
        spec.config.kind = spec.kind
    _sinks[spec.kind] = spec
    return spec


def register_record_type(rt: RecordType) -> RecordType:
    """Add a record type (or replace one of the same code); types are produced in registration order."""
    _builtins()                 # the built-in ones first, so a plug-in may replace one
    _records[rt.code] = rt
    return rt


def register_file_format(fmt: FileFormat) -> FileFormat:
    """Add a file format (or replace one of the same name)."""
    _builtins()
    _formats[fmt.name] = fmt
    return fmt


def file_formats() -> dict[str, FileFormat]:
    _builtins()
    return dict(_formats)


def unregister(name: str) -> None:
    """Remove a driver name, sink kind, record type or file format (tests that registered their own)."""
    _formats.pop(name, None)
    _drivers.pop(name, None)
    _sinks.pop(name, None)
    _records.pop(name, None)


def drivers() -> dict[str, DriverSpec]:
    _builtins()
    return dict(_drivers)


def sinks() -> dict[str, SinkSpec]:
    _builtins()
    return dict(_sinks)


def record_types() -> dict[str, RecordType]:
    _builtins()
    return dict(_records)


def record_type(code: str) -> RecordType:
    """The registered type `code`; KeyError (naming the registered ones) for any other."""
    _builtins()
    try:
        return _records[code]
    except KeyError:
        raise KeyError(f"record type {code!r} is not registered (registered: {', '.join(_records)}); "
                       "see edge_agent.registry.register_record_type") from None


def driver(name: str) -> DriverSpec:
    _builtins()
    return _drivers[name]


def sink(kind: str) -> SinkSpec:
    _builtins()
    return _sinks[kind]


def _error(loc: tuple, reason: str, value: Any) -> ValidationError:
    detail: InitErrorDetails = {"type": PydanticCustomError("value_error", reason), "loc": loc, "input": value}
    return ValidationError.from_exception_data("config", [detail])


def validate_device(v: Any) -> "Device":
    """A device block -> its driver's config model (the union discriminated by `driver`)."""
    if isinstance(v, BaseModel):
        return v  # type: ignore[return-value]
    if not isinstance(v, dict):
        raise _error((), "a device is a mapping with `name`, `driver` and its settings", v)
    known = drivers()
    name = v.get("driver")
    if not isinstance(name, str) or name not in known:
        got = "" if name is None else f" (got {name!r})" if len(repr(name)) <= 40 else f" (got {repr(name)[:37]}...)"
        raise _error(("driver",), f"must be one of {', '.join(repr(n) for n in sorted(known))}" + got, name)
    return known[name].config.model_validate(v)
