"""The profile's receiver-facing options: what a strict receiver accepts, and how codes are formed.

    receiver: {point_number_max: 8, point_code_max: 28, substation_code_max: 17,
               coordinate_decimals: 2, definition_kinds: [MN], text_kinds: [KG]}
    point_number: {width: 8, pad: "0"}        # original numbers padded to a fixed form (default: as written)
    substation_code: '{number:03d}'           # substation code of a device without `substation:`
    status_encoding: mask                     # or highest (a single bit value per point)
    local_sensors: {"0060": {kind: analog, name: 带速, unit: m/s, range: [0, 10], decimals: 2, send: false}}
    local_anomalies: {"101": 皮带打滑}

`parse(data, bad, sensor_type)` reads them from a profile's raw mapping; every
problem goes to `bad(key, reason)` (the loader turns it into file:line: key:
reason).  Defaults are the receiver rules of SYSTEMS.md, so a profile that
names none of these keys behaves like the default profile.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

STATUS_ENCODINGS = ("mask", "highest")
VALUE_KINDS = ("MN", "KG", "LJ", "DT")
_LIMITS = {"point_number_max": 8, "point_code_max": 28, "substation_code_max": 17, "coordinate_decimals": 2}


@dataclass(frozen=True)
class Options:
    """Parsed receiver options of one profile (see the module docstring)."""
    point_number_max: int = 8
    point_code_max: int = 28
    substation_code_max: int = 17
    coordinate_decimals: int = 2
    definition_kinds: frozenset[str] = frozenset({"MN"})
    text_kinds: frozenset[str] = frozenset({"KG"})
    point_number_width: int = 0
    point_number_pad: str = "0"
    substation_code: str = "{number:03d}"
    status_encoding: str = "mask"
    local_sensors: dict[str, Any] = field(default_factory=dict)     # code -> SensorType (local=True)
    local_anomalies: dict[str, str] = field(default_factory=dict)

    def point_number(self, original: str) -> str:
        """The original point number as it goes into the point code (padded when the profile says so)."""
        return original.rjust(self.point_number_width, self.point_number_pad)

    def substation(self, number: int, mine_code: str, system_code: str) -> str:
        """The substation code of the device at 1-based position `number` (no `substation:` of its own)."""
        return self.substation_code.format(number=number, mine_code=mine_code, system_code=system_code)

    def status_table(self) -> list[int]:
        """Status as sent, for every mask 0..255: the mask itself, or only its highest bit."""
        if self.status_encoding == "mask":
            return list(range(256))
        return [0] + [1 << (m.bit_length() - 1) for m in range(1, 256)]


def _int(v: Any, lo: int, hi: int) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi else None


def parse(data: dict, bad: Callable[[str, str], None], sensor_type: Callable[..., Any],
          kinds: tuple[str, ...], framing: tuple[str, ...]) -> Options:
    """Options from a profile's raw mapping; `sensor_type(**fields)` builds a local sensor entry."""
    out: dict[str, Any] = {}
    receiver = data.get("receiver") or {}
    if not isinstance(receiver, dict):
        bad("receiver", "must be a mapping (point_number_max, point_code_max, ...)")
        receiver = {}
    for key, default in _LIMITS.items():
        v = receiver.get(key, default)
        if _int(v, 0, 64) is None:
            bad(f"receiver.{key}", f"must be a whole number from 0 to 64 (got {v!r})")
        else:
            out[key] = v
    for key in ("definition_kinds", "text_kinds"):
        v = receiver.get(key, ["MN"] if key == "definition_kinds" else ["KG"])
        if not isinstance(v, list) or any(k not in VALUE_KINDS for k in v):
            bad(f"receiver.{key}", f"a list of value kinds ({', '.join(VALUE_KINDS)})")
        else:
            out[key] = frozenset(v)
    unknown = set(receiver) - set(_LIMITS) - {"definition_kinds", "text_kinds"}
    if unknown:
        bad("receiver", f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")

    pn = data.get("point_number") or {}
    width, pad = (pn.get("width", 0), pn.get("pad", "0")) if isinstance(pn, dict) else (None, None)
    if _int(width, 0, 32) is None or not (isinstance(pad, str) and len(pad) == 1 and pad not in framing):
        bad("point_number", "write {width: 8, pad: \"0\"} (width 0 to 32, pad one character; width 0 = as written)")
    else:
        out["point_number_width"], out["point_number_pad"] = width, pad

    template = data.get("substation_code", "{number:03d}")
    try:
        sample = template.format(number=1, mine_code="140211001234", system_code="01")
        if any(c in sample for c in framing):
            raise ValueError("it would contain a separator")
        out["substation_code"] = template
    except (AttributeError, KeyError, ValueError, IndexError) as exc:
        bad("substation_code", f"not a usable template ({exc}); fields are number, mine_code, system_code, "
                               "e.g. '{number:03d}' or '{mine_code}{system_code}{number:03d}'")

    enc = data.get("status_encoding", "mask")
    if enc not in STATUS_ENCODINGS:
        bad("status_encoding", f"must be one of {', '.join(STATUS_ENCODINGS)}")
    else:
        out["status_encoding"] = enc

    out["local_sensors"] = _local_sensors(data.get("local_sensors") or {}, bad, sensor_type, kinds, framing)
    local_anomalies = data.get("local_anomalies") or {}
    if not isinstance(local_anomalies, dict) or \
            any(not (isinstance(k, str) and re.fullmatch(r"\d{3}", k)) for k in local_anomalies):
        bad("local_anomalies", "a mapping of 3-digit codes in quotes to names ('101': 皮带打滑)")
    else:
        out["local_anomalies"] = {k: str(v) for k, v in local_anomalies.items()}
    return Options(**out)


def _local_sensors(table: Any, bad, sensor_type, kinds, framing) -> dict[str, Any]:
    if not isinstance(table, dict):
        bad("local_sensors", "a mapping of 4-digit codes in quotes to {kind, name, unit, range, decimals, send}")
        return {}
    out = {}
    allowed = {"kind", "name", "unit", "range", "decimals", "on_text", "off_text", "send"}
    for code, entry in table.items():
        key = f"local_sensors.{code}"
        if not (isinstance(code, str) and re.fullmatch(r"\d{4}", code)):
            bad("local_sensors", f"code {code!r} is not 4 digits in quotes")
            continue
        if not isinstance(entry, dict) or entry.get("kind") not in kinds or not entry.get("name"):
            bad(key, f"give at least kind ({', '.join(kinds)}) and name")
            continue
        extra = set(entry) - allowed
        rng = entry.get("range", [0, 1])
        texts = [str(entry.get(k, "")) for k in ("name", "unit", "on_text", "off_text")]
        if extra:
            bad(key, f"unknown key(s) {', '.join(sorted(map(str, extra)))}; known: {', '.join(sorted(allowed))}")
        elif not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, (int, float)) for x in rng)
                  and rng[0] < rng[1]):
            bad(key, "range is [low, high] with low < high")
        elif _int(entry.get("decimals", 2), 0, 6) is None or not isinstance(entry.get("send", True), bool):
            bad(key, "decimals is 0 to 6; send is true or false")
        elif any(c in t for t in texts for c in framing):
            bad(key, "a name, unit or text contains a separator of the spec files; remove it")
        else:
            out[code] = sensor_type(code=code, kind=entry["kind"], name=texts[0], unit=texts[1],
                                    range_low=float(rng[0]), range_high=float(rng[1]),
                                    decimals=entry.get("decimals", 2), on_text=texts[2], off_text=texts[3],
                                    local=True, send=entry.get("send", True))
    return out
