"""`edge-agent opcua-cert`: the client certificate a site engineer hands to the OPC UA server admin.

    edge-agent opcua-cert --out /etc/edge-agent/opcua [--uri URI] [--hostname NAME] [--days N]

writes `client-cert.pem` / `client-cert.der` (the same certificate; admins'
tools want one or the other) and `client-key.pem` (mode 0600), an RSA-2048
self-signed Application Instance Certificate as OPC 10000-6 6.2.2 describes:
subjectAltName holds the application URI (the driver announces the URI it
finds there, so the two always match) and the host name; key usage digital
signature, non-repudiation, key and data encipherment; extended key usage
client authentication; SHA-256 signature.

`make_client_cert(...)` is the library call; `register(subparsers)` adds the
subcommand to the CLI.  Existing files are not overwritten unless `--force`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path


CERT_PEM, CERT_DER, KEY_PEM = "client-cert.pem", "client-cert.der", "client-key.pem"


def default_uri(hostname: str | None = None) -> str:
    return f"urn:{hostname or socket.gethostname()}:edge-agent"


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert_pem: Path
    cert_der: Path
    key_pem: Path
    uri: str
    not_after: dt.datetime


def make_client_cert(out: Path, *, uri: str | None = None, hostname: str | None = None, days: int = 3650,
                     organization: str = "edge-agent", force: bool = False) -> CertFiles:
    """Create the key pair and certificate in `out`; FileExistsError if they exist and not `force`."""
    # imported here: cryptography costs ~9 MB and every `edge-agent` command builds this subcommand's parser
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    host = hostname or socket.gethostname()
    uri = uri or default_uri(host)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / CERT_PEM, out / CERT_DER, out / KEY_PEM)
    if not force:
        for p in paths:
            if p.exists():
                raise FileExistsError(p)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"edge-agent@{host}"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    try:
        host_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        host_name = x509.DNSName(host)
    now = dt.datetime.now(dt.timezone.utc)
    not_after = now + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))   # tolerate a server clock a little behind
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), host_name]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                     data_encipherment=True, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(paths[2], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    _write(paths[0], cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(paths[1], cert.public_bytes(serialization.Encoding.DER), 0o644)
    return CertFiles(paths[0], paths[1], paths[2], uri, not_after)


def _write(path: Path, data: bytes, mode: int) -> None:
    # created with the final mode, so the key is never readable by others, not even briefly
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def handler(args: argparse.Namespace) -> int:
    try:
        files = make_client_cert(Path(args.out), uri=args.uri, hostname=args.hostname, days=args.days,
                                 force=args.force)
    except FileExistsError as exc:
        print(f"opcua-cert: {exc.args[0]} already exists; use --force to replace it (the server admin "
              "must then trust the new certificate)")
        return 1
    except OSError as exc:
        print(f"opcua-cert: cannot write to {args.out}: {exc.strerror}")
        return 1
    print(f"wrote {files.cert_pem} and {files.cert_der} (certificate, valid until "
          f"{files.not_after:%Y-%m-%d}) and {files.key_pem} (private key, keep it on this machine)")
    print(f"application URI: {files.uri}")
    print("hand the certificate (.der or .pem) to the OPC UA server admin to trust, then set in the site file:")
    print(f"  cert_file: {files.cert_pem}\n  key_file: {files.key_pem}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `opcua-cert` to an argparse subparsers object; its handler returns the exit code."""
    p = subparsers.add_parser("opcua-cert", help="create the OPC UA client certificate and key",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, metavar="DIR", help="folder for client-cert.pem/.der and client-key.pem")
    p.add_argument("--uri", default=None, help=f"application URI (default {default_uri('HOSTNAME')})")
    p.add_argument("--hostname", default=None, help="host name or IP in the certificate (default: this machine's)")
    p.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=handler)
    return p
