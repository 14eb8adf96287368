"""Logging: plain lines (no second timestamp under journald), JSON for collectors, secrets never logged."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import edge_agent_cmd, free_port
from edge_agent import logs

PASSWORD = "Zq7-pw-never-in-logs-91"


@pytest.fixture
def root_logger():
    """logs.setup() configures the root logger: put it back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    noisy = {n: logging.getLogger(n).level for n in ("pymodbus", "asyncua", "aiomqtt")}
    yield
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    for n, lvl in noisy.items():
        logging.getLogger(n).setLevel(lvl)


def emit(fmt: str, level: str = "INFO") -> list[str]:
    buf = io.StringIO()
    logs.setup(fmt, level, stream=buf)
    log = logging.getLogger("edge_agent.test")
    log.info("device %s online", "substation-1")
    log.warning("位置 1201工作面回风隅角: 甲烷 alarm")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("sink failed")
    log.debug("per-poll detail")
    logging.getLogger("pymodbus.logging").info("library chatter")
    return buf.getvalue().splitlines()


def test_plain_lines_carry_a_timestamp_outside_journald(monkeypatch, root_logger):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    lines = emit("plain")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO edge_agent\.test: device substation-1 online", lines[0])
    assert lines[1].endswith("WARNING edge_agent.test: 位置 1201工作面回风隅角: 甲烷 alarm")
    assert not any("per-poll detail" in line for line in lines)      # INFO level
    assert not any("library chatter" in line for line in lines)      # libraries are quiet below DEBUG


def test_plain_lines_under_journald_have_no_second_timestamp(monkeypatch, root_logger):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")   # what systemd sets when stderr is the journal
    lines = emit("plain")
    assert lines[0] == "INFO edge_agent.test: device substation-1 online"
    assert lines[1] == "WARNING edge_agent.test: 位置 1201工作面回风隅角: 甲烷 alarm"
    assert lines[2] == "ERROR edge_agent.test: sink failed"
    assert not any(re.search(r"\d{4}-\d\d-\d\d", line) for line in lines)


def test_json_one_object_per_line(monkeypatch, root_logger):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")   # json stays json under journald
    lines = emit("json", "DEBUG")
    docs = [json.loads(line) for line in lines]       # every line is a complete JSON document
    first = docs[0]
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "info" and first["logger"] == "edge_agent.test"
    assert first["message"] == "device substation-1 online"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", first["time"])
    assert docs[1]["message"] == "位置 1201工作面回风隅角: 甲烷 alarm"   # UTF-8 kept, not escaped away
    exc = next(d for d in docs if d["message"] == "sink failed")
    assert exc["level"] == "error" and "ValueError: boom" in exc["exception"]
    assert any(d["message"] == "per-poll detail" for d in docs)        # DEBUG level passes it
    assert any(d["message"] == "library chatter" for d in docs)        # and the libraries' detail


# ------------------------------------------------------------------ secrets, through the real agent

SITE = """\
site: {{mine_code: "140211001234", gateway: gw-logtest}}
buffer: {{path: buffer.sqlite}}
forward:
  mqtt: {{url: "mqtt://127.0.0.1:{port}", username: gw, password_file: mqtt.pass}}
metrics: {{enabled: false}}
devices:
  - name: d1
    driver: modbus-tcp
    host: 127.0.0.1
    port: {dead}
    poll: 200ms
    timeout: 100ms
    points:
      - {{id: T1, sensor: "0001", address: "hr:0", type: float32}}
"""


def run_agent_until(tmp_path: Path, pattern: str, *extra: str, timeout: float = 20.0) -> str:
    """Run `edge-agent run` until a log line matches `pattern`, then SIGTERM; return all it printed."""
    proc = subprocess.Popen(edge_agent_cmd("run", "-c", str(tmp_path / "site.yaml"), *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    out: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            out.append(line)
            if re.search(pattern, line):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(timeout), f"no log line matching {pattern!r}:\n{''.join(out)}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, "".join(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    return "".join(out)


@pytest.fixture
def auth_broker(mosquitto_factory, tmp_path):
    pw = tmp_path / "broker.passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "gw", PASSWORD], check=True, capture_output=True)
    os.chmod(pw, 0o600)
    return mosquitto_factory(extra_conf=f"allow_anonymous false\npassword_file {pw}\n")


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_the_password_never_reaches_the_log(tmp_path, auth_broker, fmt):
    """At DEBUG, with the libraries' own logging on: a good login, then a refused one."""
    (tmp_path / "site.yaml").write_text(SITE.format(port=auth_broker.port, dead=free_port()))
    secret = tmp_path / "mqtt.pass"
    secret.write_text(PASSWORD + "\n")
    os.chmod(secret, 0o600)
    good = run_agent_until(tmp_path, r"mqtt: connected to", "--log-level", "DEBUG", "--log-format", fmt)

    wrong = PASSWORD[::-1]
    secret.write_text(wrong + "\n")
    refused = run_agent_until(tmp_path, r"mqtt: .*(not authori[sz]ed|refused|bad user name or password)",
                              "--log-level", "DEBUG", "--log-format", fmt)
    for text in (good, refused):
        assert PASSWORD not in text and wrong not in text
        assert "Traceback" not in text
    # state changes, not polls: the dead device is reported once, not every 200 ms
    assert good.count("device d1") <= 2, good
    if fmt == "json":
        assert all(json.loads(line) for line in good.splitlines() if line.strip())
