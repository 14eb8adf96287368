"""Credentials: read from files or from systemd's `$CREDENTIALS_DIRECTORY`, never echoed.

The site file only ever names a secret's *file* (`password_file`, `key_password_file`,
...).  `read_secret(value, field=..., site=...)` resolves that name and returns the
content with one trailing newline removed.  Where it looks:

- `$CREDENTIALS_DIRECTORY/NAME` or `${CREDENTIALS_DIRECTORY}/NAME` is expanded;
- a bare name (no `/`) is looked up in `$CREDENTIALS_DIRECTORY` first when that is set
  (systemd `LoadCredential=mqtt.pass:/etc/edge-agent/mqtt.pass` + `password_file: mqtt.pass`);
- otherwise the path is taken relative to the site file's folder.

Errors (`SecretError`, an `EdgeAgentError`) name the field and the file and say what to
do; they never contain the secret.  `permission_warnings(site)` lists secret files that
the group or others can read, for `edge-agent check`.  `Secret` wraps a value so that
`str`/`repr`/f-strings show `***`: pass `secret.reveal()` only to the library that needs it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from edge_agent.errors import EdgeAgentError

if TYPE_CHECKING:
    from edge_agent.config import Site

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class SecretError(EdgeAgentError):
    """A configured secret file is missing, unreadable or empty (the message names the field and file)."""


class Secret:
    """A secret value that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def resolve(value: str, site: "Site | None" = None) -> Path:
    """The file a `*_file` setting names (see the module docstring for the search order)."""
    creds = os.environ.get(CREDENTIALS_ENV)
    if "$" in value:
        if not creds and CREDENTIALS_ENV in value:
            return Path(value)  # left unexpanded: read_secret says the variable is not set
        value = os.path.expandvars(value)
    if creds and "/" not in value:
        candidate = Path(creds) / value
        if candidate.exists():
            return candidate
    return site.path(value) if site is not None else Path(os.path.expanduser(value))


def read_secret(value: str, *, field: str, site: "Site | None" = None) -> Secret:
    """Read the secret named by a `*_file` setting; raise `SecretError` naming `field` and the file."""
    path = resolve(value, site)
    where = f"{field}: {path}"
    if CREDENTIALS_ENV in str(path):
        raise SecretError(f"{where}: ${CREDENTIALS_ENV} is not set (run under systemd with LoadCredential=, "
                          "or give a plain path)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SecretError(f"{where}: file not found; create it (mode 0600) or fix the path") from None
    except IsADirectoryError:
        raise SecretError(f"{where}: is a directory, not a file") from None
    except PermissionError:
        raise SecretError(f"{where}: permission denied; make it readable by the agent's user "
                          "(owner-only, mode 0600)") from None
    except OSError as exc:
        raise SecretError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{where}: is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise SecretError(f"{where}: is empty; write the secret on one line")
    return Secret(text)


def secret_files(site: "Site") -> Iterator[tuple[str, str]]:
    """(field, configured value) for every file in the site file that holds a secret."""
    alarms = getattr(site, "alarms", None)
    if alarms is not None and alarms.enabled and resolve(alarms.token_file, site).exists():
        yield "alarms.token_file", alarms.token_file     # missing: edge_agent.alarms.config.warnings says so
    console = site.console
    if console is not None and console.password_file:
        yield "console.password_file", console.password_file
    from edge_agent import registry
    for cfg in site.forward.sinks:
        for name in registry.sink(cfg.kind).secret_fields:
            v = getattr(cfg, name, None)
            if v:
                yield f"{cfg.field}.{name}", v
    for i, dev in enumerate(site.devices):
        for name in registry.driver(dev.driver).secret_fields:
            v = getattr(dev, name, None)
            if v:
                yield f"devices[{i}].{name} ({dev.name})", v


def permission_warnings(site: "Site") -> list[str]:
    """One line per secret file that is group/world-readable or missing (never its content)."""
    out = []
    for field, value in secret_files(site):
        path = resolve(value, site)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            out.append(f"{field}: {path}: cannot stat ({exc.strerror})")
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            out.append(f"{field}: {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                       f"run: chmod 600 {path}")
    return out
