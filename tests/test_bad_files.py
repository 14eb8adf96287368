"""Site files and point tables saved wrong (GBK, UTF-16, BOMs, tabs, NUL): one line, never a traceback.

The files are written as the tools on a site write them (`str.encode("gbk")` is what a Chinese
Windows editor saves); `check` and `run` are the real CLI in a subprocess, so a traceback anywhere
between reading the bytes and printing the problem fails the test.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import edge_agent_cmd
from test_config import GOOD

TABLE = ("id,sensor,address,type,location\n"
         "P1,0001,hr:200,float32,1201工作面回风\n"
         "P2,0001,hr:202,float32,1201工作面进风\n")
SITE_WITH_TABLE = GOOD.replace("    points:\n", "    points_file: points.csv\n    points:\n", 1)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(edge_agent_cmd(*args), capture_output=True, text=True, timeout=timeout)


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1, lines
    return lines[0]


def test_a_utf8_site_file_and_table_with_chinese_are_read(tmp_path):
    (tmp_path / "site.yaml").write_text(SITE_WITH_TABLE, encoding="utf-8")
    (tmp_path / "points.csv").write_text(TABLE, encoding="utf-8")
    proc = cli("check", "-c", str(tmp_path / "site.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "4 points" in proc.stdout


@pytest.mark.parametrize("bom", ["\ufeff", ""])
def test_a_leading_bom_is_accepted_in_the_site_file_and_the_table(tmp_path, bom):
    (tmp_path / "site.yaml").write_bytes((bom + SITE_WITH_TABLE).encode("utf-8"))
    (tmp_path / "points.csv").write_bytes((bom + TABLE).encode("utf-8"))
    assert cli("check", "-c", str(tmp_path / "site.yaml")).returncode == 0


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_gbk_site_file_is_refused_with_one_line_naming_the_line_and_gbk(tmp_path, command):
    site = tmp_path / "site.yaml"
    site.write_bytes(GOOD.encode("gbk"))
    line = one_line(cli(command, "-c", str(site)))
    # line 3 is `mine_name: 示例煤矿`, the first non-ASCII line (its first GBK pair happens to be valid UTF-8)
    bad = GOOD.encode("gbk")
    try:
        bad.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = bad[exc.start]
    assert line.startswith(f"{site}:3: not UTF-8: byte 0x{bad:02x} at column "), line
    assert "GBK" in line and "save it as UTF-8" in line


def test_a_gbk_point_table_is_refused_with_one_line(tmp_path):
    (tmp_path / "site.yaml").write_text(SITE_WITH_TABLE, encoding="utf-8")
    (tmp_path / "points.csv").write_bytes(TABLE.encode("gbk"))
    line = one_line(cli("check", "-c", str(tmp_path / "site.yaml")))
    assert line.startswith("points.csv:2: points_file: not UTF-8") and "GBK" in line and "CSV UTF-8" in line


def test_a_stray_non_utf8_byte_that_is_not_gbk_says_some_other_encoding(tmp_path):
    site = tmp_path / "site.yaml"
    lines = GOOD.encode("utf-8").split(b"\n")
    lines[4] += b"  # \xff"            # 0xff starts nothing in UTF-8 or GB18030
    site.write_bytes(b"\n".join(lines))
    line = one_line(cli("check", "-c", str(site)))
    assert line.startswith(f"{site}:5: not UTF-8: byte 0xff") and "some other encoding" in line


def test_utf16_site_file_is_refused(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_bytes(GOOD.encode("utf-16"))
    assert "UTF-16" in one_line(cli("check", "-c", str(site)))


def test_a_bom_in_the_middle_and_a_nul_byte_name_their_line(tmp_path):
    site = tmp_path / "site.yaml"
    lines = GOOD.split("\n")
    site.write_text("\n".join(lines[:6] + ["\ufeff" + lines[6]] + lines[7:]), encoding="utf-8")
    assert one_line(cli("check", "-c", str(site))).startswith(f"{site}:7: a byte-order mark")
    (tmp_path / "site.yaml").write_text(SITE_WITH_TABLE, encoding="utf-8")
    (tmp_path / "points.csv").write_text(TABLE + "P3,0001,\x00\n", encoding="utf-8")
    assert one_line(cli("check", "-c", str(site))).startswith("points.csv:4: points_file: a NUL byte")


def test_tabs_for_indentation_name_their_line(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(GOOD.replace("\n  mine_name:", "\n\tmine_name:"), encoding="utf-8")
    line = one_line(cli("check", "-c", str(site)))
    assert line.startswith(f"{site}:3: a tab character") and "spaces" in line


def test_a_tab_separated_point_table_is_refused_with_one_line(tmp_path):
    (tmp_path / "site.yaml").write_text(SITE_WITH_TABLE, encoding="utf-8")
    (tmp_path / "points.csv").write_text(TABLE.replace(",", "\t"), encoding="utf-8")
    line = one_line(cli("check", "-c", str(tmp_path / "site.yaml")))
    assert line.startswith("points.csv:1: points_file: the columns are separated by tabs")


def test_an_overlong_csv_field_is_one_line(tmp_path):
    (tmp_path / "site.yaml").write_text(SITE_WITH_TABLE, encoding="utf-8")
    (tmp_path / "points.csv").write_text(TABLE + 'P3,0001,"' + "x" * 200_000 + '"\n', encoding="utf-8")
    line = one_line(cli("check", "-c", str(tmp_path / "site.yaml")))
    assert line.startswith("points.csv: points_file: not a readable CSV table")


def test_a_gbk_sensor_table_in_a_local_profile_is_refused(tmp_path):
    prof = tmp_path / "mine.yaml"
    prof.write_text("extends: default\nsensor_table: sensors.csv\n", encoding="utf-8")
    from edge_agent.profile.layers import builtin_dir
    src = (builtin_dir().parent / "sensors.csv")
    if not src.exists():
        src = Path(__file__).resolve().parents[1] / "config" / "sensors.csv"
    (tmp_path / "sensors.csv").write_bytes(src.read_text(encoding="utf-8").encode("gbk"))
    (tmp_path / "site.yaml").write_text(GOOD + "profile: mine.yaml\n", encoding="utf-8")
    line = one_line(cli("check", "-c", str(tmp_path / "site.yaml")))
    assert "sensors.csv" in line and "sensor_table: not UTF-8" in line and "GBK" in line
