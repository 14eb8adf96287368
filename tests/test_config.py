"""Site-file validation: every bad case exits 1 with `file:line: field: reason`."""
from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, edge_agent_cmd
from edge_agent.cli import main
from edge_agent.config import load_site
from edge_agent.errors import ConfigError
from edge_agent.units import parse_duration, parse_size

GOOD = textwrap.dedent("""\
    site:
      mine_code: "140211001234"
      mine_name: 示例煤矿
      gateway: gw-01
    buffer:
      path: buffer.sqlite
      max_size: 1GiB
    forward:
      files:
        dir: outbox
    report:
      realtime_every: 20s
      stats_window: 5m
    devices:
      - name: substation-1
        driver: modbus-tcp
        host: 127.0.0.1
        port: 502
        poll: 1s
        timeout: 500ms
        points:
          - id: T1
            sensor: "0001"
            address: hr:100
            type: float32
            order: CDAB
            alarm: {high: 1.0, high_clear: 0.9}
            cutoff: {high: 1.5, restore: 1.0}
            deadband: 0.02
          - id: T2
            sensor: "0004"
            address: hr:102
    """)


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def check(tmp_path: Path, text: str, capsys) -> tuple[int, str]:
    p = write(tmp_path, text)
    code = main(["check", "-c", str(p)])
    cap = capsys.readouterr()
    return code, cap.err + cap.out


def test_good_file_passes(tmp_path, capsys):
    code, out = check(tmp_path, GOOD, capsys)
    assert code == 0, out
    assert "ok: 1 devices, 2 points" in out


BAD_CASES = [
    # (name, (old, new) edit, text on the line the error must point at, field, reason fragment)
    ("wrong type", ("poll: 1s", "poll: soon"), "poll: soon", "devices[substation-1].poll", "not a duration"),
    ("unknown key", ("    port: 502\n", "    port: 502\n    prot: 503\n"), "prot: 503", "devices[substation-1].prot",
     "unknown key"),
    ("missing mine_code", ('  mine_code: "140211001234"\n', ""), "site:", "site.mine_code", "missing"),
    ("11-digit mine code", ('"140211001234"', '"14021100123"'), "mine_code:", "site.mine_code", "12 digits"),
    ("unquoted mine code", ('"140211001234"', "140211001234"), "mine_code:", "site.mine_code", "quotes"),
    ("duplicate point id", ("      - id: T2", "      - id: T1"), "- id: T1\n        sensor: \"0004\"",
     "devices[substation-1].points[T1].id", "appears twice"),
    ("unknown sensor code", ('sensor: "0004"', 'sensor: "0999"'), 'sensor: "0999"', "points[T2].sensor",
     "unknown sensor type code"),
    ("negative address", ("address: hr:102", "address: hr:-1"), "hr:-1", "points[T2].address", "not a Modbus address"),
    ("bad area", ("address: hr:102", "address: xx:3"), "xx:3", "points[T2].address", "not a Modbus address"),
    ("alarm above cutoff", ("alarm: {high: 1.0, high_clear: 0.9}", "alarm: {high: 2.0, high_clear: 0.9}"), "- id: T1",
     "points[T1]", "alarm.high (2) must be at most cutoff.high (1.5)"),
    ("clear above alarm", ("alarm: {high: 1.0, high_clear: 0.9}", "alarm: {high: 1.0, high_clear: 1.2}"), "- id: T1",
     "points[T1]", "alarm.high_clear (1.2) must be at most alarm.high (1)"),
    ("bad size", ("max_size: 1GiB", "max_size: lots"), "max_size: lots", "buffer.max_size", "not a size"),
    ("separator in free text", ("mine_name: 示例煤矿", "mine_name: 示例;煤矿"), "mine_name:", "site.mine_name",
     "separators"),
    ("bad driver", ("driver: modbus-tcp", "driver: profibus"), "driver: profibus", "devices[substation-1].driver",
     "must be"),
    ("missing host", ("    host: 127.0.0.1\n", ""), "- name: substation-1", "devices[substation-1]", "needs `host`"),
]


@pytest.mark.parametrize("name,edit,marker,field,reason", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_cases_name_line_field_and_reason(tmp_path, capsys, name, edit, marker, field, reason):
    old, new = edit
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    assert marker in text
    line = text[:text.index(marker)].count("\n") + 1
    code, out = check(tmp_path, text, capsys)
    assert code == 1, out
    assert "Traceback" not in out
    matching = [ln for ln in out.splitlines() if field in ln and reason in ln]
    assert matching, f"no line names {field!r} with {reason!r}:\n{out}"
    assert matching[0].startswith(f"{tmp_path / 'site.yaml'}:{line}: "), matching[0]


def test_several_errors_are_all_reported(tmp_path, capsys):
    text = GOOD.replace("poll: 1s", "poll: soon").replace("max_size: 1GiB", "max_size: lots")
    code, out = check(tmp_path, text, capsys)
    assert code == 1
    assert "poll" in out and "max_size" in out


def test_duplicate_point_code_across_devices(tmp_path, capsys):
    # same kind + sensor + original number on two devices builds the same point code
    second = textwrap.dedent("""\
      - name: substation-2
        driver: modbus-tcp
        host: 127.0.0.1
        points:
          - {id: T1, sensor: "0001", address: "hr:0", type: float32}
    """)
    text = GOOD + textwrap.indent(second, "  ")
    code, out = check(tmp_path, text, capsys)
    assert code == 1
    assert "point code 14021100123401MN0001T1 is also built by substation-1/T1" in out


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    code, out = check(tmp_path, GOOD.replace("  gateway: gw-01", "  gateway: [gw-01"), capsys)
    assert code == 1
    assert "not valid YAML" in out and "site.yaml:" in out


def test_missing_file(tmp_path, capsys):
    code = main(["check", "-c", str(tmp_path / "nope.yaml")])
    assert code == 1
    assert "nope.yaml: file not found" in capsys.readouterr().err


def test_csv_point_table_with_bom_chinese_and_a_bad_row(tmp_path, capsys):
    csv_text = ("id,sensor,address,type,location,alarm.high,alarm.high_clear,range_low,range_high\n"
                "C1,0001,hr:0,float32,1201回风隅角,1.0,0.9,0,4\n"
                "C2,0004,hr:2,uint16,回风巷,,,,\n"
                "C3,0001,hr:4,float32,进风巷,abc,,,\n")
    (tmp_path / "points.csv").write_bytes("\ufeff".encode() + csv_text.encode("utf-8"))
    text = GOOD.replace("    points:\n", "    points_file: points.csv\n    points:\n", 1)
    code, out = check(tmp_path, text, capsys)
    assert code == 1
    assert "points.csv:4: alarm.high:" in out, out
    (tmp_path / "points.csv").write_bytes("\ufeff".encode() + csv_text.rsplit("C3", 1)[0].encode("utf-8"))
    code, out = check(tmp_path, text, capsys)
    assert code == 0, out
    site = load_site(tmp_path / "site.yaml")
    pts = {p.id: p for p in site.devices[0].points}
    assert pts["C1"].location == "1201回风隅角" and pts["C1"].alarm.high == 1.0 and pts["C1"].range == (0, 4)


def test_durations_and_sizes():
    assert parse_duration("500ms") == 0.5
    assert parse_duration("20s") == 20
    assert parse_duration("5m") == 300
    assert parse_duration("2h") == 7200
    assert parse_duration(3) == 3.0
    assert parse_size("1GiB") == 1024**3
    assert parse_size("512MB") == 512 * 1000**2
    for bad in ("soon", "-1s", "5 parsecs"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_models_are_frozen(tmp_path):
    site = load_site(write(tmp_path, GOOD))
    with pytest.raises(Exception):
        site.site.mine_code = "000000000000"  # type: ignore[misc]
    assert site.report.stats_window == 300 and site.buffer.max_size == 1024**3


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_site_files_pass_check(path):
    # through the real CLI, as a site engineer runs it
    res = subprocess.run(edge_agent_cmd("check", "-c", str(path)), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr + res.stdout
    assert ": ok:" in res.stdout


def test_check_exit_code_through_subprocess(tmp_path):
    p = write(tmp_path, GOOD.replace('"140211001234"', '"14021100123"'))
    res = subprocess.run(edge_agent_cmd("check", "-c", str(p)), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "site.mine_code" in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(ConfigError):
        load_site(p)


def test_plaintext_to_a_remote_broker_is_refused_unless_allowed(tmp_path, capsys):
    remote = GOOD.replace("forward:\n", "forward:\n  mqtt:\n    url: mqtt://platform.example:1883\n", 1)
    code, out = check(tmp_path, remote, capsys)
    assert code == 1
    assert "forward.mqtt.url" in out and "plaintext" in out and "allow_plaintext" in out
    allowed = remote.replace("url: mqtt://platform.example:1883\n",
                             "url: mqtt://platform.example:1883\n    allow_plaintext: true\n")
    code, out = check(tmp_path, allowed, capsys)
    assert code == 0, out


def test_writable_points_are_listed(tmp_path, capsys):
    assert "        deadband: 0.02\n" in GOOD
    code, out = check(tmp_path, GOOD.replace("        deadband: 0.02\n",
                                             "        deadband: 0.02\n        writable: true\n"), capsys)
    assert code == 0
    assert "writable points (1): substation-1/T1" in out
    code, out = check(tmp_path, GOOD, capsys)
    assert "writable points: none" in out


def test_opcua_device_structure_is_checked(tmp_path, capsys):
    opcua = textwrap.dedent("""\
      - name: belt-plc
        driver: opcua
        url: opc.tcp://127.0.0.1:4840
        security: Basic999,Sign
        points:
          - {id: SPD, sensor: "0060", address: "ns=2;s=Belt1.Speed"}
    """)
    code, out = check(tmp_path, GOOD + textwrap.indent(opcua, "  "), capsys)
    assert code == 1
    assert "devices[belt-plc].security" in out and "Traceback" not in out
    code, out = check(tmp_path, GOOD + textwrap.indent(opcua.replace("Basic999,Sign", "NONE"), "  "), capsys)
    assert code == 0, out
