"""Loading a networking profile (config/profiles/*.yaml) and its code tables."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from edge_agent.errors import ConfigError, Problem
from edge_agent.textsrc import read_config_text
from edge_agent.profile.layers import builtin_dir, read_layers, resolve  # noqa: F401 (where they were before)

KINDS = ("analog", "switch", "cumulative", "multistate")

# The record types and the fields their producers fill are the registry's
# (edge_agent/profile/types.py); a profile lists the types it sends and their fields, in the
# order its receivers expect; the names are also the MQTT JSON keys.
HEADER_FIELDS = ("mine_code", "mine_name", "system_model", "system_name", "manufacturer", "date", "time",
                 "gateway", "safety_mark_expiry")
DOWN_VALUES = ("last", "empty")
# what may never appear inside a text-file field (the default separators; a
# profile's own separators are checked too)
FRAMING = (";", "~", "|")


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
    local: bool = False      # a project-local code of the profile (`local_sensors:`), not the receivers' table
    send: bool = True        # False: acquired and evaluated, but no record of it is sent in this profile


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
    timezone: str = "local"     # IANA name, or local (the machine's zone)
    legacy_levels: tuple[int, ...] = ()   # the level of each old-ladder machine (edge_agent.codes.MACHINES)
    options: Any = None         # edge_agent.profile.options.Options (receiver rules, code forms)

    def mine_code_ok(self, code: str) -> bool:
        return re.fullmatch(self.mine_code_pattern, code) is not None


def load_sensor_table(path: Path) -> dict[str, SensorType]:
    problems: list[Problem] = []
    table: dict[str, SensorType] = {}
    text = read_config_text(path, str(path), "sensor_table")
    # `#` lines say where the table's facts come from; they keep their line numbers for errors
    lines = [("" if ln.lstrip().startswith("#") else ln) for ln in text.splitlines()]
    first = next((i for i, ln in enumerate(lines) if ln.strip()), 0)
    reader = csv.DictReader(lines[first:])
    for row_no, row in enumerate(reader, start=first + 2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        try:
            code = row["code"].strip()
            kind = row["kind"].strip()
            if not re.fullmatch(r"\d{4}", code):
                raise ValueError(f"code {code!r} is not 4 digits")
            if kind not in KINDS:
                raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
            if code in table:
                raise ValueError(f"code {code} appears twice")
            name, unit = row["name"].strip(), (row.get("unit") or "").strip()
            on, off = (row.get("on_text") or "").strip(), (row.get("off_text") or "").strip()
            for what, text in (("name", name), ("unit", unit), ("on_text", on), ("off_text", off)):
                bad = [c for c in FRAMING if c in text]
                if bad:
                    raise ValueError(f"{what} {text!r} contains {' '.join(map(repr, bad))}, which the spec files "
                                     "use as separators; remove it")
            table[code] = SensorType(
                code=code, kind=kind, name=row["name"].strip(), unit=(row.get("unit") or "").strip(),
                range_low=float(row["range_low"]), range_high=float(row["range_high"]),
                decimals=int(row.get("decimals") or 2),
                on_text=on, off_text=off,
            )
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(Problem(str(path), row_no, "sensor_table", str(exc)))
    if problems:
        raise ConfigError(problems)
    return table


def load_profile(name_or_path: str = "default", base: Path | None = None) -> Profile:
    """Load and validate a profile (and the profiles it `extends:`); raise ConfigError naming the file,
    line and key."""
    from edge_agent import registry

    path, data, where_is = read_layers(name_or_path, base)
    problems: list[Problem] = []

    def bad(key: str, reason: str) -> None:
        problems.append(Problem(*where_is(key), key, reason))

    from edge_agent.profile.shapes import register_types
    register_types(data, bad)              # the record types this profile declares (`types:`)
    types = registry.record_types()

    def need(key: str, typ: type) -> Any:
        v = data.get(key)
        if not isinstance(v, typ):
            bad(key, f"missing or not a {typ.__name__}")
            return typ()
        return v

    # `TYPE: null` in a profile that extends another: that type is not sent here
    headers = {k: v for k, v in need("headers", dict).items() if v is not None}
    records = {k: v for k, v in need("records", dict).items() if v is not None}
    if not records:
        bad("records", "list at least one record type and its fields")
    sent = [t for t in types if t in records]      # registry order: the order they are produced in
    text_format = (data.get("files") or {}).get("format", "text") == "text"     # only text files have headers
    for t in sent:
        for what, table, known in (("headers", headers, HEADER_FIELDS), ("records", records, types[t].fields)):
            if what == "headers" and not text_format and t not in table:
                continue
            fields = table.get(t)
            if not isinstance(fields, list) or not fields:
                bad(f"{what}.{t}", "missing: list the fields in order")
                continue
            unknown = [f for f in fields if f not in known]
            if unknown:
                bad(f"{what}.{t}", f"unknown field(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}")
            if len(set(map(str, fields))) != len(fields):
                bad(f"{what}.{t}", "a field is listed twice")
    for t in set(headers) | set(records):
        if t not in types:
            bad("records" if t in records else "headers", f"unknown type {t!r}; registered types are "
                                                          f"{', '.join(types)}")
    files = need("files", dict)
    from edge_agent.profile.formats import format_problems
    for key, reason in format_problems(files):
        bad(f"files.{key}" if key else "files", reason)
    for key in ("name_pattern",):
        if key in files:
            try:
                re.compile(files[key])
            except (re.error, TypeError) as exc:
                bad(f"files.{key}", f"not a regular expression: {exc}")
    pattern = data.get("mine_code_pattern", r"^\d{12}$")
    try:
        re.compile(pattern)
    except (re.error, TypeError) as exc:
        bad("mine_code_pattern", f"not a regular expression: {exc}")
    if data.get("down_value", "last") not in DOWN_VALUES:
        bad("down_value", f"must be one of {', '.join(DOWN_VALUES)}")
    retained = data.get("retained", [t for t in sent if types[t].retained])
    if not isinstance(retained, list) or any(t not in types for t in retained):
        bad("retained", f"list of record types ({', '.join(types)})")
        retained = []

    def code_table(key: str, key_ok, what: str) -> dict:
        table = data.get(key) or {}
        if not isinstance(table, dict):
            bad(key, "must be a mapping of code: description")
            return {}
        out = {}
        for k, v in table.items():
            if not key_ok(k):
                bad(key, f"code {k!r} is not {what}")
                continue
            out[k] = str(v)
        return out

    status_bits = code_table("status_bits", lambda k: isinstance(k, int) and k > 0 and k & (k - 1) == 0,
                             "a power of two (1, 2, 4, ... 128)")
    anomalies = code_table("anomalies", lambda k: isinstance(k, str) and re.fullmatch(r"\d{3}", k) is not None,
                           "3 digits in quotes ('001')")
    run_status = code_table("run_status", lambda k: isinstance(k, int), "an integer")
    power_status = code_table("power_status", lambda k: isinstance(k, int), "an integer")
    system_codes = code_table("system_codes", lambda k: isinstance(k, str) and re.fullmatch(r"\d{2}", k) is not None,
                              "2 digits in quotes ('01')")
    value_kinds = data.get("value_kinds") or {"analog": "MN", "switch": "KG", "cumulative": "LJ", "multistate": "DT"}
    if not isinstance(value_kinds, dict) or set(value_kinds) != set(KINDS):
        bad("value_kinds", f"map each of {', '.join(KINDS)} to its code (MN, KG, LJ, DT)")
        value_kinds = {}
    from edge_agent.codes import legacy_levels as _legacy
    legacy = data.get("legacy_levels")
    try:
        if legacy is not None and not isinstance(legacy, dict):
            raise ValueError("map warn, alarm and cutoff to a level, e.g. {warn: yellow, alarm: orange, cutoff: red}")
        legacy_levels = _legacy(legacy)
    except ValueError as exc:
        bad("legacy_levels", str(exc))
        legacy_levels = _legacy()
    timezone = data.get("timezone", "local")
    if timezone != "local":
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            bad("timezone", f"unknown time zone {timezone!r}; use an IANA name such as Asia/Shanghai, or local")
    table_path = Path(data.get("sensor_table", "../sensors.csv"))
    if not table_path.is_absolute():
        table_path = (path.parent / table_path).resolve()
    from edge_agent.profile.options import parse as parse_options
    options = parse_options(data, bad, SensorType, KINDS, FRAMING)
    sensors = {}
    if not problems:
        sensors = load_sensor_table(table_path)
        for code in set(options.local_sensors) & set(sensors):
            bad(f"local_sensors.{code}", f"{code} is in the sensor table {table_path}: a local code must not "
                                         "shadow a code the receivers know")
        for code in set(options.local_anomalies) & set(anomalies):
            bad("local_anomalies", f"{code} is in `anomalies`: a local code must not shadow a code the receivers know")
        _derived_codes(data, set(anomalies) | set(options.local_anomalies), bad)
    if problems:
        raise ConfigError(problems)
    sensors.update(options.local_sensors)
    return Profile(
        name=str(data.get("name", path.stem)),
        path=path,
        mine_code_pattern=pattern,
        files=files,
        time_format=data.get("time_format", "%Y-%m-%d %H:%M:%S"),
        date_format=data.get("date_format", "%Y-%m-%d"),
        headers={t: tuple(headers[t]) for t in sent if t in headers},
        records={t: tuple(records[t]) for t in sent},
        retained=frozenset(retained),
        down_value=data.get("down_value", "last"),
        system_codes=system_codes,
        value_kinds={k: str(v) for k, v in value_kinds.items()},
        status_bits=status_bits,
        anomalies=anomalies,
        run_status=run_status,
        power_status=power_status,
        sensors=sensors,
        raw=data,
        timezone=str(timezone),
        legacy_levels=legacy_levels,
        options=options,
    )


def _derived_codes(data: dict, known: set[str], bad) -> None:
    """Every derived condition's anomaly code is one the receivers know, or a declared local code."""
    table = data.get("derived_anomalies") or {}
    if not isinstance(table, dict):
        bad("derived_anomalies", "a mapping of rule: {code, name}")
        return
    for rule, entry in table.items():
        code = str((entry or {}).get("code", "")) if isinstance(entry, dict) else ""
        if code and code not in known:
            bad("derived_anomalies", f"{rule}: code {code!r} is neither in `anomalies` (the receivers' codes) nor "
                                     "declared in `local_anomalies`")
