"""The open-pit slope GNSS file format (`files.format: gnss-json`): records -> one JSON file.

    name, data = render(profile, site, "gnssrealtime", when, records, seq=1234)

A file is one JSON object: the profile's `files.envelope` keys (each a header
value: `time` is `when`, the others the system's
`mine_code`, `mine_name`, `system_code`, `system_name`, `gateway`; the
profile's `time_format` for `time`), then
`files.data_key` (`data`) holding the records, each an object with the
profile's `records.<type>` keys in that order; a dotted key nests
(`alarm_value.velocity` -> `{"alarm_value": {"velocity": ...}}`).  A record's
missing key is null.  UTF-8 (Chinese as is, not escaped), no whitespace.

The name is `files.name` formatted with `mine_code`, `type`, `time` (`when`)
and `serial` (`seq % 10000`: stable when the same row is written again after
a crash, so the rewrite is the identical file).  Pure: the same inputs give
the same bytes; the writer (the file sink) writes them whole or not at all.
`write()` does the same steps for callers without a sink (tests, tools).

Every fact about the format is the profile's (config/profiles/slope-gnss.yaml,
with its sources): nothing here knows a key of the platform's.
"""
from __future__ import annotations

import datetime as dt
import string
from pathlib import Path
from typing import Any, Iterable

import orjson

from edge_agent.fsutil import replace_file

NAME_KEYS = ("mine_code", "type", "time", "serial")
ENVELOPE_SOURCES = ("time", "mine_code", "mine_name", "system_code", "system_name", "system_model",
                    "manufacturer", "gateway")
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _files(profile) -> dict:
    return profile.files if hasattr(profile, "files") else profile["files"]


def _fields(profile, type: str) -> tuple[str, ...]:
    records = profile.records if hasattr(profile, "records") else profile["records"]
    return tuple(records[type])


def check(files: dict) -> list[tuple[str, str]]:
    """What is wrong with a profile's `files:` for this format: [(key under `files`, reason)]."""
    out: list[tuple[str, str]] = []
    name = files.get("name")
    if not isinstance(name, str) or not name:
        out.append(("name", "give the file name pattern, e.g. '{mine_code}_{type}_{time:%Y%m%d%H%M%S}_"
                            "{serial:04d}.json'"))
    else:
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(name) if f is not None}
        except ValueError as exc:
            out.append(("name", f"not a pattern: {exc}"))
        else:
            unknown = sorted(used - set(NAME_KEYS))
            if unknown:
                out.append(("name", f"unknown key {{{unknown[0]}}}; known: {', '.join(NAME_KEYS)}"))
            elif not {"type", "time"} <= used:
                out.append(("name", "must contain {type} and {time:...}: files of one type in one second "
                                    "need them (and {serial}) to differ"))
    envelope = files.get("envelope", {})
    if not isinstance(envelope, dict):
        out.append(("envelope", "map each top-level key to a header value (time, mine_code, ...)"))
    else:
        for key, source in envelope.items():
            if source not in ENVELOPE_SOURCES:
                out.append(("envelope", f"{key}: unknown value {source!r}; known: {', '.join(ENVELOPE_SOURCES)}"))
    data_key = files.get("data_key", "data")
    if not isinstance(data_key, str) or not data_key or (isinstance(envelope, dict) and data_key in envelope):
        out.append(("data_key", "the key of the records: a name not used by `envelope`"))
    return out


def _nest(fields: tuple[str, ...], record: dict) -> dict:
    out: dict[str, Any] = {}
    for f in fields:
        v = record.get(f)
        if "." not in f:
            out[f] = v
            continue
        *path, last = f.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = v
    return out


def _header(site, when: dt.datetime, time_format: str) -> dict[str, str]:
    info = site.site
    values = {k: getattr(info, k, None) or "" for k in ENVELOPE_SOURCES if k != "time"}
    values["time"] = when.strftime(time_format)
    return values


def file_name(profile, site, type: str, when: dt.datetime, *, seq: int) -> str:
    return _files(profile)["name"].format(mine_code=site.site.mine_code, type=type, time=when, serial=seq % 10000)


def render(profile, site, type: str, when: dt.datetime, records: Iterable[dict], *, seq: int) -> tuple[str, bytes]:
    """(file name, bytes) of one file of `records` (dicts keyed by the profile's field names)."""
    files = _files(profile)
    fields = _fields(profile, type)
    head = _header(site, when, getattr(profile, "time_format", None) or DEFAULT_TIME_FORMAT)
    doc: dict[str, Any] = {key: head[source] for key, source in files.get("envelope", {}).items()}
    doc[files.get("data_key", "data")] = [_nest(fields, r) for r in records]
    return file_name(profile, site, type, when, seq=seq), orjson.dumps(doc)


def write(directory: str | Path, name: str, data: bytes) -> tuple[Path, bool]:
    """Write one rendered file into `directory` whole or not at all (hidden temp name, fsync, rename,
    fsync of the folder); (path, written).  An identical file already there is left (False); another
    file of that name raises FileExistsError (the caller renders again one second later)."""
    target = Path(directory) / name
    try:
        existing = target.read_bytes()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if existing == data:
            return target, False
        raise FileExistsError(f"{target} exists with other content")
    replace_file(target, data)
    return target, True


try:                                # the systems seam's registry (issue 16); absent until it lands
    from edge_agent.registry import FileFormat, register_file_format
except ImportError:                 # pragma: no cover - removed once the seam is on main
    pass
else:
    register_file_format(FileFormat("gnss-json", "edge_agent.profile.gnssjson:render",
                                    "edge_agent.profile.gnssjson:check"))
