"""Files a strict receiver accepts: the agent's rule module against an independent receiver-side check.

`tests/receiver_check.py` is written from the documents alone; `edge_agent.profile.receiver` is what
`check --receiver` runs.  Every test here feeds both and wants the same findings: a bug in one of them,
or in the profile data they read, shows as a difference.
"""
from __future__ import annotations

import asyncio
import math
import random
import subprocess
import time
from array import array
from pathlib import Path

import orjson
import pytest

import receiver_check as independent
from conftest import ROOT, edge_agent_cmd, free_port
from edge_agent.config import load_site
from edge_agent.errors import ConfigError
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from edge_agent.profile import receiver
from edge_agent.profile.encode import Encoder

pytestmark = pytest.mark.timeout(120)

GOLDEN = ROOT / "tests" / "golden" / "expected"
PROFILE = load_profile("default")
# what the default profile deliberately keeps: short original numbers (padding would change every code)
# and the status mask (receivers that want one value choose `status_encoding: highest`)
ACCEPTED_RISKS = {"point-number-form", "status-combined"}


def both(folder: Path) -> tuple[set, set]:
    """(rule, file:record) of every finding: the agent's rules, the independent check."""
    mine = {(f.rule, f.where) for f in receiver.check_folder(folder, PROFILE)}
    theirs = {(rule, where) for rule, _, where, _ in independent.check_dir(folder)}
    return mine, theirs


@pytest.mark.parametrize("folder", [GOLDEN / "files", GOLDEN / "kernel" / "files"], ids=["hand-made", "kernel"])
def test_golden_files_break_no_rule_and_both_checkers_agree(folder):
    mine, theirs = both(folder)
    assert mine == theirs
    assert {rule for rule, _ in mine} <= ACCEPTED_RISKS, mine


# --------------------------------------------------------------------------- one broken field each

CDDY = "140211001234_CDDY_20261129100020.txt"
CDSS = "140211001234_CDSS_20261129100020.txt"
YCBJ = "140211001234_YCBJ_20261129095525.txt"
FZDY = "140211001234_FZDY_20261129100020.txt"
KG_ROW = "14021100123401KG100908;01;001;1009;KG;;;;"


def _cut(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


MUTATIONS = [
    # the three rule breaks of the issue
    ("switch range filled", CDDY, lambda t: _cut(t, KG_ROW, "14021100123401KG100908;01;001;1009;KG;;1;0;"),
     {"definition-empty"}),
    ("local sensor code", CDSS, lambda t: t.replace("MN001706;电流", "MN006006;带速"), {"sensor-code"}),
    ("local anomaly code", YCBJ, lambda t: _cut(t, ";001;", ";101;"), {"anomaly-code"}),
    # weaker signs
    ("on/off as 1/0", CDDY, lambda t: _cut(t, ";复电;断电;", ";1;0;"), {"onoff-text"}),
    ("today as expiry", CDDY, lambda t: _cut(t, ";2027-06-30;", ";2026-11-29;"), {"expiry"}),
    ("name not the table's", CDSS, lambda t: _cut(t, ";环境瓦斯;", ";甲烷;"), {"sensor-name"}),
    ("combined status", CDSS, lambda t: _cut(t, ";%CH4;1;", ";%CH4;3;"), {"status-combined"}),
    ("unknown status bit", CDSS, lambda t: _cut(t, ";%CH4;1;", ";%CH4;256;"), {"status"}),
    ("empty value, status 0", CDSS, lambda t: _cut(t, ";13;ppm;0;", ";;ppm;0;"), {"empty-value"}),
    ("9-character number", CDSS, lambda t: t.replace("MN000402", "MN0004123456789"), {"point-code"}),
    ("18-character substation", FZDY, lambda t: _cut(t, "~001;", "~140211001234010001;"), {"substation-code"}),
    ("3 decimals", FZDY, lambda t: _cut(t, ";4501.25;", ";4501.255;"), {"coordinates"}),
    ("kind not the code's", CDDY, lambda t: t.replace("KG100405;01;002;1004;KG;", "LJ100405;01;002;1004;LJ;"),
     {"sensor-kind", "onoff-text"}),
    ("fields disagree with the code", CDDY, lambda t: _cut(t, "MN000402;01;001;0004;MN;", "MN000402;01;001;0003;MN;"),
     {"point-code-mismatch"}),
    # the envelope
    ("no file end", CDSS, lambda t: t[:-2], {"file"}),
    ("header time", CDSS, lambda t: _cut(t, "示例煤矿;2026-11-29 10:00:20~", "示例煤矿;2026-11-29 10:00:21~"), {"file"}),
    ("a field missing", YCBJ, lambda t: _cut(t, ";%CH4;001;", ";001;"), {"fields"}),
    ("not a number", CDSS, lambda t: _cut(t, ";1.02;", ";1,02;"), {"number"}),
    ("not a time", YCBJ, lambda t: _cut(t, ";2026-11-29 09:55:25;;", ";2026/11/29 09:55:25;;"), {"time"}),
]


@pytest.mark.parametrize("what,name,mutate,want", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_broken_field_is_flagged_by_both_checkers(tmp_path, what, name, mutate, want):
    text = mutate((GOLDEN / "files" / name).read_text(encoding="utf-8"))
    (tmp_path / name).write_text(text, encoding="utf-8")
    mine, theirs = both(tmp_path)
    assert mine == theirs
    assert {rule for rule, _ in mine} - (ACCEPTED_RISKS - want) == want, mine


# --------------------------------------------------------------------------- the demo, every scenario

async def _demo_files(scenario: str, workdir: Path, seconds: float) -> Path:
    """The demo site through the real pipeline (Agent.on_frame, snapshots, statistics, definitions, the
    buffer and the file sink), its devices simulated by the demo's own models on a synthetic clock."""
    from edge_agent.agent import Agent
    from edge_agent.demo import demo_site
    from edge_agent.drivers.sim.dynamics import SCENARIOS, DeviceModel
    from edge_agent.frame import Frame

    site = demo_site(workdir, None, free_port())
    agent = Agent(site)
    every = site.report.realtime_every
    t0 = math.floor(time.time()) - seconds - 60       # in the past: the file sink never waits for a second
    rng = random.Random(7)
    models = [DeviceModel(d, random.Random(rng.random()), SCENARIOS[scenario]) for d in site.devices]
    agent.definitions(t0)
    agent.snapshot(t0 + 0.5)          # before any device answered: nothing is "normal" yet
    for step in range(int(seconds)):
        t = t0 + 1 + step
        for di, model in enumerate(models):
            pts = agent.catalog.by_device[di]
            vals = model.values(1000.0 + step)
            agent.on_frame(Frame(di, 1000.0 + step, t + 0.1 * di, array("i", [p.index for p in pts]),
                                 array("d", [vals[p.id] for p in pts]), array("B", bytes(len(pts)))))
        if step % every == 0:
            agent.snapshot(t + 0.5)
        agent.statistics(t + 0.9)
        agent.commit()
        for files in agent.sinks_of_kind("files"):     # one per monitoring system
            while await files.drain():
                pass
    if agent._commit_at is not None:
        agent._commit_at.cancel()
    agent.buffer.close()
    return workdir / "outbox"


SCENARIO_NAMES = sorted(__import__("edge_agent.drivers.sim.dynamics", fromlist=["SCENARIOS"]).SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_demo_files_break_no_receiver_rule_in_any_scenario(tmp_path, scenario):
    root = asyncio.run(_demo_files(scenario, tmp_path, 200))
    outbox = root / "aqjk"                  # safety monitoring: what a strict receiver reads
    files = sorted(p.name for p in outbox.glob("*.txt"))
    types = {n.split("_")[1] for n in files}
    assert {"CDDY", "FZDY", "CDSS", "FZSS", "TJSJ"} <= types, types
    found = independent.check_dir(outbox)
    assert independent.breaks(found) == [], independent.breaks(found)[:5]
    assert {rule for rule, *_ in found} <= ACCEPTED_RISKS, [f for f in found if f[0] not in ACCEPTED_RISKS][:5]
    mine, theirs = both(outbox)
    assert mine == theirs
    if scenario == "gas-alarm":
        assert "YCBJ" in types, f"{scenario} raises an anomaly the files carry"
    if scenario in ("belt-overload", "bin-overfill", "bin-collapse", "bin-block", "belt-fire", "belt-idle-current"):
        # belts and bins are the equipment system's (outbox/sbjk), with their own system code
        equipment = {p.name.split("_")[1] for p in (root / "sbjk").glob("*.txt")}
        assert "YCBJ" in equipment, f"{scenario} raises an anomaly the equipment files carry"


def test_the_demo_command_writes_files_a_strict_receiver_accepts(tmp_path):
    """`edge-agent demo` itself, briefly: a methane excursion (alarm, cut-off) within the first seconds."""
    port = free_port()      # nothing listens: the demo buffers its MQTT rows
    r = subprocess.run(edge_agent_cmd("demo", "--duration", "12", "--scenario", "gas-alarm", "--workdir",
                                      str(tmp_path), "--mqtt", f"mqtt://127.0.0.1:{port}", "--every", "60"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    outbox = tmp_path / "outbox" / "aqjk"        # safety monitoring; belts and bins are in outbox/sbjk
    types = {p.name.split("_")[1] for p in outbox.glob("*.txt")}
    assert {"CDDY", "FZDY", "CDSS", "YCBJ"} <= types, types
    found = independent.check_dir(outbox)
    assert {rule for rule, *_ in found} <= ACCEPTED_RISKS, found[:5]
    assert both(outbox)[0] == both(outbox)[1]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_the_demo_command_in_every_scenario_for_its_whole_fault(tmp_path, scenario):
    r = subprocess.run(edge_agent_cmd("demo", "--duration", "190", "--scenario", scenario, "--workdir",
                                      str(tmp_path), "--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--every", "600"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    found = independent.check_dir(tmp_path / "outbox" / "aqjk")
    assert {rule for rule, *_ in found} <= ACCEPTED_RISKS, found[:5]


# --------------------------------------------------------------------------- what the encoder sends

SITE = """\
site: {{mine_code: "140211001234", gateway: gw-t, safety_mark_expiry: 2027-06-30}}
profile: {profile}
buffer: {{path: b.sqlite}}
devices:
  - name: sub-1
    driver: modbus-tcp
    host: 127.0.0.1
    points:
      - {{id: "1", sensor: "0017", address: "hr:0", type: int32}}
      - {{id: "2", sensor: "0017", address: "hr:2", scale: 0.1}}
      - {{id: "3", sensor: "1004", address: "co:0", on_text: 运行, off_text: 停运, sensor_name: 皮带开停}}
      - {{id: "4", sensor: "0049", address: "hr:4"}}
"""


def site_of(tmp_path: Path, profile: str = "default", text: str = SITE):
    path = tmp_path / "site.yaml"
    path.write_text(text.format(profile=profile), encoding="utf-8")
    site = load_site(path, receiver_limits=True)
    prof = load_profile(site.profile, base=tmp_path)
    cat = Catalog(site, prof)
    return site, prof, cat, Encoder(site, cat, prof)


def test_integer_points_are_json_integers_and_never_polled_points_say_so(tmp_path):
    site, prof, cat, enc = site_of(tmp_path)
    now = 1_800_000_000.0
    recs = orjson.loads(enc.cdss(range(4), [-42.0, 12.5, 1.0, 3.25], [0, 0, 0, 0], [now, now, now, now], now))
    assert [r["value"] for r in recs] == [-42, 12.5, 1, 3.25]
    assert b'"value":-42,' in enc.cdss([0], [-42.0], [0], [now], now)
    # a snapshot before the device's first poll: empty value, and status 32 (not polled), not 0 (normal)
    recs = orjson.loads(enc.cdss(range(4), [math.nan] * 4, [0, 0, 0, 0], [math.nan] * 4, now))
    assert [(r["value"], r["status"]) for r in recs] == [(None, 32)] * 4


def test_per_point_texts_and_names_and_the_full_code_table(tmp_path):
    site, prof, cat, enc = site_of(tmp_path)
    cddy = {r["point_code"]: r for r in orjson.loads(enc.cddy(1_800_000_000.0))}
    belt = cddy["14021100123401KG10043"]
    assert (belt["on_text"], belt["off_text"], belt["unit"], belt["range_high"]) == ("运行", "停运", None, None)
    assert cat.points[2].sensor_name == "皮带开停" and cat.points[3].sensor_name == "液位"
    table = {c for c, s in prof.sensors.items() if not s.local}
    want = {f"{i:04d}" for i in range(1, 54)} | {str(i) for i in range(1001, 1016)} | \
        {str(i) for i in range(3001, 3006)} | {"4001", "4002"}
    assert table == want
    assert all(prof.sensors[c].on_text and prof.sensors[c].off_text for c in want if c.startswith("10"))
    assert {c: s.name for c, s in prof.sensors.items() if c in independent.NAMES} == independent.NAMES


def variant(tmp_path: Path, edit) -> str:
    from local_codes import local_codes_profile
    import yaml
    path = local_codes_profile(tmp_path, "variant.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return "variant.yaml"


def test_profile_options_pad_numbers_template_substations_and_send_the_highest_bit(tmp_path):
    def edit(d):
        d.update({"point_number": {"width": 8, "pad": "0"}, "status_encoding": "highest",
                  "substation_code": "{mine_code}{system_code}{number:03d}"})
        d["records"]["FZDY"].append("time")
    site, prof, cat, enc = site_of(tmp_path, variant(tmp_path, edit))
    assert cat.points[0].code == "14021100123401MN001700000001" and len(cat.points[0].code) == 28
    assert cat.device_code(0) == "14021100123401001"
    now = 1_800_000_000.0
    recs = orjson.loads(enc.cdss(range(4), [1.0] * 4, [3, 48, 129, 0], [now] * 4, now))
    assert [r["status"] for r in recs] == [2, 32, 128, 0]
    assert orjson.loads(enc.fzdy(now))[0]["time"] is not None
    codes = {f.rule for f in receiver.site_findings(site, prof, cat, now)}
    # 8-character numbers, one status value each, FZDY with its time; only point 3's own name is a risk
    assert codes == {"sensor-name"}, codes


def test_check_refuses_numbers_and_codes_over_the_limits_with_file_and_line(tmp_path, caplog):
    text = SITE.replace('id: "4"', 'id: "123456789"')
    with pytest.raises(ConfigError) as exc:
        site_of(tmp_path, text=text)
    (line,) = [str(p) for p in exc.value.problems]
    assert f"{tmp_path / 'site.yaml'}:12: devices[sub-1].points[123456789].id: original number '123456789'" in line
    assert "at most 8" in line
    # `run` takes the file (a receiver may still accept the codes) and says so in one line
    site = load_site(tmp_path / "site.yaml")
    profile = load_profile(site.profile)
    Encoder(site, Catalog(site, profile), profile)
    assert [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()] == [
        "1 point codes are longer than the profile's receivers take (28 characters, original numbers 8): they "
        "may be refused; `edge-agent check` lists them"]
    text = SITE.replace("host: 127.0.0.1", "host: 127.0.0.1\n    substation: \"140211001234010001\"")
    with pytest.raises(ConfigError) as exc:
        site_of(tmp_path, text=text)
    assert "substation code '140211001234010001' has 18 characters" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        site_of(tmp_path, text=SITE.replace("2027-06-30", "30.06.2027"))
    assert "site.safety_mark_expiry: " in str(exc.value) and "yyyy-MM-dd" in str(exc.value)


def test_local_codes_must_be_declared_and_check_reports_them(tmp_path):
    from edge_agent.checks import check_report
    site, prof, cat, enc = site_of(tmp_path, variant(tmp_path, lambda d: None),
                                   text=SITE.replace('sensor: "0049"', 'sensor: "0060"'))
    lines = check_report(site)
    assert any("sensor 0060 (带速): local code: receivers may show it as unknown" in ln for ln in lines), lines
    # a derived code neither the receivers' nor declared, a local code shadowing a known one: refused
    bad = variant(tmp_path, lambda d: (d["local_anomalies"].pop("101"),
                                       d["local_sensors"].update({"0001": {"kind": "analog", "name": "x"}})))
    with pytest.raises(ConfigError) as exc:
        load_profile(bad, base=tmp_path)
    text = str(exc.value)
    assert "belt_slip: code '101' is neither in `anomalies`" in text
    assert "local_sensors.0001: 0001 is in the sensor table" in text


def test_check_warns_about_a_missing_or_past_safety_mark_expiry(tmp_path):
    from edge_agent.checks import check_report
    for text, want in ((SITE.replace(", safety_mark_expiry: 2027-06-30", ""), "site.safety_mark_expiry: missing"),
                       (SITE.replace("2027-06-30", "2020-01-31"), "2020-01-31 is past")):
        site, *_ = site_of(tmp_path, text=text)
        assert any(want in ln for ln in check_report(site)), want


def test_check_receiver_lists_what_a_strict_receiver_flags(tmp_path):
    r = subprocess.run(edge_agent_cmd("check", "-c", str(ROOT / "config" / "demo.yaml"), "--receiver"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    got = [ln for ln in r.stdout.splitlines() if ln.startswith("receiver:")]
    assert got and all("(risk)" in ln and "point-number-form" in ln for ln in got), got
    # a profile that sends the local codes: the belt's speed and the slip code are rule breaks
    from local_codes import local_codes_profile
    text = (ROOT / "config" / "demo.yaml").read_text(encoding="utf-8").replace(
        "buffer:", f"profile: {local_codes_profile(tmp_path)}\nbuffer:", 1)
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    r = subprocess.run(edge_agent_cmd("check", "-c", str(tmp_path / "site.yaml"), "--receiver"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    for rule in ("sensor-code (break)", "anomaly-code (break)"):
        assert rule in out, out
    assert "local code: receivers may show it as unknown" in out


def test_the_credit_code_profile_takes_full_length_codes(tmp_path):
    """18-character mine code + 2 + 2 + 4 + 8 = 34: uscc.yaml's receivers take it, the default's would not."""
    text = SITE.replace('"140211001234"', '"91140200MA0K12345X"').replace('id: "4"', 'id: "00000004"')
    site, prof, cat, enc = site_of(tmp_path, "uscc", text)
    assert len(cat.points[3].code) == 34
    assert {f.rule for f in receiver.site_findings(site, prof, cat, 1_800_000_000.0)} <= {"point-number-form",
                                                                                         "sensor-name"}
