"""OPC UA connection set-up: addresses, security, login, node resolution, error wording.

Everything here runs once per connection attempt, none of it on the hot path.
What callers may rely on:

- `parse_address(text)` accepts a NodeId string (`ns=2;s=Belt1.Speed`,
  `ns=2;i=1001`, `nsu=urn:x;s=Speed`) or a browse path from the Root folder
  (`/Objects/2:Belt1/2:Speed`; a name without `N:` is namespace 0) and raises
  ValueError with a sentence a site engineer can act on.
- `config_problems(device)` lists what is wrong with an opcua device block
  (URL, security string, point addresses); `file_problems(device, base)`
  the certificate/key/password files that are missing.  Neither connects.
- `open_client(...)` returns a connected asyncua Client or raises; it never
  logs the password.  `describe(exc, ...)` turns what it raised into one line.
- `resolve(client, addresses)` maps every point to a NodeId in as few
  requests as possible, or to a reason why it cannot.
- Importing this module quiets asyncua's own logging (see below).
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509

from edge_agent.drivers.opcua_spec import OpcUaConfig
from edge_agent.errors import EdgeAgentError
from edge_agent.secrets import read_secret
from edge_agent.secrets import resolve as secret_path


# asyncua logs each step of a failing connect or a lost link at WARNING, some
# with tracebacks, and a server's refusal at ERROR and CRITICAL ("Received an
# error: ErrorMessage(...)", on every attempt); the driver turns each failure
# into its own one line per state change (`describe`).  So the client side of
# asyncua is silent and the rest logs at ERROR.  Only when nobody configured a
# logger: an explicit level wins.
_SILENT = logging.CRITICAL + 10
for _name, _level in (("asyncua", logging.ERROR), ("asyncua.client", _SILENT), ("asyncua.common", _SILENT),
                      ("asyncua.crypto", _SILENT), ("asyncua.ua", _SILENT)):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(_level)


class _LinkLossNoise(logging.Filter):
    """Drop asyncua's tracebacks for a link that went away: the driver reports the outage itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError))


for _name in ("asyncua.client.ua_session", "asyncua.client.ua_session.UaSession", "asyncua.client.client",
              "asyncua.client.ua_client.UaClient", "asyncua.client.ua_client.UASocketProtocol",
              "asyncua.common.subscription"):
    logging.getLogger(_name).addFilter(_LinkLossNoise())

POLICIES = ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
MODES = ("Sign", "SignAndEncrypt")
ROOT = ua.NodeId(ua.ObjectIds.RootFolder)
_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
_QNAME = re.compile(r"^(?:(\d+):)?(.+)$")

LOGIN_REFUSED = frozenset({ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected,
                           ua.StatusCodes.BadIdentityTokenInvalid})
CERT_REFUSED = frozenset({ua.StatusCodes.BadSecurityChecksFailed, ua.StatusCodes.BadCertificateUntrusted,
                          ua.StatusCodes.BadCertificateInvalid, ua.StatusCodes.BadCertificateUriInvalid,
                          ua.StatusCodes.BadCertificateTimeInvalid, ua.StatusCodes.BadCertificateRevoked,
                          ua.StatusCodes.BadSecurityPolicyRejected, ua.StatusCodes.BadCertificateHostNameInvalid,
                          ua.StatusCodes.BadCertificateUseNotAllowed})


@dataclass(frozen=True, slots=True)
class Security:
    policy: str | None      # None = no security
    mode: str | None


def parse_security(text: str) -> Security:
    t = (text or "").strip()
    if t.upper() in ("", "NONE"):
        return Security(None, None)
    parts = [p.strip() for p in t.split(",")]
    if len(parts) != 2 or parts[0] not in POLICIES or parts[1] not in MODES:
        raise ValueError(f"{text!r} is not a security setting; write NONE or POLICY,MODE with POLICY one of "
                         f"{', '.join(POLICIES)} and MODE Sign or SignAndEncrypt "
                         "(e.g. Basic256Sha256,SignAndEncrypt)")
    return Security(parts[0], parts[1])


def parse_address(text: str) -> ua.NodeId | list[ua.QualifiedName]:
    """A NodeId, or the browse path as qualified names below the Root folder."""
    t = text.strip()
    if t.startswith("/"):
        names = [p for p in t.split("/") if p]
        if not names:
            raise ValueError(f"{text!r}: a browse path needs at least one name, e.g. /Objects/2:Belt1/2:Speed")
        out = []
        for p in names:
            m = _QNAME.match(p)
            out.append(ua.QualifiedName(m.group(2), int(m.group(1) or 0)))  # type: ignore[union-attr]
        return out
    try:
        return ua.NodeId.from_string(t)
    except (ua.UaStringParsingError, ValueError):
        raise ValueError(f"{text!r} is not an OPC UA address; write a NodeId (ns=2;s=Belt1.Speed, ns=2;i=1001) "
                         "or a browse path (/Objects/2:Belt1/2:Speed)") from None


def show_url(url: str) -> str:
    """The URL without any user:password@ part, for logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _path(p: str, base: Path | None) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() or base is None else base / q


def config_problems(device: OpcUaConfig) -> list[tuple[str, str]]:
    """(field, reason) for each structural problem of an opcua device block (no file system, no network)."""
    out: list[tuple[str, str]] = []
    if not (device.url or "").startswith("opc.tcp://"):
        out.append(("url", f"{device.url!r} is not an OPC UA URL; write opc.tcp://host:4840"))
    try:
        sec = parse_security(device.security)
    except ValueError as exc:
        out.append(("security", str(exc)))
        sec = Security(None, None)
    if sec.policy:
        for name in ("cert_file", "key_file"):
            if not getattr(device, name):
                out.append((name, f"security {device.security} needs `{name}`; make one with "
                                  "`edge-agent opcua-cert --out DIR`"))
    if device.password_file and not device.username:
        out.append(("username", "password_file is set but username is not"))
    for i, pt in enumerate(device.points):
        try:
            parse_address(pt.address)
        except ValueError as exc:
            out.append((f"points[{i}].address", f"point {pt.id}: {exc}"))
    return out


def file_problems(device: OpcUaConfig, base: Path | None = None) -> list[tuple[str, str]]:
    """(field, reason) for each certificate, key or password file that is not there.

    Not fatal for the driver (it reports them as the outage reason and keeps
    retrying, so a file put in place later is picked up); `check` shows them.
    """
    out: list[tuple[str, str]] = []
    for name in ("cert_file", "key_file", "server_cert_file"):
        p = getattr(device, name)
        if p and not _file(device, name, base).is_file():
            out.append((name, f"{p}: file not found (a relative path is relative to the site file)"))
    if device.password_file and not secret_path(device.password_file, _BaseDir(base) if base else None).is_file():
        out.append(("password_file", f"{device.password_file}: file not found"))
    return out


def _file(device: OpcUaConfig, name: str, base: Path | None) -> Path:
    """A certificate or key file of the device; the key (a secret) may be a systemd credential."""
    value = getattr(device, name) or ""
    if name == "key_file":
        return secret_path(value, _BaseDir(base) if base else None)
    return _path(value, base)


def _pem_or_der(path: Path) -> uacrypto.CertProperties:
    """asyncua guesses PEM from a `.pem` suffix; a credential may be called `opcua.key`: look at the bytes."""
    try:
        pem = path.read_bytes().lstrip().startswith(b"-----BEGIN")
    except OSError:
        pem = path.suffix.lower() == ".pem"      # asyncua reports the missing file
    return uacrypto.CertProperties(str(path), extension="pem" if pem else "der")


def read_password(device: OpcUaConfig, base: Path | None) -> str | None:
    """The password from password_file, one trailing newline stripped.

    Through `edge_agent.secrets` (systemd credentials, errors that never show
    the secret): raises SecretError, whose message names the field and file.
    """
    if not device.password_file:
        return None
    site = None if base is None else _BaseDir(base)
    return read_secret(device.password_file, field=f"devices.{device.name}.password_file", site=site).reveal()


class _BaseDir:
    """What `read_secret` needs of a Site: relative paths resolved against the site file's folder."""

    def __init__(self, base: Path):
        self.base = base

    def path(self, p: str) -> Path:
        return _path(p, self.base)


def cert_uri(cert_path: Path) -> str | None:
    """The application URI in a certificate's subjectAltName, which the client must announce."""
    data = cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def open_client(device: OpcUaConfig, *, timeout: float, watchdog: float, session_timeout: float,
                      base: Path | None, on_lost) -> Client:
    """A connected Client (session activated) for `device`; raises on any failure, after cleaning up."""
    client = Client(device.url, timeout=timeout, watchdog_intervall=watchdog, auto_reconnect=False)
    client.name = client.description = f"edge-agent {device.name}"
    client.application_uri = f"urn:{socket.gethostname()}:edge-agent"
    client.product_uri = "urn:edge-agent"
    # short, so a session orphaned by a dropped link (and its subscription) dies
    # on the server soon after we reconnect with a fresh one
    client.session_timeout = int(session_timeout * 1000)
    client.connection_lost_callback = on_lost
    if device.username:
        client.set_user(device.username)
        pw = read_password(device, base)
        if pw is not None:
            client.set_password(pw)
    sec = parse_security(device.security)
    if sec.policy:
        cert = _path(device.cert_file or "", base)
        uri = cert_uri(cert)
        if uri:
            client.application_uri = uri
        server_cert = _path(device.server_cert_file, base) if device.server_cert_file else None
        await client.set_security(
            getattr(security_policies, f"SecurityPolicy{sec.policy}"), _pem_or_der(cert),
            _pem_or_der(_file(device, "key_file", base)),
            server_certificate=None if server_cert is None else _pem_or_der(server_cert),
            mode=getattr(ua.MessageSecurityMode, sec.mode or "SignAndEncrypt"))
    try:
        await client.connect()
    except BaseException:
        # connect() unwinds its own session and channel; only the socket may be left
        client.disconnect_socket()
        raise
    return client


async def close_client(client: Client, wait: float = 2.0) -> None:
    """Close session and socket, whatever state they are in; never raises."""
    try:
        await asyncio.wait_for(client.disconnect(), wait)
    except BaseException as exc:  # noqa: BLE001 - teardown of a possibly dead link
        if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():  # type: ignore[union-attr]
            client.disconnect_socket()
            raise
    try:
        client.disconnect_socket()
    except Exception:  # noqa: BLE001
        pass


async def resolve(client: Client, addresses: list) -> list[ua.NodeId | str]:
    """Per point: its NodeId, or a reason string why it is not on the server."""
    out: list[ua.NodeId | str] = [None] * len(addresses)  # type: ignore[list-item]
    paths: list[int] = []
    ns_array: list[str] | None = None
    for i, a in enumerate(addresses):
        if isinstance(a, list):
            paths.append(i)
        elif isinstance(a, ua.ExpandedNodeId) and a.NamespaceUri:
            if ns_array is None:
                ns_array = await client.get_namespace_array()
            if a.NamespaceUri in ns_array:
                out[i] = ua.NodeId(a.Identifier, ns_array.index(a.NamespaceUri), a.NodeIdType)
            else:
                out[i] = f"namespace {a.NamespaceUri} is not on the server"
        else:
            out[i] = a
    if paths:
        bps = []
        for i in paths:
            rel = ua.RelativePath(Elements=[ua.RelativePathElement(ReferenceTypeId=_HIERARCHICAL, IsInverse=False,
                                                                   IncludeSubtypes=True, TargetName=q)
                                            for q in addresses[i]])
            bps.append(ua.BrowsePath(StartingNode=ROOT, RelativePath=rel))
        results = await client.uaclient.translate_browsepaths_to_nodeids(bps)
        for i, r in zip(paths, results):
            if r.StatusCode.is_good() and r.Targets:
                t = r.Targets[0].TargetId
                out[i] = ua.NodeId(t.Identifier, t.NamespaceIndex, t.NodeIdType)
            else:
                out[i] = f"browse path not found on the server ({r.StatusCode.name})"
    return out


async def operation_limit(client: Client, object_id: int, default: int) -> int:
    """A server OperationLimits value (e.g. MaxNodesPerRead); 0, absent or unreadable -> `default`."""
    try:
        dv = await client.get_node(object_id).read_data_value()
        n = int(dv.Value.Value) if dv.StatusCode.is_good() and dv.Value is not None and dv.Value.Value else 0
    except (ua.UaError, OSError, asyncio.TimeoutError, TypeError, ValueError):
        n = 0
    return n if n > 0 else default


def describe(exc: BaseException, device: OpcUaConfig, timeout: float) -> str:
    """One line saying why a connect/session failed and what to do; never contains the password."""
    url = show_url(device.url or "")
    code = getattr(exc, "code", None)
    if isinstance(exc, ua.UaStatusCodeError) and code is not None:
        name = ua.StatusCode(code).name
        if code in LOGIN_REFUSED:
            who = f"user {device.username!r}" if device.username else "anonymous login"
            return f"{url}: server refused {who} ({name}); check username and password_file"
        if code == ua.StatusCodes.BadSecurityPolicyRejected and not parse_security(device.security).policy:
            return (f"{url}: server refuses unsecured connections ({name}); set `security` to a policy it offers "
                    "(e.g. Basic256Sha256,SignAndEncrypt) with cert_file, key_file and server_cert_file")
        if code == ua.StatusCodes.BadSecurityPolicyRejected and not device.server_cert_file:
            return (f"{url}: server refuses the unsecured channel its certificate would be fetched over "
                    f"({name}); set `server_cert_file` to the server's certificate (ask its admin, or copy "
                    "it from the server's PKI own/ folder)")
        if code in CERT_REFUSED:
            return (f"{url}: server rejected the secure channel ({name}); ask the server admin to trust "
                    f"{device.cert_file or 'our certificate'} and check security {device.security}")
        return f"{url}: {name}"
    if isinstance(exc, EdgeAgentError):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return f"{url}: connection refused; is the OPC UA server running and the port right?"
    if isinstance(exc, asyncio.TimeoutError):
        return f"{url}: no answer within {timeout:g}s"
    if isinstance(exc, FileNotFoundError):
        return f"cannot read {exc.filename}: file not found"
    if isinstance(exc, PermissionError):
        return f"cannot read {exc.filename}: permission denied"
    if isinstance(exc, OSError):
        return f"{url}: {exc.strerror or exc}"
    if isinstance(exc, ua.UaError) and "endpoint" in str(exc).lower():
        return f"{url}: server offers no endpoint for security {device.security}; change `security` to one it offers"
    return f"{url}: {type(exc).__name__}: {exc}"
