"""What a strict receiver flags in safety-monitoring files: the receiver rules of SYSTEMS.md as code.

    findings = check_text(name, data, profile)       # one spec text file (its name and its bytes)
    findings = check_folder(outbox, profile)         # every *.txt file of a folder
    findings = site_findings(site, profile, catalog) # a site's own output, rendered without devices
    problems = site_problems(site, profile)          # limits `check` refuses (loc, reason)

A `Finding` has a rule id, a severity (`break`: the receiver rejects the value
or shows it as unknown; `risk`: a weaker sign that one receiver may trip on),
the place (file, record number, point code) and one line of what is wrong.
The facts behind the rules (code tables, limits, field orders) come from the
profile, so a variant profile is checked against its own receivers.
`tests/receiver_check.py` is an independent implementation of the same rules
from the documents; the tests compare the two.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

BREAK, RISK = "break", "risk"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THRESHOLDS = ("range_high", "range_low", "alarm_high", "alarm_high_clear", "alarm_low", "alarm_low_clear",
               "cutoff_high", "restore_high", "cutoff_low", "restore_low")
_NUMERIC = {
    "CDDY": _THRESHOLDS + ("x", "y", "z"),
    "CDSS": ("value", "status"),
    "TJSJ": ("max", "min", "avg"),
    "YCBJ": ("max", "min", "avg"),
    "FZDY": ("x", "y", "z"),
    "FZSS": ("run_status", "power_status"),
}
_TIMES = {"CDDY": ("time",), "CDSS": ("time",), "TJSJ": ("start", "end", "max_time", "min_time", "time"),
          "YCBJ": ("start", "end", "max_time", "min_time", "time"), "FZDY": ("time",), "FZSS": ("time",)}
_NAMED = ("CDSS", "TJSJ", "YCBJ")     # records that carry the sensor type's name


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.rule} ({self.severity}): {self.what}"


class _Rules:
    """The receivers' facts of one profile, ready for the checks."""

    def __init__(self, profile):
        self.profile = profile
        o = profile.options
        self.o = o
        self.known_sensors = {c: s for c, s in profile.sensors.items() if not s.local}
        self.known_anomalies = set(profile.anomalies)
        self.kind_of = {v: k for k, v in profile.value_kinds.items()}    # MN -> analog
        self.bits = sum(profile.status_bits)
        fs, rt, ft = (profile.files[k] for k in ("field_separator", "record_terminator", "file_terminator"))
        self.fs, self.rt, self.ft = fs, rt, ft
        kinds = "|".join(map(re.escape, profile.value_kinds.values()))
        self.code = re.compile(rf"(?P<system>\d{{2}})(?P<kind>{kinds})(?P<sensor>\d{{4}})(?P<number>.+)")


def _date(text: str, fmt: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, fmt)
    except ValueError:
        return None


def check_text(name: str, data: bytes, profile) -> list[Finding]:
    """Every finding in one spec text file (`name` is its file name)."""
    r = _Rules(profile)
    out: list[Finding] = []

    def add(rule: str, severity: str, where: str, what: str) -> None:
        out.append(Finding(rule, severity, where, what))

    m = re.fullmatch(profile.files.get("name_pattern", r"(.+)_([A-Z]+)_(\d{14})\.txt"), name)
    if not m:
        add("file", BREAK, name, "the file name does not match the receivers' pattern")
        return out
    mine, typ, stamp = m.group(1), m.group(2), m.group(3)
    if data.startswith(b"\xef\xbb\xbf"):
        add("file", BREAK, name, "starts with a byte-order mark")
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        add("file", BREAK, name, "not UTF-8")
        return out
    if not text.endswith(r.ft):
        add("file", BREAK, name, f"does not end with {r.ft!r}: receivers treat it as incomplete")
        return out
    segments = [seg.strip("\r\n") for seg in text[:-len(r.ft)].split(r.rt)]
    if segments and segments[-1] == "":
        segments.pop()
    if typ not in profile.records or not segments:
        add("file", BREAK, name, f"unknown type {typ!r} or no header")
        return out
    header = segments[0].split(r.fs)
    head_names = profile.headers[typ]
    if len(header) != len(head_names):
        add("fields", BREAK, f"{name}:header", f"{len(header)} header fields, the type has {len(head_names)}")
        return out
    head = dict(zip(head_names, header))
    if head.get("mine_code") != mine:
        add("file", BREAK, f"{name}:header", "the header's mine code differs from the file name's")
    when = _date(head.get("time", ""), profile.time_format)
    if when is None or when.strftime("%Y%m%d%H%M%S") != stamp:
        add("file", BREAK, f"{name}:header", "the header time is not the file name's time")
    if typ == "CDDY" and len(header) >= 6:      # field 6, whatever the profile calls it
        _expiry(header[5], when, f"{name}:header", profile, add)
    fields = profile.records[typ]
    for n, seg in enumerate(segments[1:], start=1):
        values = seg.split(r.fs)
        where = f"{name}:{n}"
        if len(values) != len(fields):
            add("fields", BREAK, where, f"{len(values)} fields, {typ} has {len(fields)}")
            continue
        _record(typ, dict(zip(fields, values)), mine, where, r, add)
    return out


def _expiry(text: str, when, where: str, profile, add) -> None:
    day = _date(text, profile.date_format)
    if day is None:
        add("expiry", RISK, where, f"CDDY header field 6 ({text!r}) is not the safety mark's expiry date "
                                   "(set site.safety_mark_expiry)")
    elif when is not None and day.date() <= when.date():
        add("expiry", RISK, where, f"the safety mark expiry {text} is not after the file's date: expired, or "
                                   "today's date instead of the expiry")


def _record(typ: str, rec: dict[str, str], mine: str, where: str, r: _Rules, add) -> None:
    o = r.o
    for f in _NUMERIC[typ]:
        v = rec.get(f, "")
        if v and not _NUMBER.fullmatch(v):
            add("number", BREAK, where, f"{f} {v!r} is not a number")
    for f in _TIMES[typ]:
        v = rec.get(f, "")
        if v and _date(v, r.profile.time_format) is None:
            add("time", BREAK, where, f"{f} {v!r} is not a time in {r.profile.time_format}")
    for f in ("x", "y", "z"):
        v = rec.get(f, "")
        if typ in ("CDDY", "FZDY") and _NUMBER.fullmatch(v) and len(v.partition(".")[2]) > o.coordinate_decimals:
            add("coordinates", RISK, where, f"{f} {v} has more than {o.coordinate_decimals} decimals")
    sub = rec.get("substation_code")
    if sub is not None and len(sub) > o.substation_code_max:
        add("substation-code", BREAK, where, f"substation code {sub!r} is longer than {o.substation_code_max}")
    if typ == "YCBJ" and rec.get("anomaly") not in r.known_anomalies:
        add("anomaly-code", BREAK, where, f"anomaly type {rec.get('anomaly')!r} is not one the receivers know")
    code = rec.get("point_code")
    if code is None:
        return
    parsed = _point_code(code, mine, typ, where, r, add)
    if parsed is None:
        return
    sensor = r.known_sensors.get(parsed["sensor"])
    if sensor is None:
        add("sensor-code", BREAK, where, f"sensor type {parsed['sensor']} is not in the receivers' code table")
    elif r.profile.value_kinds[sensor.kind] != parsed["kind"]:
        add("sensor-kind", RISK, where, f"{parsed['kind']} for sensor type {parsed['sensor']}, which the code "
                                        f"table has as {r.profile.value_kinds[sensor.kind]}")
    if typ in _NAMED and sensor is not None and rec.get("sensor_name") != sensor.name:
        add("sensor-name", RISK, where, f"sensor name {rec.get('sensor_name')!r}; the code table says "
                                        f"{sensor.name!r}")
    if typ == "CDDY":
        _definition(rec, parsed, where, r, add)
    if typ == "CDSS":
        _status(rec, where, r, add)


def _point_code(code: str, mine: str, typ: str, where: str, r: _Rules, add) -> dict | None:
    o = r.o
    m = r.code.fullmatch(code[len(mine):]) if code.startswith(mine) else None
    if m is None:
        add("point-code", BREAK, where, f"{code!r} is not mine code + system code + value kind + sensor type "
                                        "+ original number")
        return None
    if len(code) > o.point_code_max or len(m["number"]) > o.point_number_max:
        add("point-code", BREAK, where, f"{code} is longer than {o.point_code_max} characters or its original "
                                        f"number longer than {o.point_number_max}")
    elif typ == "CDDY" and len(m["number"]) != o.point_number_max:     # once per point: where it is defined
        add("point-number-form", RISK, where, f"original number {m['number']!r} is not the "
                                              f"{o.point_number_max}-character form of real codes")
    return m.groupdict()


def _definition(rec: dict[str, str], parsed: dict, where: str, r: _Rules, add) -> None:
    o, kind = r.o, rec.get("value_kind")
    if (rec.get("system_code"), kind, rec.get("sensor_type")) != (parsed["system"], parsed["kind"],
                                                                   parsed["sensor"]):
        add("point-code-mismatch", BREAK, where, "system code, value kind or sensor type differ from the point code")
    if kind not in o.definition_kinds:
        filled = [f for f in ("unit",) + _THRESHOLDS if rec.get(f)]
        if filled:
            add("definition-empty", BREAK, where, f"{kind} point with {', '.join(filled)}: receivers want "
                                                  f"them empty for every kind but {', '.join(sorted(o.definition_kinds))}")
    texts = [rec.get("on_text", ""), rec.get("off_text", "")]
    if kind in o.text_kinds:
        if not all(texts) or any(_NUMBER.fullmatch(t) for t in texts):
            add("onoff-text", RISK, where, f"on/off descriptions {texts} must be texts (开/停, 有/无 ...)")
    elif any(texts):
        add("onoff-text", RISK, where, f"on/off descriptions on a {kind} point: empty for every kind but "
                                       f"{', '.join(sorted(o.text_kinds))}")


def _status(rec: dict[str, str], where: str, r: _Rules, add) -> None:
    st, value = rec.get("status", ""), rec.get("value", "")
    if not st.isdigit():
        add("status", BREAK, where, f"status {st!r} is not a number")
        return
    s = int(st)
    if s & ~r.bits:
        add("status", BREAK, where, f"status {s} has bits the receivers do not know")
    elif s & (s - 1):
        add("status-combined", RISK, where, f"status {s} combines bits; a receiver that looks statuses up one by "
                                            "one shows it as unknown (profile: status_encoding: highest)")
    if value == "" and s == 0:
        add("empty-value", RISK, where, "an empty value with status 0 (normal)")


def check_folder(folder: str | Path, profile) -> list[Finding]:
    """Every finding in every spec text file of `folder` (hidden temporary files excluded)."""
    out: list[Finding] = []
    for p in sorted(Path(folder).glob("*.txt")):
        out += check_text(p.name, p.read_bytes(), profile)
    return out


def site_problems(site, profile) -> list[tuple[tuple, str]]:
    """What `check` refuses: original numbers, point codes and substation codes over the profile's limits."""
    from edge_agent.config import point_code
    o = profile.options
    out: list[tuple[tuple, str]] = []
    for di, dev in enumerate(site.devices):
        sub = dev.substation if dev.substation is not None else \
            o.substation(di + 1, site.site.mine_code, site.site.system_code)
        if len(sub) > o.substation_code_max:
            out.append((("devices", di, "substation"), f"substation code {sub!r} has {len(sub)} characters; "
                                                        f"receivers take at most {o.substation_code_max}"))
        for pi, pt in enumerate(dev.points):
            if pt.sensor not in profile.sensors:
                continue          # reported as an unknown sensor code
            loc = ("devices", di, "points", pi, "id")
            code = point_code(site, pt, profile)
            if len(pt.id) > o.point_number_max:
                out.append((loc, f"original number {pt.id!r} has {len(pt.id)} characters; receivers take at "
                                 f"most {o.point_number_max} (an equipment's points: set `ids:` to a short prefix)"))
            elif len(code) > o.point_code_max:
                out.append((loc, f"point code {code} has {len(code)} characters; receivers take at most "
                                 f"{o.point_code_max}"))
    return out


def site_warnings(site, profile, catalog, today: dt.date | None = None) -> tuple[list[str], list[str]]:
    """`check` warnings (the safety mark expiry, every local code the site's records carry) and notes (the
    local codes the profile acquires but does not send)."""
    where = site.source or "site file"
    today = today or dt.date.today()
    out = []
    expiry = site.site.safety_mark_expiry
    if "safety_mark_expiry" in profile.headers.get("CDDY", ()):
        if not expiry:
            out.append(f"{where}: site.safety_mark_expiry: missing; CDDY header field 6 is the monitoring "
                       "system's safety-mark expiry date (安全标志有效期, yyyy-MM-dd)")
        elif dt.date.fromisoformat(expiry) < today:
            out.append(f"{where}: site.safety_mark_expiry: {expiry} is past; renew the safety mark and update it")
    used: dict[str, list[str]] = {}
    for rp in catalog.points:
        if rp.cfg.sensor in profile.sensors and profile.sensors[rp.cfg.sensor].local:
            used.setdefault(rp.cfg.sensor, []).append(f"{site.devices[rp.device].name}/{rp.id}")
    unsent = []
    for code, points in sorted(used.items()):
        s = profile.sensors[code]
        shown = ", ".join(points[:3]) + (f" and {len(points) - 3} more" if len(points) > 3 else "")
        if s.send:
            out.append(f"{where}: sensor {code} ({s.name}): local code: receivers may show it as unknown "
                       f"({len(points)} points: {shown})")
        else:
            unsent.append(f"{code} {s.name} ({shown})")
    notes = []
    if unsent:
        notes.append(f"{where}: local codes, acquired and evaluated but not sent in profile {profile.name} "
                   f"(receivers have no code for them): {'; '.join(unsent)}")
    for rule, code in _derived_codes(site, profile).items():
        if code in profile.options.local_anomalies:
            out.append(f"{where}: equipment anomaly {code} ({rule}): local code: receivers may show it as unknown")
    return out, notes


def _derived_codes(site, profile) -> dict[str, str]:
    """rule -> anomaly code of every derived condition the site's equipment can raise."""
    from edge_agent.derived import RULES
    table = profile.raw.get("derived_anomalies") or {}
    templates = {eq.template for eq in getattr(site, "equipment", ())}
    return {r.name: str((table.get(r.name) or {}).get("code", "")) for r in RULES
            if r.template in templates and (table.get(r.name) or {}).get("code")}


def site_findings(site, profile, catalog, now: float | None = None, system=None) -> list[Finding]:
    """`check --receiver`: the site's CDDY, FZDY, FZSS, a CDSS snapshot, TJSJ and one YCBJ per anomaly code it
    can raise, rendered as the agent would write them (no device is polled), then checked like received files."""
    import time

    import orjson

    from edge_agent.profile.encode import Encoder
    from edge_agent.profile.textfile import file_name, render
    now = float(now if now is not None else int(time.time()))
    enc = Encoder(site, catalog, profile, system=system)
    pts = [rp for rp in catalog.points if enc.sends(rp)]
    values = [rp.range_low for rp in catalog.points]
    times = [now] * len(catalog.points)
    stats = [SimpleNamespace(point=rp.index, start=now - 300, end=now, max=rp.range_low, max_time=now,
                             min=rp.range_low, min_time=now, avg=rp.range_low, count=1, delta=None) for rp in pts]
    codes = {"004"} | set(_derived_codes(site, profile).values())     # 004: any point can fail
    for rp in pts:
        a, c, w = rp.cfg.alarm, rp.cfg.cutoff, rp.cfg.warn
        for code, configured in (("001", (a.high, a.low)), ("002", (c.high, c.low)), ("009", (w.high,)),
                                 ("010", (w.low,))):
            if any(v is not None for v in configured):
                codes.add(code)
    events = [SimpleNamespace(point=pts[0].index, anomaly=c, start=now, end=None, value=pts[0].range_low)
              for c in sorted(codes)] if pts else []
    bodies = {"CDDY": enc.cddy(now), "FZDY": enc.fzdy(now), "FZSS": enc.fzss([(0, 1)] * len(site.devices), now),
              "CDSS": enc.cdss(range(len(catalog)), values, [0] * len(values), times, now),
              "TJSJ": enc.tjsj(stats, now), "YCBJ": enc.ycbj(events, now)}
    when = dt.datetime.fromtimestamp(now, enc.tz)
    out: list[Finding] = []
    for typ, body in bodies.items():
        records = orjson.loads(body)
        if records:
            out += check_text(file_name(profile, site, typ, when), render(profile, site, typ, when, records),
                              profile)
    return out


def summary(findings: list[Finding]) -> list[str]:
    """One line per rule and record type: how many records, and the first place with its reason."""
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for f in findings:
        typ = f.where.split("_")[1] if f.where.count("_") >= 2 else ""
        groups.setdefault((f.severity, f.rule, typ), []).append(f)
    lines = []
    for (severity, rule, typ), fs in sorted(groups.items()):
        first = fs[0]
        lines.append(f"receiver: {typ or 'file'}: {rule} ({severity}): {len(fs)} record(s), first "
                     f"{first.where}: {first.what}")
    return lines
