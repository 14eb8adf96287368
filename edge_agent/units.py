"""Parsing of the human units used in site files: durations and sizes."""
from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_DURATION_FACTOR = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|k|kB|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?\s*$")
_SIZE_FACTOR = {
    None: 1, "B": 1,
    "k": 1000, "kB": 1000, "KB": 1000, "KiB": 1024,
    "M": 1000**2, "MB": 1000**2, "MiB": 1024**2,
    "G": 1000**3, "GB": 1000**3, "GiB": 1024**3,
    "T": 1000**4, "TB": 1000**4, "TiB": 1024**4,
}


MAX_SECONDS = 100 * 365 * 86400.0      # longer than any gateway runs: a typo, or a fuzzer
MAX_BYTES = 2**62


def parse_duration(value: object) -> float:
    """Seconds from `500ms`, `20s`, `5m`, `2h`, `1d` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 500ms, 20s, 5m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _sane_seconds(value, value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return _sane_seconds(float(m.group(1)) * _DURATION_FACTOR[m.group(2)], value)
    raise ValueError(f"{value!r} is not a duration; write it like 500ms, 20s, 5m, 2h or 1d")


def shown(value: object, width: int = 40) -> str:
    """repr of a value from a site file, cut to `width` characters (a fuzzed 400-digit number)."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _sane_seconds(seconds: float, given: object) -> float:
    if not (isinstance(seconds, int) or math.isfinite(seconds)) or seconds > MAX_SECONDS:
        raise ValueError(f"{shown(given)} is not a usable duration (at most 100 years); write it like 500ms, 20s or 5m")
    return float(seconds)


def parse_size(value: object) -> int:
    """Bytes from `1GiB`, `512MB`, `100k` or a bare number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 512MiB or 1GiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return _sane_bytes(value, value)
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return _sane_bytes(float(m.group(1)) * _SIZE_FACTOR[m.group(2)], value)
    raise ValueError(f"{value!r} is not a size; write it like 512MiB or 1GiB")


def _sane_bytes(size: float, given: object) -> int:
    if (not isinstance(size, int) and not math.isfinite(size)) or size > MAX_BYTES:
        raise ValueError(f"{shown(given)} is too large a size; write it like 512MiB or 1GiB")
    return int(size)


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, f in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= f and seconds % f == 0:
            return f"{seconds / f:g}{unit}"
    return f"{seconds:g}s"


def format_age(seconds: float) -> str:
    """A human age for status lines: 42.0s, 3m05s, 2h07m, 3d4h."""
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600)}h"
