"""The gnss-json file format module: its `files:` check, pure rendering, whole-or-absent writes."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from edge_agent import registry
from edge_agent.profile import gnsstypes  # noqa: F401 (registers the GNSS record types)
from edge_agent.profile.gnssjson import check, render, write

ROOT = Path(__file__).resolve().parent.parent
RAW = yaml.safe_load((ROOT / "config" / "profiles" / "slope-gnss.yaml").read_text(encoding="utf-8"))
PROFILE = SimpleNamespace(files=RAW["files"], records=RAW["records"], raw=RAW, time_format=RAW["time_format"])
SITE = SimpleNamespace(site=SimpleNamespace(mine_code="140211001234", mine_name="矿", gateway="gw"))
WHEN = dt.datetime(2026, 11, 29, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def test_the_shipped_profile_passes_and_names_its_sources():
    assert check(RAW["files"]) == []
    text = (ROOT / "config" / "profiles" / "slope-gnss.yaml").read_text(encoding="utf-8")
    assert "Sources and confidence" in text and "SYSTEMS.md" in text


def test_every_field_of_the_profile_is_one_its_record_type_fills():
    for typ, fields in RAW["records"].items():
        known = registry.record_type(typ).fields
        assert [f for f in fields if f not in known] == [], typ


@pytest.mark.parametrize("files,key,reason", [
    ({"name": "{mine_code}_{type}.json"}, "name", "must contain {type} and {time"),
    ({"name": "{mine}_{type}_{time:%Y}.json"}, "name", "unknown key {mine}"),
    ({"name": "{type}_{time:%Y"}, "name", "not a pattern"),
    ({"name": "{type}_{time}", "envelope": {"send_time": "now"}}, "envelope", "send_time: unknown value 'now'"),
    ({"name": "{type}_{time}", "envelope": {"data": "time"}}, "data_key", "not used by `envelope`"),
])
def test_check_names_the_key_and_the_reason(files, key, reason):
    problems = check(files)
    assert [k for k, _ in problems] == [key] and reason in problems[0][1], problems


def test_render_is_pure_nests_dotted_keys_and_fills_missing_ones_with_null():
    recs = [{"equip_no": "E1", "alarm_time": "2026-11-29 09:00:00", "alarm_level": 2,
             "warning_parameters.velocity": 5.0, "alarm_value.velocity": 6.5}]
    a = render(PROFILE, SITE, "gnssalarm", WHEN, recs, seq=12345)
    assert a == render(PROFILE, SITE, "gnssalarm", WHEN, recs, seq=12345)
    name, data = a
    assert name == "140211001234_gnssalarm_20261129100000_2345.json"
    assert data.startswith(b'{"send_time":"2026-11-29 10:00:00","open_pit_no":"140211001234","data":[')
    assert b'"warning_parameters":{"horizontal_displacement":null,"velocity":5.0,' in data


def test_write_is_whole_or_absent_and_a_rewrite_of_the_same_file_is_a_no_op(tmp_path):
    name, data = render(PROFILE, SITE, "clearalarm", WHEN, [{"equip_no": "E1", "description": "测试"}], seq=1)
    path, written = write(tmp_path, name, data)
    assert written and path.read_bytes() == data
    assert write(tmp_path, name, data) == (path, False)
    with pytest.raises(FileExistsError):
        write(tmp_path, name, data + b" ")
    assert path.read_bytes() == data and sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("body,key,reason", [
    ("records:\n  gnssrealtime: [equip_no, monitor_time, x_velocity]\n", "records.gnssrealtime",
     "unknown field(s) x_velocity"),
    ("files:\n  name: '{mine_code}_{type}_{when}.json'\n", "files.name", "unknown key {when}"),
    ("files:\n  envelope: {send_time: now}\n", "files.envelope", "send_time: unknown value 'now'"),
], ids=["record field", "name key", "envelope"])
def test_a_variant_profile_with_a_bad_key_names_file_line_and_field(tmp_path, body, key, reason):
    from edge_agent.errors import ConfigError
    from edge_agent.profile import load_profile
    path = tmp_path / "my-slope.yaml"
    path.write_text("extends: slope-gnss\nname: my-slope\n" + body, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    lines = [str(p) for p in exc.value.problems]
    assert any(ln.startswith(f"{path}:") and f": {key}: " in ln and reason in ln for ln in lines), lines
    assert all(ln.split(":")[1].strip().isdigit() for ln in lines if ln.startswith(f"{path}:")), \
        f"each names its line: {lines}"
