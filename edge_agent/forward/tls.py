"""Broker URLs, TLS contexts and one-line explanations of why a connection failed.

- `Broker.parse(url)`: scheme/host/port of an `mqtt://` or `mqtts://` URL.
- `plaintext_problem(broker, allow_plaintext)`: `None`, or the reason a plaintext URL is
  refused (non-loopback host without `allow_plaintext: true`).  No name is resolved.
- `tls_context(cfg, site)`: TLS 1.2+, server certificate and hostname verified against
  `ca_file` (or the system store), optional client certificate whose key passphrase comes
  from `key_password_file`.  Files are read on every call, so renewed certificates are
  picked up at the next reconnect.  Raises `TlsSetupError` (names the field and file).
- `explain(exc, broker)`: the reason part of the one log line for a failed connection.
  Never contains a secret (exception texts from ssl/paho/aiomqtt carry none).
"""
from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_agent.errors import EdgeAgentError
from edge_agent.secrets import SecretError, read_secret
from edge_agent.secrets import resolve as secret_path

if TYPE_CHECKING:
    from edge_agent.config import Site
    from edge_agent.forward.mqtt_spec import MqttCfg


class TlsSetupError(EdgeAgentError):
    """A CA, certificate or key file cannot be used (the message names the field and file)."""


@dataclass(frozen=True, slots=True)
class Broker:
    url: str
    tls: bool
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> "Broker":
        m = re.fullmatch(r"(mqtts?)://([^/\s:]+)(?::(\d+))?/?", url)
        if not m:
            raise ValueError(f"not an MQTT URL: {url!r}")
        tls = m.group(1) == "mqtts"
        return cls(url, tls, m.group(2), int(m.group(3) or (8883 if tls else 1883)))

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals; other names are not resolved (not loopback)."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plaintext_problem(broker: Broker, allow_plaintext: bool) -> str | None:
    """Why a plaintext URL may not be used, or None.  Loopback plaintext is always fine."""
    if broker.tls or broker.loopback or allow_plaintext:
        return None
    return (f"{broker} is plaintext MQTT to a non-loopback host: credentials and mine data would cross the "
            "network unencrypted; use mqtts:// or set forward.mqtt.allow_plaintext: true")


def tls_context(cfg: "MqttCfg", site: "Site | None" = None) -> ssl.SSLContext:
    """A client context: TLS >= 1.2, CERT_REQUIRED, hostname checked, optional client certificate."""
    path = site.path if site is not None else (lambda p: p)
    field = cfg.field
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cfg.ca_file:
        ca = path(cfg.ca_file)
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except FileNotFoundError:
            raise TlsSetupError(f"{field}.ca_file: {ca}: file not found") from None
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError(f"{field}.ca_file: {ca}: not a PEM CA certificate ({_short(exc)})") from None
    if cfg.cert_file or cfg.key_file:
        if not cfg.cert_file:
            raise TlsSetupError(f"{field}.key_file is set but cert_file is not; give both")
        cert = path(cfg.cert_file)
        # the key is a secret: a bare name may be a systemd credential (LoadCredential=)
        key = secret_path(cfg.key_file, site) if cfg.key_file else None
        password = None
        if cfg.key_password_file:
            try:
                password = read_secret(cfg.key_password_file, field=f"{field}.key_password_file",
                                       site=site).reveal()
            except SecretError as exc:
                raise TlsSetupError(str(exc)) from None
        try:
            # a callable, so an encrypted key without a passphrase fails instead of prompting on a tty
            ctx.load_cert_chain(str(cert), None if key is None else str(key), password=lambda: password or "")
        except FileNotFoundError as exc:
            missing = exc.filename or (f"{cert} or {key}")
            raise TlsSetupError(f"{field}.cert_file/key_file: {missing}: file not found") from None
        except (ssl.SSLError, OSError) as exc:
            what = ("wrong key passphrase (key_password_file) or a key that does not match the certificate"
                    if cfg.key_password_file or "PEM" in str(exc) or "KEY_VALUES" in str(exc)
                    else _short(exc))
            raise TlsSetupError(f"{field}.cert_file/key_file: {cert}: cannot load the client certificate: "
                                f"{what}") from None
    return ctx


_UNKNOWN_CA = "the server certificate is not signed by a CA that forward.mqtt.ca_file trusts (unknown CA)"

# ordered: first match wins; each pattern is lower-case text of ssl/paho/aiomqtt errors
_REASONS: list[tuple[str, str]] = [
    ("hostname mismatch", "the server certificate does not name host {host} (hostname mismatch)"),
    ("ip address mismatch", "the server certificate does not name host {host} (hostname mismatch)"),
    ("certificate has expired", "the server certificate has expired"),
    ("certificate is not yet valid", "the server certificate is not valid yet (check the clock)"),
    ("unable to get local issuer", _UNKNOWN_CA),
    ("self-signed certificate", _UNKNOWN_CA),
    ("self signed certificate", _UNKNOWN_CA),
    ("unable to get issuer", _UNKNOWN_CA),
    ("certificate verify failed", "the server certificate failed verification"),
    ("alert certificate required", "the broker requires a client certificate (set forward.mqtt.cert_file "
                                   "and key_file)"),
    ("alert certificate expired", "the broker refused the client certificate: it has expired"),
    ("alert unknown ca", "the broker refused the client certificate: not signed by a CA it trusts"),
    ("alert bad certificate", "the broker refused the client certificate"),
    ("alert certificate unknown", "the broker refused the client certificate"),
    ("alert decrypt error", "the broker refused the client certificate"),
    ("alert handshake failure", "TLS handshake refused by the broker (no common protocol/cipher, or client "
                                "certificate refused)"),
    ("alert protocol version", "the broker does not accept TLS 1.2 or newer"),
    ("wrong version number", "the port does not speak TLS (mqtts:// to a plaintext listener?)"),
    ("record layer failure", "the port does not speak TLS (mqtts:// to a plaintext listener?)"),
    ("bad user name or password", "the broker refused the login: bad username or password "
                                  "(check forward.mqtt.username and password_file)"),
    ("bad username or password", "the broker refused the login: bad username or password "
                                 "(check forward.mqtt.username and password_file)"),
    ("not authori", "the broker refused the login: bad username or password, or not authorised (check "
                    "forward.mqtt.username and password_file)"),
    ("connection refused", "connection refused (is the broker running and listening on port {port}?)"),
    ("name or service not known", "cannot resolve host {host}"),
    ("temporary failure in name resolution", "cannot resolve host {host} (DNS unavailable)"),
    ("no route to host", "no route to host {host}"),
    ("network is unreachable", "network unreachable"),
    ("timed out", "no answer from the broker in time"),
    ("connection reset", "connection reset by the broker"),
    ("broken pipe", "connection closed by the broker"),
    ("eof occurred", "connection closed by the broker during the TLS handshake"),
    ("disconnected during message iteration", "the broker closed the connection"),
    ("unexpected disconnect", "connection lost"),
    ("lost connection", "connection lost"),
    ("connection lost", "connection lost"),
]


_CLOSED = ("connection reset", "broken pipe", "eof occurred")


def explain(exc: BaseException | str, broker: Broker, *, detail: str | None = None,
            connecting: bool = False) -> str:
    """One human reason for a failed or lost connection.  `detail` is a lower-level message
    (e.g. the TLS alert paho logged) that is more specific than a timeout; `connecting` says the
    connection never got established (a TLS connection closed then is most likely a plaintext port)."""
    texts = [t for t in (detail, _chain_text(exc)) if t]
    for text in texts:
        low = text.lower()
        for needle, reason in _REASONS:
            if needle in low:
                if connecting and broker.tls and needle in _CLOSED:
                    return (f"connection closed during the TLS handshake (is port {broker.port} a TLS listener? "
                            "mqtts:// to a plaintext port looks like this)")
                return reason.format(host=broker.host, port=broker.port)
    return _short(texts[-1] if texts else exc) or type(exc).__name__


def _chain_text(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    parts = []
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts.append(str(e) or type(e).__name__)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return " | ".join(parts)


def _short(exc: BaseException | str) -> str:
    """An exception's text without OpenSSL's source location noise."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc)).strip()
