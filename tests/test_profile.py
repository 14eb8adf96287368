"""The profile as data (validation, province variants) and the record encoders' contracts."""
from __future__ import annotations

import math
import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import load_site
from edge_agent.errors import ConfigError
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from edge_agent.profile.encode import Encoder, num
from edge_agent.profile.layers import builtin_dir
from edge_agent.profile.textfile import field_text
from test_textfile import GOLDEN, T0, TZ

DEFAULT = builtin_dir() / "default.yaml"
SENSORS = (builtin_dir().parent / "sensors.csv").resolve()


def variant(tmp_path: Path, edit=lambda text: text, name: str = "variant.yaml") -> Path:
    """A copy of the default profile (as a province would make it), edited, beside a site file."""
    text = DEFAULT.read_text(encoding="utf-8").replace("sensor_table: ../sensors.csv", f"sensor_table: {SENSORS}")
    p = tmp_path / name
    p.write_text(edit(text), encoding="utf-8")
    return p


def problems(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(p) for p in exc.value.problems]


@pytest.fixture(scope="module")
def golden():
    site = load_site(GOLDEN / "site.yaml")
    profile = load_profile(site.profile)
    catalog = Catalog(site, profile)
    return site, profile, catalog, Encoder(site, catalog, profile, tz=TZ)


# --------------------------------------------------------------------------- profile as data

def test_default_profile_has_the_spec_tables():
    p = load_profile()
    assert {t: len(f) for t, f in p.records.items()} == {"CDDY": 24, "CDSS": 7, "TJSJ": 12, "YCBJ": 17,
                                                          "FZDY": 5, "FZSS": 4}
    assert sorted(p.status_bits) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert sorted(p.anomalies) == [f"{i:03d}" for i in range(1, 11)]
    assert sorted(p.run_status) == [0, 1, 2, 9] and sorted(p.power_status) == [0, 1, 2, 9]
    assert p.sensors["0001"].kind == "analog" and p.sensors["0001"].decimals == 2
    assert p.sensors["1011"].kind == "switch" and p.sensors["3001"].kind == "cumulative"
    assert p.files["field_separator"] == ";" and p.files["file_terminator"] == "||"
    assert p.retained == {"CDDY", "FZDY"}


@pytest.mark.parametrize("old,new,key,reason", [
    ("  CDSS: [point_code, sensor_name, location, value, unit, status, time]",
     "  CDSS: [point_code, sensor_name, location, value, unit, status, time, colour]",
     "records.CDSS", "unknown field(s) colour"),
    ("field_separator: ';'", "field_separator: '；'", "files.field_separator", "ASCII"),
    ("same_second: wait", "same_second: merge", "files.same_second", "must be one of wait"),
    ("'004': 传感器断线", "'4': 传感器断线", "anomalies", "3 digits"),
    ("  64: paused", "  65: paused", "status_bits", "power of two"),
    ("down_value: last", "down_value: zero", "down_value", "last, empty"),
    ("name: '{mine_code}_{type}_{time:%Y%m%d%H%M%S}.txt'", "name: '{mine}_{type}.txt'", "files.name",
     "name template"),
])
def test_profile_errors_name_file_line_and_key(tmp_path, old, new, key, reason):
    path = variant(tmp_path, lambda t: t.replace(old, new))
    assert new in path.read_text(encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    (line,) = problems(exc)
    m = re.match(rf"^{re.escape(str(path))}:(\d+): {re.escape(key)}: (.*)$", line)
    assert m, line
    assert reason in m.group(2)
    wanted = next(i for i, l in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                  if l.strip().startswith(key.split(".")[-1] + ":") or l.strip().startswith(f"{key.split('.')[0]}:"))
    assert int(m.group(1)) >= wanted


def test_unknown_profile_name_is_one_line():
    with pytest.raises(ConfigError) as exc:
        load_profile("no-such-province")
    (line,) = problems(exc)
    assert "not found" in line and "built-in profiles are in" in line


def test_sensor_table_with_framing_characters_is_rejected(tmp_path):
    table = tmp_path / "sensors.csv"
    table.write_text("# comment lines keep the line numbers of the rows\n"
                     "code,kind,name,unit,range_low,range_high,decimals,on_text,off_text\n"
                     "0001,analog,甲烷;高浓,%CH4,0,4,2,,\n"
                     "1001,switch,局部通风机,,0,1,0,开~,停\n"
                     "1002,switch,风门,,0,1,0,风门打开,风门关闭\n", encoding="utf-8")
    path = variant(tmp_path, lambda t: t.replace(f"sensor_table: {SENSORS}", f"sensor_table: {table}"))
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    lines = problems(exc)
    assert any(f"{table}:3: sensor_table: name '甲烷;高浓'" in l and "separators" in l for l in lines)
    assert any(f"{table}:4: sensor_table: on_text '开~'" in l and "separators" in l for l in lines)
    assert len(lines) == 2, "texts (风门打开) are what receivers want for on/off descriptions"


SITE = """\
site:
  mine_code: "{code}"
  mine_name: "{name}"
  gateway: gw-01
profile: {profile}
forward:
  mqtt: {{url: "mqtt://127.0.0.1:1883", topic_prefix: aq}}
devices:
  - name: gas-1
    driver: modbus-tcp
    host: 127.0.0.1
    points:
      - {{id: "01", sensor: "0001", address: "hr:0", location: "{location}", relations: "{relations}"}}
      - {{id: "02", sensor: "0004", address: "hr:1", location: "回风巷"}}
"""


def site_file(tmp_path: Path, code="140211001234", name="示例煤矿", profile="default", location="回风隅角",
              relations="") -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(SITE.format(code=code, name=name, profile=profile, location=location, relations=relations),
                 encoding="utf-8")
    return p


@pytest.mark.parametrize("field,kw,char", [
    ("location", {"location": "回风;隅角"}, "';'"),
    ("location", {"location": "回风~隅角"}, "'~'"),
    ("mine_name", {"name": "示例|煤矿"}, "'|'"),
])
def test_check_rejects_framing_characters_in_free_text(tmp_path, field, kw, char):
    with pytest.raises(ConfigError) as exc:
        load_site(site_file(tmp_path, **kw))
    lines = problems(exc)
    assert len(lines) == 1 and field in lines[0] and char in lines[0] and "remove it" in lines[0], lines


def test_framing_characters_in_relations_are_rejected_at_load(tmp_path):
    # `check` (load_site) refuses them, before any encoder exists
    with pytest.raises(ConfigError) as exc:
        load_site(site_file(tmp_path, relations="D-1;D-2"))
    (line,) = problems(exc)
    assert "devices[gas-1].points[01].relations: contains ';'" in line


def test_a_province_variant_is_a_copied_and_edited_profile(tmp_path):
    """18-character credit code, another CDSS field order, `down_value: empty`: all from the file."""
    def edit(t: str) -> str:
        t = t.replace(r"mine_code_pattern: '^\d{12}$'", "mine_code_pattern: '^[0-9A-Z]{18}$'")
        t = t.replace("  CDSS: [point_code, sensor_name, location, value, unit, status, time]",
                      "  CDSS: [point_code, status, value, time, unit, sensor_name, location]")
        return t.replace("down_value: last", "down_value: empty").replace("retained: [CDDY, FZDY]",
                                                                          "retained: [CDDY]")
    variant(tmp_path, edit, "shanxi.yaml")
    site = load_site(site_file(tmp_path, code="91140200MA0K12345X", profile="shanxi.yaml"))
    profile = load_profile(site.profile, base=tmp_path)
    assert profile.name == "default" and profile.path == tmp_path / "shanxi.yaml"
    enc = Encoder(site, Catalog(site, profile), profile, tz=TZ)
    recs = orjson.loads(enc.cdss([0, 1], [0.5, 7.0], [16, 0], [T0, T0], T0))
    assert [list(r) for r in recs] == [["point_code", "status", "value", "time", "unit", "sensor_name",
                                        "location"]] * 2
    assert recs[0]["value"] is None and recs[0]["status"] == 16, "device down, down_value: empty"
    assert recs[1]["value"] == 7 and recs[1]["point_code"] == "91140200MA0K12345X01MN000402"
    assert enc.topic("CDSS") == "aq/91140200MA0K12345X/gw-01/CDSS"
    assert not enc.retained("FZDY") and enc.retained("CDDY")
    # the 12-digit code of the default profile does not fit this variant
    with pytest.raises(ConfigError) as exc:
        load_site(site_file(tmp_path, profile="shanxi.yaml"))
    assert "mine code pattern" in problems(exc)[0]


# --------------------------------------------------------------------------- numbers and the fast path

def test_numbers_have_the_precision_of_the_sensor(golden):
    site, profile, catalog, enc = golden
    n = len(catalog)
    values = [0.4200000001, 12.5, 20.04999, -0.001, 1.0, 0.0, 1e-7, 1e9 + 0.123]
    recs = orjson.loads(enc.cdss(range(n), values, [0] * n, [T0] * n, T0))
    got = [r["value"] for r in recs]
    assert got == [0.42, 12, 20.0, 0.0, 1, 0, 0.0, 1000000000.1]
    raw = enc.cdss([0, 3], values, [0] * n, [T0] * n, T0)
    assert b'"value":0.42,' in raw and b'"value":0.0,' in raw and b"-0" not in raw
    assert [field_text(v) for v in got] == ["0.42", "12", "20.0", "0.0", "1", "0", "0.0", "1000000000.1"]


finite = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(finite, min_size=8, max_size=8), statuses=st.lists(st.integers(-3, 600), min_size=8,
                                                                           max_size=8),
       times=st.lists(st.one_of(st.just(math.nan), st.floats(1e9, 2e9)), min_size=8, max_size=8),
       picks=st.lists(st.integers(0, 7), max_size=20))
def test_cdss_fast_path_equals_dicts_through_orjson(golden, values, statuses, times, picks):
    """The byte templates give exactly what orjson gives for the equivalent record dicts (numbers as
    `Encoder.number`, statuses as `Encoder.status` give them)."""
    site, profile, catalog, enc = golden
    want = []
    for i in picks:
        rp = catalog.points[i]
        want.append({"point_code": rp.code, "sensor_name": rp.sensor_name, "location": rp.cfg.location,
                     "value": enc.number(rp, values[i]), "unit": rp.unit, "status": enc.status(statuses[i], times[i]),
                     "time": enc.times.text(times[i] if times[i] > 0 else T0)})
    assert enc.cdss(picks, values, statuses, times, T0) == orjson.dumps(want)


def test_envelope_splices_the_body_and_topics_follow_the_spec(golden):
    site, profile, catalog, enc = golden
    body = enc.fzss([(0, 1), (1, 9)], T0)
    payload = enc.envelope(1842, "FZSS", T0 + 0.9, body)
    assert payload.startswith(b'{"seq":1842,"type":"FZSS","mine_code":"140211001234","gateway":"gw-01",'
                              b'"time":"2026-11-29 10:00:20","ts":%.3f,"records":[' % (T0 + 0.9))
    assert payload.endswith(body + b"}")
    assert orjson.loads(payload)["records"] == orjson.loads(body)
    assert enc.topic("CDSS") == "mine/140211001234/gw-01/CDSS"
    assert enc.topic("status") == "mine/140211001234/gw-01/status"
    assert [t for t in profile.records if enc.retained(t)] == ["CDDY", "FZDY"]


def test_cddy_carries_codes_and_thresholds_as_numbers(golden):
    site, profile, catalog, enc = golden
    recs = {r["point_code"]: r for r in orjson.loads(enc.cddy(T0))}
    ch4 = recs["14021100123401MN000101"]
    assert (ch4["system_code"], ch4["substation_code"], ch4["sensor_type"], ch4["value_kind"]) == \
        ("01", "001", "0001", "MN")
    assert (ch4["range_low"], ch4["range_high"], ch4["alarm_high"], ch4["alarm_high_clear"]) == (0.0, 4.0, 1.0, 0.9)
    assert (ch4["cutoff_high"], ch4["restore_high"], ch4["on_text"]) == (1.5, 1.0, None)
    assert ch4["relations"] == "D-14021100123401KG100908" and ch4["time"] == "2026-11-29 10:00:20"
    relay = recs["14021100123401KG100908"]
    assert (relay["value_kind"], relay["on_text"], relay["off_text"]) == ("KG", "复电", "断电")
    # strict receivers: unit, range and thresholds only for MN points; on/off texts only for KG
    limits = ("unit", "range_high", "range_low", "alarm_high", "alarm_high_clear", "alarm_low", "alarm_low_clear",
              "cutoff_high", "restore_high", "cutoff_low", "restore_low")
    for code, rec in recs.items():
        filled = [k for k in limits if rec[k] is not None]
        if rec["value_kind"] == "MN":
            assert "range_high" in filled and rec["on_text"] is None is rec["off_text"], code
        else:
            assert filled == [], code
            assert (rec["on_text"] is None) is (rec["value_kind"] != "KG"), code
    assert recs["14021100123401LJ300107"]["value_kind"] == "LJ"


def test_duplicate_point_codes_are_rejected_after_building(tmp_path):
    text = site_file(tmp_path).read_text(encoding="utf-8") + """\
  - name: gas-2
    driver: modbus-tcp
    host: 127.0.0.1
    points:
      - {id: "01", sensor: "0001", address: "hr:0", location: "进风巷"}
"""
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_site(tmp_path / "site.yaml")
    (line,) = problems(exc)
    assert "point code 14021100123401MN000101 is also built by gas-1/01" in line


def test_check_command_reports_a_broken_profile_in_one_line(tmp_path):
    import subprocess
    from conftest import edge_agent_cmd
    variant(tmp_path, lambda t: t.replace("field_separator: ';'", "field_separator: '；'"), "broken.yaml")
    site = site_file(tmp_path, profile="broken.yaml")
    r = subprocess.run(edge_agent_cmd("check", "-c", str(site)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    out = (r.stdout + r.stderr).strip().splitlines()
    assert any("broken.yaml:" in l and "files.field_separator" in l and "ASCII" in l for l in out), out
    assert "Traceback" not in r.stdout + r.stderr


def test_times_are_the_mines_local_time_from_the_profile(tmp_path):
    variant(tmp_path, lambda t: t.replace("timezone: local", "timezone: Asia/Shanghai"), "cst.yaml")
    site = load_site(site_file(tmp_path, profile="cst.yaml"))
    profile = load_profile(site.profile, base=tmp_path)
    enc = Encoder(site, Catalog(site, profile), profile)          # no tz given: the profile's
    assert orjson.loads(enc.fzss([(0, 1)], T0))[0]["time"] == "2026-11-29 10:00:20"
    variant(tmp_path, lambda t: t.replace("timezone: local", "timezone: Mars/Olympus"), "bad.yaml")
    with pytest.raises(ConfigError) as exc:
        load_profile(str(tmp_path / "bad.yaml"))
    (line,) = problems(exc)
    assert "timezone: unknown time zone 'Mars/Olympus'" in line


@pytest.mark.parametrize("path", sorted(builtin_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_every_builtin_profile_loads(path):
    p = load_profile(path.stem)
    assert p.name == path.stem and set(p.records) == set(p.headers)


def test_uscc_profile_names_files_by_the_credit_code(tmp_path):
    from edge_agent.profile import write_text_file
    site = load_site(site_file(tmp_path, code="91140200MA0K12345X", profile="uscc"))
    profile = load_profile(site.profile)
    enc = Encoder(site, Catalog(site, profile), profile, tz=TZ)
    path = write_text_file(profile, site, "FZSS", T0, orjson.loads(enc.fzss([(0, 1)], T0)), tmp_path, tz=TZ)
    assert len(path.name) == 42 and re.fullmatch(profile.files["name_pattern"], path.name)
    with pytest.raises(ConfigError):           # I, O, S, V, Z never appear in a credit code
        load_site(site_file(tmp_path, code="91140200MA0K12345O", profile="uscc"))
