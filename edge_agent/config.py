"""The site file: YAML parsed once into frozen, typed pydantic models, and checked as `run` needs.

`load_site(path)` returns a `Site` or raises `ConfigError` whose problems read
`file:line: field: reason`.  It runs every check `run` relies on (`check` prints
the same problems): the models (each device by its driver's own config model, so
unknown keys are errors per driver), the profile (loaded once and carried by the
site: `site.loaded_profile`), names, sensor codes and point codes, each component's
own `problems()`, and the free text that goes into records.  Nothing downstream
re-reads YAML or dicts.  Key names are the contract of DESIGN.md.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, PlainValidator, PrivateAttr, SerializeAsAny, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from edge_agent import levels as warning
from edge_agent import registry
from edge_agent.alarms.config import AlarmsCfg, ConsoleCfg
from edge_agent.equipment import Equipment, expand_equipment
from edge_agent.memory import trim
from edge_agent.errors import ConfigError, Problem
from edge_agent.model import Device, Duration, FreeText, Model, Period, Point, SinkConfig, Size, field_error, \
    sharing
from edge_agent.rollup import Item
from edge_agent.rollup import problems as rollup_problems
from edge_agent.systems import SystemCfg
from edge_agent.textsrc import read_config_text
from edge_agent.yamlsrc import line_for, pretty_loc, read_yaml_with_lines, validation_problems

# every device is validated by its driver's config model (registry.validate_device)
AnyDevice = Annotated[SerializeAsAny[Device], PlainValidator(registry.validate_device)]


class SiteInfo(Model):
    mine_code: str
    mine_name: FreeText = ""
    gateway: str = "gw-01"
    system_code: str = "01"
    system_model: FreeText = ""
    system_name: FreeText = "安全监控系统"
    manufacturer: FreeText = ""
    timezone: str | None = None        # the mine's IANA zone, when the machine's clock runs in another
    safety_mark_expiry: str | None = None   # yyyy-MM-dd (安全标志有效期): CDDY header field 6

    @field_validator("safety_mark_expiry", mode="before")
    @classmethod
    def _expiry(cls, v: Any) -> str | None:
        import datetime as dt
        if v is None or isinstance(v, dt.date):     # YAML reads an unquoted 2027-06-30 as a date
            return None if v is None else v.strftime("%Y-%m-%d")
        try:
            if re.fullmatch(r"\d{4}-\d\d-\d\d", str(v)):
                return dt.date.fromisoformat(str(v)).isoformat()
        except ValueError:
            pass
        raise ValueError(f"{v!r} is not a date; write the safety mark's expiry as yyyy-MM-dd, e.g. 2027-06-30")

    @field_validator("mine_code", mode="before")
    @classmethod
    def _code_is_text(cls, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError("write the mine code in quotes (\"140211001234\") so leading zeros survive")
        if not isinstance(v, str):
            raise ValueError("must be a string of digits")
        return v

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("use letters, digits, '-', '_' or '.' only (it appears in MQTT topics)")
        return v

    @field_validator("system_code")
    @classmethod
    def _system(cls, v: str) -> str:
        if not re.fullmatch(r"\d{2}", v):
            raise ValueError("must be 2 digits, e.g. \"01\" (safety monitoring)")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Asia/Shanghai") from None
        return v


class BufferCfg(Model):
    path: str = "/var/lib/edge-agent/buffer.sqlite"
    max_size: Size = 1024**3
    max_age: Duration = 30 * 86400.0
    durability: Literal["normal", "full"] = "normal"
    sync_every: Duration = 1.0
    memory_limit: Size = 64 * 1024**2   # held in memory while the disk refuses writes


class Forward(Model):
    """The sinks under `forward:`, in file order: `forward.<kind>` is one sink (named after its
    kind) or a list of them (each with its own `name`), validated by the kind's `SinkSpec.config`."""
    sinks: tuple[SerializeAsAny[SinkConfig], ...] = ()
    locs: tuple[tuple, ...] = Field((), exclude=True)   # each sink's place in the site file

    def get(self, name: str) -> SinkConfig | None:
        """The sink named `name` (a single `forward.mqtt` is named `mqtt`), or None."""
        return next((c for c in self.sinks if c.sink_name == name), None)

    def of_kind(self, kind: str) -> list[SinkConfig]:
        return [c for c in self.sinks if c.kind == kind]

    def enabled(self) -> list[SinkConfig]:
        return [c for c in self.sinks if c.enabled]

    def loc(self, cfg: SinkConfig) -> tuple:
        return self.locs[self.sinks.index(cfg)] if cfg in self.sinks and self.locs else ("forward", cfg.kind)

    def replaced(self, name: str, cfg: SinkConfig | None) -> "Forward":
        """This forward section with sink `name` replaced by `cfg` (or removed, for None)."""
        pairs = [(c if c.sink_name != name else cfg, loc) for c, loc in zip(self.sinks, self.locs or
                                                                          [("forward", c.kind) for c in self.sinks])]
        pairs = [(c, loc) for c, loc in pairs if c is not None]
        return Forward(sinks=tuple(c for c, _ in pairs), locs=tuple(loc for _, loc in pairs))


def _forward(v: Any) -> Forward:
    """`forward:` -> Forward, each block by its kind's config model (one sink, or a named list)."""
    if isinstance(v, Forward):
        return v
    if v is None:
        return Forward()
    if not isinstance(v, dict):
        raise field_error((), "a mapping of sink kind (mqtt, files, ...) to its settings", v)
    known = registry.sinks()
    errors: list = []
    sinks: list[SinkConfig] = []
    locs: list[tuple] = []
    for kind, block in v.items():
        spec = known.get(kind)
        if spec is None:
            errors.append({"type": PydanticCustomError("value_error", "unknown sink kind; known: {known}",
                                                       {"known": ", ".join(sorted(known))}),
                           "loc": (kind,), "input": block})
            continue
        items = block if isinstance(block, list) else [block]
        for i, item in enumerate(items):
            loc = (kind, i) if isinstance(block, list) else (kind,)
            try:
                cfg = spec.config.model_validate(item)
            except ValidationError as exc:
                errors += [{"type": PydanticCustomError(e["type"], "{msg}", {"msg": e["msg"]}), "loc": loc + tuple(e["loc"]),
                            "input": e.get("input")} for e in exc.errors()]
                continue
            if isinstance(block, list) and cfg.name is None:
                errors.append({"type": PydanticCustomError("value_error", "several sinks of one kind need a "
                                                           "`name` each"), "loc": loc, "input": item})
            elif cfg.sink_name in {c.sink_name for c in sinks}:
                errors.append({"type": PydanticCustomError("value_error", "sink name {name!r} is used twice",
                                                           {"name": cfg.sink_name}),
                               "loc": loc + ("name",), "input": cfg.name})
            sinks.append(cfg)
            locs.append(("forward",) + loc)
    if errors:
        raise ValidationError.from_exception_data("forward", errors)
    return Forward(sinks=tuple(sinks), locs=tuple(locs))


class ReportCfg(Model):
    realtime_every: Period = 20.0
    stats_window: Period = 300.0
    definitions_every: Duration = 86400.0
    batch_every: Duration = 0.05       # how long live messages may wait to be committed together


class MetricsCfg(Model):
    listen: str = "127.0.0.1:9108"
    enabled: bool = True


class Site(Model):
    site: SiteInfo
    profile: str = "default"
    buffer: BufferCfg = BufferCfg()
    forward: Annotated[Forward, BeforeValidator(_forward)] = Forward()
    report: ReportCfg = ReportCfg()
    metrics: MetricsCfg = MetricsCfg()
    devices: tuple[AnyDevice, ...] = ()
    equipment: tuple[Equipment, ...] = ()   # belts and bins; their points are already in `devices`
    items: tuple[Item, ...] = ()            # graded warning: points roll up to items, items to the facility
    alarms: AlarmsCfg = AlarmsCfg()         # graded warning: deadlines, the local API's token
    console: ConsoleCfg = ConsoleCfg()      # the agent's web server (local API, console pages)
    systems: tuple[SystemCfg, ...] = ()     # monitoring systems (edge_agent/systems.py); none: one, as site.*
    # set by load_site: where the file was, for relative paths
    source: str = Field("", exclude=True)
    _profile: Any = PrivateAttr(None)
    _catalog: Any = PrivateAttr(None)
    _systems: Any = PrivateAttr(None)

    @property
    def base_dir(self) -> Path | None:
        """The site file's folder (relative paths start there); None for a site not read from a file."""
        return Path(self.source).parent if self.source else None

    def path(self, p: str) -> Path:
        """A path from the site file, relative to the site file's folder."""
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() or self.base_dir is None else self.base_dir / q

    def checked_catalog(self):
        """The point catalogue `load_site` resolved for this very site (handed out once), or None."""
        catalog, self._catalog = self._catalog, None
        return catalog if catalog is not None and catalog.site is self else None

    @property
    def resolved_systems(self) -> list:
        """The monitoring systems (edge_agent.systems.System), each with its profile; resolved once."""
        if self._systems is None:
            from edge_agent.systems import resolve
            self._systems = resolve(self)
        return self._systems

    def model_copy(self, *, update=None, deep: bool = False):
        """A copy; its systems are resolved again (their views hold this site's devices and cadence)."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._systems = None
        return copy

    def system_of(self, di: int):
        """The System device `di` belongs to."""
        return next(s for s in self.resolved_systems if di in s.devices)

    @property
    def loaded_profile(self):
        """The networking profile `profile:` names, loaded once (by `load_site`, else on first use)."""
        if self._profile is None:
            from edge_agent.profile.tables import load_profile
            self._profile = load_profile(self.profile, base=self.base_dir)
        return self._profile


# --------------------------------------------------------------------------- loading

_UNOPENED = ("file not found", "cannot read", "is a folder")


def _csv_points(data: dict, base: Path, where: str, lines) -> tuple[dict[int, list[Point]], list[Problem]]:
    """Each device's `points_file`, read with its driver's point model."""
    from edge_agent.pointtable import load_points_csv

    out: dict[int, list[Point]] = {}
    problems: list[Problem] = []
    devices = data.get("devices")
    known = registry.drivers()
    for i, dev in enumerate(devices if isinstance(devices, list) else []):
        if isinstance(dev, dict) and isinstance(dev.get("points_file"), str):
            if not dev["points_file"].strip():
                problems.append(Problem(where, line_for(("devices", i, "points_file"), lines),
                                        pretty_loc(("devices", i, "points_file"), data),
                                        "empty; name the CSV point table, or remove the key"))
                continue
            spec = known.get(dev["driver"]) if isinstance(dev.get("driver"), str) else None
            csv_path = Path(dev["points_file"])
            if not csv_path.is_absolute():
                csv_path = base / csv_path
            shown = dev["points_file"] if not Path(dev["points_file"]).is_absolute() else str(csv_path)
            pts, probs = load_points_csv(csv_path, shown, spec.point_model if spec else Point)
            loc = ("devices", i, "points_file")
            for prob in probs:   # a table that cannot be opened is the site file's line that names it
                if prob.line is None and prob.reason.startswith(_UNOPENED):
                    name = shown if len(shown) <= 80 else shown[:77] + "..."
                    prob = Problem(where, line_for(loc, lines), pretty_loc(loc, data), f"{name}: {prob.reason}")
                problems.append(prob)
            out[i] = pts
    return out, problems


def _foreign_key(err: dict, loc: tuple, data: Any) -> str | None:
    """An unknown key of a device (or of its points) that another driver has: say whose it is."""
    if err.get("type") != "extra_forbidden" or len(loc) < 3 or loc[0] != "devices" or not isinstance(loc[1], int):
        return None
    key, dev = loc[-1], data["devices"][loc[1]]
    in_points = len(loc) == 5 and loc[2] == "points"
    known = registry.drivers()
    owners = sorted(n for n, spec in known.items() if key in (spec.point_model if in_points else spec.config).model_fields)
    if not owners or not isinstance(dev, dict):
        return None
    return (f"not a key of driver {dev.get('driver')} (driver{'s' if len(owners) > 1 else ''} {', '.join(owners)} "
            f"{'have' if len(owners) > 1 else 'has'} it); remove it, or check `driver:`")


def load_site(path: str | os.PathLike, *, check_files: bool = True, receiver_limits: bool = False) -> "Site":
    """Parse and validate a site file, its point tables, its profile and its components.

    `receiver_limits` (`edge-agent check`): also refuse original numbers, point codes and substation codes
    longer than the profile's receivers take (`run` only logs that such codes exist)."""
    from edge_agent.profile.tables import load_profile  # profile depends on errors only

    p = Path(path)
    where = str(path)
    text = read_config_text(p, where)
    data, lines = read_yaml_with_lines(text, where)
    del text                # `lines` keeps it (compressed) for the problems' places
    trim()
    if not isinstance(data, dict):
        raise ConfigError([Problem(where, 1, "", "the site file must be a mapping with `site:` and `devices:`")])

    # point tables first, so their points validate with the rest
    with sharing():         # equal values of all points are one object each (model.CompactPoint)
        csv_points, problems = _csv_points(data, p.parent, where, lines)
        problems.extend(expand_equipment(data, lines, where))   # templates -> ordinary points
        _devices_first(data)
        try:
            site = Site.model_validate(data)
        except ValidationError as exc:
            full = _Again(where, lines)()
            problems.extend(validation_problems(exc, where, full, lines,
                                                explain=lambda e, loc: _foreign_key(e, loc, full)))
            raise ConfigError(problems)
    data = _Again(where, lines)    # the dicts go; a problem's place reads them again
    trim()
    if csv_points:
        devices = tuple(dev.model_copy(update={"points": tuple(dev.points) + tuple(csv_points[i])})
                        if i in csv_points else dev for i, dev in enumerate(site.devices))
        site = site.model_copy(update={"devices": devices})
    site = site.model_copy(update={"source": str(p.resolve())})

    try:
        site._profile = load_profile(site.profile, base=p.parent)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems)
    from edge_agent.systems import load_profiles, problems as system_problems, resolve as resolve_systems
    profiles, found = load_profiles(site)
    found += system_problems(site)
    sys_problems = [Problem(where, line_for(loc, lines), pretty_loc(loc, data()), reason) for loc, reason in found]
    if not sys_problems:
        site._systems = resolve_systems(site, profiles)
    if sys_problems:
        raise ConfigError(problems + sys_problems)
    point_codes: list[str] = []
    problems.extend(semantic_problems(site, site.loaded_profile, where, data, lines, point_codes))
    trim()                  # its tables go before the catalogue is built
    if receiver_limits:
        from edge_agent.profile.receiver import site_problems
        for loc, reason in site_problems(site, site.loaded_profile):
            loc = _point_loc(loc, data())
            problems.append(Problem(where, line_for(loc, lines), pretty_loc(loc, data()), reason))
    if not problems:
        problems.extend(component_problems(site, where, data, lines, point_codes))
    from edge_agent.alarms.spec import alarm_spec
    try:
        alarm_spec(site.loaded_profile)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    trim()
    return site


def _devices_first(data: dict) -> None:
    """Validate each device on its own and put its model in place of its dicts, so the dicts of the
    devices done go while the next ones validate (a site's high-water mark holds one set of points,
    not the dicts and the points of all).  A device that does not validate stays as it was: `Site`
    validates it again and reports it in its place among the rest."""
    devices = data.get("devices")
    if not isinstance(devices, list):
        return
    for i, dev in enumerate(devices):
        try:
            devices[i] = registry.validate_device(dev)
        except Exception:   # noqa: BLE001 - whatever it is, Site's validation says it
            pass


class _Again:
    """The site file's data, to place problems (`data()`): the dicts (~23 MB for 50,000 points inline)
    go once the models hold the site, and are read again (and their equipment expanded) only when a
    problem needs its place."""

    def __init__(self, where: str, lines):
        self.where, self.lines = where, lines
        self._data: Any = None

    def __call__(self) -> Any:
        if self._data is None:
            data, _ = read_yaml_with_lines(self.lines.text, self.where)
            expand_equipment(data, self.lines, self.where)
            self._data = data
        return self._data


def _data(data: Any) -> Any:
    return data() if callable(data) else data


def semantic_problems(site: Site, profile, where: str, data: Any, lines, point_codes: list | None = None
                      ) -> list[Problem]:
    """Checks that need the profile or cross several fields (`data`: the site file's data, or a
    callable that gives it when a problem needs its place).  `point_codes` gets each point's code in
    catalogue order, for the Catalog (built next) not to build them again."""
    out: list[Problem] = []

    def add(loc: tuple, reason: str) -> None:
        out.append(Problem(where, line_for(loc, lines), pretty_loc(loc, _data(data)), reason))

    if not profile.mine_code_ok(site.site.mine_code):
        add(("site", "mine_code"), f"{site.site.mine_code!r} does not match the profile's mine code pattern "
                                   f"{profile.mine_code_pattern} (12 digits by default)")
    names: dict[str, int] = {}
    codes: dict[str, Any] = {}       # code -> the last point that built it
    owners: dict[int, str] = {}      # id(point) -> its device's name, made at the first repeated code
    from edge_agent.systems import bound_problems
    for system in site.resolved_systems:
        for loc, reason in bound_problems(system):
            add(loc, reason)
    for di, dev in enumerate(site.devices):
        system = site.system_of(di)
        profile = system.profile
        if dev.name in names:
            add(("devices", di, "name"), f"device name {dev.name!r} is used twice")
        names[dev.name] = di
        seen: dict[str, int] = {}
        for pi, pt in enumerate(dev.points):
            def loc(*tail: Any, di: int = di, pi: int = pi) -> tuple:     # only for a problem
                return _point_loc(("devices", di, "points", pi), _data(data)) + tail
            if pt.id in seen:
                add(loc("id"), f"point id {pt.id!r} appears twice in device {dev.name}")
            seen[pt.id] = pi
            if pt.sensor not in profile.sensors:
                add(loc("sensor"), f"unknown sensor type code {pt.sensor!r}; see the sensor table "
                                   f"{profile.raw.get('sensor_table', 'sensors.csv')} in the profile")
                continue
            code = point_code(site, pt, profile, system.code)
            if point_codes is not None:
                point_codes.append(code)
            if code in codes:
                if not owners:
                    owners.update((id(p), d.name) for d in site.devices for p in d.points)
                first = codes[code]
                add(loc("id"), f"point code {code} is also built by {owners[id(first)]}/{first.id}; original "
                               "numbers must differ for points of the same kind and sensor type")
            codes[code] = pt
            for tail, reason in warning.point_problems(dev, pt, site.buffer):
                add(loc(*tail), reason)
    for loc, reason in rollup_problems(site):
        add(loc, reason)
    from edge_agent.profile.shapes import coverage_problems, instrument_problems
    for loc, reason in instrument_problems(site) + coverage_problems(site):
        add(_point_loc(loc, _data(data)), reason)
    return out


def _point_loc(loc: tuple, data: Any) -> tuple:
    """A point given by (device, point) indices points at its entry, or at `points_file` for a CSV row."""
    if len(loc) >= 4 and loc[0] == "devices" and loc[2] == "points":
        di, pi = loc[1], loc[3]
        if pi >= len((data.get("devices") or [{}])[di].get("points") or []):
            return ("devices", di, "points_file")
    return loc


def component_problems(site: Site, where: str, data: Any, lines, point_codes: list | None = None
                       ) -> list[Problem]:
    """What each driver and sink refuses (its spec's `problems`), and free text that breaks the files
    (`data` as for semantic_problems; `point_codes`: what semantic_problems gave, each point's code)."""
    from edge_agent.points import Catalog
    from edge_agent.profile.encode import framing_problems

    out: list[Problem] = []

    def add(loc: tuple, reason: str) -> None:
        out.append(Problem(where, line_for(loc, lines), pretty_loc(loc, _data(data)), reason))

    for di, dev in enumerate(site.devices):
        for loc, reason in registry.driver(dev.driver).problems_of(dev, site):
            add(("devices", di) + ((loc,) if isinstance(loc, str) else tuple(loc)), reason)
    for cfg in site.forward.enabled():
        for loc, reason in registry.sink(cfg.kind).problems_of(cfg, site):
            add(site.forward.loc(cfg) + ((loc,) if isinstance(loc, str) else tuple(loc)), reason)
    site._catalog = catalog = Catalog(site, site.loaded_profile, codes=point_codes)   # the pipeline starts from it
    out.extend(framing_problems(site, catalog, site.loaded_profile))
    return out


def point_code(site: Site, pt: Point, profile, system_code: str | None = None) -> str:
    """mine code + system code + value kind + sensor type + original point number (PROFILE.md); the
    system code is the point's system's (`system_code`), else the site's."""
    kind = pt.kind or profile.sensors[pt.sensor].kind
    number = profile.options.point_number(pt.id) if profile.options is not None else pt.id
    code = system_code or site.site.system_code
    return f"{site.site.mine_code}{code}{profile.value_kinds[kind]}{pt.sensor}{number}"
