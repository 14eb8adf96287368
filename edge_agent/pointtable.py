"""CSV point tables: reading a `points_file:`, and `edge-agent points template`.

`load_points_csv(path, shown, model)` reads a table exported from a spreadsheet
into points of the device's driver (`model`: its point model), with problems
reading `file.csv:row: column: reason`.  Nested thresholds are dotted columns
(`alarm.high`), the range two columns (`range_low`, `range_high`).

`template_rows(sensor, rows, profile)` returns the rows as dicts keyed by
`CSV_COLUMNS`; `render_template(...)` the CSV text (header and
rows).  The rows use the sensor table's kind, unit and range, distinct point ids
(T1, T2, ...) and non-overlapping addresses, so the output loads as a
`points_file:` as it is; thresholds and locations are left empty on purpose: they are
the site's decisions, not the template's.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_agent.errors import ConfigError, EdgeAgentError, Problem
from edge_agent.model import Point, compact
from edge_agent.i18n import _
from edge_agent.textsrc import read_config_text
from edge_agent.yamlsrc import reason_of

# same keys as inline points; nested thresholds as dotted columns.  A column a driver's
# points do not have (Modbus `type` on an OPC UA device) is an error only where it has a value.
CSV_COLUMNS = ("id", "sensor", "kind", "address", "type", "order", "length", "scale", "offset", "unit",
               "range_low", "range_high", "location", "x", "y", "z", "relations",
               "alarm.high", "alarm.high_clear", "alarm.low", "alarm.low_clear",
               "cutoff.high", "cutoff.restore", "cutoff.low", "cutoff.low_restore",
               "warn.high", "warn.low", "delay", "deadband", "writable", "decimals",
               "sensor_name", "on_text", "off_text") + tuple(
    f"levels.{colour}.{key}" for colour in ("blue", "yellow", "orange", "red")      # graded warning
    for key in ("high", "high_clear", "low", "low_clear", "delay"))


def _row_to_point(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in row.items():
        if key is None:
            raise ValueError("the row has more cells than the header has columns")
        key = key.strip()
        value = (raw or "").strip()
        if value == "":
            continue
        if key in ("range_low", "range_high"):
            continue
        if "." in key:
            *groups, sub = key.split(".")
            node = out
            for group in groups:
                node = node.setdefault(group, {})
            node[sub] = value
        else:
            out[key] = value
    lo, hi = (row.get("range_low") or "").strip(), (row.get("range_high") or "").strip()
    if lo or hi:
        out["range"] = [lo, hi]
    if "writable" in out:
        out["writable"] = out["writable"].lower() in ("1", "true", "yes", "y")
    return out


def load_points_csv(path: Path, shown: str, model: type[Point] = Point) -> tuple[list[Point], list[Problem]]:
    """Read a point table exported from a spreadsheet (UTF-8, BOM or not) into `model`s."""
    try:
        text = read_config_text(path, shown, "points_file",
                                missing="file not found; the path is relative to the site file")
    except ConfigError as exc:
        return [], exc.problems
    first = text.split("\n", 1)[0]
    if "\t" in first and "," not in first:
        return [], [Problem(shown, 1, "points_file", _("the columns are separated by tabs; save the table as "
                                                     "CSV (comma-separated), UTF-8, and run check again"))]
    try:
        return _read_rows(text, shown, model)
    except csv.Error as exc:        # a field over the csv module's limit, a quote left open...
        return [], [Problem(shown, None, "points_file", f"not a readable CSV table: {exc}")]


def _read_rows(text: str, shown: str, model: type[Point]) -> tuple[list[Point], list[Problem]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    problems = []
    unknown = [h for h in header if h not in CSV_COLUMNS]
    for h in unknown:
        problems.append(Problem(shown, 1, h, f"unknown column; known columns: {', '.join(CSV_COLUMNS)}"))
    for req in ("id", "sensor", "address"):
        if req not in header:
            problems.append(Problem(shown, 1, req, "required column is missing"))
    if problems:
        return [], problems
    points = []
    for row_no, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        try:
            points.append(compact(model.model_validate(_row_to_point(row))))
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
                col = ".".join(loc) if loc else "(row)"
                if col.startswith("range"):
                    col = "range_low/range_high"
                problems.append(Problem(shown, row_no, col, reason_of(err)))
        except ValueError as exc:
            problems.append(Problem(shown, row_no, "(row)", str(exc)))
    return points, problems

# how a point of each kind is usually wired on a Modbus substation
_LAYOUT = {  # kind: (area, type, registers per point)
    "analog": ("hr", "float32", 2),
    "cumulative": ("hr", "uint32", 2),
    "multistate": ("hr", "uint16", 1),
    "switch": ("co", "bool", 1),
}


def template_rows(sensor: str, rows: int = 1, profile: str = "default") -> list[dict[str, str]]:
    from edge_agent.profile import load_profile

    prof = load_profile(profile)
    st = prof.sensors.get(sensor)
    if st is None:
        raise EdgeAgentError(f"--sensor {sensor}: unknown sensor type code; the codes are in the profile's "
                             f"sensor table ({prof.raw.get('sensor_table', 'sensors.csv')}), e.g. 0001 (methane)")
    if not 1 <= rows <= 10000:
        raise EdgeAgentError(f"--rows {rows}: give 1 to 10000 rows")
    area, typ, width = _LAYOUT.get(st.kind, _LAYOUT["multistate"])
    out = []
    for i in range(rows):
        row = dict.fromkeys(CSV_COLUMNS, "")
        row.update(id=f"T{i + 1}", sensor=sensor, kind=st.kind, address=f"{area}:{i * width}", type=typ)
        if width > 1:
            row["order"] = "ABCD"
        if st.kind == "analog":
            row.update(unit=st.unit, range_low=f"{st.range_low:g}", range_high=f"{st.range_high:g}",
                       deadband="1%", decimals=str(st.decimals))
        out.append(row)
    return out


def render_template(sensor: str, rows: int = 1, profile: str = "default") -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(template_rows(sensor, rows, profile))
    return buf.getvalue()


def cmd_template(args: argparse.Namespace) -> int:
    text = render_template(args.sensor, args.rows, args.profile)
    # a BOM makes spreadsheet programs read the Chinese text as UTF-8; check accepts either
    sys.stdout.write(("\ufeff" if args.bom else "") + text)
    return 0


def register(sub) -> None:
    """Add `points template` to the `edge-agent` subcommands."""
    p = sub.add_parser("points", help="point tables (CSV)")
    psub = p.add_subparsers(dest="points_command", required=True, metavar="SUBCOMMAND")
    t = psub.add_parser("template", help="print a CSV point table to start from (header and example rows)")
    t.add_argument("--sensor", required=True, metavar="CODE", help="sensor type code, e.g. 0001 (methane)")
    t.add_argument("--rows", type=int, default=1, metavar="N", help="example rows (default 1)")
    t.add_argument("--profile", default="default", help="profile whose sensor table to use (default default)")
    t.add_argument("--bom", action="store_true", help="start with a UTF-8 BOM (for spreadsheet programs)")
    t.set_defaults(func=cmd_template)
