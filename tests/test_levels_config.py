"""Graded warning in the site file: `levels:`, `rules:`, `items:` and the levels.* CSV columns.

A valid file loads into the models the kernel compiles; each bad case makes
`edge-agent check` exit 1 with `file:line: field: reason` naming the key.
"""
from __future__ import annotations

import math
import textwrap

import pytest

from edge_agent.cli import main
from edge_agent.config import load_site
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from test_config import check, write

SITE = textwrap.dedent("""\
    site:
      mine_code: "140211001234"
    buffer:
      path: buffer.sqlite
      max_age: 30d
    forward:
      files:
        dir: outbox
    devices:
      - name: borehole-3
        driver: modbus-tcp
        host: 127.0.0.1
        poll: 10s
        points:
          - id: "00000301"
            sensor: "0007"
            address: hr:0
            levels:
              blue:   {high: 3.0, clear: 2.9}
              yellow: {high: 3.5}
              orange: {high: 4.0}
              red:    {high: 4.5, delay: 30s}
            rules:
              - {kind: rate, per: 1h, levels: {blue: 0.2, yellow: 0.4, orange: 0.6, red: 0.8}}
              - {kind: baseline, window: 1h, against: 7d, increase: ["30%", "50%", "80%", "100%"]}
              - {kind: baseline, window: 24h, against: 7d, factor: [1.3, 1.5, 1.8, 2.0]}
          - id: "00000302"
            sensor: "0007"
            address: hr:1
            rules:
              - {kind: ratio, design: 12.0, side: low, levels: {orange: 1.1, red: 1.0}}
          - id: "00000303"
            sensor: "0007"
            address: hr:2
    items:
      - name: 水文孔-1
        points: [borehole-3/00000301, "00000302", "00000303"]
        rollup: {blue_to_yellow: 2}
      - name: 矿井
        items: [水文孔-1]
    """)


def test_a_site_with_levels_rules_and_items_loads_and_compiles(tmp_path, capsys):
    code, out = check(tmp_path, SITE, capsys)
    assert code == 0, out
    site = load_site(tmp_path / "site.yaml")
    p1, p2, p3 = site.devices[0].points
    assert p1.levels.red.delay == 30.0 and p1.levels.blue.high_clears() == 2.9
    assert [r.kind for r in p1.rules] == ["rate", "baseline", "baseline"]
    assert site.items[0].rollup.blue_to_yellow == 2 and site.items[0].rollup.orange_to_red == 2
    rules = Catalog(site, load_profile("default")).thresholds()["rules"]
    assert [s.kind for s in rules[0]] == ["level", "rate", "baseline", "baseline"]
    steps = rules[0][0].steps
    assert [(s.level, s.high, s.enter, s.delay) for s in steps] == [
        (1, True, 3.0, 0.0), (2, True, 3.5, 0.0), (3, True, 4.0, 0.0), (4, True, 4.5, 30.0)]
    assert steps[0].clear == 2.9 and math.isnan(steps[1].clear)     # no clear: clears where it enters
    assert rules[0][1].window == rules[0][1].per == 3600.0
    assert [s.enter for s in rules[0][3].steps] == pytest.approx([30.0, 50.0, 80.0, 100.0])
    assert [(s.level, s.high, s.enter) for s in rules[1][0].steps] == [(3, False, pytest.approx(13.2)), (4, False, 12.0)]
    assert rules[2] == ()


def test_a_site_without_levels_gives_the_kernel_no_rules(tmp_path):
    plain = SITE.split("    points:\n")[0] + '    points:\n      - {id: A, sensor: "0007", address: hr:0}\n'
    th = Catalog(load_site(write(tmp_path, plain)), load_profile("default")).thresholds()
    assert th["rules"] == [()] and th["legacy_levels"] == (3, 3, 4, 4, 2, 2)


BAD = [
    # (name, (old, new), text on the line the error must point at, field, reason fragment)
    ("ladder out of order", ("yellow: {high: 3.5}", "yellow: {high: 2.5}"), "levels:",
     "points[00000301].levels", "yellow (2.5) must be above blue (3)"),
    ("clear above its level", ("{high: 3.0, clear: 2.9}", "{high: 3.0, clear: 3.1}"), "blue:",
     "levels.blue", "clear level (3.1) of `high` must be at most 3"),
    ("a level without high or low", ("orange: {high: 4.0}", "orange: {delay: 5s}"), "orange:",
     "levels.orange", "give `high` and/or `low`"),
    ("unknown colour", ("orange: {high: 4.0}", "purple: {high: 4.0}"), "purple:", "levels.purple", "unknown key"),
    ("rate ladder out of order", ("yellow: 0.4, orange: 0.6", "yellow: 0.7, orange: 0.6"), "kind: rate",
     "rules[0]", "levels.orange (0.6) must be above levels.yellow (0.7)"),
    ("rate window shorter than the poll period", ("{kind: rate, per: 1h,", "{kind: rate, per: 1h, window: 5s,"),
     "kind: rate", "rules[0].window", "shorter than the device's poll period (10s)"),
    ("baseline longer than the buffer keeps", ("max_age: 30d", "max_age: 5d"), "window: 1h, against: 7d",
     "rules[1].against", "buffer.max_age keeps 5"),
    ("baseline increase without %", ('["30%", "50%", "80%", "100%"]', "[30, 50, 80, 100]"), "window: 1h",
     "rules[1]", "percentage in quotes"),
    ("baseline window not whole hours", ("window: 1h, against: 7d", "window: 90m, against: 7d"), "window: 90m",
     "rules[1]", "whole hours"),
    ("unknown rule kind", ("{kind: rate,", "{kind: trend,"), "kind: trend", "rules[0]", "kind"),
    ("ratio ladder out of order", ("{orange: 1.1, red: 1.0}", "{orange: 0.9, red: 1.0}"), "kind: ratio",
     "rules[0]", "must be below"),
    ("roll-up naming an unknown point", ("borehole-3/00000301", "borehole-3/00000399"), "points: [borehole-3",
     "items[水文孔-1].points[0]", "no such point"),
    ("roll-up naming an unknown item", ("items: [水文孔-1]", "items: [水文孔-2]"), "items: [水文孔-2]",
     "items[矿井].items[0]", "no item has this name"),
    ("poll_in_warning longer than the poll period", ("poll: 10s", "poll: 10s\n    poll_in_warning: {period: 1m}"),
     "poll_in_warning:", "poll_in_warning.period", "60s is longer than the device's poll period (10s)"),
    ("poll_in_warning from an unknown level",
     ("poll: 10s", "poll: 10s\n    poll_in_warning: {period: 1s, from: amber}"), "poll_in_warning:",
     "poll_in_warning.from", "'amber' is not a level; use one of blue, yellow, orange, red"),
    ("poll_in_warning shorthand not a duration", ("poll: 10s", "poll: 10s\n    poll_in_warning: soon"),
     "poll_in_warning:", "poll_in_warning", "soon"),
    ("roll-up loop", ("  - name: 矿井\n    items: [水文孔-1]", "  - name: 矿井\n    items: [矿井]"),
     "items:\n  - name: 水文孔", "items", "loop"),
]


@pytest.mark.parametrize("name,edit,marker,field,reason", BAD, ids=[c[0] for c in BAD])
def test_bad_graded_warning_names_line_field_and_reason(tmp_path, capsys, name, edit, marker, field, reason):
    old, new = edit
    assert old in SITE
    text = SITE.replace(old, new, 1)
    line = text[:text.index(marker)].count("\n") + 1
    code, out = check(tmp_path, text, capsys)
    assert code == 1 and "Traceback" not in out, out
    matching = [ln for ln in out.splitlines() if field in ln and reason in ln]
    assert matching, f"no line names {field!r} with {reason!r}:\n{out}"
    assert matching[0].startswith(f"{tmp_path / 'site.yaml'}:{line}: "), matching[0]


def test_csv_point_tables_carry_levels(tmp_path, capsys):
    csv_text = ("id,sensor,address,levels.blue.high,levels.blue.high_clear,levels.red.high,levels.red.delay,"
                "levels.yellow.low\n"
                "W1,0007,hr:0,3.0,2.9,4.5,30s,\n"
                "W2,0007,hr:1,,,,,\n"
                "W3,0007,hr:2,3.0,,2.5,,\n"
                "W4,0007,hr:3,,,,,1.0\n")
    (tmp_path / "points.csv").write_text(csv_text, encoding="utf-8")
    text = SITE.split("\nitems:")[0].replace("    points:\n", "    points_file: points.csv\n    points:\n", 1)
    code, out = check(tmp_path, text, capsys)
    assert code == 1
    assert "points.csv:4: levels:" in out and "red (2.5) must be above blue (3)" in out, out
    (tmp_path / "points.csv").write_text(csv_text.replace("W3,0007,hr:2,3.0,,2.5,,", "W3,0007,hr:2,,,,,"),
                                         encoding="utf-8")
    code, out = check(tmp_path, text, capsys)
    assert code == 0, out
    pts = {p.id: p for p in load_site(tmp_path / "site.yaml").devices[0].points}
    assert pts["W1"].levels.blue.high_clear == 2.9 and pts["W1"].levels.red.delay == 30.0
    assert pts["W2"].levels is None and pts["W4"].levels.yellow.low == 1.0


def test_points_template_has_the_level_columns(capsys):
    assert main(["points", "template", "--sensor", "0001"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert "levels.red.high" in header and "levels.blue.low_clear" in header


def test_profile_legacy_levels_are_checked(tmp_path):
    from edge_agent.errors import ConfigError
    from edge_agent.profile.tables import builtin_dir
    text = (builtin_dir() / "default.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  warn: yellow", "  warn: purple").replace("../sensors.csv", str(
        builtin_dir().parent / "sensors.csv")), encoding="utf-8")
    with pytest.raises(ConfigError, match="legacy_levels: 'purple' is not a level"):
        load_profile(str(bad))
    ok = tmp_path / "ok.yaml"
    ok.write_text(text.replace("  warn: yellow", "  warn: none").replace("../sensors.csv", str(
        builtin_dir().parent / "sensors.csv")), encoding="utf-8")
    assert load_profile(str(ok)).legacy_levels == (3, 3, 4, 4, 0, 0)
