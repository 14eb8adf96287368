"""The whole pipeline through real parts: simulator -> `edge-agent run` -> mosquitto and spec files."""
from __future__ import annotations

import csv
import re
from datetime import datetime

from conftest import ROOT
from e2e import Proc, Subscriber, catalog_size, last_seq, make_site, wait_for

NAME = re.compile(r"^(\d{12})_([A-Z]+)_(\d{14})\.txt$")
SENSORS = {r["code"]: r for r in csv.DictReader((ROOT / "config" / "sensors.csv").read_text("utf-8").splitlines())}


def outbox_files(tmp_path, type_=None):
    d = tmp_path / "outbox"
    if not d.exists():
        return []
    return sorted(p for p in d.glob("*.txt") if type_ is None or f"_{type_}_" in p.name)


def assert_gapless(seqs: list[int], last: int) -> int:
    missing = sorted(set(range(1, last + 1)) - set(seqs))
    assert not missing, f"missing seqs {missing[:20]} (of {len(missing)}), last {last}"
    return len(seqs) - len(set(seqs))


def test_end_to_end_records_reach_broker_and_spec_files(tmp_path, mosquitto, sim):
    site = make_site(tmp_path, sim, mosquitto.url)
    sub = Subscriber(mosquitto.port).start()
    agent = Proc(["run", "-c", str(site)], tmp_path / "agent.log")
    try:
        wait_for(lambda: len(sub.payloads("CDSS")) >= 10, 40, "10 CDSS messages")
        wait_for(lambda: outbox_files(tmp_path, "CDSS"), 20, "a CDSS spec file")
    finally:
        rc = agent.stop()
    assert rc == 0, agent.text()[-3000:]
    assert "Traceback" not in agent.text()
    last = last_seq(agent.text())

    # every message arrived once, in order, seq from 1 with no gap
    wait_for(lambda: max(sub.seqs(), default=0) >= last, 10, "the last seq")
    seqs = sub.seqs()
    assert seqs == sorted(seqs)
    assert assert_gapless(seqs, last) == 0

    # CDSS values within the simulated ranges; records carry the profile's keys
    cdss = sub.payloads("CDSS")
    assert all(p["mine_code"] == "140211001234" and p["gateway"] == "gw-demo" for p in cdss)
    n_values = 0
    for p in cdss:
        for r in p["records"]:
            assert list(r) == ["point_code", "sensor_name", "location", "value", "unit", "status", "time"]
            sensor = SENSORS[r["point_code"][16:20]]
            assert r["sensor_name"] == sensor["name"]
            if r["value"] is not None:
                n_values += 1
                assert float(sensor["range_low"]) <= r["value"] <= float(sensor["range_high"]), r
    assert n_values >= 10

    # definitions are retained; status says online, then offline on a clean stop
    topics = {t: retain for t, _, retain in sub.messages}
    assert "mine/140211001234/gw-demo/CDDY" in topics
    status = [b for t, b, _ in sub.messages if t.endswith("/status")]
    assert status[0] == b"online" and status[-1] == b"offline"

    # spec files: names, framing, header time == name time, UTF-8 without BOM
    files = outbox_files(tmp_path)
    types = {NAME.match(p.name).group(2) for p in files}
    assert {"CDDY", "CDSS", "FZDY", "FZSS"} <= types, types
    for p in files:
        m = NAME.match(p.name)
        assert m and m.group(1) == "140211001234"
        raw = p.read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")
        text = raw.decode("utf-8")
        assert text.endswith("||")
        segments = text[:-2].split("~")
        assert segments[-1] == ""
        header = segments[0].split(";")
        assert header[0] == "140211001234"
        header_time = datetime.strptime(header[-1], "%Y-%m-%d %H:%M:%S")
        assert header_time.strftime("%Y%m%d%H%M%S") == m.group(3)
        assert len(segments) >= 2
    cdss_file = outbox_files(tmp_path, "CDSS")[0].read_text("utf-8")
    records = [s.split(";") for s in cdss_file[:-2].split("~")[1:-1]]
    assert len(records) == catalog_size(site, sent=True) and all(len(r) == 7 for r in records)
    sub.stop()


def test_broker_down_at_start_then_every_seq_arrives(tmp_path, mosquitto_factory, sim):
    # a persistent broker keeps the subscriber's session, so nothing depends on who connects first
    broker = mosquitto_factory(persistent=True)
    Subscriber(broker.port, session="e2e-outage").start().stop()
    broker.stop()

    site = make_site(tmp_path, sim, broker.url)
    agent = Proc(["run", "-c", str(site)], tmp_path / "agent.log")
    try:
        # about ten seconds of outage: five realtime periods of 2 s written to the outbox
        wait_for(lambda: len(outbox_files(tmp_path, "CDSS")) >= 5, 40, "5 CDSS files during the outage")
        broker.start()
        sub = Subscriber(broker.port, session="e2e-outage").start()
        wait_for(lambda: len(sub.payloads("CDSS")) >= 20, 60, "the backlog and live CDSS after the outage")
    finally:
        rc = agent.stop()
    assert rc == 0, agent.text()[-3000:]
    last = last_seq(agent.text())
    wait_for(lambda: set(range(1, last + 1)) <= set(sub.seqs()), 20, f"every seq up to {last}")
    dups = assert_gapless(sub.seqs(), last)
    print(f"outage: {last} messages, {dups} duplicates")
    sub.stop()


def test_sigterm_and_restart_continue_seq_without_gap(tmp_path, mosquitto, sim):
    site = make_site(tmp_path, sim, mosquitto.url)
    sub = Subscriber(mosquitto.port).start()
    first = Proc(["run", "-c", str(site)], tmp_path / "agent1.log")
    try:
        wait_for(lambda: len(sub.payloads("CDSS")) >= 5, 40, "CDSS from the first run")
    finally:
        assert first.stop() == 0, first.text()[-3000:]
    n1 = last_seq(first.text())
    second = Proc(["run", "-c", str(site)], tmp_path / "agent2.log")
    try:
        wait_for(lambda: max(sub.seqs(), default=0) > n1 + 5, 40, "CDSS from the second run")
    finally:
        assert second.stop() == 0, second.text()[-3000:]
    n2 = last_seq(second.text())
    assert n2 > n1
    wait_for(lambda: set(range(1, n2 + 1)) <= set(sub.seqs()), 20, f"every seq up to {n2}")
    assert_gapless(sub.seqs(), n2)
    sub.stop()
