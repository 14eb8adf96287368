"""The site file: YAML parsed once into frozen, typed pydantic models.

`load_site(path)` returns a `Site` or raises `ConfigError` whose problems read
`file:line: field: reason`.  Nothing downstream re-reads YAML or dicts.
Key names are the contract of DESIGN.md.
"""
from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from edge_agent.equipment import Equipment, expand_equipment
from edge_agent.errors import ConfigError, Problem
from edge_agent.units import parse_duration, parse_size
from edge_agent.yamlsrc import line_for, pretty_loc, read_yaml_with_lines, reason_of, validation_problems

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]

# characters that would break the text-file framing if they appeared in free text
FRAMING_CHARS = (";", "~", "|")


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _no_framing(v: str) -> str:
    bad = [c for c in FRAMING_CHARS if c in v]
    if bad:
        raise ValueError(f"contains {' '.join(repr(c) for c in bad)}, which the spec files use as separators; "
                         "remove it")
    return v


FreeText = Annotated[str, BeforeValidator(lambda v: _no_framing(str(v)) if v is not None else "")]


# --------------------------------------------------------------------------- site

class SiteInfo(Model):
    mine_code: str
    mine_name: FreeText = ""
    gateway: str = "gw-01"
    system_code: str = "01"
    system_model: FreeText = ""
    system_name: FreeText = "安全监控系统"
    manufacturer: FreeText = ""

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


class BufferCfg(Model):
    path: str = "/var/lib/edge-agent/buffer.sqlite"
    max_size: Size = 1024**3
    max_age: Duration = 30 * 86400.0
    durability: Literal["normal", "full"] = "normal"
    sync_every: Duration = 1.0
    memory_limit: Size = 64 * 1024**2   # held in memory while the disk refuses writes


class MqttCfg(Model):
    url: str | list[str]
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password_file: str | None = None
    topic_prefix: str = "mine"
    client_id: str | None = None
    inflight: int = Field(32, ge=1, le=1024)
    keepalive: Duration = 30.0
    allow_plaintext: bool = False
    return_to_primary: bool = True
    enabled: bool = True

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | list[str]) -> str | list[str]:
        for u in [v] if isinstance(v, str) else v:
            if "@" in u:
                # never echo what may be a password
                shown = re.sub(r"//[^@/]*@", "//***@", u)
                raise ValueError(f"{shown!r}: credentials do not belong in the URL; use `username` and "
                                 "`password_file`")
            if not re.fullmatch(r"(mqtts?)://[^/\s:]+(:\d+)?/?", u):
                raise ValueError(f"{u!r} is not an MQTT URL; write mqtt://host:1883 or mqtts://host:8883")
        if isinstance(v, list) and not v:
            raise ValueError("give at least one broker URL")
        return v


class FilesCfg(Model):
    dir: str = "/var/lib/edge-agent/outbox"
    upload: str | None = None
    password_file: str | None = None
    enabled: bool = True
    keep_uploaded: bool = False


class ForwardCfg(Model):
    mqtt: MqttCfg | None = None
    files: FilesCfg | None = None


class ReportCfg(Model):
    realtime_every: Duration = 20.0
    stats_window: Duration = 300.0
    definitions_every: Duration = 86400.0
    batch_every: Duration = 0.05       # how long live messages may wait to be committed together

    @field_validator("realtime_every", "stats_window")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be longer than 0s")
        return v


class MetricsCfg(Model):
    listen: str = "127.0.0.1:9108"
    enabled: bool = True


class ConsoleCfg(Model):
    """The operator console (edge_agent/console/): absent from the site file = no console."""
    listen: str = "127.0.0.1:8080"
    password_file: str | None = None    # `edge-agent console passwd`; without it the console is read-only
    history: str | None = None          # trend file; default: console-history.bin beside the buffer
    enabled: bool = True


# --------------------------------------------------------------------------- points

Kind = Literal["analog", "switch", "cumulative", "multistate"]
DataType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool",
                   "string"]
Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]

REGISTER_COUNT = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4,
                  "float64": 4, "bool": 1}
_MODBUS_ADDRESS = re.compile(r"^(hr|ir|co|di):(\d+)(?:\.(\d+))?$")


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


class ModbusAddress(Model):
    area: Literal["hr", "ir", "co", "di"]
    address: int
    bit: int | None = None

    def __str__(self) -> str:
        return f"{self.area}:{self.address}" + ("" if self.bit is None else f".{self.bit}")


def parse_modbus_address(text: str) -> ModbusAddress:
    m = _MODBUS_ADDRESS.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a Modbus address; write hr:100, ir:7, co:3, di:0 or hr:100.3 "
                         "(0-based)")
    area, addr, bit = m.group(1), int(m.group(2)), m.group(3)
    if addr > 65535:
        raise ValueError(f"{text!r}: address {addr} is above 65535")
    if bit is not None:
        if area not in ("hr", "ir"):
            raise ValueError(f"{text!r}: a bit number only applies to hr/ir registers")
        if int(bit) > 15:
            raise ValueError(f"{text!r}: bit {bit} is above 15")
    return ModbusAddress(area=area, address=addr, bit=None if bit is None else int(bit))


class Point(Model):
    id: str
    sensor: str
    kind: Kind | None = None           # default: from the sensor table
    address: str
    type: DataType | None = None       # default: bool for coils/inputs/bits, else uint16
    order: Order = "ABCD"
    length: int | None = Field(None, ge=1, le=125)   # registers, for type string
    scale: float = 1.0
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
    delay: Duration = 0.0
    deadband: float | str = 0.0
    writable: bool = False
    decimals: int | None = Field(None, ge=0, le=6)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> str:
        v = str(v).strip() if isinstance(v, (str, int)) and not isinstance(v, bool) else v
        if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", v):
            raise ValueError("point id must be 1-32 letters, digits, '-', '_' or '.'")
        return v

    @field_validator("sensor", mode="before")
    @classmethod
    def _sensor(cls, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError("write the sensor code in quotes (\"0001\") so leading zeros survive")
        if not isinstance(v, str) or not re.fullmatch(r"\d{4}", v):
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

    # derived (the table filled in from the profile's sensor table)
    def deadband_abs(self, span: float) -> float:
        if isinstance(self.deadband, str):
            return float(self.deadband[:-1]) / 100.0 * span
        return float(self.deadband)


# --------------------------------------------------------------------------- devices

DriverName = Literal["modbus-tcp", "modbus-rtu", "modbus-rtu-tcp", "opcua"]


class Device(Model):
    name: str
    driver: DriverName
    substation: FreeText | None = None   # substation code in records; default: 3-digit position
    location: FreeText = ""
    x: float | None = None
    y: float | None = None
    z: float | None = None
    poll: Duration = 1.0
    timeout: Duration = 0.5
    retries: int = Field(1, ge=0, le=10)
    # modbus
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=247)
    max_gap: int = Field(10, ge=0, le=120)
    serial: str | None = None          # /dev/ttyUSB0 for modbus-rtu
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    # opcua
    url: str | None = None
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval: Duration | None = None
    security: str = "NONE"
    cert_file: str | None = None
    key_file: str | None = None
    server_cert_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    # points
    points_file: str | None = None
    points: tuple[Point, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("device name must be 1-64 letters, digits, '-', '_' or '.'")
        return v

    @field_validator("poll", "timeout")
    @classmethod
    def _pos(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be longer than 0s")
        return v

    @model_validator(mode="after")
    def _transport(self) -> "Device":
        if self.driver in ("modbus-tcp", "modbus-rtu-tcp") and not self.host:
            raise ValueError(f"driver {self.driver} needs `host`")
        if self.driver == "modbus-rtu" and not self.serial:
            raise ValueError("driver modbus-rtu needs `serial` (the port, e.g. /dev/ttyUSB0)")
        if self.driver == "opcua" and not self.url:
            raise ValueError("driver opcua needs `url` (opc.tcp://host:4840)")
        return self

    @property
    def is_modbus(self) -> bool:
        return self.driver.startswith("modbus")


class Site(Model):
    site: SiteInfo
    profile: str = "default"
    buffer: BufferCfg = BufferCfg()
    forward: ForwardCfg = ForwardCfg()
    report: ReportCfg = ReportCfg()
    metrics: MetricsCfg = MetricsCfg()
    console: ConsoleCfg | None = None
    devices: tuple[Device, ...] = ()
    equipment: tuple[Equipment, ...] = ()   # belts and bins; their points are already in `devices`
    # set by load_site: where the file was, for relative paths
    source: str = Field("", exclude=True)

    @property
    def base_dir(self) -> Path | None:
        """The site file's folder (relative paths start there); None for a site not read from a file."""
        return Path(self.source).parent if self.source else None

    def path(self, p: str) -> Path:
        """A path from the site file, relative to the site file's folder."""
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() or self.base_dir is None else self.base_dir / q


# --------------------------------------------------------------------------- loading

# CSV point tables: same columns as inline points; nested thresholds as dotted columns
CSV_COLUMNS = ("id", "sensor", "kind", "address", "type", "order", "length", "scale", "offset", "unit",
               "range_low", "range_high", "location", "x", "y", "z", "relations",
               "alarm.high", "alarm.high_clear", "alarm.low", "alarm.low_clear",
               "cutoff.high", "cutoff.restore", "cutoff.low", "cutoff.low_restore",
               "warn.high", "warn.low", "delay", "deadband", "writable", "decimals")


def _csv_row_to_point(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in row.items():
        if key is None:
            raise ValueError("the row has more cells than the header has columns")
        key = key.strip()
        value = (raw or "").strip()
        if value == "":
            continue
        if key in ("range_low", "range_high"):
            continue
        if "." in key:
            group, sub = key.split(".", 1)
            out.setdefault(group, {})[sub] = value
        else:
            out[key] = value
    lo, hi = (row.get("range_low") or "").strip(), (row.get("range_high") or "").strip()
    if lo or hi:
        out["range"] = [lo, hi]
    if "writable" in out:
        out["writable"] = out["writable"].lower() in ("1", "true", "yes", "y")
    return out


def load_points_csv(path: Path, shown: str) -> tuple[list[Point], list[Problem]]:
    """Read a point table exported from a spreadsheet (UTF-8, BOM or not)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return [], [Problem(shown, None, "points_file", "file not found; the path is relative to the site file")]
    except UnicodeDecodeError:
        return [], [Problem(shown, None, "points_file",
                            "not UTF-8; save the spreadsheet as 'CSV UTF-8' and try again")]
    except OSError as exc:
        return [], [Problem(shown, None, "points_file", f"cannot read: {exc.strerror}")]
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    problems = []
    unknown = [h for h in header if h not in CSV_COLUMNS]
    for h in unknown:
        problems.append(Problem(shown, 1, h, f"unknown column; known columns: {', '.join(CSV_COLUMNS)}"))
    for req in ("id", "sensor", "address"):
        if req not in header:
            problems.append(Problem(shown, 1, req, "required column is missing"))
    if problems:
        return [], problems
    points = []
    for row_no, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        try:
            data = _csv_row_to_point(row)
            points.append(Point.model_validate(data))
        except ValueError as exc:
            if isinstance(exc, ValidationError):
                for err in exc.errors():
                    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
                    col = ".".join(loc) if loc else "(row)"
                    if col.startswith("range"):
                        col = "range_low/range_high"
                    problems.append(Problem(shown, row_no, col, reason_of(err)))
            else:
                problems.append(Problem(shown, row_no, "(row)", str(exc)))
    return points, problems


def load_site(path: str | os.PathLike, *, check_files: bool = True) -> "Site":
    """Parse and validate a site file, its point tables and its profile."""
    from edge_agent.profile.tables import load_profile  # profile depends on errors only

    p = Path(path)
    where = str(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([Problem(where, None, "", "file not found")])
    except OSError as exc:
        raise ConfigError([Problem(where, None, "", f"cannot read: {exc.strerror}")])
    data, lines = read_yaml_with_lines(text, where)
    if not isinstance(data, dict):
        raise ConfigError([Problem(where, 1, "", "the site file must be a mapping with `site:` and `devices:`")])

    problems: list[Problem] = []
    # point tables first, so their points validate with the rest
    devices = data.get("devices")
    csv_points: dict[int, list[Point]] = {}
    if isinstance(devices, list):
        for i, dev in enumerate(devices):
            if isinstance(dev, dict) and isinstance(dev.get("points_file"), str):
                csv_path = Path(dev["points_file"])
                if not csv_path.is_absolute():
                    csv_path = p.parent / csv_path
                pts, probs = load_points_csv(csv_path, dev["points_file"] if not csv_path.is_absolute() else str(csv_path))
                problems.extend(probs)
                csv_points[i] = pts
    problems.extend(expand_equipment(data, lines, where))   # templates -> ordinary points
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, where, data, lines))
        raise ConfigError(problems)
    if csv_points:
        new_devices = []
        for i, dev in enumerate(site.devices):
            if i in csv_points:
                dev = dev.model_copy(update={"points": tuple(dev.points) + tuple(csv_points[i])})
            new_devices.append(dev)
        site = site.model_copy(update={"devices": tuple(new_devices)})
    site = site.model_copy(update={"source": str(p.resolve())})

    try:
        profile = load_profile(site.profile, base=p.parent)
    except ConfigError as exc:
        problems.extend(exc.problems)
        raise ConfigError(problems)
    problems.extend(semantic_problems(site, profile, where, data, lines))
    if problems:
        raise ConfigError(problems)
    return site


def semantic_problems(site: Site, profile, where: str, data: Any, lines: dict[tuple, int]) -> list[Problem]:
    """Checks that need the profile or cross several fields."""
    out: list[Problem] = []

    def add(loc: tuple, reason: str) -> None:
        out.append(Problem(where, line_for(loc, lines), pretty_loc(loc, data), reason))

    if not profile.mine_code_ok(site.site.mine_code):
        add(("site", "mine_code"), f"{site.site.mine_code!r} does not match the profile's mine code pattern "
                                   f"{profile.mine_code_pattern} (12 digits by default)")
    names: dict[str, int] = {}
    codes: dict[str, str] = {}
    for di, dev in enumerate(site.devices):
        if dev.name in names:
            add(("devices", di, "name"), f"device name {dev.name!r} is used twice")
        names[dev.name] = di
        seen: dict[str, int] = {}
        for pi, pt in enumerate(dev.points):
            loc = ("devices", di, "points", pi)
            if pi >= len((data.get("devices") or [{}])[di].get("points") or []):
                loc = ("devices", di, "points_file")
            if pt.id in seen:
                add(loc + ("id",), f"point id {pt.id!r} appears twice in device {dev.name}")
            seen[pt.id] = pi
            sensor = profile.sensors.get(pt.sensor)
            if sensor is None:
                add(loc + ("sensor",), f"unknown sensor type code {pt.sensor!r}; see the sensor table "
                                       f"{profile.raw.get('sensor_table', 'sensors.csv')} in the profile")
                continue
            if dev.is_modbus:
                try:
                    addr = parse_modbus_address(pt.address)
                except ValueError as exc:
                    add(loc + ("address",), str(exc))
                else:
                    typ = point_type(pt)
                    if addr.area in ("co", "di") and typ != "bool":
                        add(loc + ("type",), f"{addr.area} addresses hold bits; use type bool (got {typ})")
                    if addr.bit is not None and typ != "bool":
                        add(loc + ("type",), f"a register bit ({pt.address}) is type bool (got {typ})")
                    if typ == "string" and not pt.length:
                        add(loc + ("length",), "a string needs `length` (in registers)")
            code = point_code(site, pt, profile)
            if code in codes:
                add(loc + ("id",), f"point code {code} is also built by {codes[code]}; original numbers must "
                                   "differ for points of the same kind and sensor type")
            codes[code] = f"{dev.name}/{pt.id}"
    return out


def point_type(pt: Point) -> str:
    if pt.type is not None:
        return pt.type
    if pt.address[:3] in ("co:", "di:") or re.search(r":\d+\.\d+$", pt.address):
        return "bool"
    return "uint16"


def point_code(site: Site, pt: Point, profile) -> str:
    """mine code + system code + value kind + sensor type + original point number (PROFILE.md)."""
    kind = pt.kind or profile.sensors[pt.sensor].kind
    return f"{site.site.mine_code}{site.site.system_code}{profile.value_kinds[kind]}{pt.sensor}{pt.id}"
