"""The file formats a profile may name (`files.format:`), registered with the registry.

`text` is the spec text format of PROFILE.md (`;` fields, `~` records, `||` at the end;
edge_agent/profile/textfile.py).  Another format is one module that calls
`registry.register_file_format(FileFormat(name, render, check))` on import, and one import
line here (see FileFormat in edge_agent/registry.py for what render gets and returns).
"""
from __future__ import annotations

import datetime as _dt

from edge_agent.registry import FileFormat, file_formats, register_file_format

SAME_SECOND = ("wait",)


def text_problems(files: dict) -> list[tuple[str, str]]:
    """What the text format needs under a profile's `files:` (name template, the three separators)."""
    out: list[tuple[str, str]] = []
    for key in ("name", "field_separator", "record_terminator", "file_terminator"):
        if not isinstance(files.get(key), str) or not files.get(key):
            out.append((key, "missing"))
    seps = [files.get(k) for k in ("field_separator", "record_terminator", "file_terminator")]
    if all(isinstance(x, str) and x for x in seps):
        if not all(x.isascii() for x in seps):
            out.append(("field_separator", "separators must be ASCII (`;`, never the full-width `；`)"))
        if seps[0] == seps[1] or seps[0] in seps[2] or seps[1] in seps[2]:
            out.append(("file_terminator", "field separator, record terminator and file terminator must differ"))
    out += name_problems(files)
    if str(files.get("encoding", "utf-8")).lower().replace("_", "-") not in ("utf-8", "utf8"):
        out.append(("encoding", "only utf-8 (without BOM) is supported"))
    return out


def name_problems(files: dict, **extra) -> list[tuple[str, str]]:
    """A usable `files.name` template (fields mine_code, type, time, and `extra`'s) and `same_second`."""
    out: list[tuple[str, str]] = []
    if isinstance(files.get("name"), str):
        try:
            files["name"].format(mine_code="000000000000", type="CDSS", time=_dt.datetime(2026, 1, 2, 3, 4, 5),
                                 **extra)
        except (KeyError, ValueError, IndexError, AttributeError) as exc:
            out.append(("name", f"not a usable name template ({exc}); fields are "
                                f"{', '.join(['mine_code', 'type', 'time', *extra])}"))
    if files.get("same_second", "wait") not in SAME_SECOND:
        out.append(("same_second", f"must be one of {', '.join(SAME_SECOND)}"))
    return out


def format_problems(files: dict) -> list[tuple[str, str]]:
    """The profile's `files:` checked by the format it names ('' = the `format` key itself)."""
    known = file_formats()
    name = files.get("format", "text")
    if name not in known:
        return [("format", f"unknown file format {name!r}; known: {', '.join(sorted(known))}")]
    return known[name].problems_of(files)


def format_of(profile) -> FileFormat:
    return file_formats()[profile.files.get("format", "text")]


register_file_format(FileFormat("text", "edge_agent.profile.textfile:render_file",
                                "edge_agent.profile.formats:text_problems"))

# the slope GNSS JSON files (gnss-json) and their record types
import edge_agent.profile.gnssjson  # noqa: E402,F401
import edge_agent.profile.gnsstypes  # noqa: E402,F401
