"""The uplink over TLS against a real mosquitto with TLS listeners: each failure mode gives one
clear line naming the broker and no delivery; the right setup delivers."""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Mosquitto, free_port, wait_port
from edge_agent.buffer import Buffer
from edge_agent.forward.mqtt import MqttSink
from edge_agent.forward.tls import (Broker, TlsSetupError, explain, is_loopback, plaintext_problem,
                                      tls_context)
from test_mqtt import Subscriber, encode, fill, make_site, run_sink, until

USER = "gw-01"


# ---------------------------------------------------------------------------------------------- a test PKI

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    """A certificate authority of the test's own; `issue` writes a PEM certificate and key."""

    def __init__(self, d: Path, cn: str):
        self.dir = d
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.path = d / f"{cn}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, hosts: tuple = ("localhost",), server: bool = True, expired: bool = False,
              key_password: bytes | None = None) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        start, end = ((now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired
                      else (now - dt.timedelta(hours=1), now + dt.timedelta(days=30)))
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                            critical=False))
        if hosts:
            sans = [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in hosts]
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        cp, kp = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        enc = serialization.BestAvailableEncryption(key_password) if key_password else serialization.NoEncryption()
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
        kp.chmod(0o600)
        return cp, kp


class Pki:
    def __init__(self, d: Path):
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        self.ca = CA(d, "test-ca")
        self.other = CA(d, "other-ca")
        self.server = self.ca.issue("server", hosts=("localhost",))        # not 127.0.0.1: mismatch case
        self.expired = self.ca.issue("server-expired", expired=True)
        self.key_password = "kp-" + secrets.token_hex(8)
        self.client = self.ca.issue("client", hosts=(), server=False, key_password=self.key_password.encode())
        self.stranger = self.other.issue("stranger", hosts=(), server=False)
        self.password = "pw-" + secrets.token_hex(8)
        self.key_password_file = self.secret("key.pass", self.key_password)
        self.password_file = self.secret("mqtt.pass", self.password)
        self.wrong_password_file = self.secret("wrong.pass", "not-the-password")

    def secret(self, name: str, value: str) -> Path:
        p = self.dir / name
        p.write_text(value + "\n")
        p.chmod(0o600)
        return p


class TlsBroker:
    """One mosquitto: a plaintext listener for the test's subscriber and three TLS listeners
    (good certificate; expired certificate; good certificate + client certificate required)."""

    def __init__(self, d: Path, pki: Pki):
        self.plain, self.tls, self.expired, self.mtls = (free_port() for _ in range(4))
        passwd = d / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), USER, pki.password], check=True,
                       capture_output=True)
        passwd.chmod(0o600)

        def tls(port, cert, require=False):
            return (f"listener {port} 127.0.0.1\ncafile {pki.ca.path}\ncertfile {cert[0]}\nkeyfile {cert[1]}\n"
                    f"tls_version tlsv1.2\nrequire_certificate {'true' if require else 'false'}\n")
        extra = ("allow_anonymous false\n"
                 f"password_file {passwd}\n" + tls(self.tls, pki.server) + tls(self.expired, pki.expired)
                 + tls(self.mtls, pki.server, require=True))
        self.broker = Mosquitto(d, self.plain, extra).start()
        for p in (self.tls, self.expired, self.mtls):
            wait_port(p)
        self.auth = ("-u", USER, "-P", pki.password)

    def stop(self) -> None:
        self.broker.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory, pki):
    b = TlsBroker(tmp_path_factory.mktemp("tlsbroker"), pki)
    yield b
    b.stop()


def attempt(tmp_path: Path, tls_broker: TlsBroker, caplog, *, want_delivery: bool, n: int = 20, **mqtt) -> list[str]:
    """Run a sink with these settings until it delivered n rows or failed twice; return its log lines."""
    caplog.set_level(logging.DEBUG)
    sub = Subscriber(tls_broker.broker, name=f"sub{time.monotonic_ns()}", auth=tls_broker.auth)
    buffer = Buffer(tmp_path / "buffer.sqlite")
    fill(buffer, n)
    site = make_site(tmp_path, **mqtt)
    sink = MqttSink(site.forward.get("mqtt"), site, buffer, encode, asyncio.Event(), backoff_base=0.05, backoff_cap=0.2)

    async def body(task):
        if want_delivery:
            await until(lambda: buffer.backlog("mqtt") == 0, timeout=10, what="delivery")
        else:
            await until(lambda: sink.counters["errors"] >= 2, timeout=10, what="two failed attempts")
            assert not task.done()              # failing, but not crashing
    try:
        run_sink(sink, body)
    finally:
        buffer.close()
        sub.stop()
    got = sub.seqs()
    if want_delivery:
        assert set(got) == set(range(1, n + 1))
    else:
        assert got == [] and sink.counters["acked"] == 0 and sink.counters["published"] == 0
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def assert_one_line(lines: list[str], port: int, *needles: str) -> None:
    assert len(lines) == 1, lines               # one line, however many attempts; no traceback
    line = lines[0]
    assert f":{port}" in line and "Traceback" not in line and "\n" not in line, line
    for needle in needles:
        assert needle in line, line


# ---------------------------------------------------------------------------------------------- success

def test_server_verified_and_password_delivers(tmp_path, tls_broker, pki, caplog):
    lines = attempt(tmp_path, tls_broker, caplog, want_delivery=True, url=f"mqtts://localhost:{tls_broker.tls}",
                    username=USER, password_file=str(pki.password_file), ca_file=str(pki.ca.path))
    assert lines == []


def test_client_certificate_with_encrypted_key_delivers(tmp_path, tls_broker, pki, caplog):
    lines = attempt(tmp_path, tls_broker, caplog, want_delivery=True, url=f"mqtts://localhost:{tls_broker.mtls}",
                    username=USER, password_file=str(pki.password_file), ca_file=str(pki.ca.path),
                    cert_file=str(pki.client[0]), key_file=str(pki.client[1]),
                    key_password_file=str(pki.key_password_file))
    assert lines == []


# ---------------------------------------------------------------------------------------------- failures

def _good(pki: Pki, tmp_path: Path) -> dict:
    return dict(username=USER, password_file=str(pki.password_file), ca_file=str(pki.ca.path))


# (case, listener, host, settings over the good ones, words the one line must contain)
FAILURES = [
    ("unknown CA", "tls", "localhost", lambda pki, tmp: dict(ca_file=str(pki.other.path)), ("unknown CA", "ca_file")),
    ("hostname mismatch", "tls", "127.0.0.1", lambda pki, tmp: {}, ("hostname mismatch", "127.0.0.1")),
    ("expired server certificate", "expired", "localhost", lambda pki, tmp: {}, ("has expired",)),
    ("client certificate missing", "mtls", "localhost", lambda pki, tmp: {}, ("requires a client certificate",)),
    ("client certificate refused", "mtls", "localhost",
     lambda pki, tmp: dict(cert_file=str(pki.stranger[0]), key_file=str(pki.stranger[1])),
     ("refused the client certificate",)),
    ("bad password", "tls", "localhost", lambda pki, tmp: dict(password_file=str(pki.wrong_password_file)),
     ("refused the login", "password_file")),
    ("wrong key passphrase", "mtls", "localhost",
     lambda pki, tmp: dict(cert_file=str(pki.client[0]), key_file=str(pki.client[1]),
                           key_password_file=str(pki.wrong_password_file)), ("key_file", "passphrase")),
    ("password file missing", "tls", "localhost", lambda pki, tmp: dict(password_file=str(tmp / "nope.pass")),
     ("forward.mqtt.password_file", "nope.pass", "not found")),
    ("TLS to a plaintext port", "plain", "localhost", lambda pki, tmp: {}, ("TLS listener",)),
]


@pytest.mark.parametrize("case,listener,host,settings,needles", FAILURES, ids=[f[0] for f in FAILURES])
def test_failure_gives_one_line_and_no_delivery(tmp_path, tls_broker, pki, caplog, case, listener, host, settings,
                                                 needles):
    port = getattr(tls_broker, listener)
    cfg = {**_good(pki, tmp_path), **settings(pki, tmp_path)}
    lines = attempt(tmp_path, tls_broker, caplog, want_delivery=False, url=f"mqtts://{host}:{port}", **cfg)
    assert_one_line(lines, port, *needles)


# ---------------------------------------------------------------------------------------------- units

def test_context_is_tls12_plus_and_verifies(pki, tmp_path):
    site = make_site(tmp_path, url="mqtts://localhost:8883", ca_file=str(pki.ca.path))
    ctx = tls_context(site.forward.get("mqtt"), site)
    import ssl
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    bad = make_site(tmp_path, url="mqtts://localhost:8883", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(TlsSetupError, match="forward.mqtt.ca_file: .*missing.pem: file not found"):
        tls_context(bad.forward.get("mqtt"), bad)


@pytest.mark.parametrize("url,allow,refused", [
    ("mqtt://10.20.1.5:1883", False, True),
    ("mqtt://platform.example:1883", False, True),      # names are not resolved: not loopback
    ("mqtt://10.20.1.5:1883", True, False),
    ("mqtts://10.20.1.5:8883", False, False),
    ("mqtt://127.0.0.1:1883", False, False),
    ("mqtt://127.8.9.1:1883", False, False),
    ("mqtt://localhost:1883", False, False),
])
def test_plaintext_check(url, allow, refused):
    broker = Broker.parse(url)
    problem = plaintext_problem(broker, allow)
    assert (problem is not None) == refused
    if refused:
        assert "allow_plaintext" in problem and "mqtts://" in problem


def test_loopback_literals():
    assert is_loopback("::1") and is_loopback("127.0.0.1") and is_loopback("LOCALHOST")
    assert not is_loopback("10.0.0.1") and not is_loopback("localhost.evil.example")


def test_sink_refuses_plaintext_to_remote_host_without_connecting(tmp_path, caplog):
    from edge_agent.errors import ConfigError
    site = make_site(tmp_path, url=["mqtts://10.20.1.5:8883", "mqtt://10.20.1.6:1883"])
    with pytest.raises(ConfigError, match="forward.mqtt.url: mqtt://10.20.1.6:1883 is plaintext"):
        MqttSink(site.forward.get("mqtt"), site, None, encode, asyncio.Event())
    caplog.set_level(logging.WARNING)
    site = make_site(tmp_path, url="mqtt://10.20.1.6:1883", allow_plaintext=True)
    MqttSink(site.forward.get("mqtt"), site, None, encode, asyncio.Event())      # constructed; nothing connects
    assert any("plaintext" in r.getMessage() for r in caplog.records)


def test_explain_reasons():
    b = Broker.parse("mqtts://broker.example:8883")
    assert "connection refused" in explain(ConnectionRefusedError(111, "Connection refused"), b)
    assert "(_ssl.c" not in explain("[SSL: X] weird thing (_ssl.c:1006)", b)
    assert "hostname mismatch" in explain("certificate verify failed: Hostname mismatch, certificate is not "
                                          "valid for 'broker.example'.", b)
