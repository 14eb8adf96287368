"""Each driver owns its keys; `check` refuses exactly what `run` would refuse."""
from __future__ import annotations

import subprocess
import textwrap

import pytest

from conftest import edge_agent_cmd
from edge_agent.config import load_site
from edge_agent.errors import ConfigError
from test_config import GOOD, check, write

OPCUA = textwrap.dedent("""\
  - name: belt-plc
    driver: opcua
    url: opc.tcp://127.0.0.1:4840
    points:
      - {id: SPD, sensor: "0060", address: "ns=2;s=Belt1.Speed"}
""")


def line_of(text: str, marker: str) -> int:
    return text[:text.rindex(marker)].count("\n") + 1


@pytest.mark.parametrize("edit,marker,field,reason", [
    # Modbus keys on an OPC UA device
    (("    url: opc.tcp", "    baudrate: 9600\n    url: opc.tcp"), "baudrate: 9600", "devices[belt-plc].baudrate",
     "modbus-rtu"),
    (("    url: opc.tcp", "    max_gap: 4\n    url: opc.tcp"), "max_gap: 4", "devices[belt-plc].max_gap", "modbus"),
    (('address: "ns=2;s=Belt1.Speed"}', 'address: "ns=2;s=Belt1.Speed", type: float32}'), "type: float32",
     "devices[belt-plc].points[SPD].type", "modbus"),
], ids=["serial key", "plan key", "point decoding key"])
def test_modbus_keys_on_an_opcua_device_are_refused(tmp_path, capsys, edit, marker, field, reason):
    text = GOOD + textwrap.indent(OPCUA, "  ")
    code, out = check(tmp_path, text, capsys)
    assert code == 0, out
    text = text.replace(*edit)
    code, out = check(tmp_path, text, capsys)
    assert code == 1, out
    hit = [ln for ln in out.splitlines() if field in ln]
    assert hit and "not a key of driver opcua" in hit[0] and reason in hit[0], out
    assert hit[0].startswith(f"{tmp_path / 'site.yaml'}:{line_of(text, marker)}: "), hit[0]


@pytest.mark.parametrize("edit,marker,field,reason", [
    (("    unit: 1\n", "    unit: 1\n    security: NONE\n"), "security: NONE", "devices[substation-1].security",
     "opcua"),
    (("    unit: 1\n", "    unit: 1\n    mode: poll\n"), "mode: poll", "devices[substation-1].mode", "opcua"),
    (("    unit: 1\n", "    unit: 1\n    baudrate: 19200\n"), "baudrate: 19200", "devices[substation-1].baudrate",
     "serial-port setting"),
], ids=["opcua key", "opcua mode", "serial key on tcp"])
def test_foreign_keys_on_a_modbus_device_are_refused(tmp_path, capsys, edit, marker, field, reason):
    text = GOOD.replace("    port: 502\n", "    port: 502\n    unit: 1\n")
    code, out = check(tmp_path, text, capsys)
    assert code == 0, out
    text = text.replace(*edit)
    code, out = check(tmp_path, text, capsys)
    assert code == 1, out
    hit = [ln for ln in out.splitlines() if field in ln and reason in ln]
    assert hit, out
    assert hit[0].startswith(f"{tmp_path / 'site.yaml'}:{line_of(text, marker)}: "), hit[0]


def test_site_timezone_is_a_setting_and_a_bad_zone_is_one_line(tmp_path, capsys):
    text = GOOD.replace("  gateway: gw-01\n", "  gateway: gw-01\n  timezone: Asia/Shanghai\n")
    code, out = check(tmp_path, text, capsys)
    assert code == 0, out
    assert load_site(tmp_path / "site.yaml").site.timezone == "Asia/Shanghai"
    bad = text.replace("Asia/Shanghai", "Mars/Olympus")
    code, out = check(tmp_path, bad, capsys)
    assert code == 1
    hit = [ln for ln in out.splitlines() if "site.timezone" in ln]
    assert hit and "unknown time zone" in hit[0] and hit[0].startswith(f"{tmp_path / 'site.yaml'}:5: "), out


def test_site_timezone_decides_the_record_times(tmp_path):
    from edge_agent.points import Catalog
    from edge_agent.profile.encode import Encoder
    import orjson

    t = 1795917620.0       # 2026-11-29 02:00:20 UTC
    times = {}
    for zone in ("Asia/Shanghai", "UTC"):
        site = load_site(write(tmp_path, GOOD.replace("  gateway: gw-01\n", f"  gateway: gw-01\n  timezone: {zone}\n")))
        enc = Encoder(site, Catalog(site, site.loaded_profile), site.loaded_profile)
        times[zone] = orjson.loads(enc.fzss([(0, 9)], t))[0]["time"]
    assert times == {"Asia/Shanghai": "2026-11-29 10:00:20", "UTC": "2026-11-29 02:00:20"}


def test_check_refuses_what_run_would_refuse(tmp_path, capsys):
    """A profile variant separating fields by ',' makes a location with a comma unusable: both say so."""
    from edge_agent.profile.layers import builtin_dir

    profile = (builtin_dir() / "default.yaml").read_text("utf-8").replace("field_separator: ';'",
                                                                          "field_separator: ','")
    (tmp_path / "comma.yaml").write_text(profile.replace("sensor_table: ../sensors.csv",
                                                         f"sensor_table: {builtin_dir().parent / 'sensors.csv'}"),
                                         "utf-8")
    text = GOOD.replace("    points:\n", "    location: 'east, level 2'\n    points:\n", 1) + "profile: comma.yaml\n"
    code, out = check(tmp_path, text, capsys)
    assert code == 1, out
    lines = [ln for ln in out.splitlines() if "devices[substation-1].location" in ln]
    assert lines and "separators" in lines[0], out
    with pytest.raises(ConfigError) as err:       # what `run` calls before anything starts
        load_site(tmp_path / "site.yaml")
    assert [str(p) for p in err.value.problems] == out.strip().splitlines()
    # and `run` itself ends the same way, before opening anything: exit 1, the same line, no traceback
    res = subprocess.run(edge_agent_cmd("run", "-c", str(tmp_path / "site.yaml")), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1 and lines[0] in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "buffer.sqlite").exists()
