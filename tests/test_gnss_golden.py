"""The slope GNSS JSON files: byte-exact golden files, read back by an independent parser (gnss_check.py)."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from gnss_check import read_file

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def golden():
    sys.path.insert(0, str(GOLDEN))
    try:
        import make_gnss_golden
    finally:
        sys.path.remove(str(GOLDEN))
    return make_gnss_golden


@pytest.fixture(scope="module")
def written(golden, tmp_path_factory):
    out = tmp_path_factory.mktemp("gnss")
    return golden.generate(out)


def test_every_file_is_byte_identical_to_the_golden_one(written):
    want = {p.name: p.read_bytes() for p in (GOLDEN / "gnss" / "expected").iterdir()}
    got = {p.name: p.read_bytes() for p in written}
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs from the golden fixture"
    assert {read_file(p).type for p in written} == {"gnssbaseinfo", "gnssrealtime", "gnssalarm", "clearalarm"}
    assert not [p for p in written[0].parent.iterdir() if p.name.startswith(".")], "no temp file left"


def by_type(paths):
    out: dict[str, list] = {}
    for p in sorted(paths, key=lambda p: p.name.split("_")[2]):
        parsed = read_file(p)
        out.setdefault(parsed.type, []).append(parsed)
    return out


def test_the_parser_reads_back_the_stations_and_their_derived_motion(golden, written):
    files = by_type(written)
    base = files["gnssbaseinfo"][0]
    assert [r["equip_no"] for r in base.records] == [s.equip_no for s in golden.STATIONS]
    assert base.records[0]["longitude"] == pytest.approx(112.5512345678, abs=1e-8)
    first, middle, last = files["gnssrealtime"]
    assert all(r["x_speed"] is None and r["x_acc_speed"] is None for r in first.records)
    assert middle.records[0]["x_speed"] is not None and middle.records[0]["x_acc_speed"] is None
    assert last.serial == 10004 % 10000
    # station 1: x = 2h + 0.5h^2 mm (h in hours from 08:00), so at 10:00 the last hour moved 6.0 - 2.5 mm
    # = 84 mm/d, the hour before 2.5 mm = 60 mm/d: acceleration 24 mm/d per hour = 576 mm/d per day
    s1, s2 = last.records
    assert (s1["x_disp"], s1["x_speed"], s1["x_acc_speed"]) == (6.0, 84.0, 576.0)
    assert (s1["y_speed"], s1["y_acc_speed"]) == (-28.8, 0.0)
    assert s2["x_speed"] == s2["y_speed"] == s2["z_speed"] == 0.0, "a still station does not move"
    assert last.time == dt.datetime(2026, 11, 29, 10, 0, 0)


def test_alarms_follow_the_alarm_books_level_changes_and_the_disposal_clears(written):
    files = by_type(written)
    alarms = [r for f in files["gnssalarm"] for r in f.records]
    # blue (4) on the level rule, yellow (3), then the rate rule's red (1): red is 1 in this profile
    assert [r["alarm_level"] for r in alarms] == [4, 3, 1]
    assert [r["warning_parameters"]["horizontal_displacement"] for r in alarms] == [10.0, 20.0, None]
    assert alarms[2]["warning_parameters"]["velocity"] == 5.0 and alarms[2]["alarm_value"]["velocity"] == 6.25
    assert [r["alarm_value"]["duration"] for r in alarms] == [0, 600, 900]
    assert len({r["alarm_time"] for r in alarms}) == 1, "one alarm: its start throughout"
    (clear,) = files["clearalarm"][0].records
    assert clear["alarm_time"] == alarms[0]["alarm_time"] and clear["handle_time"] == "2026-11-29 09:46:00"
    assert "北帮降雨后坡体蠕变" in clear["description"] and "李工" in clear["description"]


@pytest.mark.parametrize("mutate,reason", [
    (lambda d: d.pop("open_pit_no"), "top-level keys"),
    (lambda d: d["data"][0].pop("equip_no"), "keys"),
    (lambda d: d.__setitem__("send_time", "2026/11/29 10:00:00"), "not yyyy-MM-dd"),
], ids=["envelope", "record key", "time"])
def test_the_parser_can_fail(written, tmp_path, mutate, reason):
    src = next(p for p in written if "_gnssrealtime_" in p.name)
    doc = json.loads(src.read_bytes())
    mutate(doc)
    bad = tmp_path / src.name
    bad.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match=reason):
        read_file(bad)


def test_an_alarm_level_outside_1_to_4_is_refused(written, tmp_path):
    src = next(p for p in written if "_gnssalarm_" in p.name)
    doc = json.loads(src.read_bytes())
    doc["data"][0]["alarm_level"] = 5
    (tmp_path / src.name).write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match="not 1-4"):
        read_file(tmp_path / src.name)
