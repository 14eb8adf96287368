"""Credentials: where they are read from, what is said about them, and that they never leak."""
from __future__ import annotations

import asyncio
import logging
import os
import secrets as pysecrets
import subprocess
from pathlib import Path

import pytest

from conftest import edge_agent_cmd
from edge_agent.buffer import Buffer
from edge_agent.config import load_site
from edge_agent.forward.mqtt import MqttSink
from edge_agent.secrets import Secret, SecretError, permission_warnings, read_secret, resolve
from test_mqtt import encode, fill, make_site, run_sink, until
from test_tls import USER, pki, tls_broker  # noqa: F401  (module fixtures: a test PKI and a TLS broker)


def write(p: Path, text: str, mode: int = 0o600) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return p


def test_read_secret_strips_one_newline(tmp_path):
    assert read_secret(str(write(tmp_path / "a", "pa ss\n")), field="f").reveal() == "pa ss"
    assert read_secret(str(write(tmp_path / "b", "pa ss\r\n")), field="f").reveal() == "pa ss"
    assert read_secret(str(write(tmp_path / "c", "x\n\n")), field="f").reveal() == "x\n"


@pytest.mark.parametrize("content,setup,needle", [
    (None, None, "file not found"),
    ("\n", None, "is empty"),
    (None, "dir", "is a directory"),
    (b"\xff\xfe", None, "not UTF-8"),
])
def test_read_secret_errors_name_field_and_file(tmp_path, content, setup, needle):
    p = tmp_path / "mqtt.pass"
    if setup == "dir":
        p.mkdir()
    elif isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        write(p, content)
    with pytest.raises(SecretError) as err:
        read_secret(str(p), field="forward.mqtt.password_file")
    assert str(err.value).startswith(f"forward.mqtt.password_file: {p}: ") and needle in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_read_secret_permission_denied(tmp_path):
    p = write(tmp_path / "x", "s", 0o000)
    with pytest.raises(SecretError, match="permission denied"):
        read_secret(str(p), field="f")


def test_credentials_directory(tmp_path, monkeypatch):
    site = make_site(tmp_path / "etc")
    write(tmp_path / "etc" / "mqtt.pass", "from-site-dir")
    creds = tmp_path / "creds"
    write(creds / "mqtt.pass", "from-systemd")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    # no systemd: a bare name is relative to the site file
    assert read_secret("mqtt.pass", field="f", site=site).reveal() == "from-site-dir"
    with pytest.raises(SecretError, match=r"\$CREDENTIALS_DIRECTORY is not set"):
        read_secret("$CREDENTIALS_DIRECTORY/mqtt.pass", field="f", site=site)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    # under systemd LoadCredential=: the credential wins, by bare name or spelled out
    assert read_secret("mqtt.pass", field="f", site=site).reveal() == "from-systemd"
    assert read_secret("${CREDENTIALS_DIRECTORY}/mqtt.pass", field="f", site=site).reveal() == "from-systemd"
    assert resolve("other.pass", site) == tmp_path / "etc" / "other.pass"   # not a credential: site folder


def test_secret_never_prints_itself():
    s = Secret("hunter2")
    assert "hunter2" not in f"{s} {s!r} {s:>10} %s" % (s,) + str([s]) + repr({"p": s})
    assert s.reveal() == "hunter2" and s == Secret("hunter2")


def test_permission_warnings(tmp_path):
    d = tmp_path
    write(d / "mqtt.pass", "a", 0o640)
    write(d / "ftp.pass", "b", 0o600)
    write(d / "opc.pass", "c", 0o604)
    site_file = write(d / "site.yaml", f"""
site: {{mine_code: "140211001234", gateway: gw-01}}
forward:
  mqtt: {{url: "mqtts://localhost:8883", username: gw, password_file: mqtt.pass, key_password_file: gone.pass}}
  files: {{dir: outbox, upload: "ftp://gw@127.0.0.1/x", password_file: ftp.pass}}
devices:
  - {{name: belt-1, driver: opcua, url: "opc.tcp://127.0.0.1:4840", username: op, password_file: {d}/opc.pass}}
""")
    warnings = permission_warnings(load_site(site_file))
    assert len(warnings) == 3, warnings
    assert any(w.startswith("forward.mqtt.password_file: ") and "0640" in w and "chmod 600" in w for w in warnings)
    assert any(w.startswith("devices[0].password_file (belt-1): ") and "0604" in w for w in warnings)
    assert any("forward.mqtt.key_password_file" in w and "cannot stat" in w for w in warnings)
    assert not any("ftp.pass" in w for w in warnings)


# ---------------------------------------------------------------------------------------------- no leaks

def test_no_secret_in_any_output(tmp_path, tls_broker, pki, caplog, capfd):  # noqa: F811
    """A distinct secret in every place one can be configured; then everything captured is searched."""
    caplog.set_level(logging.DEBUG)
    mqtt_pw = pki.password                          # the broker's real password (the sink logs in with it)
    key_pw = pki.key_password
    other = {name: f"{name}-{pysecrets.token_hex(6)}" for name in ("ftp", "opc", "wrong")}
    d = tmp_path
    for name, value in other.items():
        write(d / f"{name}.pass", value + "\n", 0o644)          # group/world-readable: check must warn
    write(d / "mqtt.pass", mqtt_pw + "\n", 0o644)
    site_file = write(d / "site.yaml", f"""
site: {{mine_code: "140211001234", gateway: gw-01}}
buffer: {{path: buffer.sqlite}}
forward:
  mqtt:
    url: mqtts://localhost:{tls_broker.mtls}
    username: {USER}
    password_file: mqtt.pass
    ca_file: {pki.ca.path}
    cert_file: {pki.client[0]}
    key_file: {pki.client[1]}
    key_password_file: {pki.key_password_file}
  files: {{dir: outbox, upload: "ftp://gw@127.0.0.1/x", password_file: ftp.pass}}
devices:
  - name: belt-1
    driver: opcua
    url: opc.tcp://127.0.0.1:4840
    username: op
    password_file: opc.pass
    points:
      - {{id: SPEED, sensor: "0053", kind: analog, address: "ns=2;s=Belt1.Speed"}}
""")
    captured: list[str] = []
    # 1. edge-agent check (a subprocess: its whole stdout and stderr)
    r = subprocess.run(edge_agent_cmd("check", "-c", str(site_file)), capture_output=True, text=True, timeout=60)
    captured += [r.stdout, r.stderr]
    site = load_site(site_file)
    captured += [str(site), repr(site), site.model_dump_json()]
    captured += permission_warnings(site)
    # 2. the uplink: a good session, then a wrong password, a wrong key passphrase, a missing file
    variants = [{}, {"password_file": str(d / "wrong.pass")}, {"key_password_file": str(d / "wrong.pass")},
                {"password_file": str(d / "missing.pass")}]
    for i, change in enumerate(variants):
        cfg = site.forward.get("mqtt").model_copy(update=change)
        buffer = Buffer(d / f"b{i}.sqlite")
        fill(buffer, 5)
        sink = MqttSink(cfg, site, buffer, encode, asyncio.Event(), status_detail=lambda: {"ok": True},
                        backoff_base=0.05, backoff_cap=0.1)

        async def body(task, sink=sink, buffer=buffer, good=not change):
            if good:
                await until(lambda: buffer.backlog("mqtt") == 0, what="delivery with the right secrets")
            else:
                await until(lambda: sink.counters["errors"] >= 2, what="failures")
        run_sink(sink, body)
        captured += [repr(sink.counters), repr(vars(sink)), sink.broker]
        buffer.close()
    # 3. errors raised for secrets carry no content either
    for name in other:
        try:
            read_secret(str(d / f"{name}.pass" / "x"), field="f")
        except SecretError as exc:
            captured.append(str(exc))
    out, err = capfd.readouterr()
    captured += [out, err]
    captured += [f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    captured.append(caplog.text)
    text = "\n".join(captured)
    assert "refused the login" in text and "passphrase" in text and "readable by group" in text  # it did run
    for secret in [mqtt_pw, key_pw, *other.values()]:
        assert secret not in text, f"secret leaked: {secret[:4]}..."


def test_password_in_url_is_not_echoed(tmp_path):
    site_file = write(tmp_path / "site.yaml", """
site: {mine_code: "140211001234", gateway: gw-01}
forward:
  mqtt: {url: "mqtt://gw:TopSecret99@127.0.0.1:1883"}
""")
    r = subprocess.run(edge_agent_cmd("check", "-c", str(site_file)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "forward.mqtt.url" in r.stderr + r.stdout
    assert "TopSecret99" not in r.stdout + r.stderr
