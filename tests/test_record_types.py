"""Record types are registry data: fields, drop class, retained, cadence, producer; profiles extend profiles."""
from __future__ import annotations

import sqlite3
import time

import orjson
import pytest

from edge_agent import registry
from edge_agent.buffer import Buffer
from edge_agent.config import load_site
from edge_agent.errors import ConfigError
from edge_agent.pipeline import Pipeline, Routes
from edge_agent.profile import load_profile
from edge_agent.profile.layers import builtin_dir
from edge_agent.profile.textfile import write_text_file
from test_buffer import damage_root_page
from test_config import GOOD, write

T0 = 1795917620.0


@pytest.fixture
def gateway_status_type():
    """A new record type, as a plug-in or the next profile would add it: data and one producer."""
    def produce(p, now, _data):
        return orjson.dumps([{"gateway": p.site.site.gateway, "points": len(p.catalog),
                              "time": p.encoder.times.text(now)}])

    rt = registry.register_record_type(registry.RecordType(
        "WGZT", ("gateway", "points", "time"), priority=0, cadence="snapshot", producer=produce, retained=True))
    yield rt
    registry.unregister("WGZT")


def extending_profile(tmp_path, text: str, name: str = "variant.yaml"):
    (tmp_path / name).write_text(text, "utf-8")
    return tmp_path / name


def test_a_new_type_is_produced_by_its_cadence_and_written_by_the_profile(tmp_path, gateway_status_type):
    extending_profile(tmp_path, "extends: default\nname: with-status\n"
                                "headers: {WGZT: [mine_code, time]}\nrecords: {WGZT: [gateway, time]}\n")
    site = load_site(write(tmp_path, GOOD + "profile: variant.yaml\n"))
    assert list(site.loaded_profile.records)[-1] == "WGZT"
    assert site.loaded_profile.retained == {"CDDY", "FZDY"}       # default.yaml's list: it says which
    pending: list = []
    pipe = Pipeline(site, Routes(all=3, live=1), pending, states=lambda: [(0, 9)])
    pipe.snapshot(T0)
    assert [m[0] for m in pending] == ["CDSS", "FZSS", "WGZT"]
    assert orjson.loads(pending[-1][3]) == [{"gateway": "gw-01", "points": 2, "time": pipe.encoder.times.text(T0)}]
    path = write_text_file(site.loaded_profile, site, "WGZT", T0, orjson.loads(pending[-1][3]), tmp_path)
    assert path.read_text("utf-8").endswith(";".join(["gw-01", pipe.encoder.times.text(T0)]) + "~||")
    with Buffer(tmp_path / "b.sqlite") as buf:      # its drop class is its own
        buf.append([pending[-1]])
        assert buf.db.execute("SELECT prio FROM messages WHERE type = 'WGZT'").fetchone()[0] == 0


def test_a_profile_without_a_type_does_not_produce_it(tmp_path):
    base = (builtin_dir() / "default.yaml").read_text("utf-8")
    no_stats = base.replace("  TJSJ: [mine_code, mine_name, time]\n", "").replace(
        "  TJSJ: [point_code, sensor_name, location, unit, start, end, max, max_time, min, min_time, avg,\n"
        "         time]\n", "").replace("sensor_table: ../sensors.csv",
                                      f"sensor_table: {builtin_dir().parent / 'sensors.csv'}")
    assert "TJSJ" not in no_stats
    extending_profile(tmp_path, no_stats)
    site = load_site(write(tmp_path, GOOD + "profile: variant.yaml\n"))
    pending: list = []
    pipe = Pipeline(site, Routes(all=1), pending, states=lambda: [(0, 9)])
    from test_kernel import frame
    pipe.on_frame(frame(T0 - 400, [0.5, 2.0], [0, 1]))
    pipe.statistics(T0)
    assert [m[0] for m in pending] == []            # the window closed, the profile has no TJSJ


def test_the_buffer_refuses_an_unregistered_type_but_keeps_one_found_in_a_file(tmp_path):
    with Buffer(tmp_path / "b.sqlite") as buf:
        with pytest.raises(KeyError, match="'QXYZ' is not registered.*CDSS"):
            buf.append([("QXYZ", 3, time.time(), b"[]")])
        assert buf.stats()["rows"] == 0
    # a row another version wrote (a type this one does not know) survives a salvage, as statistics
    db = sqlite3.connect(tmp_path / "b.sqlite")
    db.execute("INSERT INTO messages(seq, type, prio, sinks, time, body) VALUES (1, 'QXYZ', 0, 1, 1.0, x'5b5d')")
    db.commit()
    db.close()
    damage_root_page(tmp_path / "b.sqlite", "messages_prio", 64)    # quick_check fails; rows still readable
    with Buffer(tmp_path / "b.sqlite") as buf:
        assert buf.db.execute("SELECT seq, type, prio FROM messages").fetchall() == [(1, "QXYZ", 1)]


def test_uscc_is_default_plus_its_differences():
    uscc, default = load_profile("uscc"), load_profile("default")
    text = (builtin_dir() / "uscc.yaml").read_text("utf-8")
    assert "extends: default" in text and "records:" not in text and len(text.splitlines()) < 25
    assert uscc.mine_code_pattern == "^[0-9A-HJ-NPQRTUWXY]{18}$" != default.mine_code_pattern
    assert uscc.files == {**default.files, "name_pattern": r"^([0-9A-HJ-NPQRTUWXY]{18})_([A-Z]+)_(\d{14})\.txt$"}
    for attr in ("records", "headers", "retained", "status_bits", "anomalies", "sensors", "value_kinds", "time_format"):
        assert getattr(uscc, attr) == getattr(default, attr), attr


def test_extends_problems_name_the_file_that_has_the_key(tmp_path):
    extending_profile(tmp_path, "extends: base.yaml\nfiles: {field_separator: ','}\nname: child\n", "child.yaml")
    base = (builtin_dir() / "default.yaml").read_text("utf-8").replace(
        "sensor_table: ../sensors.csv", f"sensor_table: {builtin_dir().parent / 'sensors.csv'}").replace(
        "down_value: last", "down_value: sometimes")
    extending_profile(tmp_path, base, "base.yaml")
    with pytest.raises(ConfigError) as err:
        load_profile(str(tmp_path / "child.yaml"))
    lines = [str(p) for p in err.value.problems]
    assert any(ln.startswith(f"{tmp_path / 'base.yaml'}:") and "down_value" in ln for ln in lines), lines
    # the child's separator reached the merged profile (and the base's name did not win)
    fixed = base.replace("down_value: sometimes", "down_value: last")
    extending_profile(tmp_path, fixed, "base.yaml")
    p = load_profile(str(tmp_path / "child.yaml"))
    assert p.files["field_separator"] == "," and p.files["record_terminator"] == "~" and p.name == "child"
    extending_profile(tmp_path, "extends: child.yaml\n", "base.yaml")
    with pytest.raises(ConfigError, match="circle"):
        load_profile(str(tmp_path / "child.yaml"))
