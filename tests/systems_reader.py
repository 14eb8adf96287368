"""An independent reader of the monitoring systems' files, for the tests.

Written from SYSTEMS.md (the shared envelope, the field orders per type, the non-coal
variant's `^` and `]]]`), not from the agent: it imports nothing of edge_agent.

    header, records = parse_file(path)              # text files; separators from the name's system
    header, records = parse_file(path, rt="^", ft="]]]")
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

NAME = re.compile(r"(\d{12})_([A-Z]+)_(\d{14})\.txt")
TIME = "%Y-%m-%d %H:%M:%S"


def parse_text(data: bytes, fs: str = ";", rt: str = "~", ft: str = "||") -> tuple[list[str], list[list[str]]]:
    """(header fields, records' fields) of one text file; AssertionError for a broken envelope."""
    text = data.decode("utf-8")
    assert not text.startswith("\ufeff"), "BOM"
    assert text.endswith(ft), f"no file end {ft!r}"
    body = text[: -len(ft)]
    assert body.endswith(rt), "the last record has no record end"
    segments = body[: -len(rt)].split(rt)
    header = segments[0].split(fs)
    return header, [s.split(fs) for s in segments[1:]]


def parse_file(path: Path, **seps) -> tuple[list[str], list[list[str]]]:
    m = NAME.fullmatch(path.name)
    assert m, f"name {path.name} does not match {NAME.pattern}"
    header, records = parse_text(path.read_bytes(), **seps)
    # header time == name time (the shared envelope)
    assert datetime.strptime(header[-1], TIME).strftime("%Y%m%d%H%M%S") == m.group(3), (path.name, header)
    assert header[0] == m.group(1)
    return header, records
