"""FTP push against a real pyftpdlib server on loopback, started by each test.

Proves: files arrive complete and in write order, local files go only after the
server-side rename; a server that is down, refuses a store or drops the
connection mid-upload never shows a partial file under the final name, and
the push recovers by itself.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.servers import FTPServer

from conftest import free_port
from edge_agent.forward.files_spec import FilesCfg
from edge_agent.errors import ConfigError
from edge_agent.forward.files_spec import parse_upload
from edge_agent.forward.ftp import FtpPush, pending_files

logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
USER, PASSWORD = "gw", "s3cret"


class Recorder(FTPHandler):
    """Records each completed rename and whether the client still had the file at that moment."""
    renames: list = []
    outbox: Path | None = None
    refuse_stor = 0          # refuse this many STORs with 452

    def ftp_STOR(self, file, mode="w"):
        if type(self).refuse_stor > 0:
            type(self).refuse_stor -= 1
            self.respond("452 Insufficient storage space.")
            return None
        return super().ftp_STOR(file, mode)

    def ftp_RNTO(self, path):
        # look before replying: the client may delete its copy as soon as the reply is out
        name = os.path.basename(path)
        still_local = self.outbox is not None and (self.outbox / name).exists()
        result = super().ftp_RNTO(path)
        type(self).renames.append((name, still_local))
        return result


class DroppingDTP(DTPHandler):
    """Drops the data and control connections after `after` bytes, `times` times."""
    times = 0
    after = 100_000

    def handle_read(self):
        super().handle_read()
        if type(self).times > 0 and self.tot_bytes_received >= type(self).after:
            type(self).times -= 1
            self.cmd_channel.close()
            self.close()

    handle_read_event = handle_read   # the base class aliases its own handle_read


class Server:
    """A pyftpdlib server in a thread, on a loopback port, stopped by the test."""

    def __init__(self, root: Path, outbox: Path, port: int | None = None, dtp=DTPHandler, refuse_stor: int = 0,
                 tls: tuple[Path, Path] | None = None):
        root.mkdir(parents=True, exist_ok=True)
        auth = DummyAuthorizer()
        auth.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
        attrs = {"authorizer": auth, "dtp_handler": dtp, "renames": [], "outbox": outbox,
                 "refuse_stor": refuse_stor, "auth_failed_timeout": 0.05}
        bases: tuple = (Recorder,)
        if tls is not None:         # explicit FTPS, TLS required on control and data
            from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
            bases = (Recorder, TLS_FTPHandler)
            attrs.update(certfile=str(tls[0]), keyfile=str(tls[1]), dtp_handler=TLS_DTPHandler,
                         tls_control_required=True, tls_data_required=True)
        self.handler = type("Handler", bases, attrs)
        self.root = root
        self.port = port or free_port()
        self.server = FTPServer(("127.0.0.1", self.port), self.handler)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        self.server.close_all()

    @property
    def renames(self) -> list:
        return self.handler.renames

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


@pytest.fixture
def servers():
    made: list[Server] = []

    def make(*args, **kw) -> Server:
        s = Server(*args, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def make_outbox(folder: Path, sizes: list[int]) -> list[Path]:
    """Files named like spec files whose name order differs from their write (mtime) order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    base = time.time_ns()
    for i, size in enumerate(sizes):
        # names run backwards in time so that sorting by name would give the wrong order
        p = folder / f"140211001234_CDSS_202611291000{59 - i:02d}.txt"
        p.write_bytes(bytes((i * 7 + k) % 251 for k in range(size)) + b"||")
        os.utime(p, ns=(base + i, base + i))
        paths.append(p)
    return paths


def push(tmp_path: Path, port: int, password: str = PASSWORD, directory: str = "aqjk/in", scheme: str = "ftp",
         ssl_context=None, **cfg) -> FtpPush:
    pw = tmp_path / "ftp.pass"
    pw.write_text(password + "\n")
    files = FilesCfg(dir=str(tmp_path / "outbox"), upload=f"{scheme}://{USER}@127.0.0.1:{port}/{directory}",
                     password_file=str(pw), **cfg)
    return FtpPush(files, tmp_path / "outbox", scan_every=0.1, timeout=5, backoff=(0.05, 0.2),
                   ssl_context=ssl_context)


def run_push(p: FtpPush, until, timeout: float = 20.0, during=None) -> None:
    """Run the push until `until()` holds (polled), calling `during()` once first if given."""
    async def main():
        async with p:
            task = asyncio.create_task(p.run())
            try:
                deadline = time.monotonic() + timeout
                if during is not None:
                    await during()
                while not until():
                    assert not task.done(), task.exception()
                    assert time.monotonic() < deadline, "condition not reached in time"
                    await asyncio.sleep(0.02)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())


def test_files_arrive_complete_in_order_and_local_copies_go_after_rename(tmp_path, servers):
    outbox = tmp_path / "outbox"
    paths = make_outbox(outbox, [300_000, 10, 70_000, 5])
    contents = {p.name: p.read_bytes() for p in paths}
    srv = servers(tmp_path / "server", outbox)
    p = push(tmp_path, srv.port)
    run_push(p, lambda: not any(outbox.iterdir()))
    remote = srv.root / "aqjk" / "in"
    assert {q.name: q.read_bytes() for q in remote.iterdir()} == contents
    assert [n for n, _ in srv.renames] == [q.name for q in paths], "uploaded in write order"
    assert all(still for _, still in srv.renames), "the local file existed until the server renamed it"
    assert p.uploaded == 4


def test_connection_dropped_mid_upload_leaves_no_partial_final_file(tmp_path, servers, caplog):
    outbox = tmp_path / "outbox"
    paths = make_outbox(outbox, [400_000, 200_000])
    contents = {q.name: q.read_bytes() for q in paths}
    DroppingDTP.times, DroppingDTP.after = 2, 100_000
    srv = servers(tmp_path / "server", outbox, dtp=DroppingDTP)
    remote = srv.root / "aqjk" / "in"
    seen_partial = []

    def watch() -> bool:
        # every poll: anything under a final name must be complete
        if remote.exists():
            for q in remote.iterdir():
                if not q.name.startswith(".") and q.read_bytes() != contents[q.name]:
                    seen_partial.append(q.name)
        return not any(outbox.iterdir())

    p = push(tmp_path, srv.port)
    run_push(p, watch)
    assert DroppingDTP.times == 0, "the server did drop twice"
    assert p.failures >= 2
    assert seen_partial == []
    assert {q.name: q.read_bytes() for q in remote.iterdir() if not q.name.startswith(".")} == contents
    assert [n for n, _ in srv.renames] == [q.name for q in paths]
    lost = [r.getMessage() for r in caplog.records if r.name == "edge_agent.forward.ftp" and r.levelno >= 40]
    assert lost and "connection lost" in lost[0]


def test_server_down_then_refusing_then_good(tmp_path, servers, caplog):
    outbox = tmp_path / "outbox"
    paths = make_outbox(outbox, [1000, 2000])
    port = free_port()
    srv_holder = []
    p = push(tmp_path, port)

    async def start_later():
        # nobody listens: connection refused, files stay
        deadline = time.monotonic() + 10
        while p.failures < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert all(q.exists() for q in paths)
        # now a server that refuses the first three stores
        srv_holder.append(servers(tmp_path / "server", outbox, port=port, refuse_stor=3))

    run_push(p, lambda: not any(outbox.iterdir()), during=start_later)
    srv = srv_holder[0]
    assert srv.handler.refuse_stor == 0
    assert [n for n, _ in srv.renames] == [q.name for q in paths]
    msgs = [r.getMessage() for r in caplog.records if r.name == "edge_agent.forward.ftp"]
    assert any("connection refused" in m for m in msgs)
    assert any("452" in m for m in msgs)
    assert any("uploading again" in m for m in msgs)


def test_wrong_password_is_one_clear_line_and_a_fixed_file_is_picked_up(tmp_path, servers, caplog):
    outbox = tmp_path / "outbox"
    make_outbox(outbox, [100])
    srv = servers(tmp_path / "server", outbox)
    p = push(tmp_path, srv.port, password="wrong")

    async def fix():
        deadline = time.monotonic() + 10
        while p.failures < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        (tmp_path / "ftp.pass").write_text(PASSWORD)

    run_push(p, lambda: not any(outbox.iterdir()), during=fix)
    errors = [r.getMessage() for r in caplog.records if r.name == "edge_agent.forward.ftp" and r.levelno >= 40]
    assert len(errors) == 1 and "login refused" in errors[0] and "password file" in errors[0]


def test_keep_uploaded_moves_instead_of_deleting(tmp_path, servers):
    outbox = tmp_path / "outbox"
    paths = make_outbox(outbox, [10, 20])
    srv = servers(tmp_path / "server", outbox)
    p = push(tmp_path, srv.port, directory="", keep_uploaded=True)
    run_push(p, lambda: len(pending_files(outbox)) == 0)
    assert sorted(q.name for q in (outbox / "uploaded").iterdir()) == sorted(q.name for q in paths)
    assert sorted(q.name for q in srv.root.iterdir()) == sorted(q.name for q in paths)


def test_pending_files_skip_temp_files_and_folders(tmp_path):
    make_outbox(tmp_path, [1, 1])
    (tmp_path / ".140211001234_CDSS_20261129100000.txt.tmp").write_text("half")
    (tmp_path / "uploaded").mkdir()
    assert [q.name for q in pending_files(tmp_path)] == ["140211001234_CDSS_20261129100059.txt",
                                                          "140211001234_CDSS_20261129100058.txt"]


def test_upload_url_parsing():
    t = parse_upload("ftps://gw%40x@platform.example:2121/aqjk/in")
    assert (t.tls, t.host, t.port, t.user, t.directory) == (True, "platform.example", 2121, "gw@x", "aqjk/in")
    assert parse_upload("ftp://host").user == "anonymous" and parse_upload("ftp://host").port == 21
    for bad in ("sftp://h/x", "ftp:///nohost", "ftp://h:99999/x"):
        with pytest.raises(ConfigError, match="forward.files.upload"):
            parse_upload(bad)


def test_file_sink_with_upload_pushes_what_it_writes(tmp_path, servers):
    """Buffer rows -> spec files in the outbox -> the FTP server, in order; the outbox empties."""
    from edge_agent.buffer import Buffer
    from edge_agent.config import load_site
    from edge_agent.forward.files import FileSink
    from edge_agent.points import Catalog
    from edge_agent.profile import load_profile
    from edge_agent.profile.encode import Encoder
    from test_textfile import GOLDEN, T0, TZ, check_file

    site = load_site(GOLDEN / "site.yaml")
    profile = load_profile(site.profile)
    enc = Encoder(site, Catalog(site, profile), profile, tz=TZ)
    outbox = tmp_path / "outbox"
    srv = servers(tmp_path / "server", outbox)
    (tmp_path / "ftp.pass").write_text(PASSWORD)
    cfg = FilesCfg(dir=str(outbox), upload=f"ftp://{USER}@127.0.0.1:{srv.port}/aqjk",
                   password_file=str(tmp_path / "ftp.pass"))
    buf = Buffer(tmp_path / "buffer.sqlite")
    buf.append([("CDDY", 2, T0, enc.cddy(T0)), ("FZSS", 2, T0, enc.fzss([(0, 1), (1, 0)], T0)),
                ("FZSS", 2, T0, enc.fzss([(1, 1), (1, 0)], T0))])
    sink = FileSink(cfg, site, profile, buf, asyncio.Event(), outbox, tz=TZ)
    remote = srv.root / "aqjk"

    async def main():
        async with sink:
            task = asyncio.create_task(sink.run())
            deadline = time.monotonic() + 15
            while buf.backlog("files") or pending_files(outbox) or len(srv.renames) < 3:
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.02)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    try:
        asyncio.run(main())
    finally:
        buf.close()
    st = sink.stats()
    assert (st["files_written"], st["write_errors"], st["failing"]) == (3, 0, None)
    assert st["upload"] == {"uploaded": 3, "failures": 0, "failing": None, "waiting": 0}
    assert [n for n, _ in srv.renames] == ["140211001234_CDDY_20261129100020.txt",
                                          "140211001234_FZSS_20261129100020.txt",
                                          "140211001234_FZSS_20261129100021.txt"]
    for q in remote.iterdir():
        check_file(q, profile)


@pytest.fixture(scope="module")
def ftps_pki(tmp_path_factory):
    pytest.importorskip("OpenSSL", reason="pyftpdlib's FTPS server needs pyOpenSSL")
    from test_tls import CA
    d = tmp_path_factory.mktemp("ftps-pki")
    ca, other = CA(d, "ftp-ca"), CA(d, "stranger-ca")
    return ca, ca.issue("ftp-server", hosts=("127.0.0.1",)), other


def test_ftps_verifies_the_server_and_uploads_over_protected_data(tmp_path, servers, ftps_pki, caplog):
    import ssl
    ca, server_cert, other = ftps_pki
    outbox = tmp_path / "outbox"
    paths = make_outbox(outbox, [50_000, 10])
    contents = {q.name: q.read_bytes() for q in paths}
    srv = servers(tmp_path / "server", outbox, tls=server_cert)
    # a client trusting another CA: one clear line, nothing uploaded, the files stay
    wrong = push(tmp_path, srv.port, scheme="ftps", ssl_context=ssl.create_default_context(cafile=str(other.path)))
    run_push(wrong, lambda: wrong.failures >= 2)
    assert srv.renames == [] and all(q.exists() for q in paths)
    errors = [r.getMessage() for r in caplog.records if r.name == "edge_agent.forward.ftp" and r.levelno >= 40]
    assert len(errors) == 1 and "server certificate is not trusted" in errors[0], errors
    good = push(tmp_path, srv.port, scheme="ftps", ssl_context=ssl.create_default_context(cafile=str(ca.path)))
    run_push(good, lambda: not any(outbox.iterdir()))
    assert {q.name: q.read_bytes() for q in (srv.root / "aqjk" / "in").iterdir()} == contents


def test_unreadable_outbox_is_one_line_and_the_push_keeps_running(tmp_path, servers, caplog):
    outbox = tmp_path / "outbox"
    outbox.write_text("a file where the folder should be")
    srv = servers(tmp_path / "server", outbox)
    p = push(tmp_path, srv.port)

    async def repair():
        deadline = time.monotonic() + 10
        while p.failures < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        outbox.unlink()
        make_outbox(outbox, [10])

    run_push(p, lambda: p.uploaded == 1, during=repair)
    errors = [r.getMessage() for r in caplog.records if r.name == "edge_agent.forward.ftp" and r.levelno >= 40]
    assert len(errors) == 1 and "cannot read the outbox" in errors[0]
