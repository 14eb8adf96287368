"""Times as the profile writes them: local time of the mine, to the second.

Records carry epoch floats; the spec wants `yyyy-MM-dd HH:mm:ss` in the mine's
local time.  The time zone is the site's `site.timezone` when the site file has
one (an IANA name such as `Asia/Shanghai`), else the profile's `timezone`
(`local` by default: the machine's zone).
Seconds are truncated, never rounded up (a value read at 10:00:19.9 was read
at 10:00:19).
"""
from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from edge_agent.errors import ConfigError, Problem


def zone_of(site, profile=None) -> dt.tzinfo | None:
    """The mine's time zone: `site.timezone` if the site file has one, else the profile's
    `timezone` unless it is `local`, else None (the machine's local zone)."""
    name = getattr(getattr(site, "site", None), "timezone", None)
    field, where = "site.timezone", getattr(site, "source", "") or "site"
    if not name and profile is not None:
        name = getattr(profile, "timezone", "local")
        field, where = "timezone", str(getattr(profile, "path", "profile"))
        if name == "local":
            name = None
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError([Problem(where, None, field,
                                   f"unknown time zone {name!r}; use an IANA name such as Asia/Shanghai, "
                                   "or local")])


def local(t: float, tz: dt.tzinfo | None) -> dt.datetime:
    """The wall-clock second of epoch `t` in `tz` (None: the machine's zone)."""
    return dt.datetime.fromtimestamp(math.floor(t), tz)


class TimeText:
    """Formats epoch seconds with one strftime format, caching the last few thousand seconds.

    `text(t)` returns the string, `json(t)` the JSON string literal as bytes;
    both return None / b"null" for a missing time (None, NaN, or <= 0).
    `json_cache` (int second -> JSON bytes) may be read directly by hot loops.
    """

    def __init__(self, fmt: str, tz: dt.tzinfo | None):
        self.fmt = fmt
        self.tz = tz
        self._text: dict[int, str] = {}
        self.json_cache: dict[int, bytes] = {}

    def text(self, t: float | None) -> str | None:
        if t is None or not t > 0 or t == math.inf:
            return None
        s = int(t // 1)
        out = self._text.get(s)
        if out is None:
            if len(self._text) > 4096:
                self._text.clear()
            out = self._text[s] = dt.datetime.fromtimestamp(s, self.tz).strftime(self.fmt)
        return out

    def json(self, t: float | None) -> bytes:
        if t is None or not t > 0 or t == math.inf:
            return b"null"
        s = int(t // 1)
        out = self.json_cache.get(s)
        if out is None:
            if len(self.json_cache) > 4096:
                self.json_cache.clear()
            out = self.json_cache[s] = orjson.dumps(self.text(s))
        return out
