"""FTP/FTPS push of the outbox (stdlib ftplib, in a worker thread).

    push = FtpPush(cfg, outbox_dir, site=site, wake=event)
    async with push:
        await push.run()          # until cancelled

`cfg.upload` is `ftp://user@host:port/dir` or `ftps://...` (explicit TLS,
protected data channel, server certificate and host name verified against
`ca_file` when the config has one, else the system store).  Each data connection
resumes the control connection's TLS session, as vsftpd requires by default
(`require_ssl_reuse=YES`).  The password is read from `cfg.password_file` at each
connect (through `edge_agent.secrets`: `$CREDENTIALS_DIRECTORY` first, then
relative to the site file), so it can be rotated.

Guarantees a caller may rely on:
- Files go up one at a time in the order they were written (file mtime, then
  name; `FileSink` makes the stamps strictly increasing).
- Each file is stored under a hidden temporary name (`.NAME.part`), its size
  checked when the server supports SIZE, then renamed to NAME: a receiver
  never sees a partial file under the final name.  A store the server refuses
  takes its `.NAME.part` away again: at once while the connection still answers,
  else right after the next login.
- The local file is removed (or moved to `uploaded/` with
  `keep_uploaded: true`) only after the rename succeeded.  A crash between
  the rename and the removal uploads the file once more (at-least-once).
- Any failure (refused, dropped, timeout, bad login) logs one line, drops the
  connection and retries the same file with exponential backoff and jitter;
  recovery is logged once.
"""
from __future__ import annotations

import asyncio
import ftplib
import logging
import os
import ssl
from pathlib import Path

from edge_agent.backoff import Backoff
from edge_agent.errors import ConfigError, EdgeAgentError, Problem
from edge_agent.forward.files_spec import FilesCfg, parse_upload
from edge_agent.fsutil import make_dirs, sync_dir
from edge_agent.secrets import read_secret

log = logging.getLogger("edge_agent.forward.ftp")


def pending_files(directory: Path) -> list[Path]:
    """Outbox files waiting for upload, oldest first (not hidden temp files, not sub-folders)."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:      # not written yet; other OSErrors are the caller's to report
        return []
    for e in entries:
        if e.name.startswith(".") or not e.name.endswith(".txt"):
            continue
        try:
            if e.is_file(follow_symlinks=False):
                found.append((e.stat().st_mtime_ns, e.name))
        except FileNotFoundError:
            continue
    found.sort()
    return [directory / name for _, name in found]


class FtpPush:
    """Uploads the outbox to one FTP/FTPS server; see the module docstring."""

    tls_client: type[ftplib.FTP_TLS]      # the FTPS client class (_SessionReusingFTP, below)

    def __init__(self, cfg: FilesCfg, directory: Path, *, site=None, wake: asyncio.Event | None = None,
                 scan_every: float = 5.0, timeout: float = 30.0, backoff: tuple[float, float] = (1.0, 60.0),
                 ssl_context: ssl.SSLContext | None = None):
        where = getattr(site, "source", "") or "site"
        if not cfg.upload:
            raise ConfigError([Problem(where, None, f"{cfg.field}.upload", "no upload URL configured")])
        self.cfg = cfg
        self.target = parse_upload(cfg.upload, where)
        self.directory = Path(directory)
        self.site = site
        self.wake = wake if wake is not None else asyncio.Event()
        self.scan_every = scan_every
        self.timeout = timeout
        self.backoff = backoff
        self.ssl_context = ssl_context
        self.ftp: ftplib.FTP | None = None
        self._leftovers: set[str] = set()     # .NAME.part files a failed store may have left on the server
        self.uploaded = 0
        self.failures = 0
        self.failing: str | None = None

    async def __aenter__(self) -> "FtpPush":
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self._close)

    async def run(self) -> None:
        retry = Backoff(*self.backoff)
        while True:
            self.wake.clear()
            try:
                files = await asyncio.to_thread(pending_files, self.directory)
            except OSError as exc:
                files = []
                self._failed(f"cannot read the outbox {self.directory}: {exc.strerror or exc}", None)
                await asyncio.sleep(retry.next())
                continue
            for path in files:
                try:
                    await asyncio.to_thread(self._upload, path)
                except (*ftplib.all_errors, EdgeAgentError) as exc:
                    self._failed(_reason(exc), path)
                    await asyncio.to_thread(self._close)
                    if self._leftovers:
                        await asyncio.to_thread(self._clean)
                    await asyncio.sleep(retry.next())
                    break
                if self.failing is not None:
                    log.warning("FTP push to %s:%d: uploading again", self.target.host, self.target.port)
                    self.failing = None
                retry.reset()
            else:
                if not self.wake.is_set():
                    try:
                        await asyncio.wait_for(self.wake.wait(), self.scan_every)
                    except asyncio.TimeoutError:
                        pass

    def _failed(self, reason: str, path: Path | None) -> None:
        """Count a failure; log it once per distinct reason (a long outage is one line, not thousands)."""
        self.failures += 1
        if reason != self.failing:
            log.error("FTP push to %s:%d: %s; %s, retrying with backoff", self.target.host, self.target.port,
                      reason, f"{path.name} stays in the outbox" if path is not None else "nothing uploaded")
        self.failing = reason

    # ------------------------------------------------------------------ in the worker thread

    def _password(self) -> str:
        if self.target.password is not None:
            return self.target.password
        if not self.cfg.password_file:
            return "" if self.target.user != "anonymous" else "edge-agent@"
        return read_secret(self.cfg.password_file, field=f"{self.cfg.field}.password_file",
                           site=self.site).reveal()

    def _tls_context(self) -> ssl.SSLContext:
        """The given context, else one verifying against `cfg.ca_file` (when the config has one) or the
        system store; TLS 1.2 or newer, host name checked."""
        if self.ssl_context is not None:
            return self.ssl_context
        ca = self.cfg.ca_file
        try:
            ctx = ssl.create_default_context(cafile=str(self._path(ca)) if ca else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([Problem(str(self._path(ca)), None, f"{self.cfg.field}.ca_file",
                                       f"cannot use as CA certificate: {exc}")])
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _path(self, p: str) -> Path:
        return self.site.path(p) if self.site is not None else Path(p)

    def _connect(self) -> ftplib.FTP:
        if self.ftp is not None:
            return self.ftp
        t = self.target
        if t.tls:
            ftp: ftplib.FTP = self.tls_client(context=self._tls_context(), timeout=self.timeout)
        else:
            ftp = ftplib.FTP(timeout=self.timeout)
        try:
            ftp.connect(t.host, t.port)
            ftp.login(t.user, self._password())
            if t.tls:
                ftp.prot_p()
            if t.directory:
                self._cwd(ftp, t.directory)
            # a store cut off with its connection (vsftpd drops it after a 522) left its .part behind
            for part in sorted(self._leftovers):
                _quiet_delete(ftp, part)
            self._leftovers.clear()
        except BaseException:
            _quiet_close(ftp)
            raise
        self.ftp = ftp
        return ftp

    @staticmethod
    def _cwd(ftp: ftplib.FTP, directory: str) -> None:
        """Change into `directory`, creating missing components."""
        try:
            ftp.cwd(directory)
            return
        except ftplib.error_perm:
            pass
        for part in directory.split("/"):
            if not part:
                continue
            try:
                ftp.cwd(part)
            except ftplib.error_perm:
                ftp.mkd(part)
                ftp.cwd(part)

    def _upload(self, path: Path) -> None:
        ftp = self._connect()
        name = path.name
        part = f".{name}.part"
        size = path.stat().st_size
        self._leftovers.add(part)     # until renamed: a failure leaves it to be deleted (now, or at reconnect)
        try:
            with open(path, "rb") as f:
                ftp.storbinary(f"STOR {part}", f)
        except ftplib.Error:
            _quiet_delete(ftp, part)  # refused mid-way (452, ...) on a connection that still answers
            raise
        try:
            remote = ftp.size(part)
        except ftplib.error_perm:       # SIZE not supported: trust the 226 reply
            remote = None
        if remote is not None and remote != size:
            raise ftplib.error_temp(f"451 {part}: server has {remote} of {size} bytes")
        try:
            ftp.rename(part, name)
        except ftplib.error_perm:
            # some servers refuse to rename over an existing file (a re-upload after a crash
            # between rename and local delete): that file is this one, so replace it
            ftp.delete(name)
            ftp.rename(part, name)
        self._leftovers.discard(part)
        if self.cfg.keep_uploaded:
            done = self.directory / "uploaded"
            make_dirs(done)
            os.replace(path, done / name)
            sync_dir(done)              # the kept copy survives a cut (lost from the outbox: a re-upload)
        else:
            path.unlink()
        self.uploaded += 1

    def _clean(self) -> None:
        """Log in once more to delete what a store cut off with its connection left (best effort)."""
        try:
            self._connect()
        except (*ftplib.all_errors, EdgeAgentError):
            pass
        self._close()

    def _close(self) -> None:
        ftp, self.ftp = self.ftp, None
        if ftp is not None:
            try:
                ftp.quit()
            except (*ftplib.all_errors, AttributeError):
                _quiet_close(ftp)


class _SessionReusingFTP(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session.

    vsftpd (`require_ssl_reuse=YES`, its default) refuses a data connection with a fresh
    session ("522 SSL connection failed: session reuse required"): it is how it knows
    the data connection comes from the client that logged in.  ftplib does not reuse."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


FtpPush.tls_client = _SessionReusingFTP


def _quiet_delete(ftp: ftplib.FTP, name: str) -> None:
    try:
        ftp.delete(name)
    except (*ftplib.all_errors, AttributeError):
        pass


def _quiet_close(ftp: ftplib.FTP) -> None:
    try:
        ftp.close()
    except (*ftplib.all_errors, AttributeError):
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EdgeAgentError):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the server certificate is not trusted ({exc.verify_message}); check the CA "
                "(forward.files.ca_file) and the host name in the upload URL")
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, (TimeoutError, ConnectionError, EOFError)):
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return f"connection lost ({detail})"
    if isinstance(exc, ftplib.error_perm) and str(exc).startswith("530"):
        return f"login refused ({exc}); check the user in the URL and the password file"
    return f"{type(exc).__name__}: {exc}"
