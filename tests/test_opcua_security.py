"""OPC UA security: certificates from `edge-agent opcua-cert`, encrypted endpoints only, username login.

The server (asyncua, loopback, background thread) offers no unsecured
endpoint, trusts exactly the client certificate made by opcua-cert (after
asyncua's URI / key-usage checks) and requires a username and password.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import free_port
from edge_agent.drivers.opcua_sim import ServerThread, SimServer
from edge_agent.opcua_cert import make_client_cert, register
from test_opcua import Run, device, last, pt, running

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    client = make_client_cert(d / "client", hostname="gw-01")
    stranger = make_client_cert(d / "stranger", hostname="gw-99")
    server = make_client_cert(d / "server", uri="urn:edge-agent:sim", hostname="127.0.0.1")
    (d / "good.pass").write_text(PASSWORD + "\n")
    (d / "bad.pass").write_text("not-the-Pa55word\n")
    return d, client, stranger, server


@pytest.fixture(scope="module")
def srv(pki):
    d, client, _, server = pki
    s = ServerThread(SimServer(free_port(), names=["Speed"], cert=server.cert_pem, key=server.key_pem,
                               users={"op": PASSWORD}, trusted=[client.cert_pem])).start()
    yield s
    s.stop()


def secure_device(srv, pki, *, cert="client", password="good.pass", policy="Basic256Sha256,SignAndEncrypt"):
    d, client, stranger, server = pki
    c = {"client": client, "stranger": stranger}[cert]
    return device(srv.sim.url, [pt("SPD", "ns=2;s=Sim.Speed")], security=policy, cert_file=str(c.cert_pem),
                  key_file=str(c.key_pem), server_cert_file=str(server.cert_pem), username="op",
                  password_file=str(d / password))


@pytest.mark.parametrize("policy", ["Basic256Sha256,SignAndEncrypt", "Aes128Sha256RsaOaep,SignAndEncrypt",
                                    "Basic256Sha256,Sign"])
def test_secure_channel_with_username_delivers_values(srv, pki, policy, caplog):
    srv.call(srv.sim.write, "Speed", 3.25)
    r = Run(*secure_device(srv, pki, policy=policy))
    caplog.set_level(logging.DEBUG)

    async def body():
        await r.until(lambda: last(r, 0) == (3.25, 0), what="a value over the secure channel")
        await srv.acall(srv.sim.write, "Speed", 4.5)
        await r.until(lambda: last(r, 0) == (4.5, 0), what="a change over the secure channel")

    asyncio.run(running(r, body))
    assert r.states[0] == (True, "connected")
    assert PASSWORD not in caplog.text


def agent_warnings(caplog) -> list[str]:
    """WARNING+ lines the agent's process would log (the test server's own complaints left out)."""
    return [rec.getMessage() for rec in caplog.records
            if rec.levelno >= logging.WARNING and not rec.name.startswith("asyncua.server")]


def _attempts(r: Run, n: int):
    async def body():
        await r.until(lambda: r.drv.counters["connect_failures"] >= n, timeout=8, what=f"{n} attempts")
    return body


def test_wrong_password_one_clear_line_and_retries(srv, pki, caplog):
    r = Run(*secure_device(srv, pki, password="bad.pass"))
    caplog.set_level(logging.DEBUG)
    asyncio.run(running(r, _attempts(r, 2)))
    warnings = agent_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "belt-1" in warnings[0] and "refused user 'op'" in warnings[0] and "password_file" in warnings[0]
    assert "not-the-Pa55word" not in caplog.text and PASSWORD not in caplog.text
    assert [list(f.quality) for f in r.frames] == [[16]]
    assert not r.drv.online


def test_untrusted_certificate_is_named(srv, pki, caplog):
    r = Run(*secure_device(srv, pki, cert="stranger"))
    caplog.set_level(logging.WARNING)
    asyncio.run(running(r, _attempts(r, 1)))
    warnings = agent_warnings(caplog)
    assert len(warnings) == 1 and "belt-1" in warnings[0], warnings
    assert "trust" in warnings[0] and "stranger" in warnings[0], warnings


def test_opcua_cert_command(tmp_path, capsys):
    ap = argparse.ArgumentParser(prog="edge-agent")
    register(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["opcua-cert", "--out", str(tmp_path / "pki"), "--uri", "urn:mine:gw-01",
                          "--hostname", "gw-01.local", "--days", "30"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "urn:mine:gw-01" in out and "client-cert.der" in out
    key, pem, der = (tmp_path / "pki" / n for n in ("client-key.pem", "client-cert.pem", "client-cert.der"))
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    cert = x509.load_der_x509_certificate(der.read_bytes())
    assert cert == x509.load_pem_x509_certificate(pem.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:mine:gw-01"]
    assert san.get_values_for_type(x509.DNSName) == ["gw-01.local"]
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert 29 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 30
    # a second run does not overwrite the pair the server admin already trusts
    assert args.func(args) == 1
    assert "already exists" in capsys.readouterr().out


def test_client_key_from_the_systemd_credentials_directory(tmp_path, srv, pki, monkeypatch):
    """`key_file: opcua-client.key` under `LoadCredential=`: the key is only in $CREDENTIALS_DIRECTORY."""
    d, client, _, _ = pki
    creds = tmp_path / "credentials"
    creds.mkdir()
    shutil.copy(client.key_pem, creds / "opcua-client.key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    dev, points = secure_device(srv, pki)
    dev = dev.model_copy(update={"key_file": "opcua-client.key"})
    srv.call(srv.sim.write, "Speed", 2.5)
    r = Run(dev, points)

    async def body():
        await r.until(lambda: last(r, 0) == (2.5, 0), timeout=15, what="a value over the secure channel")

    asyncio.run(running(r, body))
    assert r.states[0] == (True, "connected")
