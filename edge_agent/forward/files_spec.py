"""The spec-file sink's part of the site file (`forward.files`): its keys, the upload URL grammar.

`FilesCfg` is the block: the outbox folder, and optionally an `upload:` URL
(`ftp://user@host:21/dir` or `ftps://...`, explicit TLS) with `password_file` and
`ca_file` (a private CA for FTPS).  A URL of another scheme is refused by the model,
so `check` says so before `run`.  `SPEC` is the registry entry (see `edge_agent.registry`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from typing import Annotated

from pydantic import AfterValidator

from edge_agent.errors import ConfigError, Problem
from edge_agent.model import SinkConfig
from edge_agent.registry import SinkSpec

FIELD = "forward.files.upload"


@dataclass(frozen=True)
class FtpTarget:
    tls: bool
    host: str
    port: int
    user: str
    password: str | None      # only when written in the URL (discouraged: use password_file)
    directory: str


def _target(url: str) -> FtpTarget:
    """`ftp[s]://[user[:password]@]host[:port][/dir]` -> FtpTarget; ValueError saying what to write otherwise."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL ({exc})") from None
    if u.scheme not in ("ftp", "ftps") or not u.hostname:
        raise ValueError(f"{url!r}: write ftp://user@host:21/dir or ftps://user@host:21/dir")
    return FtpTarget(tls=u.scheme == "ftps", host=u.hostname, port=port or 21,
                     user=unquote(u.username) if u.username else "anonymous",
                     password=unquote(u.password) if u.password is not None else None,
                     directory=unquote(u.path).strip("/"))


def parse_upload(url: str, where: str = "site") -> FtpTarget:
    """The upload target; ConfigError naming `forward.files.upload` for a URL that is not FTP/FTPS."""
    try:
        return _target(url)
    except ValueError as exc:
        raise ConfigError([Problem(where, None, FIELD, str(exc))]) from None


def _checked_upload(v: str | None) -> str | None:
    if v is not None:
        _target(v)
    return v


# an `upload:` URL, refused by the model unless ftp:// or ftps:// (also `systems[].upload`)
UploadUrl = Annotated[str | None, AfterValidator(_checked_upload)]


class FilesCfg(SinkConfig):
    dir: str = "/var/lib/edge-agent/outbox"
    upload: UploadUrl = None
    password_file: str | None = None
    ca_file: str | None = None          # FTPS: trust this CA (else the system store)
    keep_uploaded: bool = False


def for_system(cfg: FilesCfg, system) -> FilesCfg:
    """This files block for one monitoring system: sink `files.<system>` (or `<name>.<system>`), writing
    into the system's sub-folder, pushing to the system's `upload` (default: this block's upload plus the
    sub-folder)."""
    upload = system.upload
    if upload is None and cfg.upload:
        upload = cfg.upload.rstrip("/") + "/" + system.dir
    return cfg.model_copy(update={"name": f"{cfg.sink_name}.{system.name}",
                                  "dir": str(Path(cfg.dir) / system.dir), "upload": upload})


def make(cfg: FilesCfg, ctx):
    from edge_agent.forward.files import FileSink
    return FileSink(cfg, ctx.site, ctx.profile, ctx.buffer, ctx.wake, ctx.site.path(cfg.dir), name=ctx.name)


SPEC = SinkSpec(
    kind="files", config=FilesCfg, factory=make, secret_fields=("password_file",), per_system=for_system,
    counters={"published": ("files_written",), "acked": ("files_written",)})
