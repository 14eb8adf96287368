"""FTP/FTPS push against Debian's vsftpd (as platforms run it), and the upload settings `check` sees.

vsftpd runs with its defaults where they matter (`require_ssl_reuse=YES`: the data
connection must resume the control connection's TLS session), as an anonymous-upload
server on a free loopback port, started and stopped by pid by each test.
"""
from __future__ import annotations

import ftplib
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import free_port, stop_process, wait_port
from edge_agent.config import load_site
from edge_agent.forward.ftp import FtpPush, pending_files
from test_config import GOOD, check
from test_ftp import PASSWORD, USER, make_outbox, run_push

VSFTPD = shutil.which("vsftpd") or "/usr/sbin/vsftpd"


class Vsftpd:
    """vsftpd on 127.0.0.1:<free port>: anonymous uploads into `root/up`, FTPS when given a certificate."""

    def __init__(self, workdir: Path, tls: tuple[Path, Path] | None = None):
        if not Path(VSFTPD).exists():
            pytest.skip("vsftpd is not installed (.ci/run installs it)")
        self.port = free_port()
        self.root = workdir / "vsftpd-root"
        self.up = self.root / "up"
        self.up.mkdir(parents=True)
        shutil.chown(self.up, "ftp")          # the anonymous user writes here; its chroot root stays root's
        self.log = workdir / "vsftpd.log"
        conf = [f"listen=YES", f"listen_address=127.0.0.1", f"listen_port={self.port}", "background=NO",
                "anonymous_enable=YES", f"anon_root={self.root}", "no_anon_password=YES", "write_enable=YES",
                "anon_upload_enable=YES", "anon_mkdir_write_enable=YES", "anon_other_write_enable=YES",
                "local_enable=NO", "pasv_enable=YES", "pasv_address=127.0.0.1",
                # containers: no seccomp filter, no network namespaces
                "seccomp_sandbox=NO", "isolate=NO", "isolate_network=NO",
                f"vsftpd_log_file={self.log}", "log_ftp_protocol=YES", "xferlog_enable=YES"]
        if tls is not None:
            conf += ["ssl_enable=YES", "allow_anon_ssl=YES", "force_anon_logins_ssl=YES", "force_anon_data_ssl=YES",
                     f"rsa_cert_file={tls[0]}", f"rsa_private_key_file={tls[1]}"]   # require_ssl_reuse: default YES
        self.conf = workdir / "vsftpd.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen([VSFTPD, str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def url(self, scheme: str) -> str:
        return f"{scheme}://anonymous@127.0.0.1:{self.port}/up"

    def commands(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if "FTP" in line]

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def vsftpd_factory(tmp_path):
    made: list[Vsftpd] = []

    def make(tls=None) -> Vsftpd:
        made.append(Vsftpd(tmp_path, tls))
        return made[-1]

    yield make
    for v in made:
        v.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from test_tls import CA
    d = tmp_path_factory.mktemp("vsftpd-pki")
    ca = CA(d, "platform-ca")
    return ca, ca.issue("ftp-server", hosts=("127.0.0.1",))


def site_with_upload(tmp_path: Path, url: str, **extra) -> Path:
    """A valid site file whose file sink uploads to `url` (with `extra` keys under forward.files)."""
    lines = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    text = GOOD.replace("    dir: outbox\n", f"    dir: outbox\n    upload: {url}\n{lines}", 1)
    path = tmp_path / "site.yaml"
    path.write_text(text, "utf-8")
    return path


def push_for(site_path: Path, **kw) -> FtpPush:
    site = load_site(site_path)
    cfg = site.forward.get("files")
    return FtpPush(cfg, site.path(cfg.dir), site=site, scan_every=0.1, timeout=5, backoff=(0.05, 0.2), **kw)


def test_ftps_to_vsftpd_with_session_reuse_required_uploads_everything(tmp_path, vsftpd_factory, pki):
    ca, server_cert = pki
    srv = vsftpd_factory(tls=server_cert)
    # the private CA comes from forward.files.ca_file (no SSL_CERT_FILE)
    p = push_for(site_with_upload(tmp_path, srv.url("ftps"), ca_file=str(ca.path)))
    outbox = tmp_path / "outbox"
    paths = make_outbox(outbox, [40_000, 10, 3_000])
    contents = {q.name: q.read_bytes() for q in paths}
    run_push(p, lambda: not pending_files(outbox))
    assert {q.name: q.read_bytes() for q in srv.up.iterdir()} == contents     # and no .part left
    assert p.failures == 0 and p.uploaded == 3


def test_plain_ftp_to_vsftpd(tmp_path, vsftpd_factory):
    srv = vsftpd_factory()
    p = push_for(site_with_upload(tmp_path, srv.url("ftp")))
    outbox = tmp_path / "outbox"
    paths = make_outbox(outbox, [5_000, 7])
    run_push(p, lambda: not pending_files(outbox))
    assert sorted(q.name for q in srv.up.iterdir()) == sorted(q.name for q in paths)


def test_a_store_vsftpd_refuses_leaves_no_part_file(tmp_path, vsftpd_factory, pki, caplog):
    """ftplib's own FTP_TLS does not resume the session on the data connection: vsftpd answers 522
    and drops the connection after it created the .part file.  The push deletes it over a new login."""
    ca, server_cert = pki
    srv = vsftpd_factory(tls=server_cert)
    p = push_for(site_with_upload(tmp_path, srv.url("ftps"), ca_file=str(ca.path)))
    p.tls_client = ftplib.FTP_TLS
    outbox = tmp_path / "outbox"
    make_outbox(outbox, [20_000])
    run_push(p, lambda: p.failures >= 2)
    # the refusal is vsftpd's 522 on the control connection; when the data connection's handshake fails
    # first (a loaded machine), the same refusal reads as a TLS EOF on the data connection
    refusals = [r.getMessage() for r in caplog.records if r.name == "edge_agent.forward.ftp"]
    assert any("522" in m or "EOF occurred" in m for m in refusals), (p.failing, refusals)
    log = srv.commands()
    stored = [ln for ln in log if '"STOR .' in ln]
    deleted = [i for i, ln in enumerate(log) if '"DELE .' in ln and ".part" in ln]
    assert stored and deleted, log
    # every DELE of a .part was answered 250 (vsftpd logs each response after its command)
    for i in deleted:
        reply = next(ln for ln in log[i + 1:] if "FTP response" in ln)
        assert '"250 ' in reply, reply
    # each refused store's part is deleted before the next store
    stores = [i for i, ln in enumerate(log) if '"STOR .' in ln]
    for a, b in zip(stores, stores[1:]):
        assert any(a < i < b for i in deleted), log


def test_ftp_password_comes_from_the_systemd_credentials(tmp_path, monkeypatch):
    """`password_file: ftp.pass` under `LoadCredential=ftp.pass:...`: the file is only in $CREDENTIALS_DIRECTORY."""
    from test_ftp import Server

    outbox = tmp_path / "outbox"
    srv = Server(tmp_path / "server", outbox)
    try:
        creds = tmp_path / "credentials"
        creds.mkdir()
        (creds / "ftp.pass").write_text(PASSWORD + "\n")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        p = push_for(site_with_upload(tmp_path, f"ftp://{USER}@127.0.0.1:{srv.port}/aqjk",
                                      password_file="ftp.pass"))
        make_outbox(outbox, [100])
        run_push(p, lambda: not pending_files(outbox))
        assert p.failures == 0 and p.uploaded == 1
    finally:
        srv.stop()


@pytest.mark.parametrize("url,ok", [("http://platform.example/aqjk", False), ("sftp://gw@platform.example/x", False),
                                    ("ftps://gw@platform.example:990/aqjk", True)])
def test_check_refuses_an_upload_url_that_is_not_ftp(tmp_path, capsys, url, ok):
    path = site_with_upload(tmp_path, url)
    code, out = check(tmp_path, path.read_text("utf-8"), capsys)
    assert (code == 0) is ok, out
    if not ok:
        hit = [ln for ln in out.splitlines() if "forward.files.upload" in ln]
        assert hit and "ftp://user@host" in hit[0] and hit[0].startswith(f"{path}:11: "), out


def test_check_accepts_forward_files_ca_file(tmp_path, capsys):
    path = site_with_upload(tmp_path, "ftps://gw@platform.example/aqjk", ca_file="platform-ca.pem")
    code, out = check(tmp_path, path.read_text("utf-8"), capsys)
    assert code == 0, out
    assert load_site(path).forward.get("files").ca_file == "platform-ca.pem"
