"""Loading a networking profile (config/profiles/*.yaml) and its code tables."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edge_agent.errors import ConfigError, Problem

RECORD_TYPES = ("CDDY", "CDSS", "TJSJ", "YCBJ", "FZDY", "FZSS")
KINDS = ("analog", "switch", "cumulative", "multistate")


@dataclass(frozen=True, slots=True)
class SensorType:
    code: str
    kind: str
    name: str
    unit: str
    range_low: float
    range_high: float
    decimals: int
    on_text: str = ""
    off_text: str = ""


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    mine_code_pattern: str
    files: dict[str, Any]
    time_format: str
    date_format: str
    headers: dict[str, tuple[str, ...]]
    records: dict[str, tuple[str, ...]]
    retained: frozenset[str]
    down_value: str
    system_codes: dict[str, str]
    value_kinds: dict[str, str]
    status_bits: dict[int, str]
    anomalies: dict[str, str]
    run_status: dict[int, str]
    power_status: dict[int, str]
    sensors: dict[str, SensorType] = field(repr=False)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def mine_code_ok(self, code: str) -> bool:
        return re.fullmatch(self.mine_code_pattern, code) is not None


def builtin_dir() -> Path:
    return Path(str(resources.files("edge_agent.data"))) / "profiles"


def resolve(name_or_path: str, base: Path | None = None) -> Path:
    """A profile name (`default`, a file in the built-in profiles folder) or a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_absolute() and base is not None:
            p = base / p
        return p
    return builtin_dir() / f"{name_or_path}.yaml"


def load_sensor_table(path: Path) -> dict[str, SensorType]:
    problems: list[Problem] = []
    table: dict[str, SensorType] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, "sensor_table", f"cannot read: {exc.strerror}")])
    reader = csv.DictReader(text.splitlines())
    for row_no, row in enumerate(reader, start=2):
        try:
            code = row["code"].strip()
            kind = row["kind"].strip()
            if not re.fullmatch(r"\d{4}", code):
                raise ValueError(f"code {code!r} is not 4 digits")
            if kind not in KINDS:
                raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
            if code in table:
                raise ValueError(f"code {code} appears twice")
            table[code] = SensorType(
                code=code, kind=kind, name=row["name"].strip(), unit=(row.get("unit") or "").strip(),
                range_low=float(row["range_low"]), range_high=float(row["range_high"]),
                decimals=int(row.get("decimals") or 2),
                on_text=(row.get("on_text") or "").strip(), off_text=(row.get("off_text") or "").strip(),
            )
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(Problem(str(path), row_no, "sensor_table", str(exc)))
    if problems:
        raise ConfigError(problems)
    return table


def load_profile(name_or_path: str = "default", base: Path | None = None) -> Profile:
    """Load and validate a profile; raise ConfigError naming the file and key."""
    path = resolve(name_or_path, base)
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([Problem(where, None, "profile",
                                   f"profile {name_or_path!r} not found; built-in profiles are in {builtin_dir()}")])
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ConfigError([Problem(where, None if line is None else line + 1, "profile", f"not valid YAML: {exc}")])
    if not isinstance(data, dict):
        raise ConfigError([Problem(where, None, "profile", "must be a mapping")])
    problems: list[Problem] = []

    def need(key: str, typ: type) -> Any:
        v = data.get(key)
        if not isinstance(v, typ):
            problems.append(Problem(where, None, key, f"missing or not a {typ.__name__}"))
            return typ()
        return v

    headers = need("headers", dict)
    records = need("records", dict)
    for t in RECORD_TYPES:
        for what, table in (("headers", headers), ("records", records)):
            if not isinstance(table.get(t), list) or not table.get(t):
                problems.append(Problem(where, None, f"{what}.{t}", "missing: list the fields in order"))
    files = need("files", dict)
    for key in ("name", "field_separator", "record_terminator", "file_terminator"):
        if not isinstance(files.get(key), str) or not files.get(key):
            problems.append(Problem(where, None, f"files.{key}", "missing"))
    pattern = data.get("mine_code_pattern", r"^\d{12}$")
    try:
        re.compile(pattern)
    except re.error as exc:
        problems.append(Problem(where, None, "mine_code_pattern", f"not a regular expression: {exc}"))
    table_path = Path(data.get("sensor_table", "../sensors.csv"))
    if not table_path.is_absolute():
        table_path = (path.parent / table_path).resolve()
    if problems:
        raise ConfigError(problems)
    sensors = load_sensor_table(table_path)
    return Profile(
        name=str(data.get("name", path.stem)),
        path=path,
        mine_code_pattern=pattern,
        files=files,
        time_format=data.get("time_format", "%Y-%m-%d %H:%M:%S"),
        date_format=data.get("date_format", "%Y-%m-%d"),
        headers={t: tuple(headers[t]) for t in RECORD_TYPES},
        records={t: tuple(records[t]) for t in RECORD_TYPES},
        retained=frozenset(data.get("retained", ["CDDY", "FZDY"])),
        down_value=data.get("down_value", "last"),
        system_codes={str(k): v for k, v in (data.get("system_codes") or {}).items()},
        value_kinds=dict(data.get("value_kinds") or {"analog": "MN", "switch": "KG",
                                                      "cumulative": "LJ", "multistate": "DT"}),
        status_bits={int(k): v for k, v in (data.get("status_bits") or {}).items()},
        anomalies={str(k): v for k, v in (data.get("anomalies") or {}).items()},
        run_status={int(k): v for k, v in (data.get("run_status") or {}).items()},
        power_status={int(k): v for k, v in (data.get("power_status") or {}).items()},
        sensors=sensors,
        raw=data,
    )
