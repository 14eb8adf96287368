"""`edge-agent points template`: a CSV point table to start from, for one sensor type.

`template_rows(sensor, rows, profile)` returns the rows as dicts keyed by
`edge_agent.config.CSV_COLUMNS`; `render_template(...)` the CSV text (header and
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

from edge_agent.config import CSV_COLUMNS
from edge_agent.errors import EdgeAgentError

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
