"""`edge-agent buffer stats|export|purge`: the library calls and the command as a subprocess."""
from __future__ import annotations

import csv
import io
import json
import os
import pty
import sqlite3
import subprocess
import time

import orjson
import pytest

from edge_agent.buffer import Buffer, tools
from edge_agent.errors import EdgeAgentError
from conftest import edge_agent_cmd
from test_buffer import V0_SCHEMA, assert_counts_exact

# Buffer()'s default sinks get the first bits, in order
SINKS = {"mqtt": 1, "files": 2}
ALL_SINKS = 3

SITE = """\
site:
  mine_code: "140211001234"
  gateway: gw-01
buffer:
  path: data/buffer.sqlite
devices: []
"""


@pytest.fixture
def site(tmp_path):
    """A site file whose buffer (relative path) holds 3 CDSS, 2 YCBJ, 1 TJSJ; one CDSS two hours old."""
    (tmp_path / "site.yaml").write_text(SITE)
    now = time.time()
    buf = Buffer(tmp_path / "data" / "buffer.sqlite")
    rec = orjson.dumps([{"point_code": "14021100123401MN0001T1", "value": 0.42, "location": "回风隅角"}])
    buf.append([("CDSS", ALL_SINKS, now - 7200, rec), ("CDSS", ALL_SINKS, now, rec),
                ("YCBJ", SINKS["mqtt"], now, b'[{"anomaly": "001"}]'), ("TJSJ", ALL_SINKS, now, b"not json \xff"),
                ("CDSS", ALL_SINKS, now, rec), ("YCBJ", ALL_SINKS, now, b"[]")])
    buf.ack("files", [1])
    buf.close()
    return tmp_path


def test_stats_library_and_command(site):
    st = tools.stats(site / "data" / "buffer.sqlite")
    assert st["rows"] == 6 and st["next_seq"] == 7
    assert {t: v["rows"] for t, v in st["by_type"].items()} == {"CDSS": 3, "TJSJ": 1, "YCBJ": 2}
    assert st["backlog"] == {"mqtt": 6, "files": 4}
    assert 7100 < st["oldest_age"] < 7300
    r = subprocess.run(edge_agent_cmd("buffer", "stats", "-c", str(site / "site.yaml"), "--json"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["by_type"]["CDSS"]["rows"] == 3
    r = subprocess.run(edge_agent_cmd("buffer", "stats", "-c", str(site / "site.yaml")),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "backlog     mqtt 6, files 4" in r.stdout and "drops       none" in r.stdout


def test_export_jsonl_and_csv_with_filters(site):
    path = site / "data" / "buffer.sqlite"
    out = io.StringIO()
    assert tools.export(path, out) == 6
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[0]["body"][0]["location"] == "回风隅角" and lines[0]["pending"] == ["mqtt"]
    assert lines[2]["pending"] == ["mqtt"] and lines[3]["body_b64"]          # not JSON, not UTF-8
    out = io.StringIO()
    assert tools.export(path, out, since=tools.parse_since("1h"), types=["CDSS"], fmt="csv") == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["seq"] for r in rows] == ["2", "5"] and rows[0]["pending"] == "mqtt+files"
    assert json.loads(rows[0]["body"])[0]["value"] == 0.42
    with pytest.raises(EdgeAgentError, match="--since"):
        tools.parse_since("yesterday-ish")
    with pytest.raises(EdgeAgentError, match="no buffer file"):
        tools.export(site / "nope.sqlite", io.StringIO())


def test_export_command_writes_a_file_and_shows_progress(tmp_path):
    (tmp_path / "site.yaml").write_text(SITE)
    buf = Buffer(tmp_path / "data" / "buffer.sqlite")
    for _ in range(7):
        buf.append([("CDSS", ALL_SINKS, time.time(), b"[1]")] * 1000)
    buf.close()
    out = tmp_path / "export.jsonl"
    r = subprocess.run(edge_agent_cmd("buffer", "export", "-c", str(tmp_path / "site.yaml"), "--type", "CDSS",
                                      "-o", str(out)), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 7000
    progress = [x for x in r.stderr.splitlines() if x.startswith("export: ") and "rows" in x]
    assert progress[-1] == "export: 7000/7000 rows (100%)" and len(progress) >= 5
    # on a terminal: one bar, redrawn in place
    master, slave = pty.openpty()
    proc = subprocess.Popen(edge_agent_cmd("buffer", "export", "-c", str(tmp_path / "site.yaml"), "-o",
                                           str(out)), stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:                     # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(30) == 0
    assert b"\rexport [####################] 100% 7000/7000 rows" in shown
    r = subprocess.run(edge_agent_cmd("buffer", "export", "-c", str(tmp_path / "site.yaml"), "--since", "soon"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--since 'soon'" in r.stderr and "Traceback" not in r.stderr


def test_purge_asks_and_counts_as_drops(site):
    cfg = str(site / "site.yaml")
    path = site / "data" / "buffer.sqlite"
    assert tools.count(path, ["CDSS"]) == {"CDSS": (3, 3 * len(orjson.dumps(
        [{"point_code": "14021100123401MN0001T1", "value": 0.42, "location": "回风隅角"}])))}
    r = subprocess.run(edge_agent_cmd("buffer", "purge", "-c", cfg, "--type", "CDSS"), input="n\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "Delete 3 CDSS" in r.stderr and "nothing deleted" in r.stderr
    r = subprocess.run(edge_agent_cmd("buffer", "purge", "-c", cfg, "--type", "CDSS"), input="",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3                                 # no answer is no
    assert tools.stats(path)["rows"] == 6
    r = subprocess.run(edge_agent_cmd("buffer", "purge", "-c", cfg, "--type", "CDSS"), input="y\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "deleted 3 CDSS" in r.stderr
    assert tools.purge(path, ["TJSJ", "FZSS"]) == {"TJSJ": (1, 10)}
    r = subprocess.run(edge_agent_cmd("buffer", "purge", "-c", cfg, "--type", "YCBJ", "--yes"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    st = tools.stats(path)
    assert st["rows"] == 0 and st["drops"] == {"CDSS": 3, "TJSJ": 1, "YCBJ": 2}
    buf = Buffer(path)                                       # the agent sees them as drops to report
    assert_counts_exact(buf.db)
    assert buf.take_drop_report()["drops"] == {"CDSS": 3, "TJSJ": 1, "YCBJ": 2}
    assert buf.append([("CDSS", ALL_SINKS, time.time(), b"[]")]) == [7]
    buf.close()


def test_bad_site_file_is_one_line_per_problem(tmp_path):
    (tmp_path / "site.yaml").write_text("site:\n  mine_code: 140211001234\n")
    r = subprocess.run(edge_agent_cmd("buffer", "stats", "-c", str(tmp_path / "site.yaml")),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "mine_code" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "ok.yaml").write_text(SITE)
    r = subprocess.run(edge_agent_cmd("buffer", "stats", "-c", str(tmp_path / "ok.yaml")),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no buffer file" in r.stderr and r.stderr.count("\n") == 1


def test_stats_of_a_file_the_agent_has_not_migrated_yet(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V0_SCHEMA)
    db.executemany("INSERT INTO messages VALUES (?,?,?,?,?)",
                   [(1, "CDSS", 3, time.time(), b"ab"), (2, "YCBJ", 1, time.time(), b"c")])
    db.commit()
    db.close()
    st = tools.stats(path)                                  # read as it is: nothing migrated, nothing written
    assert st["by_type"]["CDSS"]["rows"] == 1 and st["backlog"] == {"mqtt": 2, "files": 1}
    assert st["next_seq"] == 3 and st["drops"] == {}
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 0


def test_export_into_a_sqlite_file(site, tmp_path):
    """`--format sqlite` (sqlite-utils): a table a vendor can query, appended to by a second export."""
    out = tmp_path / "export.sqlite"
    cmd = edge_agent_cmd("buffer", "export", "-c", str(site / "site.yaml"), "--format", "sqlite", "-o", str(out))
    r = subprocess.run(cmd + ["--type", "YCBJ"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "export: 2 messages" in r.stderr
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "export: 6 messages" in r.stderr, r.stderr
    db = sqlite3.connect(out)
    rows = db.execute("SELECT seq, type, pending, body FROM messages ORDER BY seq").fetchall()
    assert [(q, t) for q, t, _, _ in rows] == [(1, "CDSS"), (2, "CDSS"), (3, "YCBJ"), (4, "TJSJ"), (5, "CDSS"),
                                               (6, "YCBJ")]
    assert rows[0][2] == "mqtt" and rows[2][2] == "mqtt" and rows[1][2] == "mqtt+files"
    assert json.loads(rows[0][3])[0]["location"] == "回风隅角"
    r = subprocess.run(edge_agent_cmd("buffer", "export", "-c", str(site / "site.yaml"), "--format", "sqlite"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "-o FILE.sqlite" in r.stderr
