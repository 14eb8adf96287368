"""The closed loop through real parts: a simulated device (values pinned by the test) ->
`edge-agent run` -> its alarm book (real SQLite) -> `edge-agent alarms ...` over the local API ->
a real mosquitto and the spec files.

Most tests here use the old ladder's alarms (rule "legacy": warn yellow, alarm orange,
cutoff red, the kernel's own level changes); one walks a graded red alarm through the same
loop. The lifecycle of every rule is covered by test_alarm_book.py.
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import urllib.request

import orjson
import pytest
import yaml

from conftest import edge_agent_cmd, free_port, wait_port
from e2e import Proc, Subscriber, last_seq, wait_for
from edge_agent.config import load_site
from edge_agent.drivers.sim import Simulation

TOKEN = "s3cret-token-for-tests"


class SimThread:
    """The Modbus simulator in a thread of the test process, so the test can pin values."""

    def __init__(self, site_path, port: int):
        self.site, self.port = load_site(site_path), port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(20), "simulator did not start"
        wait_port(port)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.sim = Simulation(self.site, port=self.port, seed=1)
        self.loop.run_until_complete(self.sim.start())
        self.ready.set()
        self.loop.run_forever()

    def pin(self, value: float) -> None:
        self.loop.call_soon_threadsafe(self.sim.pin, "gas-1", {"T1": value})

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def make_site(tmp_path, *, mqtt_url: str | None = None, deadlines: dict | None = None,
              metrics_port: int | None = None, levels: dict | None = None) -> tuple:
    sim_port, web_port = free_port(), free_port()
    data = {
        "site": {"mine_code": "140211001234", "mine_name": "示例煤矿", "gateway": "gw-a"},
        "buffer": {"path": str(tmp_path / "state" / "buffer.sqlite")},
        "forward": {"files": {"dir": str(tmp_path / "outbox")}},
        "report": {"realtime_every": "5s"},
        "metrics": {"enabled": metrics_port is not None, "listen": f"127.0.0.1:{metrics_port or 9}"},
        "alarms": {"token_file": "alarms.token", **({"deadlines": deadlines} if deadlines else {})},
        "console": {"listen": f"127.0.0.1:{web_port}"},
        "devices": [{"name": "gas-1", "driver": "modbus-tcp", "host": "127.0.0.1", "port": sim_port,
                     "poll": "200ms", "timeout": "500ms", "location": "1201工作面",
                     "points": [{"id": "T1", "sensor": "0001", "address": "hr:0", "type": "float32",
                                 "location": "1201工作面回风隅角", "alarm": {"high": 1.0, "high_clear": 0.9},
                                 "warn": {"high": 0.8}}]}],
    }
    if mqtt_url:
        data["forward"]["mqtt"] = {"url": mqtt_url, "topic_prefix": "mine"}
    if levels:                    # graded levels instead of the old ladder
        pt = data["devices"][0]["points"][0]
        del pt["alarm"], pt["warn"]
        pt["levels"] = levels
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    token = tmp_path / "alarms.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return path, sim_port, web_port


def api(web_port: int, path: str = "/api/alarms?state=all", token: str = TOKEN):
    req = urllib.request.Request(f"http://127.0.0.1:{web_port}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return orjson.loads(r.read())


def alarms_of(web_port: int) -> list[dict]:
    try:
        return api(web_port)["alarms"]
    except OSError:
        return []


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(edge_agent_cmd("alarms", *args), capture_output=True, text=True, timeout=60)


def start_agent(tmp_path, site, web_port, name: str) -> Proc:
    agent = Proc(["run", "-c", str(site)], tmp_path / name)
    wait_for(lambda: "local web server on" in agent.text() or agent.proc.poll() is not None, 30, "the agent up")
    assert agent.proc.poll() is None, agent.text()[-3000:]
    return agent


def test_restart_in_the_middle_of_an_open_alarm(tmp_path):
    site, sim_port, web_port = make_site(tmp_path)
    sim = SimThread(site, sim_port)
    agents = []
    try:
        sim.pin(1.2)                          # above alarm.high: orange (the old ladder's alarm)
        agents.append(start_agent(tmp_path, site, web_port, "agent1.log"))
        first = wait_for(lambda: [a for a in alarms_of(web_port) if a["max_level"] == "orange"], 20,
                         "an orange alarm")[0]
        assert first["state"] == "open" and first["rule"] == "legacy" and first["end"] is None
        agents[-1].proc.send_signal(signal.SIGKILL)     # a crash, with the alarm open
        agents[-1].kill()

        ycbj_before = len(_ycbj_files(tmp_path))
        agents.append(start_agent(tmp_path, site, web_port, "agent2.log"))
        # the kernel starts from scratch and raises its 009/001 again (its own YCBJ); the book
        # takes those level changes as the same alarm carrying on
        wait_for(lambda: len(_ycbj_files(tmp_path)) > ycbj_before, 20, "the kernel's YCBJ after the restart")
        now = alarms_of(web_port)
        assert [a["id"] for a in now] == [first["id"]] and now[0]["state"] == "open"
        assert now[0]["start"] == first["start"]
        assert " open:" not in agents[-1].text()       # no second "begin"
        agents[-1].stop()

        sim.pin(0.5)                          # the value falls while the agent is down
        agents.append(start_agent(tmp_path, site, web_port, "agent3.log"))
        closed = wait_for(lambda: [a for a in alarms_of(web_port) if a["state"] == "closed"], 20,
                          "the alarm closed at the first sample")[0]
        assert closed["id"] == first["id"] and closed["end"] > first["start"]
        assert len(alarms_of(web_port)) == 1
        rc = agents[-1].stop()
        assert rc == 0 and "Traceback" not in agents[-1].text()
    finally:
        for a in agents:
            a.kill()
        sim.stop()


def _ycbj_files(tmp_path) -> list:
    return sorted((tmp_path / "outbox").glob("*_YCBJ_*.txt"))


def _escalation_metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("edge_agent_alarms_overdue ", "edge_agent_alarm_escalations_total ")):
            name, value = line.split()
            out[name] = float(value)
    return out


def _parse_ycbj(path) -> list[list[str]]:
    """An independent reading of a YCBJ spec file: header~record~...~|| with ';' fields."""
    text = path.read_bytes().decode("utf-8")
    assert text.endswith("||")
    segments = text[:-2].split("~")
    assert segments[-1] == "" and segments[0].split(";")[0] == "140211001234"
    return [s.split(";") for s in segments[1:-1]]


def test_closed_loop_overdue_bad_input_and_disposal_through_the_cli(tmp_path, mosquitto):
    metrics_port = free_port()
    site, sim_port, web_port = make_site(tmp_path, mqtt_url=mosquitto.url, deadlines={"orange": "2s"},
                                         metrics_port=metrics_port)
    sub = Subscriber(mosquitto.port).start()
    sim = SimThread(site, sim_port)
    agent = None
    try:
        sim.pin(1.25)
        agent = start_agent(tmp_path, site, web_port, "agent.log")
        alarm = wait_for(lambda: [a for a in alarms_of(web_port) if a["max_level"] == "orange"], 20,
                         "an orange alarm")[0]
        i = str(alarm["id"])

        # an undisposed alarm turns overdue: a log line, a metric, an MQTT event, the list says so
        esc = wait_for(lambda: sub.payloads("escalation"), 20, "the escalation on MQTT")
        assert esc[0]["records"][0]["id"] == alarm["id"] and esc[0]["records"][0]["overdue"] is True
        assert sum(" overdue: " in line for line in agent.text().splitlines()) == 1
        wait_for(lambda: _escalation_metrics(metrics_port).get("edge_agent_alarms_overdue") == 1.0, 10,
                 "overdue in /metrics")
        assert _escalation_metrics(metrics_port)["edge_agent_alarm_escalations_total"] == 1.0
        listed = cli("list", "-c", str(site), "--state", "overdue")
        assert listed.returncode == 0 and "OVERDUE" in listed.stdout and "orange 橙" in listed.stdout, listed

        # bad input: one line, exit 1, nothing recorded
        sim.pin(0.5)                                    # the alarm ends; it can still be disposed of
        wait_for(lambda: api(web_port, f"/api/alarms/{i}")["state"] == "closed", 20, "the alarm ended")
        before = len(sub.messages)
        good = ["--handler", "李工", "--cause", "回风隅角瓦斯积聚", "--action", "加强通风，撤出人员"]
        bad = [
            (["dispose", "999", *good], "no such alarm"),
            (["dispose", i, "--handler", " ", "--cause", "x", "--action", "y"], "handler: empty"),
            (["dispose", i, "--handler", "李工", "--cause", "a;b", "--action", "y"], "cause: contains ';'"),
            (["dispose", i, "--handler", "李工", "--cause", "a", "--action", "y~"], "action: contains '~'"),
            (["dispose", i, "--handler", "李|工", "--cause", "a", "--action", "y"], "handler: contains '|'"),
            (["dispose", i, "--handler", "李工", "--cause", "长" * 201, "--action", "y"], "201 characters"),
            (["dispose", i, *good, "--at", "2099-01-01 00:00"], "handled_at:"),
            (["dispose", i, *good, "--at", "yesterday"], "--at:"),
        ]
        for args, text in bad:
            r = cli(*args, "-c", str(site))
            assert r.returncode == 1 and text in r.stderr and len(r.stderr.splitlines()) == 1, (args, r.stderr)
            assert "Traceback" not in r.stderr
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(site.read_text(encoding="utf-8").replace("alarms.token", "wrong.token"), encoding="utf-8")
        (tmp_path / "wrong.token").write_text("not-the-token\n")
        r = cli("dispose", i, *good, "-c", str(wrong))
        assert r.returncode == 1 and "wrong token" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        assert api(web_port, f"/api/alarms/{i}")["disposal"] is None
        assert not sub.payloads("disposal") and len(sub.messages) - before < 20   # only live data meanwhile

        # the disposal: through the CLI, to MQTT and the spec files, durable with seq
        r = cli("dispose", i, *good, "-c", str(site))
        assert r.returncode == 0 and "disposed of by 李工" in r.stdout, r.stderr
        shown = cli("show", i, "-c", str(site))
        assert "state: disposed" in shown.stdout and "disposal.cause: 回风隅角瓦斯积聚" in shown.stdout
        again = cli("dispose", i, *good, "-c", str(site))
        assert again.returncode == 1 and "already disposed of by 李工" in again.stderr
        disp = wait_for(lambda: sub.payloads("disposal"), 20, "the disposal on MQTT")
        assert len(disp) == 1 and isinstance(disp[0]["seq"], int)
        rec = disp[0]["records"][0]
        assert (rec["event"], rec["id"], rec["disposal"]["handler"]) == ("dispose", alarm["id"], "李工")
        assert rec["disposal"]["action"] == "加强通风，撤出人员" and rec["state"] == "disposed"
        ycbj = wait_for(lambda: [p for p in sub.payloads("YCBJ") if any(x["cause"] for x in p["records"])], 20,
                        "the YCBJ again with the disposal")
        y = ycbj[0]["records"][0]
        assert (y["anomaly"], y["cause"], y["entered_by"]) == ("001", "回风隅角瓦斯积聚", "李工")
        assert y["end"] is not None and y["entered_at"]

        def filled_files():
            return [rows for p in sorted((tmp_path / "outbox").glob("140211001234_YCBJ_*.txt"))
                    for rows in [_parse_ycbj(p)] if any(r[12] for r in rows)]
        rows = wait_for(filled_files, 20, "a YCBJ spec file with the disposal")[0]
        assert len(rows) == 1 and len(rows[0]) == 17
        f = rows[0]
        assert f[0] == "14021100123401MN0001T1" and f[4] == "001" and f[6] != ""
        assert f[12:16] == ["回风隅角瓦斯积聚", "加强通风，撤出人员", y["entered_at"], "李工"]
        rc = agent.stop()
        assert rc == 0 and "Traceback" not in agent.text()
        last = last_seq(agent.text())
        wait_for(lambda: max(sub.seqs(), default=0) >= last, 10, "every seq delivered")
        assert set(range(1, last + 1)) <= set(sub.seqs())         # no gap: the loop's records have seqs too
    finally:
        if agent is not None:
            agent.kill()
        sim.stop()
        sub.stop()


def test_cli_without_a_running_agent_is_one_line(tmp_path):
    site, _, web_port = make_site(tmp_path)
    r = cli("list", "-c", str(site))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert f"cannot reach the agent at http://127.0.0.1:{web_port}" in r.stderr
    (tmp_path / "alarms.token").unlink()
    r = cli("list", "-c", str(site))
    assert r.returncode == 2 and "alarms.token_file" in r.stderr and "file not found" in r.stderr


@pytest.mark.parametrize("snippet,field,reason", [
    ("alarms: {deadlines: {red: 0s}}", "alarms.deadlines.red", "longer than 0s"),
    ("alarms: {deadlines: {purple: 5m}}", "alarms.deadlines.purple", "must be"),
    ("alarms: {deadlines: {red: soon}}", "alarms.deadlines.red", "not a duration"),
    ("alarms: {token: x}", "alarms.token", "unknown key"),
    ("console: {listen: 'here'}", "console.listen", "not host:port"),
])
def test_check_names_file_line_field_and_reason(tmp_path, snippet, field, reason):
    site, _, _ = make_site(tmp_path)
    text = site.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data.pop("alarms")
    data.pop("console")
    body = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    site.write_text(body + snippet + "\n", encoding="utf-8")
    line = len(body.splitlines()) + 1
    r = subprocess.run(edge_agent_cmd("check", "-c", str(site)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{site}:{line}: {field}: ") and reason in lines[0], lines


def test_check_warns_of_a_missing_token_file(tmp_path):
    site, _, _ = make_site(tmp_path)
    ok = subprocess.run(edge_agent_cmd("check", "-c", str(site)), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "alarms.token_file" not in ok.stdout, ok.stdout
    (tmp_path / "alarms.token").chmod(0o644)
    loose = subprocess.run(edge_agent_cmd("check", "-c", str(site)), capture_output=True, text=True, timeout=60)
    assert "alarms.token_file" in loose.stdout and "chmod 600" in loose.stdout
    (tmp_path / "alarms.token").unlink()
    r = subprocess.run(edge_agent_cmd("check", "-c", str(site)), capture_output=True, text=True, timeout=60)
    lines = [x for x in r.stdout.splitlines() if "alarms.token_file" in x]
    assert r.returncode == 0 and len(lines) == 1 and "not found" in lines[0] and "chmod 600" in lines[0], r.stdout


def test_an_undisposed_red_alarm_turns_overdue_and_its_disposal_reaches_mqtt_and_the_files(tmp_path, mosquitto):
    """A graded red alarm (`levels:`), not the old ladder: overdue after its red deadline, then
    disposed of through the CLI: the `disposal` on MQTT and the YCBJ spec file with the disposal."""
    site, sim_port, web_port = make_site(tmp_path, mqtt_url=mosquitto.url, deadlines={"red": "2s"},
                                         levels={"yellow": {"high": 0.8}, "red": {"high": 1.5}})
    sub = Subscriber(mosquitto.port).start()
    sim = SimThread(site, sim_port)
    agent = None
    try:
        sim.pin(1.0)                                    # yellow first, then two levels up to red
        agent = start_agent(tmp_path, site, web_port, "agent.log")
        wait_for(lambda: [a for a in alarms_of(web_port) if a["level"] == "yellow"], 20, "a yellow alarm")
        sim.pin(1.6)
        alarm = wait_for(lambda: [a for a in alarms_of(web_port) if a["level"] == "red"], 20, "a red alarm")[0]
        assert alarm["rule"] == "level" and alarm["threshold"] == 1.5 and alarm["state"] == "open"
        esc = wait_for(lambda: sub.payloads("escalation"), 20, "the escalation on MQTT")
        rec = esc[-1]["records"][0]
        assert (rec["id"], rec["max_level"], rec["overdue"], rec["level_code"]) == (alarm["id"], "red", True, 1)
        listed = cli("list", "-c", str(site), "--state", "overdue")
        assert listed.returncode == 0 and "OVERDUE" in listed.stdout and "red 红" in listed.stdout, listed
        i = str(alarm["id"])
        r = cli("dispose", i, "--handler", "王工", "--cause", "水位上涨", "--action", "开启排水泵", "-c", str(site))
        assert r.returncode == 0, r.stderr
        disp = wait_for(lambda: sub.payloads("disposal"), 20, "the disposal on MQTT")
        d = disp[0]["records"][0]
        assert (d["id"], d["max_level"], d["disposal"]["cause"]) == (alarm["id"], "red", "水位上涨")
        assert isinstance(disp[0]["seq"], int)
        assert api(web_port, f"/api/alarms/{i}")["overdue"] is False

        def filled_files():
            return [row for p in sorted((tmp_path / "outbox").glob("140211001234_YCBJ_*.txt"))
                    for row in _parse_ycbj(p) if row[12]]
        row = wait_for(filled_files, 20, "a YCBJ spec file with the disposal")[0]
        assert row[0] == "14021100123401MN0001T1" and row[4] == "001"      # red: the default profile's 001
        assert row[12:16] == ["水位上涨", "开启排水泵", row[14], "王工"] and row[14]
        rc = agent.stop()
        assert rc == 0 and "Traceback" not in agent.text()
    finally:
        if agent is not None:
            agent.kill()
        sim.stop()
        sub.stop()
