"""Record encoders: the kernel's outputs -> message bodies, and the MQTT envelope.

Every encoder returns a message BODY: the bytes of a JSON array of record
objects whose keys are the profile's field names for that type, in the
profile's order (PROFILE.md).  Numbers are JSON numbers rounded to the point's
decimals (an integer when it has 0 decimals, or when the point's values are
whole numbers by construction and this one is whole); a missing value,
threshold or time is `null` (an empty field in the text file).  Times are
strings in the profile's time format, local time of the mine (see `timefmt`).
Points of a local code the profile does not send (`send: false`) appear in no
record; a body may then be `[]`, which the caller does not send.

The body is what the buffer stores; `envelope()` splices it, unparsed, into
the MQTT payload, and the file sink parses it back into records for the text
file.  CDSS is the hot path: its records are built from per-point byte
templates, one `%` format per record, without a dict per record.
"""
from __future__ import annotations

import datetime as dt
import io
import math
import operator
import re
from typing import Any, Iterable, Iterator, Sequence

import orjson

import logging

from edge_agent.codes import LEVELS
from edge_agent.profile.cdss import implementation as _cdss_impl
from edge_agent.errors import ConfigError
from edge_agent.profile.framing import framing_problems  # noqa: F401 (where callers import it from)
from edge_agent.profile.tables import Profile
from edge_agent.profile.timefmt import TimeText, zone_of

log = logging.getLogger("edge_agent.profile")
_cdss = _cdss_impl()      # the CDSS loop: compiled if built (edge_agent/profile/cdss.py)

_CDSS_SLOTS = ("value", "status", "time")
_EXACT = 2.0 ** 53
_POW = [10.0 ** d for d in range(23)]
_STATUS = [b"%d" % i for i in range(256)]


def num(v: Any, decimals: int) -> int | float | None:
    """A number as the records carry it: rounded to `decimals`, int for 0 decimals, None if missing.

    Rounding is round-half-even of v * 10**decimals, then divided back: the
    result's shortest form has at most `decimals` decimals (0.4200000001 ->
    0.42), never -0.0.  Magnitudes beyond what a double holds to that precision
    (|v * 10**decimals| >= 2**53) are kept as they are.
    """
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        return None
    p = _POW[decimals] if decimals > 0 else 1.0
    x = v * p
    if -_EXACT < x < _EXACT:
        k = round(x)
        return k if decimals <= 0 else k / p
    return v


EMPTY = b"[]"     # a body without records: nothing to send

# a record's point fields (Encoder.point_fields) as attributes of a ResolvedPoint; substation_code is
# its device's code (the attribute is the device index)
_POINT_ATTRS = {"point_code": "code", "sensor_name": "sensor_name", "location": "cfg.location", "unit": "unit",
                "sensor_type": "cfg.sensor", "substation_code": "device"}


def whole(n: int | float | None, integral: bool) -> int | float | None:
    """`n` (from num()) as an int when the point's values are whole numbers and this one is."""
    if integral and isinstance(n, float) and n.is_integer() and -_EXACT < n < _EXACT:
        return int(n)
    return n


class Encoder:
    """Builds the message bodies of one site; construct once, call per message.

    Raises ConfigError at construction if any free text that goes into a
    record (names, units, locations, relations, codes) contains a character
    the text files use for framing.
    """

    def __init__(self, site, catalog, profile: Profile, *, tz: dt.tzinfo | None = None, system=None):
        self.site = site
        # the monitoring system this encoder writes for (edge_agent.systems.System): only its devices' points
        self.system = system
        devices = set(system.devices) if system is not None else None
        self._send = [rp.sent and (devices is None or rp.device in devices) for rp in catalog.points]
        self._devices = [di for di in range(len(site.devices)) if devices is None or di in devices]
        self._device_set = frozenset(self._devices)
        self.catalog = catalog
        self._device_codes: list[str] | None = None
        self.profile = profile
        self.tz = tz if tz is not None else zone_of(site, profile)
        self.times = TimeText(profile.time_format, self.tz)
        info = site.site
        # topics of MQTT sinks that do not name their own prefix (tests, the golden files)
        self.prefix = next((c.topic_prefix for c in site.forward.of_kind("mqtt")), "mine")
        problems = framing_problems(site, catalog, profile)
        if problems:
            raise ConfigError(problems)
        self._head = (b'{"seq":%d,"type":%b,"mine_code":' + orjson.dumps(info.mine_code).replace(b"%", b"%%")
                      + b',"gateway":' + orjson.dumps(info.gateway).replace(b"%", b"%%")
                      + b',"time":%b,"ts":%.3f,"records":')
        self._type_json = {t: orjson.dumps(t) for t in profile.records}
        self._retained = frozenset(profile.retained)
        self._level_codes = {str(k): v for k, v in (profile.raw.get("level_codes") or {}).items()}
        opts = profile.options
        self._status = opts.status_table()
        self._not_polled = next((b for b, name in profile.status_bits.items() if name == "not_polled"), 0)
        self._defined_kinds, self._text_kinds = opts.definition_kinds, opts.text_kinds
        self._xyz = self.xyz_decimals = opts.coordinate_decimals
        long, unsent = self._build_cdss_templates(devices)
        if long:
            log.warning("%d point codes are longer than the profile's receivers take (%d characters, original "
                        "numbers %d): they may be refused; `edge-agent check` lists them", long,
                        opts.point_code_max, opts.point_number_max)
        if unsent:
            log.info("profile %s sends no record of local code(s) %s (%d points): receivers have no code for them",
                     profile.name, ", ".join(sorted(unsent)), sum(unsent.values()))

    # ------------------------------------------------------------------ MQTT

    def topic(self, type: str, prefix: str | None = None) -> str:
        """`<prefix>/<mine code>/<gateway>/<TYPE>` (also for `status`)."""
        return f"{prefix or self.prefix}/{self.site.site.mine_code}/{self.site.site.gateway}/{type}"

    def retained(self, type: str) -> bool:
        return type in self._retained

    def retain_also(self, types) -> None:
        """Row types (`<system>/<TYPE>`) of the other systems that MQTT retains (the sinks ask this encoder)."""
        self._retained = self._retained | frozenset(types)

    def envelope(self, seq: int, type: str, time: float, body: bytes) -> bytes:
        """The MQTT payload: seq, type, mine_code, gateway, time, ts, records (the body, spliced as is).

        `ts` is the message time as Unix seconds with milliseconds (for a live CDSS: the
        acquisition time of its frame), so a consumer can measure end-to-end latency;
        `time` is the profile's local-time text of the same instant.
        """
        tj = self._type_json.get(type)
        if tj is None:
            system, _, code = type.rpartition("/")
            tj = orjson.dumps(code) + (b',"system":' + orjson.dumps(system) if system else b"")
            self._type_json[type] = tj
        # one join: `head + body + b"}"` made the body's size twice over (a 23 MB CDDY: 46 MB more)
        return b"".join((self._head % (seq, tj, self.times.json(time), time), body, b"}"))

    # ------------------------------------------------------------------ generic records

    def number(self, rp, v: Any) -> int | float | None:
        """A value of point `rp` as the records carry it (its decimals; whole numbers of integer points as ints)."""
        return whole(num(v, rp.decimals), rp.integral)

    def status(self, st: int, t: float) -> int:
        """A CDSS status as sent: the not-polled bit when the point was never sampled (time NaN or 0), then
        the profile's status encoding (mask, or only the highest bit)."""
        if not t > 0:
            st |= self._not_polled
        return self._status[st] if 0 <= st < 256 else st

    def _body(self, type: str, rows: Iterable[dict]) -> bytes:
        """The records as a JSON array, each row encoded as it comes and written into one buffer: the same
        bytes as one dumps of the list, without holding every row and its ordered copy at once (~25 MB
        for a 10,000-point CDDY).  orjson's outputs are over-allocated: keeping them for one join would
        cost several kB each.  The buffer is a BytesIO, whose getvalue() hands its bytes over without a
        copy: a 23 MB CDDY (50,000 points) needs 23 MB, not twice that as a bytearray and its bytes did."""
        fields = self.profile.records[type]
        dumps = orjson.dumps
        out = io.BytesIO()
        write = out.write
        write(b"[")
        sep = b""
        for r in rows:
            write(sep)
            write(dumps({f: r.get(f) for f in fields}))
            sep = b","
        write(b"]")
        return out.getvalue()

    def rows(self, type: str, rows: Iterable[dict]) -> bytes:
        """A body of record type `type` from dicts: the profile's fields for it, in its order (missing: null)."""
        return self._body(type, rows)

    def point_fields(self, rp) -> dict:
        """point_code, sensor_name, location, unit, sensor_type, substation_code of point `rp`."""
        return self._point_fields(rp)

    def level_code(self, level: int) -> int | None:
        """The profile's number for graded-warning level `level` (0 none .. 4 red; `level_codes:`), None for 0."""
        return self._level_codes.get(LEVELS[level]) if 0 < level < len(LEVELS) else None

    def level_colour(self, level: int) -> str | None:
        return LEVELS[level] if 0 < level < len(LEVELS) else None

    def colour_of_code(self, code) -> str | None:
        """The colour the profile numbers `code` (an alarm record's level), None if none."""
        return next((c for c, n in self._level_codes.items() if n == code), None) if code is not None else None

    def sends(self, rp) -> bool:
        """Whether point `rp` goes into this encoder's records (its system's, and a code the profile sends)."""
        return self._send[rp.index]

    def _point(self, ref: Any):
        """A ResolvedPoint from a global index or anything with `.index`; None for device-level events."""
        if ref is None:
            return None
        try:
            i = operator.index(ref)
        except TypeError:
            i = getattr(ref, "index", None)
        if i is None or i < 0:
            return None
        return self.catalog.points[i]

    def _point_fields(self, rp) -> dict:
        # the same fields as _POINT_ATTRS (the CDSS templates read them through it)
        return {"point_code": rp.code, "sensor_name": rp.sensor_name, "location": rp.cfg.location,
                "unit": rp.unit, "sensor_type": rp.cfg.sensor,
                "substation_code": self._device_code(rp.device)}

    def _device_code(self, di: int) -> str:
        """catalog.device_code(di), worked out once per device (a CDDY asks it for every point)."""
        codes = self._device_codes
        if codes is None:
            codes = self._device_codes = [self.catalog.device_code(i) for i in range(len(self.site.devices))]
        return codes[di]

    def _device_fields(self, di: int) -> dict:
        """Device-level records (e.g. 006 substation unreachable) use the substation code as point code."""
        dev = self.site.devices[di]
        code = self._device_code(di)
        return {"point_code": code, "sensor_name": "分站", "location": dev.location, "unit": None,
                "sensor_type": None, "substation_code": code}

    def cddy(self, now: float) -> bytes:
        """Every sent point's definition (CDDY).

        Unit, range and the ten thresholds only for the profile's `definition_kinds` (MN), on/off texts
        only for its `text_kinds` (KG); empty for every other kind, as strict receivers want them.
        """
        return self._body("CDDY", self._cddy_rows(now))

    def _cddy_rows(self, now: float) -> Iterator[dict]:
        t = self.times.text(now)
        kinds = self.profile.value_kinds
        system = self.site.site.system_code
        for rp in self.catalog.points:
            if not self._send[rp.index]:
                continue
            p, d = rp.cfg, rp.decimals
            a, c, w = p.alarm, p.cutoff, p.warn
            kind = kinds[rp.kind]
            row = self._point_fields(rp)
            row.update({"system_code": system, "value_kind": kind, "relations": p.relations or None, "time": t,
                        "x": num(p.x, self._xyz), "y": num(p.y, self._xyz), "z": num(p.z, self._xyz),
                        "on_text": None, "off_text": None})
            if kind in self._text_kinds:
                row.update({"on_text": rp.on_text or None, "off_text": rp.off_text or None})
            if kind not in self._defined_kinds:
                row["unit"] = None
                yield row
                continue
            row.update({
                "range_high": num(rp.range_high, d), "range_low": num(rp.range_low, d),
                # clear/restore levels as the kernel applies them: the level itself when not configured
                "alarm_high": num(a.high, d),
                "alarm_high_clear": num(a.high_clear if a.high_clear is not None else a.high, d),
                "alarm_low": num(a.low, d),
                "alarm_low_clear": num(a.low_clear if a.low_clear is not None else a.low, d),
                "cutoff_high": num(c.high, d),
                "restore_high": num(c.restore if c.restore is not None else c.high, d),
                "cutoff_low": num(c.low, d),
                "restore_low": num(c.low_restore if c.low_restore is not None else c.low, d),
                "warn_high": num(w.high, d), "warn_low": num(w.low, d),
            })
            yield row

    def fzdy(self, now: float) -> bytes:
        """Every device (substation) definition (FZDY)."""
        t = self.times.text(now)
        xyz = self._xyz
        rows = [{"substation_code": self._device_code(di), "location": dev.location, "name": dev.name,
                 "x": num(dev.x, xyz), "y": num(dev.y, xyz), "z": num(dev.z, xyz), "time": t}
                for di, dev in ((di, self.site.devices[di]) for di in self._devices)]
        return self._body("FZDY", rows)

    def fzss(self, states: Sequence[tuple[int, int]], now: float) -> bytes:
        """Device run/power status (FZSS); `states[i]` is (run_status, power_status) of device i."""
        t = self.times.text(now)
        rows = [{"substation_code": self._device_code(di), "run_status": int(run),
                 "power_status": int(power), "time": t}
                for di, (run, power) in enumerate(states) if di in self._device_set]
        return self._body("FZSS", rows)

    def tjsj(self, stats: Iterable[Any], now: float) -> bytes:
        """Window statistics (TJSJ): objects with point, start, end, max, max_time, min, min_time, avg, count
        (and optionally delta, for cumulative points)."""
        return self._body("TJSJ", self.tjsj_rows(stats, now))

    def tjsj_rows(self, stats: Iterable[Any], now: float) -> Iterator[dict]:
        """The records of `tjsj` as dicts (every field its producer fills), for any statistics type."""
        tt = self.times.text
        t = tt(now)
        n = self.number
        for s in stats:
            rp = self._point(s.point)
            if not self._send[rp.index]:
                continue
            row = self._point_fields(rp)
            row.update({"start": tt(s.start), "end": tt(s.end), "max": n(rp, s.max), "max_time": tt(s.max_time),
                        "min": n(rp, s.min), "min_time": tt(s.min_time), "avg": n(rp, s.avg),
                        "count": int(s.count), "delta": n(rp, getattr(s, "delta", None)), "time": t})
            yield row

    def ycbj(self, events: Iterable[Any], now: float) -> bytes:
        """Anomaly records (YCBJ), one per event.

        An event has point (global index; None or < 0 with `device` set for a
        device-level anomaly such as 006), anomaly ('001'..'010' or an int),
        begin, start, end (None while open), value, max, max_time, min,
        min_time, avg; optionally level_code (the profile's number for its colour) and the
        disposal slots cause, action, entered_at (epoch), entered_by.  A record for an open
        event has an empty end; absent max/min/avg fall back to `value` at `start`; NaN ones
        are empty.
        """
        return self._body("YCBJ", self.ycbj_rows(events, now))

    def ycbj_rows(self, events: Iterable[Any], now: float) -> list[dict]:
        """The records of `ycbj` as dicts (every field its producer fills), for any anomaly type."""
        tt = self.times.text
        t = tt(now)
        rows = []
        for e in events:
            rp = self._point(getattr(e, "point", None))
            if rp is not None:
                if not self._send[rp.index]:
                    continue
                row = self._point_fields(rp)
                n = lambda v, rp=rp: self.number(rp, v)    # noqa: E731
            elif int(e.device) in self._device_set:
                row, n = self._device_fields(int(e.device)), lambda v: num(v, 2)
            else:
                continue                 # another system's device
            anomaly = e.anomaly if isinstance(e.anomaly, str) else f"{int(e.anomaly):03d}"
            value = getattr(e, "value", None)

            def get(name: str, default: Any) -> Any:
                # absent -> the begin sample; NaN (no valid sample, e.g. a fault) stays empty
                v = getattr(e, name, None)
                return default if v is None else v

            row.update({
                "anomaly": anomaly, "start": tt(e.start), "end": tt(getattr(e, "end", None)),
                "value": n(value),
                "max": n(get("max", value)), "max_time": tt(get("max_time", e.start)),
                "min": n(get("min", value)), "min_time": tt(get("min_time", e.start)),
                "avg": n(get("avg", value)),
                # a disposal (edge_agent.alarms) fills these; the kernel's events never do
                "cause": getattr(e, "cause", None), "action": getattr(e, "action", None),
                "entered_at": tt(getattr(e, "entered_at", None)), "entered_by": getattr(e, "entered_by", None),
                "level": getattr(e, "level_code", None), "time": t,
            })
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ CDSS, the hot path

    def _build_cdss_templates(self, devices: set | None) -> tuple[int, dict]:
        """Per point, the record's constant text around its slots: ("{...key:", ",key:", ..., "}"); the
        hot loop only joins the slots in between, no formatting per record.  One pass over the points,
        which also returns how many point codes or numbers are longer than the profile's receivers take
        and the points of this system the profile does not send ({local code: points}).  Every part but
        the first (which holds the point code) is one object for all points with the same text."""
        fields = self.profile.records.get("CDSS", ())     # a profile without CDSS: no point has a template
        slots = [f for f in fields if f in _CDSS_SLOTS]
        self._cdss_order = tuple(_CDSS_SLOTS.index(f) for f in slots)
        consts = [f for f in fields if f not in _CDSS_SLOTS]
        # each part as a %-format of its constant fields' JSON: (format, first const, one past the last)
        formats, fmt, first, n = [], b"{", 0, 0
        for k, f in enumerate(fields):
            key = ((b"," if k else b"") + orjson.dumps(f) + b":").replace(b"%", b"%%")
            if f in _CDSS_SLOTS:
                formats.append((fmt + key, first, n))
                fmt, first = b"", n
            else:
                fmt += key + b"%b"
                n += 1
        formats.append((fmt + b"}", first, n))
        (head, h0, h1), rest = formats[0], formats[1:]
        dumps = orjson.dumps
        shared: dict[bytes, bytes] = {}
        # the constant fields' values of a point in one C call (substation_code: the device, then its code)
        getter = None
        if consts and all(f in _POINT_ATTRS for f in consts):
            getter = operator.attrgetter(*(_POINT_ATTRS[f] for f in consts))
        sub = consts.index("substation_code") if "substation_code" in consts else None
        codes_json = [dumps(self._device_code(di)) for di in range(len(self.site.devices))]
        parts_of: list[tuple[bytes, ...] | None] = []
        pows, ints, ipows = [], [], []
        send = self._send
        opts = self.profile.options
        code_max, number_max = opts.point_code_max, opts.point_number_max
        long, unsent = 0, {}
        for rp in self.catalog.points:
            d = rp.decimals
            p = _POW[d] if d > 0 else 1.0
            pows.append(p)
            ints.append(1 if d <= 0 else 2 if rp.integral else 0)
            ipows.append(int(p))
            if len(rp.code) > code_max or len(rp.cfg.id) > number_max:
                long += 1
            if not send[rp.index] or not fields:
                parts_of.append(None)
                if not rp.sent and (devices is None or rp.device in devices):
                    unsent[rp.cfg.sensor] = unsent.get(rp.cfg.sensor, 0) + 1
                continue
            if getter is not None:
                got = getter(rp)
                js = [dumps(v) for v in got] if len(consts) > 1 else [dumps(got)]
                if sub is not None:
                    js[sub] = codes_json[rp.device]
            else:                       # a field _POINT_ATTRS does not name: as the other records have it
                values = self._point_fields(rp)
                js = [dumps(values[f]) for f in consts]
            parts = [head % tuple(js[h0:h1])]
            for fmt, i0, i1 in rest:
                b = fmt % tuple(js[i0:i1]) if i1 > i0 else fmt
                parts.append(shared.setdefault(b, b))
            parts_of.append(tuple(parts))
        self._cdss_parts = parts_of
        self._cdss_pow = pows
        # 0: float; 1: 0 decimals (always an int); 2: whole-number point with decimals (an int when whole)
        self._cdss_int = ints
        self._cdss_ipow = ipows
        self._cdss_empty_when_down = self.profile.down_value == "empty"
        self._status_text = [_STATUS[s] for s in self._status]
        self._cdss = _cdss.Templates(self._cdss_parts, self._cdss_pow, self._cdss_int, self._cdss_ipow,
                                     [rp.decimals for rp in self.catalog.points], self._status_text, self._status,
                                     self._not_polled, self._cdss_empty_when_down, self._cdss_order)
        return long, unsent

    def cdss(self, indices: Iterable[int], values: Sequence[float], statuses: Sequence[int],
             times: Sequence[float], now: float) -> bytes:
        """Realtime values (CDSS) of the given points, from per-point state arrays indexed by global index.

        A value is null when it is NaN/inf, or when the point's device is down
        (status bit 16) and the profile says `down_value: empty`.  A point never
        sampled (time NaN or 0) carries `now` as its time (receivers need one)
        and the not-polled status bit.  Status goes out as `status()` says.
        Points the profile does not send are skipped.  The loop is edge_agent/profile/cdss.py
        (compiled when built).
        """
        return _cdss.encode(self._cdss, indices, values, statuses, times, now, self.times)
