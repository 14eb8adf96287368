"""The spec-file sink's part of the site file (`forward.files`): its keys, the upload URL grammar.

`FilesCfg` is the block: the outbox folder, and optionally an `upload:` URL
(`ftp://user@host:21/dir` or `ftps://...`, explicit TLS) with `password_file` and
`ca_file` (a private CA for FTPS).  A URL of another scheme is refused by the model,
so `check` says so before `run`.  `SPEC` is the registry entry (see `edge_agent.registry`).
"""
from __future__ import annotations

from pathlib import Path

from edge_agent.errors import ConfigError, Problem
from edge_agent.model import FtpTarget, SinkConfig, UploadUrl, _target  # noqa: F401 (FtpTarget: callers import it here)
from edge_agent.registry import SinkSpec

FIELD = "forward.files.upload"


def parse_upload(url: str, where: str = "site") -> FtpTarget:
    """The upload target; ConfigError naming `forward.files.upload` for a URL that is not FTP/FTPS."""
    try:
        return _target(url)
    except ValueError as exc:
        raise ConfigError([Problem(where, None, FIELD, str(exc))]) from None


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
