"""Spec text files (PROFILE.md): rendering and the crash-safe write into the outbox.

A file is the header (the profile's header fields for the type), then one
segment per record (the profile's record fields), each segment's fields joined
by the field separator (`;`) and ended by the record terminator (`~`); the file
ends with the file terminator (`||`).  UTF-8 without BOM.  Numbers are written
as the JSON bodies carry them (already rounded to the point's decimals),
never with an exponent; None is an empty field.

Same-second collisions (`files.same_second: wait`, the only mode): two files
of one type may not share a name, so the later one waits for the next second
and carries that second in its name and in its header (header time == name
time, never in the future).  Writing a message whose file already exists
byte for byte is a no-op, so re-writing after a crash before the buffer ack
does not duplicate files.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import re
import time as _time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable

from edge_agent.profile.tables import FRAMING, Profile
from edge_agent.profile.timefmt import zone_of
from edge_agent.fsutil import sync_dir


def _float_text(v: float) -> str:
    if not math.isfinite(v):
        return ""
    r = repr(v)
    if "e" in r or "E" in r:
        r = format(Decimal(r), "f")
    return r


# by exact type: what JSON bodies parse into (str, int, float, None, bool)
_TEXT = {str: str, int: str, float: _float_text, type(None): lambda v: "", bool: lambda v: "1" if v else "0"}


def field_text(v: Any) -> str:
    """One field as text: '' for None, integers as is, floats in shortest form without exponent."""
    fmt = _TEXT.get(type(v))
    if fmt is not None:
        return fmt(v)
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float_text(v)
    return str(v)


def header_values(profile: Profile, site, type: str, when: dt.datetime) -> dict[str, str]:
    info = site.site
    return {"mine_code": info.mine_code, "mine_name": info.mine_name, "system_model": info.system_model,
            "system_name": info.system_name, "manufacturer": info.manufacturer, "gateway": info.gateway,
            "date": when.strftime(profile.date_format), "time": when.strftime(profile.time_format),
            "safety_mark_expiry": getattr(info, "safety_mark_expiry", None) or ""}


def file_name(profile: Profile, site, type: str, when: dt.datetime) -> str:
    """The profile's name template; `files.type_names` may give a type another name in files (non-coal NCDSS)."""
    type = (profile.files.get("type_names") or {}).get(type, type)
    return profile.files["name"].format(mine_code=site.site.mine_code, type=type, time=when)


def render(profile: Profile, site, type: str, when: dt.datetime, records: Iterable[dict]) -> bytes:
    """The whole file as bytes.  Raises ValueError if a field would break the framing (a bug:
    `check` and the Encoder reject such text before it gets here)."""
    files = profile.files
    fs, rt, ft = files["field_separator"], files["record_terminator"], files["file_terminator"]
    end = rt + ("\n" if files.get("line_breaks") else "")
    forbidden = re.compile("[" + re.escape("".join(sorted(set(FRAMING) | set(fs + rt + ft)))) + "]")

    def segment(names: tuple[str, ...], texts: list[str], what: str) -> str:
        # one regex scan per record; find the culprit only when there is one
        if forbidden.search("".join(texts)):
            name, text = next((n, t) for n, t in zip(names, texts) if forbidden.search(t))
            raise ValueError(f"{type} {what} field {name}: {text!r} contains a framing character")
        return fs.join(texts) + end

    head = header_values(profile, site, type, when)
    names = profile.headers[type]
    parts = [segment(names, [head[f] for f in names], "header")]
    fields = profile.records[type]
    fmt = _TEXT.get     # `type` is the record type here, hence v.__class__
    for rec in records:
        parts.append(segment(fields, [fmt(v.__class__, field_text)(v) for v in map(rec.get, fields)], "record"))
    parts.append(ft)
    return "".join(parts).encode("utf-8")


def render_file(profile: Profile, site, type: str, when: dt.datetime, records: Iterable[dict], *,
                seq: int = 0) -> tuple[str, bytes]:
    """The `text` file format (edge_agent.profile.formats): the file's name and bytes."""
    return file_name(profile, site, type, when), render(profile, site, type, when, records)


def write_text_file(profile: Profile, site, type: str, time: float, records: list[dict], directory: str | Path,
                    *, tz: dt.tzinfo | None = None, not_before: int | None = None, mtime_ns: int | None = None,
                    clock: Callable[[], float] = _time.time, sleep: Callable[[float], None] = _time.sleep) -> Path:
    """Write one spec file for `records` at epoch `time` into `directory`; return its final path.

    Temp name (hidden, `.NAME.tmp`) + fsync + rename + fsync of the folder:
    a receiver or the FTP push never sees half a file.  `not_before` (epoch
    second) lets a caller that remembers the last second it used per type
    (files already pushed away) keep names unique.  `mtime_ns` stamps the file
    (the FTP push uploads in mtime order, so a writer makes them increase).
    Blocks for at most a second when the next free second is still in the
    future (a same-second collision); after the wall clock stepped back, the
    names run ahead of it, one second apart, until it catches up.  OSError propagates (a full or
    read-only disk).
    """
    return write_file(profile, site, type, time, records, directory, tz=tz, not_before=not_before,
                      mtime_ns=mtime_ns, clock=clock, sleep=sleep)[0]


def write_file(profile: Profile, site, type: str, time: float, records: list[dict], directory: str | Path,
               *, tz: dt.tzinfo | None = None, not_before: int | None = None, mtime_ns: int | None = None,
               clock: Callable[[], float] = _time.time,
               sleep: Callable[[float], None] = _time.sleep, seq: int = 0) -> tuple[Path, int, bool]:
    """`write_text_file`, also returning the epoch second in the name and whether a file was written
    (False: the identical file was already there).  The profile's file format (`files.format`,
    text by default) renders the name and bytes; `seq` is passed to it."""
    from edge_agent.profile.formats import format_of
    fmt = format_of(profile)
    directory = Path(directory)
    tz = tz if tz is not None else zone_of(site, profile)
    second = math.floor(time)
    if not_before is not None and second < not_before:
        second = not_before
    while True:
        when = dt.datetime.fromtimestamp(second, tz)
        name, data = fmt.render_file(profile, site, type, when, records, seq=seq)
        target = directory / name
        try:
            existing = target.read_bytes()
        except FileNotFoundError:
            break
        if existing == data:
            return target, second, False
        second += 1
    ahead = second - clock()
    if ahead > 0:       # at most a second: after the clock stepped back, names run ahead of it (never back)
        sleep(min(ahead, 1.0))
    tmp = directory / f".{name}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if mtime_ns is not None:        # before the fsync, so the stamp the push orders by is durable too
            os.utime(f.fileno(), ns=(mtime_ns, mtime_ns))
        os.fsync(f.fileno())
    os.rename(tmp, target)
    sync_dir(directory)
    return target, second, True
